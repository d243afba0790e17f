#include "pump/pair_pump.hpp"

#include "pump/adopted_socket.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "protocol/defaults.hpp"

namespace tlsrelay::pump {

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

boost::system::error_code errno_code(int err) {
  return {err, boost::system::system_category()};
}

}  // namespace

pair_pump::pair_pump(executor_type executor, tcp::socket a, tcp::socket b, data_path path,
                     stage_pool& stages, done_handler on_done, timeouts limits,
                     std::unique_ptr<pump_meter> meter)
  : a_(std::move(a)),
    b_(std::move(b)),
    path_(path),
    stages_(stages),
    on_done_(std::move(on_done)),
    meter_(std::move(meter)),
    limits_(limits),
    timer_(std::move(executor)) {
  a_to_b_.from = &a_;
  a_to_b_.to = &b_;
  a_to_b_.dir = direction::a_to_b;
  b_to_a_.from = &b_;
  b_to_a_.to = &a_;
  b_to_a_.dir = direction::b_to_a;
}

pair_pump::~pair_pump() {
  give_back_stage(a_to_b_);
  give_back_stage(b_to_a_);
}

bool pair_pump::sockets_share_executor() {
  return executor() == a_.get_executor() && executor() == b_.get_executor();
}

void pair_pump::start(bool prepared) {
  boost::system::error_code ignored;
  // (The pump's own reads and writes are raw syscalls: Asio's idea of the
  // sockets' blocking mode does not matter, only the descriptors' flags.)
  if (!prepared) {
    for (auto* s : {&a_, &b_}) {
      if (!known_non_blocking(*s)) s->non_blocking(true, ignored);
      s->set_option(tcp::no_delay(true), ignored);
    }
  }
  runs_on_sockets_executor_ = sockets_share_executor();
  last_byte_ = std::chrono::steady_clock::now();
  arm_timer();
  pump(a_to_b_);
  pump(b_to_a_);
}

void pair_pump::arm_timer() {
  using clock = std::chrono::steady_clock;
  if (finished_) return;
  auto due = clock::time_point::max();
  if (limits_.idle.count() > 0) due = last_byte_ + limits_.idle;
  if (half_closed()) due = std::min(due, half_closed_quiet_since() + limits_.half_close);
  if (due == clock::time_point::max()) return;
  timer_.expires_at(due);  // cancels a wait already set
  timer_.async_wait([self = shared_from_this(), epoch = moves_.load(std::memory_order_relaxed)](
                      const boost::system::error_code& ec) {
    if (self->moved_since(epoch) || ec == asio::error::operation_aborted || self->finished_)
      return;
    self->on_timer();
  });
}

bool pair_pump::half_closed() const {
  return a_to_b_.done != b_to_a_.done && limits_.half_close.count() > 0;
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
  finish(true, idle ? end_reason::idle_timeout : end_reason::half_close_timeout,
         asio::error::timed_out, idle ? "idle timeout" : "half-close timeout");
}

bool pair_pump::take_stage(flow& d) {
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

void pair_pump::give_back_stage(flow& d) {
  stages_.give_back(d.pipe, d.staged == 0);
  d.pipe = {};
  stages_.give_back(std::move(d.buffer));
  d.staged_offset = 0;
}

long pair_pump::stage_in(flow& d) {
  const int fd = d.from->native_handle();
  take_stage(d);
  if (d.pipe)
    return ::splice(fd, nullptr, d.pipe.write, nullptr, defaults::pump_buffer_bytes, splice_flags);
  const long n = ::recv(fd, d.buffer.get(), defaults::pump_buffer_bytes, 0);
  if (n > 0) d.staged_offset = 0;
  return n;
}

long pair_pump::stage_out(flow& d) {
  const int fd = d.to->native_handle();
  if (d.pipe) return ::splice(d.pipe.read, nullptr, fd, nullptr, d.staged, splice_flags);
  const long n = ::send(fd, d.buffer.get() + d.staged_offset, d.staged, MSG_NOSIGNAL);
  if (n > 0) d.staged_offset += static_cast<std::size_t>(n);
  return n;
}

void pair_pump::pump(flow& d) {
  const bool from_a = d.dir == direction::a_to_b;
  std::size_t budget = defaults::pump_read_budget_bytes;
  while (!finished_) {
    if (d.staged > 0) {
      const long n = stage_out(d);
      if (n > 0) {
        last_byte_ = std::chrono::steady_clock::now();
        d.staged -= static_cast<std::size_t>(n);
        d.delivered += static_cast<std::uint64_t>(n);
        if (meter_) meter_->delivered(d.dir, static_cast<std::uint64_t>(n));
        if (d.staged == 0) give_back_stage(d);  // delivered: the stage can serve others
        continue;
      }
      const int err = errno;
      if (n < 0 && err == EINTR) continue;
      if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
        await(d, *d.to, tcp::socket::wait_write);
        return;
      }
      // EPIPE, ECONNRESET: the receiver is gone with bytes still staged for
      // it; both peers must learn the stream broke.
      finish(true, end_reason::reset, errno_code(n < 0 ? err : EPIPE),
             from_a ? "writing b" : "writing a");
      return;
    }
    if (d.eof) {
      // Everything read has been delivered: pass the half-close on.
      boost::system::error_code ignored;
      d.to->shutdown(tcp::socket::shutdown_send, ignored);
      d.done = true;
      if (a_to_b_.done && b_to_a_.done) {
        finish(false, end_reason::closed);
      } else if (limits_.half_close.count() > 0) {
        // The other direction now has the half-close timeout to end.
        half_closed_at_ = std::chrono::steady_clock::now();
        arm_timer();
      }
      return;
    }
    if (budget == 0) {
      // Fairness: let the io thread serve other pairs, then carry on.
      asio::post(executor(),
                 [self = shared_from_this(), &d, epoch = moves_.load(std::memory_order_relaxed)] {
                   if (!self->moved_since(epoch)) self->pump(d);
                 });
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
    finish(true, end_reason::reset, errno_code(err), from_a ? "reading a" : "reading b");
    return;
  }
}

void pair_pump::await(flow& d, tcp::socket& socket, tcp::socket::wait_type what) {
  auto on_ready = [self = shared_from_this(), &d, epoch = moves_.load(std::memory_order_relaxed)](
                    const boost::system::error_code& ec) {
    if (self->moved_since(epoch) || ec == asio::error::operation_aborted || self->finished_)
      return;
    // Any other error surfaces from the next syscall with its errno.
    self->pump(d);
  };
  // In the relay the pump runs on its sockets' own executor: binding each
  // wait to that same executor would only make it bigger (two waits pending
  // per idle pair, ~80 bytes each). The client library's strand needs it.
  if (runs_on_sockets_executor_)
    socket.async_wait(what, std::move(on_ready));
  else
    socket.async_wait(what, asio::bind_executor(executor(), std::move(on_ready)));
}

void pair_pump::finish(bool reset, end_reason why, boost::system::error_code error,
                       const char* where) {
  if (finished_) return;
  finished_ = true;
  timer_.cancel();
  if (reset) {
    reset_socket(a_);
    reset_socket(b_);
  } else {
    boost::system::error_code ignored;
    a_.close(ignored);
    b_.close(ignored);
  }
  give_back_stage(a_to_b_);
  give_back_stage(b_to_a_);
  if (meter_) meter_->ended(a_to_b_.delivered, b_to_a_.delivered);
  totals t{a_to_b_.bytes, b_to_a_.bytes, reset, why, error, where};
  if (auto done = std::move(on_done_)) done(t);
}

namespace {

// `socket`'s descriptor as a socket of `io` (its epoll registration moves);
// a closed socket if that fails, which the pump then sees as a broken peer.
asio::ip::tcp::socket rehomed(asio::io_context& io, asio::ip::tcp::socket& socket) {
  boost::system::error_code ec;
  const auto local = socket.local_endpoint(ec);
  const auto protocol = ec ? asio::ip::tcp::v4() : local.protocol();
  asio::ip::tcp::socket moved(io);
  const int fd = socket.release(ec);  // ends its pending waits (operation_aborted)
  if (ec) return moved;
  adopt(moved, protocol, fd, ec);  // the pump's descriptors are its own, and non-blocking
  if (ec) ::close(fd);
  return moved;
}

}  // namespace

bool pair_pump::rehome(asio::io_context& io) {
  if (finished_) return false;
  moves_.fetch_add(1, std::memory_order_relaxed);
  timer_.cancel();
  a_ = rehomed(io, a_);
  b_ = rehomed(io, b_);
  // The timer holds the pump's executor (the pump keeps no other copy).
  timer_ = asio::steady_timer(executor_type(io.get_executor()));
  runs_on_sockets_executor_ = sockets_share_executor();
  return true;
}

void pair_pump::resume() {
  if (finished_) return;
  arm_timer();
  // A direction that passed its EOF on has nothing more to do.
  for (auto* d : {&a_to_b_, &b_to_a_})
    if (!d->done) pump(*d);
}

void pair_pump::close() {
  // Bytes already taken from one peer (staged here or waiting in a socket's
  // receive queue) can no longer be delivered: the peers must see a reset,
  // not an orderly end that would pass a truncated stream off as complete.
  const auto unread = [](tcp::socket& s) {
    int n = 0;
    return s.is_open() && ::ioctl(s.native_handle(), FIONREAD, &n) == 0 && n > 0;
  };
  const bool bytes_lost = a_to_b_.staged > 0 || b_to_a_.staged > 0 || unread(a_) || unread(b_);
  finish(bytes_lost, end_reason::cut, bytes_lost ? asio::error::operation_aborted
                                                 : boost::system::error_code{},
         bytes_lost ? "closed by its owner" : "");
}

void pair_pump::reset() {
  finish(true, end_reason::cut, asio::error::operation_aborted, "reset by its owner");
}

}  // namespace tlsrelay::pump
