// `sessions`: S idle protocol v1 control sessions to a relay, as S `agent`s would open
// them (the same TLS client: bench_tls), at most `window` being set up at once. A session
// is established once it has received both `public_listener` and `reverse_listener`.
// When every session is established or has failed, prints "held N" on stdout (with
// --pid: "held N rss_kib_before B rss_kib_after A", the relay's VmRSS read before the
// first connection and now); then keeps the sessions open, reading and discarding what
// the relay sends, until SIGTERM/SIGINT. A session the relay closes is a failure.
//
// With --v2 each session speaks protocol v2 instead (ALPN tlsrelay/2, then `hello 2`,
// with --name-prefix P the name P-<index>): established once `welcome` and both listener
// lines have arrived; `error`, `redirect` and `no_available_listeners` are failures, and
// the relay's pings are answered while the sessions are held. This is what a v2 server's
// session set-up costs the relay, and, with names, what asking the cluster costs a node.
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <map>
#include <optional>
#include <vector>

#include "bench/bench_common.hpp"
#include "bench/bench_modes.hpp"
#include "bench/bench_tls.hpp"
#include "protocol/defaults.hpp"
#include "protocol/line_splitter.hpp"
#include "protocol/v1.hpp"
#include "protocol/v2.hpp"
#include "protocol/wire.hpp"

namespace tlsrelay::bench {
namespace {

enum class sess_state { fresh, connecting, handshaking, awaiting_lines, established, failed };

struct session {
  unique_fd fd;
  ssl_ptr ssl;
  std::optional<line_splitter> lines;
  sess_state state = sess_state::fresh;
  steady::time_point started{};
  bool got_public = false;
  bool got_reverse = false;
  bool got_welcome = false;  // v2
  std::string out;           // v2: lines not yet written (the hello, pongs)
  std::uint32_t watched = 0;  // epoll events currently registered (0: not registered)
};

constexpr auto setup_limit = std::chrono::seconds(180);  // the whole opening phase

bool in_setup(sess_state s) {
  return s == sess_state::connecting || s == sess_state::handshaking ||
         s == sess_state::awaiting_lines;
}

}  // namespace

int run_sessions(const sessions_options& o) {
  if (o.count == 0) throw bench_error("--count must be at least 1");
  if (o.window == 0) throw bench_error("--window must be at least 1");
  if (!o.name_prefix.empty() && !o.v2) throw bench_error("--name-prefix needs --v2");
  if (!o.name_prefix.empty() &&
      !v2::valid_name(o.name_prefix + "-" + std::to_string(o.count - 1)))
    throw bench_error("--name-prefix " + o.name_prefix +
                      ": names PREFIX-<index> must be 1 to 63 of a-z 0-9 - (not starting with -)");
  const auto fd_limit = raise_nofile_limit();
  if (fd_limit < std::uint64_t{o.count} + 64)
    note("sessions: the open-file limit (" + std::to_string(fd_limit) + ") is below --count + 64");
  const auto relay = resolve(o.relay);
  auto ctx = make_client_context(o.keys, o.v2 ? std::string(wire::alpn_v2) : std::string());
  unique_fd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) throw bench_error("epoll_create1: " + errno_text(errno));

  std::optional<std::uint64_t> rss_before, rss_after;
  if (o.pid > 0) {
    rss_before = vm_rss_kib(o.pid);
    if (!rss_before) throw bench_error("cannot read VmRSS of pid " + std::to_string(o.pid));
  }

  std::vector<session> sessions(o.count);
  std::map<std::string, std::uint64_t> failures;
  std::uint64_t failed = 0, new_connection_lines = 0, ignored_lines = 0, pings = 0;
  std::size_t setting_up = 0;       // connecting, handshaking or awaiting_lines
  std::size_t failure_streak = 0;   // failures since the last session established
  std::string first_failure;
  const auto per_session_timeout = std::chrono::duration_cast<steady::duration>(
    std::chrono::duration<double>(o.timeout));

  auto fail = [&](session& s, const std::string& kind, const std::string& why) {
    if (in_setup(s.state)) --setting_up;
    ++failed;
    ++failure_streak;
    ++failures[kind];
    if (first_failure.empty()) {
      first_failure = why;
      note("sessions: first failure (" + kind + "): " + why);
    }
    if (s.fd && s.watched) ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, s.fd.get(), nullptr);
    s.ssl.reset();
    s.fd.reset();
    s.lines.reset();
    s.watched = 0;
    s.state = sess_state::failed;
  };
  auto watch = [&](session& s, std::size_t index, std::uint32_t events) -> bool {
    if (s.watched == events) return true;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = index;
    const int op = s.watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (::epoll_ctl(ep.get(), op, s.fd.get(), &ev) != 0) {
      fail(s, "other", "epoll_ctl: " + errno_text(errno));
      return false;
    }
    s.watched = events;
    return true;
  };
  // Reads what the relay sent; the listener lines complete the set-up.
  auto ignore = [&](std::string_view line) {
    if (++ignored_lines <= 5) note("sessions: ignoring line '" + std::string(line) + "'");
  };
  // What a v1 relay says; the kind of failure it announces, if any.
  auto on_v1_line = [&](session& s, std::string_view line, std::string& refusal) {
    v1::relay_message msg;
    if (v1::parse_line(line, msg)) return ignore(line);
    if (std::holds_alternative<v1::public_listener>(msg)) s.got_public = true;
    else if (std::holds_alternative<v1::reverse_listener>(msg)) s.got_reverse = true;
    else if (std::holds_alternative<v1::new_connection>(msg)) ++new_connection_lines;
    else if (std::holds_alternative<v1::no_available_listeners>(msg)) refusal = "no_available_listeners";
  };
  auto on_v2_line = [&](session& s, std::string_view line, std::string& refusal) {
    v2::relay_message msg;
    if (v2::parse_relay_line(line, msg)) return ignore(line);
    if (std::holds_alternative<v2::welcome>(msg)) s.got_welcome = true;
    else if (std::holds_alternative<v1::public_listener>(msg)) s.got_public = true;
    else if (std::holds_alternative<v1::reverse_listener>(msg)) s.got_reverse = true;
    else if (std::holds_alternative<v2::new_connection>(msg)) ++new_connection_lines;
    else if (std::holds_alternative<v2::ping>(msg)) {
      ++pings;
      s.out += v2::format_line(v2::server_message{v2::pong{}});
    } else if (auto* e = std::get_if<v2::error>(&msg)) refusal = "error_" + std::string(v2::to_string(e->code));
    else if (std::holds_alternative<v2::redirect>(msg)) refusal = "redirect";
    else if (std::holds_alternative<v1::no_available_listeners>(msg)) refusal = "no_available_listeners";
  };
  // Reads what the relay sent and writes what is due; the listener lines (and in v2 the
  // welcome) complete the set-up.
  auto read_lines = [&](session& s, std::size_t index) {
    std::string refusal, refusal_line;
    auto on_line = [&](std::string_view line) {
      if (!refusal.empty()) return;
      if (o.v2) on_v2_line(s, line, refusal);
      else on_v1_line(s, line, refusal);
      if (!refusal.empty()) refusal_line = std::string(line);
    };
    const auto r = read_control_lines(s.ssl.get(), *s.lines, on_line);
    if (!refusal.empty()) return fail(s, refusal, "the relay refused the session: " + refusal_line);
    if (!r.open) {
      const bool was_held = s.state == sess_state::established;
      return fail(s, std::string(r.kind) + (was_held ? "_while_held" : ""), r.error);
    }
    bool want_write = r.want_write;
    if (!s.out.empty()) {
      bool write_blocked = false;
      std::string error;
      if (!write_pending(s.ssl.get(), s.out, write_blocked, error)) return fail(s, "tls", error);
      want_write = want_write || write_blocked;
    }
    if (s.state == sess_state::awaiting_lines && s.got_public && s.got_reverse &&
        (s.got_welcome || !o.v2)) {
      s.state = sess_state::established;
      --setting_up;
      failure_streak = 0;
    }
    watch(s, index, EPOLLIN | (want_write ? EPOLLOUT : 0u));
  };
  auto continue_handshake = [&](session& s, std::size_t index) {
    std::string error;
    switch (handshake_step(s.ssl.get(), relay.text, error)) {
      case tls_step::done:
        s.state = sess_state::awaiting_lines;
        s.lines.emplace(defaults::max_control_line_bytes);
        if (o.v2) {
          if (selected_alpn(s.ssl.get()) != wire::alpn_v2)
            return fail(s, "alpn", "the relay did not select ALPN " + std::string(wire::alpn_v2));
          v2::hello hello;
          if (!o.name_prefix.empty()) hello.name = o.name_prefix + "-" + std::to_string(index);
          s.out = v2::format_line(v2::server_message{hello});
        }
        return read_lines(s, index);  // the lines may have come with the handshake
      case tls_step::want_read: watch(s, index, EPOLLIN); return;
      case tls_step::want_write: watch(s, index, EPOLLOUT); return;
      case tls_step::failed: return fail(s, "tls", error);
    }
  };
  auto begin = [&](session& s, std::size_t index) {
    s.started = steady::now();
    s.state = sess_state::connecting;
    ++setting_up;
    try {
      s.fd = tcp_socket(relay);
    } catch (const bench_error& e) {
      return fail(s, failure_kind(errno), e.what());
    }
    set_nodelay(s.fd.get());
    const int err = start_connect(s.fd.get(), relay);
    if (err != 0 && err != EINPROGRESS)
      return fail(s, failure_kind(err), "connect to " + relay.text + ": " + errno_text(err));
    try {
      s.ssl = new_client_ssl(ctx.get(), s.fd.get());
    } catch (const bench_error& e) {
      return fail(s, "tls", e.what());
    }
    if (err == EINPROGRESS) {
      watch(s, index, EPOLLOUT);
      return;
    }
    s.state = sess_state::handshaking;
    continue_handshake(s, index);
  };
  auto on_event = [&](std::size_t i, std::uint32_t events) {
    auto& s = sessions[i];
    switch (s.state) {
      case sess_state::connecting: {
        const int err = socket_error(s.fd.get());
        if (err != 0) return fail(s, failure_kind(err), "connect to " + relay.text + ": " + errno_text(err));
        if (events & (EPOLLERR | EPOLLHUP)) return fail(s, "reset", "connect to " + relay.text + ": reset");
        s.state = sess_state::handshaking;
        return continue_handshake(s, i);
      }
      case sess_state::handshaking: return continue_handshake(s, i);
      case sess_state::awaiting_lines:
      case sess_state::established: return read_lines(s, i);
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

  // Phase 1: open every session, `window` at a time.
  note("sessions: opening " + std::to_string(o.count) + " control session(s) to " + relay.text +
       ", " + std::to_string(o.window) + " at a time, open-file limit " + std::to_string(fd_limit));
  const auto start = steady::now();
  opening_plan plan;
  plan.count = sessions.size();
  plan.window = o.window;
  plan.limit = setup_limit;
  plan.target = "the relay";
  plan.items = "sessions";
  plan.begin = [&](std::size_t i) { begin(sessions[i], i); };
  plan.in_setup = [&] { return setting_up; };
  plan.failure_streak = [&] { return failure_streak; };
  plan.poll = poll_once;
  plan.sweep = [&] {
    const auto now = steady::now();
    for (auto& s : sessions)
      if (in_setup(s.state) && now - s.started > per_session_timeout)
        fail(s, "timeout", "no listener lines within " + std::to_string(o.timeout) + " s");
  };
  const auto opened = run_opening(plan);
  std::string error = opened.error;
  const std::size_t next = opened.started;
  const double setup_s = seconds_between(start, steady::now());
  if (error.empty() && stop_requested()) error = "interrupted while opening";
  // sessions still being set up when the phase ended early fail now
  for (auto& s : sessions)
    if (in_setup(s.state)) fail(s, "unfinished", "still being set up when opening ended");
  std::uint64_t established = 0;
  for (const auto& s : sessions)
    if (s.state == sess_state::established) ++established;
  if (o.pid > 0) rss_after = vm_rss_kib(o.pid);

  std::string held_line = "held " + std::to_string(established);
  if (rss_before && rss_after)
    held_line += " rss_kib_before " + std::to_string(*rss_before) + " rss_kib_after " +
                 std::to_string(*rss_after);
  if (!stop_requested()) {
    std::printf("%s\n", held_line.c_str());
    std::fflush(stdout);
  }
  note("sessions: " + std::to_string(established) + " of " + std::to_string(o.count) +
       " established in " + std::to_string(setup_s) + " s" +
       (established > 0 ? "; holding them until SIGTERM/SIGINT" : std::string()));

  // Phase 2: hold until told to stop, reading and discarding what the relay sends (with
  // nothing established there is nothing to hold).
  const auto hold_start = steady::now();
  while (established > 0 && !stop_requested()) {
    if (!poll_once(200)) {
      if (error.empty()) error = "epoll_wait: " + errno_text(errno);
      break;
    }
  }
  const double held_s = seconds_between(hold_start, steady::now());
  if (error.empty() && o.pid > 0 && !vm_rss_kib(o.pid)) error = "pid " + std::to_string(o.pid) + " is gone";

  std::uint64_t open_at_end = 0;
  for (auto& s : sessions) {
    if (s.state != sess_state::established) continue;
    ++open_at_end;
    SSL_shutdown(s.ssl.get());  // best effort, non-blocking
    s.ssl.reset();
    s.fd.reset();
  }
  const std::uint64_t not_attempted = sessions.size() - next;
  if (not_attempted > 0) failures["not_attempted"] += not_attempted;
  const std::uint64_t failures_total = o.count - open_at_end;
  if (error.empty() && failures_total > 0)
    error = std::to_string(failures_total) + " of " + std::to_string(o.count) +
            " session(s) failed (first: " + (first_failure.empty() ? "not attempted" : first_failure) + ")";

  json_object reasons;
  for (const auto& [kind, n] : failures) reasons.add(kind, n);
  json_object j;
  j.add("mode", "sessions")
    .add("ok", error.empty())
    .add("relay", relay.text)
    .add("count", o.count)
    .add("window", o.window)
    .add("established", established)
    .add("open_at_end", open_at_end)
    .add("failures", failures_total)
    .add("failure_kinds", reasons)
    .add("setup_s", setup_s)
    .add("setup_per_s", setup_s > 0 ? static_cast<double>(established) / setup_s : 0.0)
    .add("held_s", held_s)
    .add("new_connection_lines", new_connection_lines)
    .add("protocol", o.v2 ? 2 : 1)
    .add("names", !o.name_prefix.empty());
  if (o.v2) j.add("pings_answered", pings);
  if (o.pid > 0) {
    j.add("pid", static_cast<std::int64_t>(o.pid)).add("rss_kib_before", *rss_before);
    if (rss_after && established > 0) {
      const auto delta = static_cast<std::int64_t>(*rss_after) - static_cast<std::int64_t>(*rss_before);
      j.add("rss_kib_after", *rss_after)
        .add("rss_bytes_per_session", delta * 1024 / static_cast<std::int64_t>(established));
    } else {
      if (rss_after) j.add("rss_kib_after", *rss_after);
      else j.add_null("rss_kib_after");
      j.add_null("rss_bytes_per_session");
    }
  }
  if (!error.empty()) j.add("error", error);
  print_json(j);
  if (!error.empty()) {
    note("sessions: " + error);
    return 1;
  }
  return 0;
}

}  // namespace tlsrelay::bench
