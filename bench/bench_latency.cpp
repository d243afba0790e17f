// `latency`: one connection to an echo backend, fixed-size ping-pong with TCP_NODELAY,
// blocking socket calls with SO_RCVTIMEO/SO_SNDTIMEO; steady_clock around each round trip.
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "bench/bench_common.hpp"
#include "bench/bench_modes.hpp"

namespace tlsrelay::bench {
namespace {

void set_timeouts(int fd, double seconds) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void send_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR && !stop_requested()) continue;
      throw bench_error(errno == EAGAIN || errno == EWOULDBLOCK ? std::string("write timed out")
                                                                : "write: " + errno_text(errno));
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

void recv_all(int fd, char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::recv(fd, data, size, 0);
    if (n == 0) throw bench_error("the echo closed the connection");
    if (n < 0) {
      if (errno == EINTR && !stop_requested()) continue;
      throw bench_error(errno == EAGAIN || errno == EWOULDBLOCK
                          ? std::string("no echo within the timeout")
                          : "read: " + errno_text(errno));
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

}  // namespace

int run_latency(const latency_options& o) {
  if (o.round_trips == 0) throw bench_error("--round-trips must be at least 1");
  if (o.size == 0) throw bench_error("--size must be at least 1");
  const auto addr = resolve(o.target);
  auto fd = connect_with_timeout(addr, std::chrono::seconds(10));
  set_blocking(fd.get(), true);
  set_nodelay(fd.get());
  set_timeouts(fd.get(), o.timeout);
  note("latency: " + std::to_string(o.warmup) + " + " + std::to_string(o.round_trips) + " round trips of " +
       std::to_string(o.size) + " bytes to " + addr.text);

  std::vector<char> ping(o.size), pong(o.size);
  std::vector<double> us;
  us.reserve(o.round_trips);
  const unsigned total = o.warmup + o.round_trips;
  const auto started = steady::now();
  for (unsigned i = 0; i < total; ++i) {
    if (stop_requested()) throw bench_error("interrupted");
    std::memset(ping.data(), static_cast<int>('A' + i % 26), ping.size());
    ping[0] = static_cast<char>(i & 0xff);
    const auto t0 = steady::now();
    send_all(fd.get(), ping.data(), ping.size());
    recv_all(fd.get(), pong.data(), pong.size());
    const auto t1 = steady::now();
    if (std::memcmp(ping.data(), pong.data(), ping.size()) != 0)
      throw bench_error("round trip " + std::to_string(i) + ": the echo differs from what was sent");
    if (i >= o.warmup) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  const double elapsed = seconds_between(started, steady::now());
  ::shutdown(fd.get(), SHUT_WR);
  fd.reset();

  std::sort(us.begin(), us.end());
  json_object j;
  j.add("mode", "latency")
    .add("ok", true)
    .add("target", addr.text)
    .add("round_trips", o.round_trips)
    .add("warmup", o.warmup)
    .add("message_bytes", o.size)
    .add("elapsed_s", elapsed)
    .add("p50_us", percentile(us, 50))
    .add("p90_us", percentile(us, 90))
    .add("p99_us", percentile(us, 99))
    .add("p999_us", percentile(us, 99.9))
    .add("mean_us", mean(us))
    .add("min_us", us.front())
    .add("max_us", us.back());
  print_json(j);
  note("latency: p50 " + std::to_string(percentile(us, 50)) + " us, p99 " +
       std::to_string(percentile(us, 99)) + " us");
  return 0;
}

}  // namespace tlsrelay::bench
