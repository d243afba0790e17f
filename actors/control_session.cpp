#include "actors/control_session.hpp"

#include <openssl/rand.h>
#include <sys/random.h>

#include <algorithm>
#include <mutex>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/pair_broker.hpp"
#include "logging/structured_log.hpp"
#include "protocol/errc.hpp"
#include "protocol/log_throttle.hpp"
#include "protocol/proxy_header.hpp"
#include "protocol/v1.hpp"
#include "protocol/v2.hpp"
#include "protocol/wire.hpp"

namespace tlsrelay {
namespace {

using session_ptr = caf::stateful_actor<control_session_state>*;

// 128 bits from a CSPRNG; ids must not be guessable. OpenSSL's DRBG (seeded
// and reseeded from the kernel, per thread) spares a getrandom call per
// relayed connection; the kernel's is the fallback should it ever fail.
connection_id random_id() {
  connection_id id;
  if (RAND_bytes(id.bytes.data(), static_cast<int>(id.bytes.size())) == 1) return id;
  std::size_t filled = 0;
  while (filled < id.bytes.size()) {
    const auto n = getrandom(id.bytes.data() + filled, id.bytes.size() - filled, 0);
    if (n > 0) filled += static_cast<std::size_t>(n);
  }
  return id;
}

void send_line_to_server(session_ptr self, std::string line) {
  self->send(self->state.net, send_line{self->state.control, std::move(line)});
}

// The session has dealt with one control line: net may hand it another.
void took_line(session_ptr self) {
  self->send(self->state.net, line_credit{self->state.control, 1});
}

template <class Message>
void send_v1(session_ptr self, Message msg) {
  send_line_to_server(self, v1::format_line(std::move(msg)));
}

template <class Message>
void send_v2(session_ptr self, Message msg) {
  send_line_to_server(self, v2::format_line(v2::relay_message{std::move(msg)}));
}

void count(session_ptr self, pairing_outcome outcome) { ++self->state.activity[outcome]; }

// The session's last word to the pool_manager: what it did, for the
// counters of the admin endpoint (see session_ended).
void report_end(session_ptr self) {
  auto& st = self->state;
  const auto lived = self->clock().now() - st.connected_at;
  self->send(st.pool, session_ended{st.activity, st.has_pair,
                                    std::chrono::duration_cast<std::chrono::milliseconds>(lived)
                                      .count()});
}

// The fields every log event of a serving session carries (its server as
// `peer`; an event about a client passes that client instead).
logging::fields session_fields(const control_session_state& st, std::string peer) {
  return logging::fields()
    .session(st.session_id)
    .name(st.reservation)
    .peer(std::move(peer))
    .port(st.pair.public_port);
}

// Closes every connection of the session and terminates it; `last_line`, if
// any, is written to the server before its control connection is closed.
void end_session(session_ptr self, const std::string& why, std::string last_line = {}) {
  auto& st = self->state;
  for (auto& w : st.waiting) {
    self->send(st.net, close_connection{w.client});
    count(self, pairing_outcome::server_left);
  }
  st.waiting.clear();
  if (st.broker) self->send_exit(st.broker, caf::exit_reason::user_shutdown);
  for (auto& [client, pairing] : st.paired) {
    self->send(st.net, close_connection{client});
    self->send(st.net, close_connection{pairing.reverse});
  }
  st.paired.clear();
  for (const auto& w : st.warm) self->send(st.net, close_connection{w.id});
  st.warm.clear();
  if (st.control_closed) {
    // Already on its way out with its last line (`error draining`).
  } else if (last_line.empty()) {
    self->send(st.net, close_connection{st.control});
  } else {
    self->send(st.net, send_and_close{st.control, std::move(last_line)});
  }
  if (st.has_pair)
    logging::event(spdlog::level::info, "session_ended",
                   session_fields(st, st.peer)
                     .reason(why)
                     .add("clients", st.clients_served + st.paired.size()),
                   "session {} ended ({}): public port {} served {} clients ({} on warm "
                   "connections){}",
                   st.peer, why, st.pair.public_port, st.clients_served + st.paired.size(),
                   st.warm_served,
                   st.reverse_rejected
                     ? fmt::format(", refused {} reverse connections with a bad id",
                                   st.reverse_rejected)
                     : std::string{});
  else
    logging::event(spdlog::level::info, "session_ended",
                   logging::fields().session(st.session_id).peer(st.peer).reason(why),
                   "session {} ended ({})", st.peer, why);
  report_end(self);
  self->quit();
}

// Refuses a v2 server with `error <code> <text>` (or no_available_listeners)
// and ends the session once the line is written.
void refuse_v2(session_ptr self, const caf::error& err) {
  std::string line;
  host_port elsewhere;
  if (is(err, relay_errc::pool_exhausted)) {
    line = v2::format_line(v2::relay_message{v1::no_available_listeners{}});
  } else if (is(err, relay_errc::redirected) && !parse_host_port(reason_of(err), elsewhere)) {
    line = v2::format_line(v2::relay_message{v2::redirect{elsewhere}});
  } else {
    v2::error e{v2::error_code::bad_request, reason_of(err)};
    if (is(err, relay_errc::auth_failed)) {
      e.code = v2::error_code::auth_failed;
      ++self->state.activity.auth_failures;
    }
    else if (is(err, relay_errc::port_unavailable)) e.code = v2::error_code::port_unavailable;
    else if (is(err, relay_errc::name_unavailable)) e.code = v2::error_code::name_unavailable;
    else if (is(err, relay_errc::too_many_sessions)) e.code = v2::error_code::too_many_sessions;
    else if (is(err, relay_errc::unsupported_version))
      e.code = v2::error_code::unsupported_version;
    else if (is(err, relay_errc::draining)) e.code = v2::error_code::draining;
    else if (e.text.empty()) e.text = self->system().render(err);
    line = v2::format_line(v2::relay_message{std::move(e)});
  }
  auto shown = line.substr(0, line.size() - 2);
  end_session(self, "refused: " + shown, std::move(line));
}

void refuse_bad_request(session_ptr self, std::string text) {
  refuse_v2(self, make_error(relay_errc::bad_request, std::move(text)));
}

std::string proxy_preamble(session_ptr self, const host_port& peer, const host_port& local) {
  // PROXY headers are a v2 feature: a v1 server would take them for client bytes.
  if (!self->state.config.proxy_protocol || self->state.protocol != 2) return {};
  return proxy_v2::encode({peer.host, peer.port, local.host, local.port});
}

// Hands `reverse` and `w` (already taken out of the queue) to the broker; a
// client that left meanwhile (match_missed) makes v1 try the next waiting
// client and v2 close the connection.
void match(session_ptr self, control_session_state::waiting_client w, conn_id reverse);

void match_v1(session_ptr self, conn_id reverse) {
  auto& st = self->state;
  if (st.waiting.empty()) {
    spdlog::debug("session {}: reverse connection with no waiting client, closed", st.peer);
    self->send(st.net, close_connection{reverse});
    return;
  }
  auto next = std::move(st.waiting.front());
  st.waiting.erase(st.waiting.begin());
  match(self, std::move(next), reverse);
}

void match(session_ptr self, control_session_state::waiting_client w, conn_id reverse) {
  auto& st = self->state;
  auto preamble = proxy_preamble(self, w.peer, w.local);
  st.paired.emplace(w.client,
                    control_session_state::pairing{reverse, w.peer, w.local, false, w.arrived});
  self->send(st.broker, match_reverse{w.client, reverse, std::move(preamble)});
}

void on_match_missed(session_ptr self, const match_missed& ev) {
  auto& st = self->state;
  st.paired.erase(ev.client);
  if (st.protocol == 1)
    match_v1(self, ev.reverse);
  else
    self->send(st.net, close_connection{ev.reverse});
}

// Refused reverse connections are logged at most once a second across all
// sessions: a peer throwing bad ids at reverse ports must not flood the log.
std::uint64_t note_refused_reverse() {
  static std::mutex mutex;
  static log_throttle throttle;
  std::lock_guard<std::mutex> lock(mutex);
  return throttle.note(log_throttle::clock::now());
}

void refuse_reverse(session_ptr self, const reverse_arrived& ev, const char* why) {
  auto& st = self->state;
  ++st.reverse_rejected;
  count(self, pairing_outcome::bad_id);
  if (const auto n = note_refused_reverse())
    spdlog::warn("session {}: reverse connection from {} refused: {} (closed; {} in this "
                 "session; {} refused in all since the last such line)",
                 st.peer, ev.peer, why, st.reverse_rejected, n);
  self->send(st.net, close_connection{ev.id});
}

// One timer per session for all its warm connections, due when the oldest
// expires: a delayed message per connection would wake CAF's clock thread
// once per relayed client. Warm connections are kept oldest first, and
// expire in that order.
void schedule_warm_sweep(session_ptr self) {
  auto& st = self->state;
  const auto wait = st.warm.front().expires - self->clock().now();
  st.warm_sweep_pending = true;
  self->delayed_send(self, std::max(wait, decltype(wait)::zero()), warm_expire_atom::value);
}

void sweep_warm(session_ptr self) {
  auto& st = self->state;
  st.warm_sweep_pending = false;
  const auto now = self->clock().now();
  std::size_t expired = 0;
  while (!st.warm.empty() && st.warm.front().expires <= now) {
    self->send(st.net, close_connection{st.warm.front().id});
    st.warm.erase(st.warm.begin());
    ++expired;
  }
  if (expired)
    spdlog::debug("session {}: {} warm connection(s) unused for {} ms, closed", st.peer, expired,
                  st.config.warm_idle.count());
  if (!st.warm.empty()) schedule_warm_sweep(self);
}

// A warm connection: kept, unread, until a client arrives or it expires.
void on_ready(session_ptr self, const reverse_arrived& ev, const v2::ready& ready) {
  auto& st = self->state;
  if (st.draining) {
    // No client will come any more: nothing to keep it for.
    self->send(st.net, close_connection{ev.id});
    return;
  }
  // The tag first: only a genuine ticket may use up its serial.
  if (!constant_time_equal(st.warm_signer.tag(ready.serial), ready.tag))
    return refuse_reverse(self, ev, "bad warm ticket");
  if (!st.warm_serials.admit(ready.serial))
    return refuse_reverse(self, ev, "warm ticket used before or too old");
  if (st.warm.size() >= st.config.warm_max) {
    // Not an attack, a server asking for more than the welcome allowed.
    spdlog::info("session {}: {} warm connections already kept, one more from {} closed", st.peer,
                 st.warm.size(), ev.peer);
    self->send(st.net, close_connection{ev.id});
    return;
  }
  st.warm.push_back({ev.id, self->clock().now() + st.config.warm_idle});
  self->send(st.net, route_connection{ev.id, caf::actor_cast<caf::actor>(self)});
  if (!st.warm_sweep_pending) schedule_warm_sweep(self);
}

void on_reverse_v2(session_ptr self, reverse_arrived& ev) {
  auto& st = self->state;
  v2::reverse_line parsed;
  if (ev.first_line.empty() || v2::parse_reverse_line(ev.first_line, parsed))
    return refuse_reverse(self, ev, ev.first_line.empty() ? "no accept line" : "malformed first line");
  if (auto* ready = std::get_if<v2::ready>(&parsed)) return on_ready(self, ev, *ready);
  const auto& accepted = std::get<v2::accept>(parsed);
  // Every waiting id is compared, each in constant time: neither the time
  // taken nor where a guess differs tells an attacker anything about an id.
  auto found = st.waiting.end();
  for (auto it = st.waiting.begin(); it != st.waiting.end(); ++it)
    if (constant_time_equal(it->id, accepted.id)) found = it;
  if (found == st.waiting.end()) return refuse_reverse(self, ev, "unknown, used or expired id");
  auto w = *found;
  st.waiting.erase(found);  // an id is good for one reverse connection only
  match(self, std::move(w), ev.id);
}

// Joins a client with the newest warm connection: the server learns who it is
// from the first line on that connection, with no control round trip. The
// newest is taken so that, when demand falls, the oldest are left to expire.
void join_warm(session_ptr self, const client_arrived& ev,
               control_session_state::steady_time arrived) {
  auto& st = self->state;
  const auto reverse = st.warm.back().id;
  st.warm.pop_back();
  auto preamble = v2::format_line(v2::paired{random_id(), ev.peer});
  preamble += proxy_preamble(self, ev.peer, ev.local);
  st.paired.emplace(ev.id, control_session_state::pairing{reverse, ev.peer, ev.local, true, arrived});
  spdlog::debug("session {}: client {} joined with a warm connection ({} left)", st.peer,
                format_host_port(ev.peer), st.warm.size());
  self->send(st.net, join_pair{ev.id, reverse, caf::actor_cast<caf::actor>(self),
                               std::move(preamble)});
}

// `arrived`: when the client was first announced (a client announced again
// keeps its first arrival, for its pair's duration).
void on_client(session_ptr self, client_arrived& ev,
               control_session_state::steady_time arrived = std::chrono::steady_clock::now()) {
  auto& st = self->state;
  if (st.draining) {
    // It connected just before the public port was closed: refused at once.
    spdlog::debug("session {}: client {} closed: the relay is draining", st.peer,
                  format_host_port(ev.peer));
    self->send(st.net, close_connection{ev.id});
    return;
  }
  if (!st.warm.empty()) return join_warm(self, ev, arrived);
  if (st.waiting.size() >= st.config.max_pending) {
    spdlog::warn("session {}: {} clients already waiting, client {} closed", st.peer,
                 st.waiting.size(), format_host_port(ev.peer));
    self->send(st.net, close_connection{ev.id});
    count(self, pairing_outcome::over_bound);
    return;
  }
  // Linked: a session that is killed takes its broker along. Spawned with
  // the first client: an idle session costs no second actor.
  if (!st.broker)
    st.broker = self->spawn<caf::linked>(pair_broker, st.net, caf::actor_cast<caf::actor>(self),
                                         st.config.pending_timeout);
  self->send(st.broker, client_waits{ev.id});
  control_session_state::waiting_client w{ev.id, {}, ev.peer, ev.local, arrived};
  if (st.protocol == 2) w.id = random_id();
  st.waiting.push_back(w);
  spdlog::debug("session {}: client {} waiting ({} waiting)", st.peer, format_host_port(ev.peer),
                st.waiting.size());
  if (st.protocol == 1)
    send_v1(self, v1::new_connection{});
  else
    send_v2(self, v2::new_connection{w.id, ev.peer});
}

// v1 defines no server → relay line; the original dropped the session, we
// only note it. Credit flow control still bounds how fast they are taken.
void ignore_v1_line(session_ptr self, const control_line& ev) {
  spdlog::debug("session {}: ignoring line from v1 server: {:.80}", self->state.peer, ev.line);
  took_line(self);
}

// A side of a pair left just before net could join it. A client whose warm
// connection its server closed in that very instant is announced again (the
// next warm connection, or new_connection): it must not notice. A client
// whose reverse connection, opened for it, was closed is closed too: that is
// how a server turns a client away (announcing it again would loop). A
// reverse connection that is still there serves the next waiting client in
// v1; in v2 it was for that client.
void on_join_failed(session_ptr self, const join_failed& ev) {
  auto& st = self->state;
  auto it = st.paired.find(ev.client);
  if (it == st.paired.end()) return;
  const auto pairing = it->second;
  st.paired.erase(it);
  if (!ev.reverse_left) {
    if (st.protocol == 1)
      match_v1(self, ev.reverse);
    else
      self->send(st.net, close_connection{ev.reverse});
  }
  if (ev.client_left) return count(self, pairing_outcome::client_left);
  if (!pairing.warm) {
    self->send(st.net, close_connection{ev.client});
    count(self, pairing_outcome::server_left);
    return;
  }
  spdlog::debug("session {}: the warm connection for client {} had left; announced again",
                st.peer, format_host_port(pairing.peer));
  client_arrived again{ev.client, pairing.peer, pairing.local};
  on_client(self, again, pairing.arrived);
}

// -- draining --------------------------------------------------------------------------

drain_progress drain_report(session_ptr self) {
  const auto& st = self->state;
  return {static_cast<std::uint8_t>(st.protocol), static_cast<std::uint32_t>(st.paired.size()),
          static_cast<std::uint32_t>(st.waiting.size()), st.pairs_finished_draining};
}

// What a draining relay tells a v2 server: go to `to` (another node of the
// cluster), or without one, that it drains.
std::string drain_line(const host_port& to) {
  if (!to.host.empty()) return v2::format_line(v2::relay_message{v2::redirect{to}});
  return v2::format_line(
    v2::relay_message{v2::error{v2::error_code::draining, std::string(wire::draining_text)}});
}

caf::error drain_refusal(const host_port& to) {
  if (!to.host.empty()) return make_error(relay_errc::redirected, format_host_port(to));
  return make_error(relay_errc::draining, std::string(wire::draining_text));
}

// A draining session ends once nothing of it is left to join or relay.
void end_if_drained(session_ptr self) {
  auto& st = self->state;
  if (!st.draining || !st.waiting.empty() || !st.paired.empty()) return;
  end_session(self, "drained");
}

// Something of a draining session is done: the pool_manager keeps count.
void report_drain(session_ptr self) {
  auto& st = self->state;
  if (!st.draining) return;
  self->send(st.pool, drain_report(self));
  end_if_drained(self);
}

// drain_atom while serving.
drain_progress start_draining(session_ptr self, const host_port& to) {
  auto& st = self->state;
  if (st.draining) return drain_report(self);
  st.draining = true;
  const auto report = drain_report(self);
  for (const auto& w : st.warm) self->send(st.net, close_connection{w.id});
  st.warm.clear();
  logging::event(spdlog::level::debug, "session_draining",
                 session_fields(st, st.peer)
                   .add("pairs", report.open_pairs)
                   .add("waiting", report.waiting_clients),
                 "session {} draining (v{}): {} pair(s) relaying, {} client(s) waiting{}", st.peer,
                 st.protocol, report.open_pairs, report.waiting_clients,
                 st.protocol == 2 ? (to.host.empty() ? "; told error draining"
                                                     : "; sent to " + format_host_port(to))
                                  : "; its control connection stays open until they are done");
  if (st.protocol == 2) {
    if (st.waiting.empty() && st.paired.empty()) {
      end_session(self, "drained", drain_line(to));
      return report;
    }
    // The server reconnects elsewhere or after the restart; its pairs run on.
    self->send(st.net, send_and_close{st.control, drain_line(to)});
    st.control_closed = true;
  }
  end_if_drained(self);
  return report;
}

// Every pair's end: at info as the access log (--access-log), else at debug.
void log_pair_end(session_ptr self, const pump_finished& ev,
                  const control_session_state::pairing* pairing) {
  auto& st = self->state;
  const auto level = st.config.access_log ? spdlog::level::info : spdlog::level::debug;
  if (!spdlog::default_logger_raw()->should_log(level)) return;  // fields cost allocations
  if (!st.config.access_log) {
    spdlog::debug("session {}: pair finished, {} bytes up, {} bytes down", st.peer,
                  ev.client_to_server_bytes, ev.server_to_client_bytes);
    return;
  }
  const std::string client = pairing ? format_host_port(pairing->peer) : std::string("unknown");
  const std::uint64_t ms =
    pairing ? static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::steady_clock::now() - pairing->arrived)
                                           .count())
            : 0;
  const auto how = to_string(ev.end);
  logging::event(level, "pair_ended",
                 session_fields(st, client)
                   .bytes_in(ev.client_to_server_bytes)
                   .bytes_out(ev.server_to_client_bytes)
                   .duration_ms(ms)
                   .reason(how),
                 "access: session {} ({}{}) client {} public port {}: {} bytes in, {} bytes out, "
                 "{} ms, {}",
                 st.session_id, st.peer, st.reservation.empty() ? "" : ", name " + st.reservation,
                 client, st.pair.public_port, ev.client_to_server_bytes,
                 ev.server_to_client_bytes, ms, how);
}

// The session as the admin endpoint shows it; answered in every phase (a
// status request must never wait for a slow hello or authentication).
session_report status_of(session_ptr self) {
  auto& st = self->state;
  session_report r;
  r.id = st.control.value;
  r.name = st.has_pair ? st.reservation : std::string{};
  r.protocol = static_cast<std::uint8_t>(st.protocol);
  r.identity = st.identity;
  r.server = st.peer;
  if (st.has_pair) {
    r.public_port = st.pair.public_port;
    r.reverse_port = st.pair.reverse_port;
  }
  r.connected_unix_ms = st.connected_unix_ms;
  r.open_pairs = static_cast<std::uint32_t>(st.paired.size());
  r.waiting_clients = static_cast<std::uint32_t>(st.waiting.size());
  r.warm_connections = static_cast<std::uint32_t>(st.warm.size());
  r.activity = st.activity;
  return r;
}

caf::message_handler status_handler(session_ptr self) {
  return {[self](status_atom) { return status_of(self); }};
}

caf::result<caf::message> drop_unexpected(caf::scheduled_actor* self, caf::message_view& msg) {
  spdlog::error("{}: unexpected message dropped: {}", self->name(), to_string(msg.content()));
  return caf::none;
}

// What both protocols do while serving.
caf::message_handler serving_common(session_ptr self) {
  return {
    [self](connection_closed& ev) {
      auto& st = self->state;
      if (ev.id == st.control) {
        // A draining v2 session was told to go; its pairs run on without it.
        if (st.draining && st.protocol == 2) return;
        return end_session(self, to_string(ev.reason));
      }
      // A warm connection whose server closed it.
      auto it = std::find_if(st.warm.begin(), st.warm.end(),
                             [&](const auto& w) { return w.id == ev.id; });
      if (it != st.warm.end()) st.warm.erase(it);
    },
    [self](client_arrived& ev) { on_client(self, ev); },
    [self](join_failed& ev) {
      on_join_failed(self, ev);
      report_drain(self);
    },
    [self](drain_atom, const host_port& to) -> drain_progress { return start_draining(self, to); },
    // The cluster gave this session's name to another node (DESIGN.md, Cluster).
    [self](redirected_atom, const host_port& to) {
      end_session(self, "its name is served by another node",
                  v2::format_line(v2::relay_message{v2::redirect{to}}));
    },
    [](hello_timeout_atom) {
      // The hello came in time; this is the timer that was set for it.
    },
    [self](pair_joined& ev) {
      auto& st = self->state;
      auto it = st.paired.find(ev.client);
      if (it == st.paired.end()) return;
      count(self, it->second.warm ? pairing_outcome::matched_warm : pairing_outcome::matched);
      st.activity.pairing_latency.observe(pairing_latency_bounds,
                                          static_cast<double>(ev.latency_us) / 1e6);
    },
    // The broker says a waiting client left or timed out.
    [self](pairing_end& ev) {
      auto& waiting = self->state.waiting;
      auto it = std::find_if(waiting.begin(), waiting.end(),
                             [&](const auto& w) { return w.client == ev.client; });
      if (it != waiting.end()) waiting.erase(it);
      count(self, ev.outcome);
      report_drain(self);
    },
    [self](match_missed& ev) { on_match_missed(self, ev); },
    [self](status_atom) { return status_of(self); },
    [self](pump_finished& ev) {
      auto& st = self->state;
      st.activity.bytes_in += ev.client_to_server_bytes;
      st.activity.bytes_out += ev.server_to_client_bytes;
      auto it = st.paired.find(ev.client);
      log_pair_end(self, ev, it != st.paired.end() ? &it->second : nullptr);
      if (it != st.paired.end()) {
        if (ev.joined) {
          ++st.clients_served;
          if (it->second.warm) ++st.warm_served;
        }
        st.paired.erase(it);
        if (st.draining) ++st.pairs_finished_draining;
      }
      report_drain(self);
    },
  };
}

caf::behavior serving_v1(session_ptr self) {
  return serving_common(self).or_else(caf::message_handler{
    [self](control_line& ev) { ignore_v1_line(self, ev); },
    [self](reverse_arrived& ev) { match_v1(self, ev.id); },
  });
}

caf::behavior serving_v2(session_ptr self) {
  return serving_common(self).or_else(caf::message_handler{
    [self](control_line& ev) {
      auto& st = self->state;
      if (st.control_closed) return;  // `error draining` said it all
      st.last_heard = self->clock().now();
      v2::server_message msg;
      if (auto ec = v2::parse_server_line(ev.line, msg)) {
        refuse_bad_request(self, ec.message() + ": " + ev.line.substr(0, 80));
        return;
      }
      if (std::holds_alternative<v2::hello>(msg))
        return refuse_bad_request(self, "hello was already accepted");
      if (std::holds_alternative<v2::ping>(msg)) send_v2(self, v2::pong{});
      took_line(self);
    },
    [self](reverse_arrived& ev) { on_reverse_v2(self, ev); },
    [self](warm_expire_atom) { sweep_warm(self); },
    // A reload removed this session's token (the pool_manager decided): the
    // server is told, as for a refused hello, and everything of ours closes.
    [self](revoke_atom) {
      refuse_v2(self, make_error(relay_errc::auth_failed, std::string(wire::token_revoked)));
    },
    [self](heartbeat_atom) {
      auto& st = self->state;
      if (st.control_closed) return;  // no control connection to watch any more
      const auto silent = self->clock().now() - st.last_heard;
      if (silent > st.config.heartbeat * defaults::heartbeat_misses) {
        end_session(self, "heartbeat lost");
        return;
      }
      send_v2(self, v2::ping{});
      self->delayed_send(self, st.config.heartbeat, heartbeat_atom::value);
    },
  });
}

void start_serving(session_ptr self, const pair_assignment& assigned) {
  auto& st = self->state;
  st.pair = assigned;
  st.has_pair = true;
  logging::event(spdlog::level::info, "session_started",
                 logging::fields()
                   .session(st.session_id)
                   .name(st.reservation)
                   .peer(st.peer)
                   .port(assigned.public_port)
                   .add("protocol", st.protocol)
                   .add("reverse_port", assigned.reverse_port),
                 "session {} started (v{}{}): public port {}, reverse port {}", st.peer,
                 st.protocol, st.reservation.empty() ? std::string{} : ", name " + st.reservation,
                 assigned.public_port, assigned.reverse_port);
  if (st.protocol == 2) {
    const auto secret = random_id();
    st.warm_signer.set_secret(secret);
    send_v2(self, v2::welcome{to_hex(secret), st.config.warm_max, st.config.proxy_protocol});
  }
  send_v1(self, v1::public_listener{{st.config.myhost, assigned.public_port}});
  send_v1(self, v1::reverse_listener{{st.config.myhost, assigned.reverse_port}});
  // From now on every expected message has a handler; anything else is a bug
  // to report, not to keep.
  self->set_default_handler(drop_unexpected);
  if (st.protocol == 1) {
    self->become(serving_v1(self));
    return;
  }
  st.last_heard = self->clock().now();
  self->delayed_send(self, st.config.heartbeat, heartbeat_atom::value);
  self->become(serving_v2(self));
}

void on_hello(session_ptr self, v2::hello& hello) {
  auto& st = self->state;
  st.reservation = hello.name;
  credentials c{st.peer_address.host, hello.token,  st.client_certificate,
                st.certificate_fingerprint,  hello.name,  hello.port};
  self->request(st.auth, caf::infinite, std::move(c))
    .then(
      [self, hello](grant& g) {
        auto& st = self->state;
        if (g.by_token)
          st.identity = "token:" + g.owner.substr(0, 16);
        self->request(st.pool, caf::infinite,
                      pair_request{hello.name, hello.port, g.owner, g.by_token})
          .then([self](pair_assignment& assigned) { start_serving(self, assigned); },
                [self](caf::error& err) { refuse_v2(self, err); });
      },
      [self](caf::error& err) { refuse_v2(self, err); });
}

// v2 until the hello: nothing but the hello (or the connection's end) counts.
caf::behavior awaiting_hello(session_ptr self) {
  return caf::message_handler{
    [self](control_line& ev) {
      v2::server_message msg;
      auto ec = v2::parse_server_line(ev.line, msg);
      if (!ec && std::holds_alternative<v2::hello>(msg)) {
        // Until the welcome, the server has nothing more to say: a line now
        // ends the session (it would otherwise wait, and cost memory, for as
        // long as a failing authentication is slowed down).
        self->become(caf::message_handler{
          [self](connection_closed& ev) {
            if (ev.id == self->state.control) end_session(self, to_string(ev.reason));
          },
          [self](control_line&) { refuse_bad_request(self, "a line before the welcome"); },
          [self](drain_atom, const host_port& to) -> drain_progress {
            const auto report = drain_report(self);
            refuse_v2(self, drain_refusal(to));
            return report;
          },
        }.or_else(status_handler(self)));
        on_hello(self, std::get<v2::hello>(msg));
        took_line(self);
        return;
      }
      if (ec == protocol_errc::bad_version) {
        refuse_v2(self, make_error(relay_errc::unsupported_version, "this relay speaks protocol 2"));
        return;
      }
      refuse_bad_request(self, ec ? "hello: " + ec.message() : "expected hello first");
    },
    [self](connection_closed& ev) {
      if (ev.id == self->state.control) end_session(self, to_string(ev.reason));
    },
    [self](drain_atom, const host_port& to) -> drain_progress {
      const auto report = drain_report(self);
      refuse_v2(self, drain_refusal(to));
      return report;
    },
    [self](hello_timeout_atom) {
      spdlog::info("session {}: no hello within {} ms, closed", self->state.peer,
                   self->state.config.hello_timeout.count());
      self->send(self->state.net, close_connection{self->state.control});
      report_end(self);
      self->quit();
    },
  }.or_else(status_handler(self));
}

}  // namespace

caf::behavior control_session(caf::stateful_actor<control_session_state>* self, caf::actor pool,
                              caf::actor net, caf::actor auth, control_session_config config,
                              control_connected connection) {
  auto& st = self->state;
  st.pool = std::move(pool);
  st.net = std::move(net);
  st.auth = std::move(auth);
  st.config = std::move(config);
  st.control = connection.id;
  st.session_id = connection.id.value;
  st.peer_address = connection.peer;
  st.peer = format_host_port(connection.peer);
  st.protocol = connection.protocol == 2 ? 2 : 1;
  st.client_certificate = connection.client_certificate;
  st.certificate_fingerprint = std::move(connection.certificate_fingerprint);
  st.identity = st.client_certificate ? "certificate:" + st.certificate_fingerprint : "anonymous";
  st.connected_at = self->clock().now();
  st.connected_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();

  // Arrivals before the serving phase wait for it.
  self->set_default_handler(caf::skip);
  // Told to stop (relay shutdown, or a new session took over our name):
  // close everything first. Brokers ending normally also send exits; those
  // mean nothing here.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    if (msg.reason == caf::exit_reason::normal) return;
    end_session(self, "stopped by the relay");
  });

  if (st.protocol == 1 && !st.client_certificate && st.config.v1_requires_certificate) {
    // A v1 server without a certificate gets no line at all, as with the original.
    spdlog::info("control connection from {} refused: protocol v1 without a client certificate",
                 st.peer);
    self->send(st.net, close_connection{st.control});
    ++st.activity.auth_failures;
    report_end(self);
    self->quit();
    return {};
  }
  self->send(st.net, route_connection{st.control, caf::actor_cast<caf::actor>(self)});
  if (st.protocol == 2) {
    self->delayed_send(self, st.config.hello_timeout, hello_timeout_atom::value);
    return awaiting_hello(self);
  }
  self->request(st.pool, caf::infinite, acquire_atom::value)
    .then([self](pair_assignment& assigned) { start_serving(self, assigned); },
          [self](caf::error& err) {
            auto& st = self->state;
            if (is(err, relay_errc::pool_exhausted)) {
              spdlog::warn("session {} refused: no_available_listeners", st.peer);
              self->send(st.net, send_and_close{st.control,
                                                v1::format_line(v1::no_available_listeners{})});
            } else if (is(err, relay_errc::draining)) {
              // v1 has no line for it: the server sees its connection close.
              spdlog::info("session {} refused: the relay is draining", st.peer);
              self->send(st.net, close_connection{st.control});
            } else {
              spdlog::error("session {}: pool manager failed: {}", st.peer,
                            self->system().render(err));
              self->send(st.net, close_connection{st.control});
            }
            report_end(self);
            self->quit();
          });
  return caf::message_handler{
    [self](connection_closed& ev) {
      if (ev.id == self->state.control) end_session(self, to_string(ev.reason));
    },
    [self](control_line& ev) { ignore_v1_line(self, ev); },
    [self](drain_atom, const host_port&) -> drain_progress {
      const auto report = drain_report(self);
      end_session(self, "the relay is draining");
      return report;
    },
  }.or_else(status_handler(self));
}

}  // namespace tlsrelay
