// Plain-TCP helpers for end-to-end tests: every operation has a deadline and
// fails with an io_error that says what was awaited and what arrived instead.
// Sockets are non-blocking; waits are poll(2) on the one descriptor.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace tlsrelay::test {

using namespace std::chrono_literals;
using millis = std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

// Long enough for a loaded 2-core machine (or a sanitizer build), short
// enough that a hung relay fails a test well within ctest's timeout.
inline constexpr millis default_timeout = 5000ms;

// Every helper reports failure (timeout, refusal, unexpected EOF or bytes)
// with this exception; Catch2 prints its message.
struct io_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Writes to a peer that went away must be an error, not a fatal signal.
// Idempotent; every helper that writes calls it.
void ignore_sigpipe();

// `data` with control bytes escaped (\r, \n, \xNN) and cut after `max` bytes:
// fit for a failure message.
std::string printable(std::string_view data, std::size_t max = 160);

// Owns one file descriptor.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept;
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release();
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Milliseconds left until `deadline`, clamped to [0, INT_MAX] for poll(2).
int poll_timeout_ms(steady::time_point deadline);

// Waits until `fd` reports one of `events` (or an error/hang-up) or the
// deadline passes. Returns the revents, 0 on timeout.
short wait_fd(int fd, short events, steady::time_point deadline);

// True if something accepts TCP connections on 127.0.0.1:port (the probe
// connection is closed at once), false if the connection is refused.
bool accepts_connections(std::uint16_t port, millis timeout = default_timeout);

// A listening socket on 127.0.0.1:port, or an empty unique_fd if the port
// cannot be bound. Used to probe and to occupy ports.
unique_fd listen_on(std::uint16_t port);

// One plain TCP connection seen from the test. One thread may send while
// another receives; otherwise it is not thread-safe.
class tcp_conn {
 public:
  // Connects to 127.0.0.1:port; throws io_error if refused or on timeout.
  static tcp_conn connect(std::uint16_t port, millis timeout = default_timeout);

  tcp_conn() = default;
  tcp_conn(unique_fd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}

  int fd() const { return fd_.get(); }
  // "127.0.0.1:<port>", the peer, for messages.
  const std::string& name() const { return name_; }

  void send_all(std::string_view data, millis timeout = default_timeout);

  // Exactly `n` bytes; throws on timeout, EOF or reset before that.
  std::string recv_exact(std::size_t n, millis timeout = default_timeout);
  // Whatever is available, at least one byte; nullopt on orderly EOF; throws
  // on timeout or reset.
  std::optional<std::string> recv_some(millis timeout = default_timeout);
  // Every byte until orderly EOF; throws on timeout or reset.
  std::string recv_until_eof(millis timeout = default_timeout);
  // Bytes up to and including the next '\n'; throws on timeout or EOF.
  std::string read_line(millis timeout = default_timeout);

  // Sends `out` and receives exactly `in_size` bytes at the same time (one
  // poll loop, so neither direction can block the other).
  std::string exchange(std::string_view out, std::size_t in_size,
                       millis timeout = default_timeout);

  // shutdown(SHUT_WR): the peer reads EOF, we can still receive.
  void shutdown_write();
  // Waits for the peer to close: orderly EOF or a reset. Throws if the
  // deadline passes first or if bytes arrive instead.
  void expect_closed(millis timeout = default_timeout);

  void close() { fd_.reset(); }
  // Gives up ownership of the socket (e.g. to a TLS layer).
  unique_fd release() { return std::move(fd_); }

 private:
  enum class fill_result { data, eof, reset, timeout };
  // Appends whatever one recv(2) returns to buf_, waiting until the deadline.
  fill_result fill(steady::time_point deadline);
  std::string take(std::size_t n);
  [[noreturn]] void fail(const std::string& what, fill_result why, millis timeout) const;

  unique_fd fd_;
  std::string name_;
  std::string buf_;  // received, not yet handed to the caller
  int last_errno_ = 0;
};

// "host:port", or "[v6]:port" for an IPv6 literal.
std::string host_port_text(const std::string& host, std::uint16_t port);

// A plain TCP connection to a numeric IPv4 or IPv6 address (tcp_conn::connect
// knows 127.0.0.1 only). Throws io_error if refused or on timeout.
tcp_conn tcp_connect_to(const std::string& host, std::uint16_t port,
                        millis timeout = default_timeout);

// Whether a TCP socket can be bound to the numeric address `host` (port 0).
bool can_bind(const std::string& host);

}  // namespace tlsrelay::test
