#include "client/accept_queue.hpp"

#include <utility>

#include <boost/asio/post.hpp>

#include "client/errc.hpp"

namespace tlsrelay::client::detail {

accept_queue::accept_queue(boost::asio::any_io_executor executor, std::size_t max_queued)
    : executor_(std::move(executor)), max_queued_(max_queued) {}

void accept_queue::async_accept(accept_handler handler) {
  std::unique_lock lock(mutex_);
  if (!queue_.empty()) {
    auto conn = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    post_accept(std::move(handler), std::move(conn));
    return;
  }
  if (stop_error_) {
    const auto ec = stop_error_;
    lock.unlock();
    boost::asio::post(executor_, [h = std::move(handler), ec] { h(ec, relayed_connection{}); });
    return;
  }
  waiters_.push_back(std::move(handler));
}

std::optional<relayed_connection> accept_queue::accept(std::chrono::milliseconds timeout,
                                                       std::error_code& ec) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, timeout, [&] { return !queue_.empty() || stop_error_; });
  if (!queue_.empty()) {
    auto conn = std::move(queue_.front());
    queue_.pop_front();
    ec.clear();
    return conn;
  }
  ec = stop_error_ ? stop_error_ : make_error_code(std::errc::timed_out);
  return std::nullopt;
}

std::size_t accept_queue::size() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

std::string accept_queue::deliver(relayed_connection conn) {
  std::unique_lock lock(mutex_);
  if (stop_error_ == client_errc::listener_closed) {
    lock.unlock();
    conn.close();
    return {};
  }
  if (!waiters_.empty()) {
    auto h = std::move(waiters_.front());
    waiters_.pop_front();
    lock.unlock();
    post_accept(std::move(h), std::move(conn));
    return {};
  }
  if (queue_.size() >= max_queued_) {
    const auto size = queue_.size();
    lock.unlock();
    std::string why = "relayed connection" +
                      (conn.id().empty() ? std::string() : " " + conn.id()) + " closed: " +
                      std::to_string(size) + " are already waiting to be accepted";
    conn.close();
    return why;
  }
  queue_.push_back(std::move(conn));
  lock.unlock();
  changed_.notify_one();
  return {};
}

void accept_queue::stop(std::error_code code, bool drop_queued) {
  std::deque<accept_handler> waiters;
  std::deque<relayed_connection> dropped;
  {
    std::lock_guard lock(mutex_);
    if (!stop_error_ || code == client_errc::listener_closed) stop_error_ = code;
    waiters.swap(waiters_);
    if (drop_queued) dropped.swap(queue_);
  }
  changed_.notify_all();
  for (auto& conn : dropped) conn.close();
  for (auto& h : waiters)
    boost::asio::post(executor_, [h = std::move(h), code] { h(code, relayed_connection{}); });
}

void accept_queue::close() {
  closing_ = true;
  stop(client_errc::listener_closed, true);
}

void accept_queue::post_accept(accept_handler handler, relayed_connection conn) {
  boost::asio::post(executor_, [self = shared_from_this(), h = std::move(handler),
                                c = std::move(conn)]() mutable {
    if (self->closing_) {
      c.close();
      h(client_errc::listener_closed, relayed_connection{});
      return;
    }
    h({}, std::move(c));
  });
}

}  // namespace tlsrelay::client::detail
