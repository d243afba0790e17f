// `flood`: keeps up to N TLS handshakes with a relay's control port under way from one
// address for T seconds, a new one started as soon as one ends. Each is a full TLS
// handshake with the agent's TLS client (bench_tls) offering ALPN tlsrelay/2 and
// presenting the keys directory's client certificate: the dearest handshake a relay can
// be made to do (its own key exchange and signature, then the client's chain and
// CertificateVerify to check). After the handshake the client sends close_notify and
// closes; it never says hello, so no session follows.
//
// Each attempt ends as one of: completed (handshake done), refused (the relay closed or
// reset the connection before the handshake ended, or refused the TCP connection: its
// admission limits), failed (anything else, e.g. a timeout). One thread, epoll,
// non-blocking. Sockets are closed with an RST (SO_LINGER 0): thousands of handshakes a
// second would otherwise leave as many ports in TIME_WAIT and could use up the local
// ports the measured pair needs.
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <vector>

#include "bench/bench_common.hpp"
#include "bench/bench_modes.hpp"
#include "bench/bench_tls.hpp"
#include "protocol/wire.hpp"

namespace tlsrelay::bench {
namespace {

enum class attempt_state { idle, connecting, handshaking };

struct attempt {
  unique_fd fd;
  ssl_ptr ssl;
  attempt_state state = attempt_state::idle;
  steady::time_point started{};
  std::uint32_t watched = 0;  // epoll events registered (0: not registered)
};

// Closes at once with an RST, leaving no TIME_WAIT behind.
void abort_close(attempt& a) {
  if (a.fd) {
    linger l{1, 0};
    ::setsockopt(a.fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  a.ssl.reset();
  a.fd.reset();
  a.watched = 0;
  a.state = attempt_state::idle;
}

}  // namespace

int run_flood(const flood_options& o) {
  if (o.concurrency == 0) throw bench_error("--concurrency must be at least 1");
  if (!(o.seconds > 0)) throw bench_error("--seconds must be positive");
  const auto fd_limit = raise_nofile_limit();
  if (fd_limit < std::uint64_t{o.concurrency} + 64)
    note("flood: the open-file limit (" + std::to_string(fd_limit) + ") is below --concurrency + 64");
  const auto relay = resolve(o.relay);
  auto ctx = make_client_context(o.keys, std::string(wire::alpn_v2));
  unique_fd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) throw bench_error("epoll_create1: " + errno_text(errno));

  std::vector<attempt> attempts(o.concurrency);
  std::uint64_t started = 0, completed = 0, refused = 0, failed = 0, alpn_v2 = 0, tls13 = 0;
  std::map<std::string, std::uint64_t> refused_kinds, failed_kinds;
  std::string first_failure;
  std::vector<double> handshake_ms;  // completed ones, connect() start to handshake done
  std::size_t in_flight = 0, peak_in_flight = 0;
  const auto attempt_timeout = std::chrono::duration_cast<steady::duration>(
    std::chrono::duration<double>(o.timeout));

  auto end = [&](attempt& a) {
    if (a.state != attempt_state::idle) --in_flight;
    abort_close(a);
  };
  auto refuse = [&](attempt& a, const std::string& kind) {
    ++refused;
    ++refused_kinds[kind];
    end(a);
  };
  auto fail = [&](attempt& a, const std::string& kind, const std::string& why) {
    ++failed;
    ++failed_kinds[kind];
    if (first_failure.empty()) {
      first_failure = why;
      note("flood: first failure (" + kind + "): " + why);
    }
    end(a);
  };
  auto watch = [&](attempt& a, std::size_t index, std::uint32_t events) {
    if (a.watched == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = index;
    if (::epoll_ctl(ep.get(), a.watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, a.fd.get(), &ev) != 0)
      return fail(a, "other", "epoll_ctl: " + errno_text(errno));
    a.watched = events;
  };
  auto continue_handshake = [&](attempt& a, std::size_t index) {
    std::string error;
    bool closed = false;
    switch (handshake_step(a.ssl.get(), relay.text, error, &closed)) {
      case tls_step::done: {
        ++completed;
        handshake_ms.push_back(
          std::chrono::duration<double, std::milli>(steady::now() - a.started).count());
        if (selected_alpn(a.ssl.get()) == wire::alpn_v2) ++alpn_v2;
        if (SSL_version(a.ssl.get()) == TLS1_3_VERSION) ++tls13;
        SSL_shutdown(a.ssl.get());  // close_notify; non-blocking, its answer is not awaited
        return end(a);
      }
      case tls_step::want_read: return watch(a, index, EPOLLIN);
      case tls_step::want_write: return watch(a, index, EPOLLOUT);
      case tls_step::failed:
        return closed ? refuse(a, "closed_in_handshake") : fail(a, "tls", error);
    }
  };
  auto begin = [&](attempt& a, std::size_t index) {
    a.started = steady::now();
    a.state = attempt_state::connecting;
    ++started;
    peak_in_flight = std::max(peak_in_flight, ++in_flight);
    try {
      a.fd = tcp_socket(relay);
    } catch (const bench_error& e) {
      return fail(a, failure_kind(errno), e.what());
    }
    const int err = start_connect(a.fd.get(), relay);
    if (err == ECONNREFUSED || err == ECONNRESET) return refuse(a, "connect_" + failure_kind(err));
    if (err != 0 && err != EINPROGRESS)
      return fail(a, failure_kind(err), "connect to " + relay.text + ": " + errno_text(err));
    try {
      a.ssl = new_client_ssl(ctx.get(), a.fd.get());
    } catch (const bench_error& e) {
      return fail(a, "tls", e.what());
    }
    if (err == EINPROGRESS) return watch(a, index, EPOLLOUT);
    a.state = attempt_state::handshaking;
    continue_handshake(a, index);
  };
  auto on_event = [&](std::size_t i, std::uint32_t events) {
    auto& a = attempts[i];
    if (a.state == attempt_state::connecting) {
      const int err = socket_error(a.fd.get());
      if (err == ECONNREFUSED || err == ECONNRESET) return refuse(a, "connect_" + failure_kind(err));
      if (err != 0) return fail(a, failure_kind(err), "connect to " + relay.text + ": " + errno_text(err));
      if (events & (EPOLLERR | EPOLLHUP)) return refuse(a, "connect_reset");
      a.state = attempt_state::handshaking;
    }
    if (a.state == attempt_state::handshaking) continue_handshake(a, i);
  };

  note("flood: up to " + std::to_string(o.concurrency) + " TLS handshakes at once with " +
       relay.text + " for " + std::to_string(o.seconds) + " s, open-file limit " +
       std::to_string(fd_limit));
  const auto start = steady::now();
  const auto deadline = start + std::chrono::duration_cast<steady::duration>(
                                  std::chrono::duration<double>(o.seconds));
  std::vector<epoll_event> events(1024);
  std::string error;
  auto last_sweep = start;
  while (!stop_requested()) {
    auto now = steady::now();
    if (now >= deadline) break;
    // every idle slot starts again at once: a flood does not back off
    for (std::size_t i = 0; i < attempts.size(); ++i)
      if (attempts[i].state == attempt_state::idle) begin(attempts[i], i);
    const int n = ::epoll_wait(ep.get(), events.data(), static_cast<int>(events.size()),
                               ms_until(deadline, 20));
    if (n < 0 && errno != EINTR) {
      error = "epoll_wait: " + errno_text(errno);
      break;
    }
    for (int e = 0; e < n; ++e) on_event(events[e].data.u64, events[e].events);
    now = steady::now();
    if (now - last_sweep >= std::chrono::milliseconds(20)) {
      last_sweep = now;
      for (auto& a : attempts)
        if (a.state != attempt_state::idle && now - a.started > attempt_timeout)
          fail(a, "timeout", "no handshake within " + std::to_string(o.timeout) + " s");
    }
  }
  const auto stopped = steady::now();
  const std::uint64_t unfinished = in_flight;  // under way at the end: in no count
  for (auto& a : attempts) abort_close(a);
  if (error.empty() && stop_requested()) error = "interrupted";
  if (error.empty() && completed == 0 && refused == 0) error = "no handshake completed or refused";

  const double elapsed = seconds_between(start, stopped);
  const auto per_s = [&](std::uint64_t n) { return elapsed > 0 ? static_cast<double>(n) / elapsed : 0.0; };
  std::sort(handshake_ms.begin(), handshake_ms.end());
  json_object refused_j, failed_j;
  for (const auto& [kind, n] : refused_kinds) refused_j.add(kind, n);
  for (const auto& [kind, n] : failed_kinds) failed_j.add(kind, n);
  json_object j;
  j.add("mode", "flood")
    .add("ok", error.empty())
    .add("relay", relay.text)
    .add("concurrency", o.concurrency)
    .add("seconds", o.seconds)
    .add("elapsed_s", elapsed)
    .add("started", started)
    .add("completed", completed)
    .add("refused", refused)
    .add("failed", failed)
    .add("unfinished", unfinished)
    .add("completed_per_s", per_s(completed))
    .add("refused_per_s", per_s(refused))
    .add("failed_per_s", per_s(failed))
    .add("refused_kinds", refused_j)
    .add("failure_kinds", failed_j)
    .add("alpn_v2_selected", alpn_v2)
    .add("tls13", tls13)
    .add("peak_in_flight", static_cast<std::uint64_t>(peak_in_flight))
    .add("handshake_p50_ms", percentile(handshake_ms, 50))
    .add("handshake_p99_ms", percentile(handshake_ms, 99));
  if (!first_failure.empty()) j.add("first_failure", first_failure);
  if (!error.empty()) j.add("error", error);
  print_json(j);
  note("flood: " + std::to_string(completed) + " completed, " + std::to_string(refused) +
       " refused, " + std::to_string(failed) + " failed in " + std::to_string(elapsed) + " s");
  if (!error.empty()) {
    note("flood: " + error);
    return 1;
  }
  return 0;
}

}  // namespace tlsrelay::bench
