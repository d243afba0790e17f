// `hold`: opens K connections to an echo (through whatever is in between), at most
// `window` being set up at once; each echoes 1 byte once; all stay open; after a pause
// (1 s) all echo 1 byte once more. With --pid, VmRSS of that process is read before the
// first connection and after the second echo: the memory a held connection costs it.
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

enum class hold_state { fresh, connecting, first_echo, held, second_echo, done, failed };

struct held_conn {
  unique_fd fd;
  hold_state state = hold_state::fresh;
  steady::time_point started{};
};

constexpr char first_byte = 'h';
constexpr char second_byte = 'H';
constexpr auto setup_limit = std::chrono::seconds(180);  // the whole opening phase

}  // namespace

int run_hold(const hold_options& o) {
  if (o.count == 0) throw bench_error("--count must be at least 1");
  if (o.window == 0) throw bench_error("--window must be at least 1");
  const auto fd_limit = raise_nofile_limit();
  if (fd_limit < std::uint64_t{o.count} + 64)
    note("hold: the open-file limit (" + std::to_string(fd_limit) + ") is below --count + 64");
  const auto addr = resolve(o.target);
  unique_fd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) throw bench_error("epoll_create1: " + errno_text(errno));

  std::optional<std::uint64_t> rss_before, rss_after;
  if (o.pid > 0) {
    rss_before = vm_rss_kib(o.pid);
    if (!rss_before) throw bench_error("cannot read VmRSS of pid " + std::to_string(o.pid));
  }

  std::vector<held_conn> conns(o.count);
  std::map<std::string, std::uint64_t> failures;
  std::uint64_t failed = 0;
  std::size_t in_setup = 0;  // connecting or first_echo
  std::size_t waiting_second = 0;
  std::size_t failure_streak = 0;  // failures since the last connection established
  // Gives up opening after this many failures in a row (the target is saturated);
  // what was established is still held and echoed.
  const auto per_conn_timeout = std::chrono::duration_cast<steady::duration>(
    std::chrono::duration<double>(o.timeout));

  auto fail = [&](held_conn& c, const std::string& kind) {
    if (c.state == hold_state::connecting || c.state == hold_state::first_echo) --in_setup;
    if (c.state == hold_state::second_echo) --waiting_second;
    ++failed;
    ++failure_streak;
    ++failures[kind];
    if (c.fd) ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
    c.fd.reset();
    c.state = hold_state::failed;
  };
  auto watch = [&](held_conn& c, std::size_t index, std::uint32_t events, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = index;
    return ::epoll_ctl(ep.get(), op, c.fd.get(), &ev) == 0;
  };
  auto send_byte = [&](held_conn& c, char byte) -> bool {
    if (::send(c.fd.get(), &byte, 1, MSG_NOSIGNAL) == 1) return true;
    fail(c, errno == EAGAIN ? std::string("other") : failure_kind(errno));
    return false;
  };
  auto begin = [&](held_conn& c, std::size_t index) {
    c.started = steady::now();
    ++in_setup;
    c.state = hold_state::connecting;
    try {
      c.fd = tcp_socket(addr);
    } catch (const bench_error&) {
      fail(c, failure_kind(errno));
      return;
    }
    set_nodelay(c.fd.get());
    const int err = start_connect(c.fd.get(), addr);
    if (err == 0) {
      if (!send_byte(c, first_byte)) return;
      c.state = hold_state::first_echo;
      if (!watch(c, index, EPOLLIN, EPOLL_CTL_ADD)) fail(c, "other");
    } else if (err == EINPROGRESS) {
      if (!watch(c, index, EPOLLOUT, EPOLL_CTL_ADD)) fail(c, "other");
    } else {
      fail(c, failure_kind(err));
    }
  };
  // One readiness event of connection `i`, in any phase.
  auto on_event = [&](std::size_t i, std::uint32_t events) {
    auto& c = conns[i];
    switch (c.state) {
      case hold_state::connecting: {
        const int err = socket_error(c.fd.get());
        if (err != 0) return fail(c, failure_kind(err));
        if (events & (EPOLLERR | EPOLLHUP)) return fail(c, "reset");
        if (!send_byte(c, first_byte)) return;
        c.state = hold_state::first_echo;
        if (!watch(c, i, EPOLLIN, EPOLL_CTL_MOD)) fail(c, "other");
        return;
      }
      case hold_state::first_echo:
      case hold_state::second_echo: {
        char byte = 0;
        const ssize_t r = ::recv(c.fd.get(), &byte, 1, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        if (r < 0) return fail(c, failure_kind(errno));
        if (r == 0) return fail(c, "closed");
        const bool first = c.state == hold_state::first_echo;
        if (byte != (first ? first_byte : second_byte)) return fail(c, "wrong_byte");
        if (first) {
          --in_setup;
          failure_streak = 0;
          c.state = hold_state::held;
        } else {
          --waiting_second;
          c.state = hold_state::done;
        }
        return;
      }
      case hold_state::held:
      case hold_state::done: {
        // an idle connection became readable: closed, reset or unexpected bytes
        char byte = 0;
        const ssize_t r = ::recv(c.fd.get(), &byte, 1, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        if (r < 0) return fail(c, failure_kind(errno));
        return fail(c, r == 0 ? "closed" : "unexpected_bytes");
      }
      default: return;
    }
  };
  std::vector<epoll_event> events(1024);
  auto poll_once = [&](int timeout_ms) -> bool {
    const int n = ::epoll_wait(ep.get(), events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0) return errno == EINTR;
    for (int e = 0; e < n; ++e) on_event(events[e].data.u64, events[e].events);
    return true;
  };
  auto sweep = [&](hold_state a, hold_state b) {
    const auto now = steady::now();
    for (auto& c : conns)
      if ((c.state == a || c.state == b) && now - c.started > per_conn_timeout) fail(c, "timeout");
  };

  // Phase 1: open all, each echoes once.
  note("hold: opening " + std::to_string(o.count) + " connection(s) to " + addr.text + ", " +
       std::to_string(o.window) + " at a time");
  const auto start = steady::now();
  opening_plan plan;
  plan.count = conns.size();
  plan.window = o.window;
  plan.limit = setup_limit;
  plan.target = "the target";
  plan.items = "connections";
  plan.begin = [&](std::size_t i) { begin(conns[i], i); };
  plan.in_setup = [&] { return in_setup; };
  plan.failure_streak = [&] { return failure_streak; };
  plan.poll = poll_once;
  plan.sweep = [&] { sweep(hold_state::connecting, hold_state::first_echo); };
  const auto opened = run_opening(plan);
  std::string error = opened.error;
  const std::size_t next = opened.started;
  const double setup_s = seconds_between(start, steady::now());
  std::uint64_t established = 0;
  for (const auto& c : conns)
    if (c.state == hold_state::held) ++established;
  note("hold: " + std::to_string(established) + " established in " + std::to_string(setup_s) +
       " s" + (established ? "; pausing " + std::to_string(o.pause) + " s" : std::string()));

  // Phase 2: pause, watching for connections that drop.
  const auto pause_end = steady::now() + std::chrono::duration_cast<steady::duration>(
                                           std::chrono::duration<double>(established ? o.pause : 0.0));
  while (!stop_requested() && steady::now() < pause_end)
    poll_once(ms_until(pause_end, 100));

  // Phase 3: every held connection echoes once more.
  double second_s = 0;
  if (!stop_requested()) {
    const auto t0 = steady::now();
    for (auto& c : conns) {
      if (c.state != hold_state::held) continue;
      c.started = t0;
      c.state = hold_state::second_echo;
      ++waiting_second;
      send_byte(c, second_byte);
    }
    auto last = t0;
    while (waiting_second > 0 && !stop_requested()) {
      if (!poll_once(5)) {
        error = "epoll_wait: " + errno_text(errno);
        break;
      }
      const auto now = steady::now();
      if (now - last >= std::chrono::milliseconds(20)) {
        last = now;
        sweep(hold_state::second_echo, hold_state::second_echo);
      }
    }
    second_s = seconds_between(t0, steady::now());
  }
  if (error.empty() && stop_requested()) error = "interrupted";
  std::uint64_t held = 0;
  for (const auto& c : conns)
    if (c.state == hold_state::done) ++held;
  if (o.pid > 0) {
    rss_after = vm_rss_kib(o.pid);
    if (!rss_after && error.empty()) error = "pid " + std::to_string(o.pid) + " is gone";
  }
  for (auto& c : conns) c.fd.reset();
  // connections never attempted (interrupted or setup limit) count as failures too
  const std::uint64_t failures_total = o.count - held;
  if (error.empty() && failures_total > 0)
    error = std::to_string(failures_total) + " of " + std::to_string(o.count) +
            " connection(s) failed";

  // every connection that is not held has one reason: those never tried, and those
  // still being set up or not echoed a second time when a phase ended early
  const std::uint64_t not_attempted = conns.size() - next;
  if (not_attempted > 0) failures["not_attempted"] += not_attempted;
  if (failures_total > failed + not_attempted)
    failures["unfinished"] += failures_total - failed - not_attempted;
  json_object reasons;
  for (const auto& [kind, n] : failures) reasons.add(kind, n);
  json_object j;
  j.add("mode", "hold")
    .add("ok", error.empty())
    .add("target", addr.text)
    .add("count", o.count)
    .add("window", o.window)
    .add("established", established)
    .add("held", held)
    .add("failures", failures_total)
    .add("failure_kinds", reasons)
    .add("setup_s", setup_s)
    .add("setup_per_s", setup_s > 0 ? static_cast<double>(established) / setup_s : 0.0)
    .add("second_echo_s", second_s);
  if (o.pid > 0) {
    j.add("pid", static_cast<std::int64_t>(o.pid)).add("rss_kib_before", *rss_before);
    if (rss_after) {
      j.add("rss_kib_after", *rss_after);
      if (held > 0) {
        const auto delta = static_cast<std::int64_t>(*rss_after) - static_cast<std::int64_t>(*rss_before);
        j.add("rss_bytes_per_connection", delta * 1024 / static_cast<std::int64_t>(held));
      } else {
        j.add_null("rss_bytes_per_connection");
      }
    } else {
      j.add_null("rss_kib_after").add_null("rss_bytes_per_connection");
    }
  }
  if (!error.empty()) j.add("error", error);
  print_json(j);
  note("hold: " + std::to_string(held) + " of " + std::to_string(o.count) + " held");
  if (!error.empty()) {
    note("hold: " + error);
    return 1;
  }
  return 0;
}

}  // namespace tlsrelay::bench
