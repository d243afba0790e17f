// `connect`: C slots, each in a loop: connect, write 1 byte, read it back (echo), close.
// Setup time = connect() start → echoed byte received. One thread, epoll, non-blocking.
// A slot whose attempt failed waits 10 ms before the next one (no busy loop on a refusal).
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>

#include "bench/bench_common.hpp"
#include "bench/bench_modes.hpp"

namespace tlsrelay::bench {
namespace {

enum class slot_state { idle, connecting, waiting_echo };

struct slot {
  unique_fd fd;
  slot_state state = slot_state::idle;
  steady::time_point started{};
  steady::time_point retry_at{};
};

}  // namespace

int run_connect(const connect_options& o) {
  if (o.slots == 0) throw bench_error("--slots must be at least 1");
  if (!(o.seconds > 0)) throw bench_error("--seconds must be positive");
  raise_nofile_limit();
  const auto addr = resolve(o.target);
  unique_fd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) throw bench_error("epoll_create1: " + errno_text(errno));

  std::vector<slot> slots(o.slots);
  std::vector<double> setup_ms;
  std::map<std::string, std::uint64_t> failures;
  std::uint64_t failed = 0;
  const auto attempt_timeout = std::chrono::duration_cast<steady::duration>(
    std::chrono::duration<double>(o.timeout));
  const auto backoff = std::chrono::milliseconds(10);

  auto fail = [&](slot& s, const std::string& kind) {
    ++failed;
    ++failures[kind];
    if (s.fd) ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, s.fd.get(), nullptr);
    s.fd.reset();
    s.state = slot_state::idle;
    s.retry_at = steady::now() + backoff;
  };
  auto watch = [&](slot& s, std::size_t index, std::uint32_t events, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = index;
    return ::epoll_ctl(ep.get(), op, s.fd.get(), &ev) == 0;
  };
  auto send_byte = [&](slot& s, std::size_t index, int op) {
    const char byte = 'c';
    if (::send(s.fd.get(), &byte, 1, MSG_NOSIGNAL) != 1) {
      fail(s, failure_kind(errno));
      return;
    }
    s.state = slot_state::waiting_echo;
    if (!watch(s, index, EPOLLIN, op)) fail(s, "other");
  };
  auto begin = [&](slot& s, std::size_t index) {
    s.started = steady::now();
    try {
      s.fd = tcp_socket(addr);
    } catch (const bench_error&) {
      fail(s, failure_kind(errno));
      return;
    }
    set_nodelay(s.fd.get());
    const int err = start_connect(s.fd.get(), addr);
    if (err == 0) {
      send_byte(s, index, EPOLL_CTL_ADD);
    } else if (err == EINPROGRESS) {
      s.state = slot_state::connecting;
      if (!watch(s, index, EPOLLOUT, EPOLL_CTL_ADD)) fail(s, "other");
    } else {
      fail(s, failure_kind(err));
    }
  };

  note("connect: " + std::to_string(o.slots) + " slot(s) to " + addr.text + " for " +
       std::to_string(o.seconds) + " s");
  const auto start = steady::now();
  const auto deadline = start + std::chrono::duration_cast<steady::duration>(
                                  std::chrono::duration<double>(o.seconds));
  for (std::size_t i = 0; i < slots.size(); ++i) begin(slots[i], i);

  std::vector<epoll_event> events(slots.size());
  std::string error;
  auto last_sweep = start;
  while (!stop_requested()) {
    auto now = steady::now();
    if (now >= deadline) break;
    const int n = ::epoll_wait(ep.get(), events.data(), static_cast<int>(events.size()),
                               ms_until(std::min(deadline, now + backoff), 10));
    if (n < 0 && errno != EINTR) {
      error = "epoll_wait: " + errno_text(errno);
      break;
    }
    for (int e = 0; e < n; ++e) {
      const std::size_t i = events[e].data.u64;
      auto& s = slots[i];
      if (s.state == slot_state::connecting) {
        const int err = socket_error(s.fd.get());
        if (err != 0) {
          fail(s, failure_kind(err));
        } else if (events[e].events & (EPOLLERR | EPOLLHUP)) {
          fail(s, "reset");
        } else {
          send_byte(s, i, EPOLL_CTL_MOD);
        }
      } else if (s.state == slot_state::waiting_echo) {
        char byte;
        const ssize_t r = ::recv(s.fd.get(), &byte, 1, 0);
        if (r == 1) {
          const auto done = steady::now();
          if (done <= deadline)
            setup_ms.push_back(std::chrono::duration<double, std::milli>(done - s.started).count());
          ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, s.fd.get(), nullptr);
          s.fd.reset();
          s.state = slot_state::idle;
          if (done < deadline) begin(s, i);
        } else if (r == 0) {
          fail(s, "closed");
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          fail(s, failure_kind(errno));
        }
      }
    }
    now = steady::now();
    if (now - last_sweep >= std::chrono::milliseconds(5)) {
      last_sweep = now;
      for (std::size_t i = 0; i < slots.size(); ++i) {
        auto& s = slots[i];
        if (s.state != slot_state::idle && now - s.started > attempt_timeout) fail(s, "timeout");
        if (s.state == slot_state::idle && now >= s.retry_at && now < deadline) begin(s, i);
      }
    }
  }
  const auto stopped = steady::now();
  if (error.empty() && stop_requested()) error = "interrupted";
  for (auto& s : slots) s.fd.reset();  // attempts still in flight do not count

  std::sort(setup_ms.begin(), setup_ms.end());
  const std::uint64_t ok_count = setup_ms.size();
  if (error.empty() && ok_count == 0) error = "no connection completed";
  json_object reasons;
  for (const auto& [kind, n] : failures) reasons.add(kind, n);
  const double per_s = static_cast<double>(ok_count) / o.seconds;
  json_object j;
  j.add("mode", "connect")
    .add("ok", error.empty())
    .add("target", addr.text)
    .add("slots", o.slots)
    .add("seconds", o.seconds)
    .add("elapsed_s", seconds_between(start, stopped))
    .add("connections", ok_count)
    .add("connections_per_s", per_s)
    .add("failures", failed)
    .add("failure_kinds", reasons)
    .add("p50_ms", percentile(setup_ms, 50))
    .add("p99_ms", percentile(setup_ms, 99))
    .add("mean_ms", mean(setup_ms))
    .add("max_ms", setup_ms.empty() ? 0.0 : setup_ms.back());
  if (!error.empty()) j.add("error", error);
  print_json(j);
  note("connect: " + std::to_string(per_s) + " connections/s, " + std::to_string(failed) +
       " failure(s)");
  if (!error.empty()) {
    note("connect: " + error);
    return 1;
  }
  return 0;
}

}  // namespace tlsrelay::bench
