#include "tests/client/part_test_support.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <memory>

#include <boost/asio/post.hpp>

#include "client/tls.hpp"

namespace tlsrelay::test {

loopback_listener::loopback_listener() {
  fd_ = bound_loopback_socket(SOCK_NONBLOCK, port_);
  if (::listen(fd_.get(), 16) != 0)
    throw io_error("listen() on 127.0.0.1: " + std::string(std::strerror(errno)));
}

tcp_conn loopback_listener::accept(millis timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    unique_fd conn(::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (conn) return tcp_conn(std::move(conn), "accepted on 127.0.0.1:" + std::to_string(port_));
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      throw io_error("accept(): " + std::string(std::strerror(errno)));
    if (wait_fd(fd_.get(), POLLIN, deadline) == 0)
      throw io_error("no connection to 127.0.0.1:" + std::to_string(port_) + " within " +
                     std::to_string(timeout.count()) + " ms");
  }
}

connected_pair make_connected_pair(asio::io_context& io, const std::string& id) {
  asio_tcp::acceptor acceptor(io, asio_tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp_conn peer = tcp_conn::connect(acceptor.local_endpoint().port());
  // The kernel has completed the connection: accept() returns at once.
  asio_tcp::socket ours = acceptor.accept();
  return {client::relayed_connection(std::move(ours), std::nullopt, id), std::move(peer)};
}

void run_on(const part_strand& strand, std::function<void()> step, millis timeout) {
  auto done = std::make_shared<std::promise<void>>();
  auto ran = done->get_future();
  asio::post(strand, [done, step = std::move(step)] {
    step();
    done->set_value();
  });
  if (ran.wait_for(timeout) != std::future_status::ready)
    throw io_error("a step on the strand did not run within " + std::to_string(timeout.count()) +
                   " ms");
}

void part_recorder::reverse_ready(client::relayed_connection conn) {
  {
    std::lock_guard lock(mutex_);
    ready_.push_back(std::move(conn));
  }
  changed_.notify_all();
}

void part_recorder::reverse_refused(const std::string& why) {
  {
    std::lock_guard lock(mutex_);
    refused_.push_back(why);
  }
  changed_.notify_all();
}

void part_recorder::warm_pool_changed(const client::warm_pool_stats& now) {
  {
    std::lock_guard lock(mutex_);
    warm_ = now;
  }
  changed_.notify_all();
}

std::optional<client::relayed_connection> part_recorder::next_ready(millis timeout) {
  std::unique_lock lock(mutex_);
  if (!changed_.wait_for(lock, timeout, [&] { return !ready_.empty(); })) return std::nullopt;
  auto conn = std::move(ready_.front());
  ready_.pop_front();
  return conn;
}

std::string part_recorder::first_refusal(millis timeout) {
  std::unique_lock lock(mutex_);
  if (!changed_.wait_for(lock, timeout, [&] { return !refused_.empty(); })) return {};
  return refused_.front();
}

bool part_recorder::wait_warm(const std::function<bool(const client::warm_pool_stats&)>& holds,
                              millis timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return holds(warm_); });
}

client::warm_pool_stats part_recorder::warm() const {
  std::lock_guard lock(mutex_);
  return warm_;
}

connector_fixture::connector_fixture(client::detail::reverse_connector::settings s)
    : strand(asio::make_strand(io.io())),
      to(std::make_shared<client::detail::reverse_address>(relay_reverse.address())),
      connector(std::make_shared<client::detail::reverse_connector>(io.io(), strand, std::move(s),
                                                                    owner)) {}

connector_fixture::~connector_fixture() {
  run_on(strand, [c = connector] { c->close_all(); });
}

client::detail::reverse_connector::settings end_to_end_settings(const pki& keys) {
  client::detail::reverse_connector::settings s;
  std::string err;
  s.end_to_end =
    client::make_server_context({keys.file("server.crt.pem"), keys.file("server.key.pem")}, err);
  if (!s.end_to_end) throw io_error("end-to-end TLS context: " + err);
  return s;
}

}  // namespace tlsrelay::test
