// tlsrelay-bench: helpers shared by every mode (sockets, time, JSON, statistics).
//
// Conventions of the tool: human text goes to stderr, each mode prints exactly one
// JSON object on stdout at the end. A mode that cannot run throws bench_error (main
// prints "tlsrelay-bench MODE: reason" and exits 1, no JSON). A mode that ran but did
// not fully succeed prints its JSON with "ok": false and an "error" text, and exits 1.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace tlsrelay::bench {

using steady = std::chrono::steady_clock;

struct bench_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One line on stderr, prefixed "tlsrelay-bench: ".
void note(const std::string& text);

// "strerror(err)".
std::string errno_text(int err);
// The failure_kinds key of a connection that failed with errno `err`: refused,
// reset (incl. EPIPE), timeout, no_local_port, no_fd or other.
std::string failure_kind(int err);

double seconds_between(steady::time_point a, steady::time_point b);
// Milliseconds until `t` (0 when past), capped at `cap_ms`; for poll/epoll timeouts.
int ms_until(steady::time_point t, int cap_ms);

// ---- process

// SIGTERM/SIGINT set a flag (no SA_RESTART, so blocking calls return EINTR);
// SIGPIPE is ignored.
void install_signal_handlers();
bool stop_requested();

// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
std::uint64_t raise_nofile_limit();

// VmRSS of a process in KiB, from /proc/PID/status.
std::optional<std::uint64_t> vm_rss_kib(long pid);

// ---- opening many connections

// The opening phase of `hold` and `sessions`: starts `count` set-ups, at most
// `window` at a time, until every one has finished, the whole phase has taken
// longer than `limit`, or a run of 2 × window + 16 failures says the target
// stopped taking them (then nothing more is started and those under way finish
// or time out).
struct opening_plan {
  std::size_t count = 0;
  unsigned window = 32;
  std::chrono::seconds limit{180};
  std::string target;  // for the error text: "the target", "the relay"
  std::string items;   // for the error text: "connections", "sessions"
  std::function<void(std::size_t)> begin;       // starts set-up i; counts it in in_setup
  std::function<std::size_t()> in_setup;        // set-ups under way
  std::function<std::size_t()> failure_streak;  // failures since the last success
  std::function<bool(int)> poll;                // handles events for up to N ms; false: fatal
  std::function<void()> sweep;                  // fails set-ups that took too long (every 20 ms)
};
struct opening_outcome {
  std::string error;        // "" when every set-up ran, else why the phase ended early
  std::size_t started = 0;  // set-ups begun (the rest were never attempted)
};
opening_outcome run_opening(const opening_plan& plan);

// ---- sockets

struct address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  std::string text;  // as given, e.g. "127.0.0.1:12101"
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// "HOST:PORT" or "[v6]:PORT" (tlsrelay's endpoint syntax); the host is resolved
// once. Port 0 is allowed when `allow_port_zero` (listening on a free port).
address resolve(const std::string& host_port_text, bool allow_port_zero = false);
address resolve_host(const std::string& host, std::uint16_t port);

// An owned file descriptor.
class unique_fd {
public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  unique_fd(unique_fd&& o) noexcept : fd_(o.release()) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

private:
  int fd_ = -1;
};

// A non-blocking, close-on-exec TCP socket for `a`'s family.
unique_fd tcp_socket(const address& a);
void set_nodelay(int fd);
void set_blocking(int fd, bool blocking);
// SO_ERROR of a socket (a finished non-blocking connect).
int socket_error(int fd);

// Non-blocking connect started; returns 0 when already connected, EINPROGRESS while
// in progress, or the errno of an immediate failure.
int start_connect(int fd, const address& a);

// Connects within `timeout`; the socket stays non-blocking. Throws bench_error.
unique_fd connect_with_timeout(const address& a, std::chrono::milliseconds timeout);

// A non-blocking listening socket (SO_REUSEADDR, backlog SOMAXCONN).
unique_fd listen_on(const address& a);
// "host:port" of a bound socket.
std::string local_address_text(int fd);

// ---- JSON (one flat object; arrays of numbers; nested objects as raw JSON)

class json_object {
public:
  json_object& add(const std::string& key, const std::string& value);
  json_object& add(const std::string& key, const char* value);
  json_object& add(const std::string& key, bool value);
  json_object& add(const std::string& key, std::uint64_t value);
  json_object& add(const std::string& key, std::int64_t value);
  json_object& add(const std::string& key, int value) { return add(key, std::int64_t{value}); }
  json_object& add(const std::string& key, unsigned value) {
    return add(key, std::uint64_t{value});
  }
  json_object& add(const std::string& key, double value);  // 3 decimals; null if not finite
  json_object& add(const std::string& key, const std::vector<std::uint64_t>& values);
  json_object& add(const std::string& key, const json_object& nested);
  json_object& add_null(const std::string& key);
  std::string text() const { return "{" + body_ + "}"; }

private:
  void key(const std::string& k);
  std::string body_;
};

// Prints the object as one line on stdout and flushes.
void print_json(const json_object& o);

// ---- statistics

// Nearest-rank percentile of sorted values; p in (0, 100]. 0 for an empty set.
double percentile(const std::vector<double>& sorted, double p);
double mean(const std::vector<double>& values);

}  // namespace tlsrelay::bench
