#include "client/warm_pool.hpp"

#include <algorithm>
#include <utility>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

namespace tlsrelay::client::detail {

using steady = std::chrono::steady_clock;

namespace {
// The relay accepts warm tickets up to this far out of order: no more may be
// in flight at once.
constexpr std::size_t warm_window = warm_ticket::replay_window::width;
}  // namespace

std::shared_ptr<warm_pool> warm_pool::start(asio::io_context& io, listener_strand strand,
                                            settings s, const warm_offer& offer,
                                            std::shared_ptr<reverse_address> to,
                                            std::shared_ptr<reverse_connector> connector,
                                            std::shared_ptr<warm_pool_stats> totals,
                                            owner& to_tell) {
  auto logger = s.logger ? s.logger : spdlog::default_logger();
  const std::size_t max = std::min({s.warm_max, offer.relay_max, warm_window});
  if (max == 0) {
    logger->debug("warm connections: off ({})",
                  s.warm_max == 0 ? "warm_max is 0" : "the relay keeps none (warm=0)");
    return nullptr;
  }
  connection_id secret;
  if (parse_connection_id(offer.session_secret, secret)) {
    logger->warn("warm connections: off (the relay's session secret is not 32 hex digits)");
    return nullptr;
  }
  s.logger = logger;
  auto pool = std::make_shared<warm_pool>(io, std::move(strand), std::move(s), max,
                                          offer.proxy_announced, secret, std::move(to),
                                          std::move(connector), std::move(totals), to_tell);
  logger->info("warm connections: up to {}", max);
  pool->fill();
  return pool;
}

warm_pool::warm_pool(asio::io_context& io, listener_strand strand, settings s, std::size_t max,
                     bool proxy_announced, const connection_id& secret,
                     std::shared_ptr<reverse_address> to,
                     std::shared_ptr<reverse_connector> connector,
                     std::shared_ptr<warm_pool_stats> totals, owner& to_tell)
    : io_(io),
      strand_(std::move(strand)),
      settings_(std::move(s)),
      proxy_announced_(proxy_announced),
      to_(std::move(to)),
      connector_(std::move(connector)),
      totals_(std::move(totals)),
      owner_(to_tell),
      size_(max),
      signer_(secret),
      retry_(io) {
  if (!settings_.logger) settings_.logger = spdlog::default_logger();
}

void warm_pool::client_fell_back() {
  if (closed_ || size_.stopped()) return;
  // The relay had no warm connection for this client: more demand than the
  // pool covers.
  size_.fell_back();
  settings_.logger->debug("a client came through new_connection: warm pool target {}",
                          size_.target());
  fill();
}

// Opens as many as the pool lacks (unless waiting after a failed open).
void warm_pool::fill() {
  if (closed_) return;
  if (!retrying_)
    for (auto n = size_.to_open(ops_.size()); n > 0; --n) open_one();
  publish();
}

void warm_pool::open_one() {
  auto op = std::make_shared<reverse_op>(io_.get_executor());
  op->proxy_announced = proxy_announced_;
  op->warm = true;
  op->serial = next_serial_++;
  ops_.insert(op);
  const host_port reverse = to_->endpoint;
  op->timer.expires_after(settings_.connect_timeout);
  op->timer.async_wait(
    asio::bind_executor(strand_, [self = shared_from_this(), op, reverse](const boost_ec& ec) {
      if (ec || op->done || op->connected) return;
      self->not_opened(op, "no connection to " + format_host_port(reverse) + " within " +
                             ms_text(self->settings_.connect_timeout));
    }));
  connect_reverse(
    op, to_, strand_, "",
    [self = shared_from_this(), op] {
      op->connected = true;
      op->timer.cancel();
      self->send_ready_line(op);
    },
    [self = shared_from_this(), op](const std::string& why) { self->not_opened(op, why); });
}

void warm_pool::send_ready_line(const std::shared_ptr<reverse_op>& op) {
  op->accept_line = v2::format_line(v2::ready{op->serial, signer_.tag(op->serial)});
  asio::async_write(op->socket, asio::buffer(op->accept_line),
                    asio::bind_executor(strand_, [self = shared_from_this(), op](
                                                   const boost_ec& ec, std::size_t) {
                      if (op->done) return;
                      if (ec) {
                        self->closed_by_relay(op, "cannot write its ready line: " + ec.message());
                        return;
                      }
                      op->ready_sent = true;
                      op->ready_at = steady::now();
                      ++self->totals_->opened;
                      self->settings_.logger->debug(
                        "warm connection #{} open (pool {} of target {})", op->serial,
                        self->ops_.size(), self->size_.target());
                      self->publish();
                      self->wait_paired(op);
                    }));
}

// Looks (MSG_PEEK) for the end of the relay's line and takes exactly the
// line: the client's bytes (or a PROXY header) after it stay in the socket.
// Bytes without a line end are taken too (they are the line's), so a peek
// never sees the same bytes twice.
void warm_pool::wait_paired(const std::shared_ptr<reverse_op>& op) {
  const std::size_t room = op->line_buf.size() - op->line.size();
  op->socket.async_receive(
    asio::buffer(op->line_buf.data(), room), tcp::socket::message_peek,
    asio::bind_executor(strand_, [self = shared_from_this(), op](const boost_ec& ec,
                                                                 std::size_t n) {
      if (op->done) return;
      if (ec || n == 0) {
        self->closed_by_relay(op, ec ? ec.message() : std::string("end of stream"));
        return;
      }
      const char* begin = op->line_buf.data();
      const char* end_of_line = std::find(begin, begin + n, '\n');
      const bool complete = end_of_line != begin + n;
      if (!complete && op->line.size() + n >= op->line_buf.size()) {
        self->bad_line(op, "no line end within " + std::to_string(v2::max_paired_line_bytes) +
                             " bytes");
        return;
      }
      const std::size_t take = complete ? std::size_t(end_of_line - begin) + 1 : n;
      asio::async_read(op->socket, asio::buffer(op->line_buf.data(), take),
                       asio::bind_executor(self->strand_, [self, op, complete](const boost_ec& ec,
                                                                               std::size_t n) {
                         if (op->done) return;
                         if (ec) {
                           self->closed_by_relay(op, ec.message());
                           return;
                         }
                         op->line.append(op->line_buf.data(), n);
                         if (complete)
                           self->on_paired(op);
                         else
                           self->wait_paired(op);
                       }));
    }));
}

void warm_pool::on_paired(const std::shared_ptr<reverse_op>& op) {
  std::string_view line(op->line);
  line.remove_suffix(1);  // '\n'
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  v2::paired paired;
  if (auto ec = v2::parse_paired_line(line, paired)) {
    bad_line(op, "the relay's first line \"" + std::string(line.substr(0, 80)) +
                   "\" is not `ID HOST:PORT` (" + ec.message() + ")");
    return;
  }
  ops_.erase(op);
  op->id = paired.id;
  op->id_hex = to_hex(paired.id);
  op->client = paired.client;
  ++totals_->paired;
  settings_.logger->debug("{}: paired with warm connection #{}", describe_client(*op),
                          op->serial);
  fill();  // its replacement, at once
  connector_->adopt(op);
}

// The relay ended a warm connection before pairing it: it expired unused,
// or (soon after its ready line) the relay refused it.
void warm_pool::closed_by_relay(const std::shared_ptr<reverse_op>& op, const std::string& how) {
  if (!op->line.empty()) {
    bad_line(op, "it ended inside the relay's first line");
    return;
  }
  drop(op);
  const auto open_for = op->ready_sent ? steady::now() - op->ready_at : steady::duration::zero();
  const auto open_ms = std::chrono::duration_cast<std::chrono::milliseconds>(open_for);
  const bool was_stopped = size_.stopped();
  if (size_.closed_unused(open_for) == warm_pool_size::close_kind::expired) {
    ++totals_->expired;
    settings_.logger->debug(
      "warm connection #{} closed unused by the relay after {} ({}): expired; pool target {}",
      op->serial, ms_text(open_ms), how, size_.target());
    fill();
    return;
  }
  if (!was_stopped)
    settings_.logger->warn(
      "the relay closed warm connection #{} {} after its ready line, unused ({}): refused (over "
      "the relay's limit, or a bad ticket); no more warm connections this session, clients come "
      "through new_connection",
      op->serial, ms_text(open_ms), how);
  publish();
}

// The relay said something unusable on a warm connection: no more of them
// this session (each would be the same).
void warm_pool::bad_line(const std::shared_ptr<reverse_op>& op, const std::string& why) {
  drop(op);
  if (!size_.stopped())
    settings_.logger->warn("warm connection #{}: {}; no more warm connections this session",
                           op->serial, why);
  size_.stop();
  publish();
}

void warm_pool::not_opened(const std::shared_ptr<reverse_op>& op, const std::string& why) {
  drop(op);
  settings_.logger->debug("warm connection #{} not opened: {}; next try in {}", op->serial, why,
                          ms_text(retry_delay));
  if (!retrying_) {
    retrying_ = true;
    retry_.expires_after(retry_delay);
    retry_.async_wait(asio::bind_executor(strand_, [self = shared_from_this()](const boost_ec& ec) {
      if (ec || self->closed_) return;
      self->retrying_ = false;
      self->fill();
    }));
  }
  publish();
}

void warm_pool::drop(const std::shared_ptr<reverse_op>& op) {
  op->done = true;
  op->timer.cancel();
  op->resolver.cancel();
  ops_.erase(op);
  boost_ec ignored;
  op->socket.close(ignored);
}

void warm_pool::close() {
  if (closed_) return;
  closed_ = true;
  for (const auto& op : ops_) {
    op->done = true;
    op->timer.cancel();
    op->resolver.cancel();
    boost_ec ignored;
    op->socket.close(ignored);
  }
  if (!ops_.empty()) settings_.logger->debug("{} warm connections closed", ops_.size());
  ops_.clear();
  retry_.cancel();
}

warm_pool_stats warm_pool::stats() const {
  warm_pool_stats now = *totals_;
  if (closed_) return now;
  now.waiting = static_cast<std::size_t>(std::count_if(
    ops_.begin(), ops_.end(), [](const std::shared_ptr<reverse_op>& op) { return op->ready_sent; }));
  now.target = size_.target();
  now.stopped = size_.stopped();
  return now;
}

void warm_pool::publish() {
  if (!closed_) owner_.warm_pool_changed(stats());
}

}  // namespace tlsrelay::client::detail
