#include "bench/bench_common.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "protocol/endpoint.hpp"

namespace tlsrelay::bench {

void note(const std::string& text) {
  std::fprintf(stderr, "tlsrelay-bench: %s\n", text.c_str());
  std::fflush(stderr);
}

std::string errno_text(int err) { return std::strerror(err); }

double seconds_between(steady::time_point a, steady::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string failure_kind(int err) {
  switch (err) {
    case ECONNREFUSED: return "refused";
    case ECONNRESET:
    case EPIPE: return "reset";
    case ETIMEDOUT: return "timeout";
    case EADDRNOTAVAIL: return "no_local_port";
    case EMFILE:
    case ENFILE: return "no_fd";
    default: return "other";
  }
}

int ms_until(steady::time_point t, int cap_ms) {
  const auto now = steady::now();
  if (t <= now) return 0;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count() + 1;
  return ms > cap_ms ? cap_ms : static_cast<int>(ms);
}

// ---- process

namespace {
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);
extern "C" void on_stop_signal(int) { g_stop.store(true); }
}  // namespace

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: poll/epoll_wait return EINTR
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

bool stop_requested() { return g_stop.load(std::memory_order_relaxed); }

std::uint64_t raise_nofile_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

std::optional<std::uint64_t> vm_rss_kib(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      try {
        return std::stoull(line.substr(6));
      } catch (const std::exception&) {
        return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

// ---- sockets

address resolve_host(const std::string& host, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const auto service = std::to_string(port);
  const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr)
    throw bench_error("cannot resolve " + host + ": " + gai_strerror(rc));
  address a;
  std::memcpy(&a.storage, res->ai_addr, res->ai_addrlen);
  a.length = res->ai_addrlen;
  a.text = format_host_port(host, port);
  freeaddrinfo(res);
  return a;
}

address resolve(const std::string& host_port_text, bool allow_port_zero) {
  std::string text = host_port_text;
  bool zero = false;
  if (allow_port_zero && text.size() >= 2 && text.compare(text.size() - 2, 2, ":0") == 0) {
    text.back() = '1';  // parse_host_port wants 1..65535; the port is 0 below
    zero = true;
  }
  host_port hp;
  if (auto ec = parse_host_port(text, hp))
    throw bench_error("bad address '" + host_port_text + "' (want HOST:PORT): " + ec.message());
  return resolve_host(hp.host, zero ? 0 : hp.port);
}

void unique_fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

unique_fd tcp_socket(const address& a) {
  const int fd = ::socket(a.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw bench_error("socket: " + errno_text(errno));
  return unique_fd(fd);
}

void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void set_blocking(int fd, bool blocking) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return;
  flags = blocking ? (flags & ~O_NONBLOCK) : (flags | O_NONBLOCK);
  ::fcntl(fd, F_SETFL, flags);
}

int socket_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

int start_connect(int fd, const address& a) {
  if (::connect(fd, a.sa(), a.length) == 0) return 0;
  return errno;
}

unique_fd connect_with_timeout(const address& a, std::chrono::milliseconds timeout) {
  auto fd = tcp_socket(a);
  int err = start_connect(fd.get(), a);
  if (err == EINPROGRESS) {
    const auto deadline = steady::now() + timeout;
    for (;;) {
      pollfd p{fd.get(), POLLOUT, 0};
      const int n = ::poll(&p, 1, ms_until(deadline, 1000));
      if (n > 0) {
        err = socket_error(fd.get());
        break;
      }
      if (n < 0 && errno != EINTR) throw bench_error("poll: " + errno_text(errno));
      if (steady::now() >= deadline)
        throw bench_error("connect to " + a.text + ": no answer within " +
                          std::to_string(timeout.count()) + " ms");
    }
  }
  if (err != 0) throw bench_error("connect to " + a.text + ": " + errno_text(err));
  return fd;
}

unique_fd listen_on(const address& a) {
  auto fd = tcp_socket(a);
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), a.sa(), a.length) != 0)
    throw bench_error("bind " + a.text + ": " + errno_text(errno));
  if (::listen(fd.get(), SOMAXCONN) != 0)
    throw bench_error("listen " + a.text + ": " + errno_text(errno));
  return fd;
}

std::string local_address_text(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  std::uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
  }
  return format_host_port(host, port);
}

// ---- JSON

namespace {
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (const unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}
}  // namespace

void json_object::key(const std::string& k) {
  if (!body_.empty()) body_ += ',';
  body_ += quoted(k);
  body_ += ':';
}

json_object& json_object::add(const std::string& k, const std::string& value) {
  key(k);
  body_ += quoted(value);
  return *this;
}

json_object& json_object::add(const std::string& k, const char* value) {
  return add(k, std::string(value));
}

json_object& json_object::add(const std::string& k, bool value) {
  key(k);
  body_ += value ? "true" : "false";
  return *this;
}

json_object& json_object::add(const std::string& k, std::uint64_t value) {
  key(k);
  body_ += std::to_string(value);
  return *this;
}

json_object& json_object::add(const std::string& k, std::int64_t value) {
  key(k);
  body_ += std::to_string(value);
  return *this;
}

json_object& json_object::add(const std::string& k, double value) {
  key(k);
  if (!std::isfinite(value)) {
    body_ += "null";
  } else {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", value);
    body_ += buf;
  }
  return *this;
}

json_object& json_object::add(const std::string& k, const std::vector<std::uint64_t>& values) {
  key(k);
  body_ += '[';
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) body_ += ',';
    body_ += std::to_string(values[i]);
  }
  body_ += ']';
  return *this;
}

json_object& json_object::add(const std::string& k, const json_object& nested) {
  key(k);
  body_ += nested.text();
  return *this;
}

json_object& json_object::add_null(const std::string& k) {
  key(k);
  body_ += "null";
  return *this;
}

void print_json(const json_object& o) {
  std::fputs((o.text() + "\n").c_str(), stdout);
  std::fflush(stdout);
}

// ---- statistics

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0.0;
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  if (rank < 1) rank = 1;
  if (rank > sorted.size()) rank = sorted.size();
  return sorted[rank - 1];
}

double mean(const std::vector<double>& values) {
  if (values.empty()) return 0.0;
  double sum = 0;
  for (double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

opening_outcome run_opening(const opening_plan& plan) {
  const std::size_t give_up_after = std::size_t{plan.window} * 2 + 16;
  const auto start = steady::now();
  auto last_sweep = start;
  std::size_t next = 0;
  bool stop_opening = false;
  std::string error;
  while (!stop_requested()) {
    while (!stop_opening && plan.in_setup() < plan.window && next < plan.count) plan.begin(next++);
    if (plan.in_setup() == 0 && (stop_opening || next == plan.count)) break;
    if (steady::now() - start > plan.limit) {
      error = "opening took longer than " + std::to_string(plan.limit.count()) + " s";
      break;
    }
    if (!stop_opening && plan.failure_streak() >= give_up_after && next < plan.count) {
      error = plan.target + " stopped taking " + plan.items + " (" +
              std::to_string(plan.failure_streak()) +
              " failures in a row); holding what was established";
      stop_opening = true;
    }
    if (!plan.poll(5)) {
      error = "epoll_wait: " + errno_text(errno);
      break;
    }
    const auto now = steady::now();
    if (now - last_sweep >= std::chrono::milliseconds(20)) {
      last_sweep = now;
      plan.sweep();
    }
  }
  return {error, next};
}

}  // namespace tlsrelay::bench
