#include "net/pair_pump.hpp"

#include <cerrno>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "protocol/defaults.hpp"

namespace tlsrelay::net {

namespace asio = boost::asio;

namespace {

constexpr unsigned splice_flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

// A linger of zero makes close() send RST: the peer learns that bytes were lost
// instead of seeing an orderly end.
void reset_socket(asio::ip::tcp::socket& s) {
  boost::system::error_code ignored;
  if (!s.is_open()) return;
  s.set_option(asio::socket_base::linger(true, 0), ignored);
  s.close(ignored);
}

}  // namespace

pair_pump::pair_pump(tcp::socket client, tcp::socket reverse, data_path path,
                     stage_pool& stages, done_handler on_done, timeouts limits,
                     net_counters* counters, std::size_t pair)
  : client_(std::move(client)),
    reverse_(std::move(reverse)),
    path_(path),
    stages_(stages),
    on_done_(std::move(on_done)),
    limits_(limits),
    timer_(client_.get_executor()) {
  up_.from = &client_;
  up_.to = &reverse_;
  down_.from = &reverse_;
  down_.to = &client_;
  if (counters) {
    up_.delivered = &counters->bytes_client_to_server;
    down_.delivered = &counters->bytes_server_to_client;
    if (pair < counters->pair_count) {
      up_.open_on_pair = &counters->open_pair_bytes[pair].client_to_server;
      down_.open_on_pair = &counters->open_pair_bytes[pair].server_to_client;
    }
  }
}

pair_pump::~pair_pump() {
  give_back_stage(up_);
  give_back_stage(down_);
}

void pair_pump::start() {
  boost::system::error_code ignored;
  for (auto* s : {&client_, &reverse_}) {
    s->non_blocking(true, ignored);
    s->set_option(tcp::no_delay(true), ignored);
  }
  last_byte_ = std::chrono::steady_clock::now();
  arm_timer();
  pump(up_);
  pump(down_);
}

void pair_pump::arm_timer() {
  using clock = std::chrono::steady_clock;
  if (finished_) return;
  auto due = clock::time_point::max();
  if (limits_.idle.count() > 0) due = last_byte_ + limits_.idle;
  if (half_closed()) due = std::min(due, half_closed_quiet_since() + limits_.half_close);
  if (due == clock::time_point::max()) return;
  timer_.expires_at(due);  // cancels a wait already set
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || self->finished_) return;
    self->on_timer();
  });
}

bool pair_pump::half_closed() const {
  return up_.done != down_.done && limits_.half_close.count() > 0;
}

std::chrono::steady_clock::time_point pair_pump::half_closed_quiet_since() const {
  return std::max(half_closed_at_, last_byte_);
}

void pair_pump::on_timer() {
  const auto now = std::chrono::steady_clock::now();
  const bool idle = limits_.idle.count() > 0 && now - last_byte_ >= limits_.idle;
  const bool half_closed_quiet =
    half_closed() && now - half_closed_quiet_since() >= limits_.half_close;
  if (!idle && !half_closed_quiet) return arm_timer();  // bytes moved since: not due yet
  spdlog::debug("pair closed by reset: {}", idle ? "idle timeout" : "half-close timeout");
  finish(true, idle ? pair_end::idle_timeout : pair_end::half_close_timeout);
}

bool pair_pump::take_stage(direction& d) {
  if (d.pipe || d.buffer) return true;
  if (path_ == data_path::splice) {
    d.pipe = stages_.take_pipe();
    if (d.pipe) return true;
    // Out of descriptors is no reason to fail the pair: the copy path needs
    // none.
    spdlog::debug("no pipe available ({}), pair uses the copy path", std::strerror(errno));
    path_ = data_path::copy;
  }
  d.buffer = stages_.take_buffer();
  return true;
}

void pair_pump::give_back_stage(direction& d) {
  stages_.give_back(d.pipe, d.staged == 0);
  d.pipe = {};
  stages_.give_back(std::move(d.buffer));
  d.staged_offset = 0;
}

long pair_pump::stage_in(direction& d) {
  const int fd = d.from->native_handle();
  take_stage(d);
  if (d.pipe)
    return ::splice(fd, nullptr, d.pipe.write, nullptr, defaults::pump_buffer_bytes, splice_flags);
  const long n = ::recv(fd, d.buffer.get(), defaults::pump_buffer_bytes, 0);
  if (n > 0) d.staged_offset = 0;
  return n;
}

long pair_pump::stage_out(direction& d) {
  const int fd = d.to->native_handle();
  if (d.pipe) return ::splice(d.pipe.read, nullptr, fd, nullptr, d.staged, splice_flags);
  const long n = ::send(fd, d.buffer.get() + d.staged_offset, d.staged, MSG_NOSIGNAL);
  if (n > 0) d.staged_offset += static_cast<std::size_t>(n);
  return n;
}

void pair_pump::pump(direction& d) {
  std::size_t budget = defaults::pump_read_budget_bytes;
  while (!finished_) {
    if (d.staged > 0) {
      const long n = stage_out(d);
      if (n > 0) {
        last_byte_ = std::chrono::steady_clock::now();
        d.staged -= static_cast<std::size_t>(n);
        if (d.delivered) {
          net_counters::bump(*d.delivered, static_cast<std::uint64_t>(n));
          if (d.open_on_pair) net_counters::bump(*d.open_on_pair, static_cast<std::uint64_t>(n));
          d.delivered_bytes += static_cast<std::uint64_t>(n);
        }
        if (d.staged == 0) give_back_stage(d);  // delivered: the stage can serve others
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        await(d, *d.to, tcp::socket::wait_write);
        return;
      }
      // EPIPE, ECONNRESET: the receiver is gone with bytes still staged for
      // it; both peers must learn the stream broke.
      finish(true, pair_end::reset);
      return;
    }
    if (d.eof) {
      // Everything read has been delivered: pass the half-close on.
      boost::system::error_code ignored;
      d.to->shutdown(tcp::socket::shutdown_send, ignored);
      d.done = true;
      if (up_.done && down_.done) {
        finish(false, pair_end::closed);
      } else if (limits_.half_close.count() > 0) {
        // The other direction now has the half-close timeout to end.
        half_closed_at_ = std::chrono::steady_clock::now();
        arm_timer();
      }
      return;
    }
    if (budget == 0) {
      // Fairness: let the io thread serve other pairs, then carry on.
      asio::post(client_.get_executor(), [self = shared_from_this(), &d] { self->pump(d); });
      return;
    }
    const long n = stage_in(d);
    if (n > 0) {
      last_byte_ = std::chrono::steady_clock::now();
      d.staged = static_cast<std::size_t>(n);
      d.bytes += static_cast<std::uint64_t>(n);
      budget -= std::min(budget, static_cast<std::size_t>(n));
      continue;
    }
    const int err = errno;
    give_back_stage(d);  // nothing staged: waiting costs no stage
    if (n == 0) {
      d.eof = true;
      continue;
    }
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      await(d, *d.from, tcp::socket::wait_read);
      return;
    }
    // ECONNRESET and friends: the sender broke the stream; tell the other side.
    finish(true, pair_end::reset);
    return;
  }
}

void pair_pump::await(direction& d, tcp::socket& socket, tcp::socket::wait_type what) {
  socket.async_wait(what, [self = shared_from_this(), &d](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || self->finished_) return;
    // Any other error surfaces from the next syscall with its errno.
    self->pump(d);
  });
}

void pair_pump::finish(bool reset, pair_end why) {
  if (finished_) return;
  finished_ = true;
  timer_.cancel();
  if (reset) {
    reset_socket(client_);
    reset_socket(reverse_);
  } else {
    boost::system::error_code ignored;
    client_.close(ignored);
    reverse_.close(ignored);
  }
  give_back_stage(up_);
  give_back_stage(down_);
  // Ended: from now on its session counts these (pump_finished).
  for (auto* d : {&up_, &down_})
    if (d->open_on_pair) d->open_on_pair->fetch_sub(d->delivered_bytes, std::memory_order_relaxed);
  totals t{up_.bytes, down_.bytes, reset, why};
  if (auto done = std::move(on_done_)) done(t);
}

void pair_pump::close() {
  // Bytes already taken from one peer (staged here or waiting in a socket's
  // receive queue) can no longer be delivered: the peers must see a reset,
  // not an orderly end that would pass a truncated stream off as complete.
  const auto unread = [](tcp::socket& s) {
    int n = 0;
    return s.is_open() && ::ioctl(s.native_handle(), FIONREAD, &n) == 0 && n > 0;
  };
  const bool bytes_lost =
    up_.staged > 0 || down_.staged > 0 || unread(client_) || unread(reverse_);
  finish(bytes_lost, pair_end::cut);
}

void pair_pump::reset() { finish(true, pair_end::cut); }



}  // namespace tlsrelay::net
