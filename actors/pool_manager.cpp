#include "actors/pool_manager.hpp"

#include <algorithm>
#include <memory>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/messages.hpp"
#include "logging/structured_log.hpp"
#include "protocol/wire.hpp"
#include "protocol/v2.hpp"

namespace tlsrelay {
namespace {

using pool_ptr = caf::stateful_actor<pool_manager_state>*;

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

void take(pool_ptr self, pair_index pair) {
  auto& st = self->state;
  st.free_pairs.erase(st.free_position[pair]);
  st.is_free[pair] = false;
}

void give_back(pool_ptr self, pair_index pair) {
  auto& st = self->state;
  st.free_position[pair] = st.free_pairs.insert(st.free_pairs.end(), pair);
  st.is_free[pair] = true;
  spdlog::debug("pair {} (public port {}) returned to the pool, {} free", pair,
                st.config.layout.public_port(pair), st.free_pairs.size());
}

void persist(pool_ptr self) {
  auto& st = self->state;
  // Draining, a session's end is the relay's doing: its reservation stays
  // written as held, so that after the restart it lasts one TTL from then.
  if (!st.config.persist || st.drain.active) return;
  std::vector<reservation_record> records;
  for (const auto& [name, r] : st.reservations)
    // A held reservation is written without an expiry: after a restart it
    // lasts one TTL from then, which is when its server reconnects.
    records.push_back({name, st.config.layout.public_port(r.pair), r.holder ? 0 : r.expires_unix_ms,
                       r.owner});
  st.config.persist(format_state(records));
}

// Tells the cluster_member every reservation of ours (held or lingering).
void announce_claims(pool_ptr self) {
  auto& st = self->state;
  if (!st.config.cluster) return;
  local_claims out;
  out.claims.reserve(st.reservations.size());
  for (const auto& [name, r] : st.reservations)
    out.claims.push_back({name, r.owner, st.config.layout.public_port(r.pair), r.claimed_unix_ms,
                          static_cast<bool>(r.holder), r.holder ? 0 : r.expires_unix_ms});
  self->send(st.config.cluster, std::move(out));
}

// Reservations changed: the state file, and the cluster's view of our names.
void claims_changed(pool_ptr self) {
  persist(self);
  announce_claims(self);
}

// Our free pairs and sessions, for the cluster's placements (when they change).
void report_load(pool_ptr self) {
  auto& st = self->state;
  if (!st.config.cluster) return;
  const local_load now{static_cast<std::uint32_t>(st.free_pairs.size()),
                       static_cast<std::uint32_t>(st.holdings.size())};
  if (now.free_pairs == st.load_reported.free_pairs && now.sessions == st.load_reported.sessions)
    return;
  st.load_reported = now;
  self->send(st.config.cluster, now);
}

void schedule_expiry(pool_ptr self, const std::string& name, pool_manager_state::reservation& r) {
  const auto left = std::max<std::int64_t>(0, r.expires_unix_ms - now_unix_ms());
  self->delayed_send(self, std::chrono::milliseconds(left), expire_atom::value, name,
                     r.generation);
}

void uncount(pool_ptr self, const pool_manager_state::holding& held) {
  auto& st = self->state;
  if (held.counted && --st.sessions_of_owner[held.owner] == 0) st.sessions_of_owner.erase(held.owner);
}

pair_assignment assign(pool_ptr self, const caf::actor& session, pair_index pair,
                       reverse_framing framing, std::string name, std::string owner,
                       bool counted) {
  auto& st = self->state;
  if (counted) ++st.sessions_of_owner[owner];
  st.holdings[session.address()] = {pair, std::move(name), std::move(owner), counted};
  // Routed before the reply, so no client of this pair is ever unannounced.
  self->send(st.net, route_pair{pair, session, framing});
  report_load(self);
  return {pair, st.config.layout.public_port(pair), st.config.layout.reverse_port(pair)};
}

// The pair for a v2 request without a name reservation to reclaim.
caf::expected<pair_index> pick_pair(pool_ptr self, std::uint16_t public_port) {
  auto& st = self->state;
  const auto& layout = st.config.layout;
  if (public_port != 0) {
    const auto first = layout.public_port(0);
    if (public_port < first || public_port > layout.public_port(layout.pair_count() - 1))
      return make_error(relay_errc::port_unavailable,
                        "port " + std::to_string(public_port) + " is not a public port of this relay");
    const pair_index pair = public_port - first;
    if (!st.is_free[pair])
      return make_error(relay_errc::port_unavailable,
                        "port " + std::to_string(public_port) + " is in use or reserved");
    return pair;
  }
  if (st.free_pairs.empty()) return make_error(relay_errc::pool_exhausted);
  return st.free_pairs.front();
}

// A v2 session's pair on this node: by name, by port, or the next in the queue.
caf::expected<pair_assignment> local_grant(pool_ptr self, const caf::actor& session,
                                           const pair_request& req) {
  auto& st = self->state;
  if (st.drain.active) return make_error(relay_errc::draining, std::string(wire::draining_text));
  if (req.owner.empty() && !req.name.empty())
    return make_error(relay_errc::name_unavailable,
                      "name " + req.name +
                        ": a name needs an identity (a token or a client certificate)");
  const bool counted = req.by_token && !req.owner.empty();
  if (counted && st.revoked_owners.count(req.owner))
    return make_error(relay_errc::auth_failed, std::string(wire::token_revoked));
  if (counted && st.config.max_sessions_per_owner != 0) {
    auto n = st.sessions_of_owner.find(req.owner);
    if (n != st.sessions_of_owner.end() && n->second >= st.config.max_sessions_per_owner)
      return make_error(relay_errc::too_many_sessions,
                        "this token already has " + std::to_string(n->second) + " sessions");
  }
  auto res = st.reservations.find(req.name);
  if (!req.name.empty() && res != st.reservations.end()) {
    auto& r = res->second;
    // A reservation without an owner (from a state file of a relay that
    // did not record one) goes to the first identity that claims it.
    if (r.owner.empty()) r.owner = req.owner;
    if (r.owner != req.owner)
      return make_error(relay_errc::name_unavailable,
                        "name " + req.name + " belongs to another identity");
    const auto port = st.config.layout.public_port(r.pair);
    if (req.public_port != 0 && req.public_port != port)
      return make_error(relay_errc::port_unavailable,
                        "name " + req.name + " holds port " + std::to_string(port));
    if (r.holder) {
      // The same owner is back while its old session lingers (its server
      // reconnected before the relay noticed the loss): the newcomer wins.
      auto old = st.holdings.find(r.holder);
      if (old != st.holdings.end()) {
        uncount(self, old->second);
        st.holdings.erase(old);
      }
      auto old_session = st.sessions.find(r.holder);
      if (old_session != st.sessions.end()) {
        spdlog::info("name {}: a new session takes over from the old one", req.name);
        self->send_exit(old_session->second, caf::exit_reason::user_shutdown);
      }
    }
    r.holder = session.address();
    ++r.generation;  // cancels a pending expiry
    claims_changed(self);
    return assign(self, session, r.pair, reverse_framing::accept_line, req.name, req.owner,
                  counted);
  }
  auto pair = pick_pair(self, req.public_port);
  if (!pair) {
    if (is(pair.error(), relay_errc::pool_exhausted))
      spdlog::warn("pool exhausted: all {} pairs are in use", st.config.layout.pair_count());
    return caf::expected<pair_assignment>{std::move(pair.error())};
  }
  take(self, *pair);
  if (!req.name.empty()) {
    st.reservations[req.name] = {*pair, req.owner, session.address(), 0, 0, now_unix_ms()};
    claims_changed(self);
  }
  return assign(self, session, *pair, reverse_framing::accept_line, req.name, req.owner,
                counted);
}

void restore(pool_ptr self) {
  auto& st = self->state;
  const auto& layout = st.config.layout;
  const auto now = now_unix_ms();
  for (auto& rec : st.config.restored) {
    const auto first = layout.public_port(0);
    if (rec.public_port < first || rec.public_port > layout.public_port(layout.pair_count() - 1)) {
      spdlog::warn("state: reservation {} for port {} dropped: not a public port of this pool",
                   rec.name, rec.public_port);
      continue;
    }
    const pair_index pair = rec.public_port - first;
    const auto expires = rec.expires_unix_ms == 0
                           ? now + st.config.reservation_ttl.count()
                           : rec.expires_unix_ms;
    if (expires <= now || !st.is_free[pair]) continue;
    take(self, pair);
    auto& r = st.reservations[rec.name];
    r = {pair, rec.owner, {}, expires, 0, now};
    schedule_expiry(self, rec.name, r);
    spdlog::info("state: name {} keeps public port {} for {} s", rec.name, rec.public_port,
                 (expires - now) / 1000);
  }
  st.config.restored.clear();
}

// Ends the sessions of owners no longer in the token table (each is told
// `error auth_failed token revoked` by its control_session); returns how many.
std::uint64_t revoke(pool_ptr self, const token_owners& owners) {
  auto& st = self->state;
  const std::unordered_set<std::string> current(owners.current.begin(), owners.current.end());
  for (const auto& owner : owners.removed) st.revoked_owners.insert(owner);
  for (const auto& owner : owners.current) st.revoked_owners.erase(owner);
  std::uint64_t ended = 0;
  for (const auto& [addr, held] : st.holdings) {
    // Only sessions that came with a token are counted; certificate and
    // anonymous sessions do not depend on the token table.
    if (!held.counted || current.count(held.owner)) continue;
    auto session = st.sessions.find(addr);
    if (session == st.sessions.end()) continue;
    self->send(session->second, revoke_atom::value);
    ++ended;
  }
  if (ended)
    spdlog::info("token table replaced: {} session(s) whose token was removed are being ended",
                 ended);
  return ended;
}

// Answers a status request: asks every live session, each under the
// deadline, and adds what ended sessions reported. A session that ends while
// asked is counted once: its answer is dropped (it is no longer live when the
// answers are put together) and its session_ended totals are kept instead.
// A session that does not answer in time makes the whole answer an error:
// the admin endpoint says 503 rather than show a relay that looks idle.
void answer_status(pool_ptr self, caf::response_promise promise) {
  struct collection {
    caf::response_promise promise;
    std::unordered_map<caf::actor_addr, session_report> answers;
    cluster_report cluster;
    std::size_t outstanding = 0;
    bool failed = false;
  };
  auto c = std::make_shared<collection>();
  c->promise = std::move(promise);
  const auto finish = [self, c] {
    auto& st = self->state;
    if (c->failed) {
      c->promise.deliver(caf::make_error(caf::sec::request_timeout));
      return;
    }
    relay_report report;
    report.pairs = st.config.layout.pair_count();
    report.pairs_free = static_cast<std::uint32_t>(st.free_pairs.size());
    for (const auto& [name, r] : st.reservations)
      if (!r.holder) ++report.pairs_reserved;
    for (auto& [addr, session] : c->answers)
      if (st.sessions.count(addr)) report.sessions.push_back(std::move(session));
    std::sort(report.sessions.begin(), report.sessions.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
    report.ended = st.ended;
    report.session_duration = st.session_duration;
    report.cluster = std::move(c->cluster);
    c->promise.deliver(std::move(report));
  };
  auto& st = self->state;
  c->outstanding = st.sessions.size() + (st.config.cluster ? 1 : 0);
  if (st.config.cluster)
    self->request(st.config.cluster, defaults::admin_session_answer_timeout, status_atom::value)
      .then(
        [c, finish](cluster_report& r) {
          c->cluster = std::move(r);
          if (--c->outstanding == 0) finish();
        },
        [self, c, finish](caf::error& err) {
          spdlog::warn("status: the cluster member did not answer: {}", self->system().render(err));
          c->failed = true;
          if (--c->outstanding == 0) finish();
        });
  if (c->outstanding == 0) return finish();
  for (auto& [addr, session] : st.sessions) {
    self->request(session, defaults::admin_session_answer_timeout, status_atom::value)
      .then(
        [c, finish, addr = addr](session_report& r) {
          c->answers.emplace(addr, std::move(r));
          if (--c->outstanding == 0) finish();
        },
        [self, c, finish, addr = addr](caf::error& err) {
          // A session that ended meanwhile reported through session_ended.
          if (self->state.sessions.count(addr) && err != caf::sec::request_receiver_down) {
            spdlog::warn("status: a control session did not answer: {}",
                         self->system().render(err));
            c->failed = true;
          }
          if (--c->outstanding == 0) finish();
        });
  }
}

// -- draining ------------------------------------------------------------------------

// How often a long drain says how far it is.
constexpr auto drain_progress_interval = std::chrono::seconds(60);
// A session answers drain_atom at once; this only bounds a wait for a wedged one.
constexpr auto drain_report_timeout = std::chrono::seconds(1);

// What the sessions still draining have now, by their last reports.
struct drain_totals {
  std::size_t sessions = 0;
  std::uint64_t pairs = 0, waiting = 0, finished = 0;
};

drain_totals drain_tally(pool_ptr self) {
  auto& d = self->state.drain;
  drain_totals t;
  t.sessions = self->state.sessions.size();
  t.finished = d.finished_by_ended;
  for (const auto& [addr, p] : d.sessions) {
    t.pairs += p.open_pairs;
    t.waiting += p.waiting_clients;
    t.finished += p.pairs_finished;
  }
  return t;
}

std::uint64_t drain_elapsed_ms(pool_ptr self) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::steady_clock::now() - self->state.drain.started)
                                      .count());
}

// Every session has answered drain_atom: what the drain has to wait for.
void log_drain_tally(pool_ptr self) {
  auto& d = self->state.drain;
  logging::event(spdlog::level::info, "drain_tally",
                 logging::fields()
                   .add("pairs", d.pairs_at_start)
                   .add("waiting", d.waiting_at_start),
                 "draining: at the start {} pair(s) were relaying and {} client(s) waiting, in "
                 "{} v1 and {} v2 session(s)",
                 d.pairs_at_start, d.waiting_at_start, d.v1_at_start, d.v2_at_start);
}

// The drain is over: every session has ended, or the time is up (then the
// pairs still open are cut when the relay stops).
void end_drain(pool_ptr self, bool deadline) {
  auto& st = self->state;
  auto& d = st.drain;
  if (d.over) return;
  d.over = true;
  const auto t = drain_tally(self);
  const auto ms = drain_elapsed_ms(self);
  if (deadline)
    logging::event(spdlog::level::warn, "drain_ended",
                   logging::fields()
                     .reason("deadline")
                     .duration_ms(ms)
                     .add("pairs_finished", t.finished)
                     .add("pairs_cut", t.pairs)
                     .add("waiting_closed", t.waiting),
                   "drain timeout ({} s) reached: {} pair(s) finished during the drain, {} still "
                   "relaying are cut, {} waiting client(s) closed",
                   d.timeout.count() / 1000.0, t.finished, t.pairs, t.waiting);
  else
    logging::event(spdlog::level::info, "drain_ended",
                   logging::fields()
                     .reason("complete")
                     .duration_ms(ms)
                     .add("pairs_finished", t.finished)
                     .add("pairs_cut", std::uint64_t{0}),
                   "drain complete after {} ms: every session ended, {} pair(s) finished "
                   "during the drain, none cut",
                   ms, t.finished);
  if (st.config.drained) st.config.drained();
}

// Tells every session to drain (v2 servers are sent to `redirect_to` if it
// has a host, else told `error draining`).
void drain_sessions(pool_ptr self) {
  auto& st = self->state;
  auto& d = st.drain;
  d.reports_due = st.sessions.size();
  if (st.sessions.empty()) return end_drain(self, false);
  const auto counted = [self] {
    auto& d = self->state.drain;
    if (d.reports_due > 0 && --d.reports_due == 0) log_drain_tally(self);
  };
  for (auto& [addr, session] : st.sessions) {
    self->request(session, drain_report_timeout, drain_atom::value, d.redirect_to)
      .then(
        [self, counted, addr = addr](drain_progress& p) {
          auto& st = self->state;
          auto& d = st.drain;
          (p.protocol == 2 ? d.v2_at_start : d.v1_at_start) += 1;
          d.pairs_at_start += p.open_pairs;
          d.waiting_at_start += p.waiting_clients;
          if (p.protocol == 2 && !d.redirect_to.host.empty() && st.config.cluster)
            self->send(st.config.cluster, redirected_atom::value, std::string(redirect_draining),
                       std::uint64_t{1});
          // A session that has ended since must not count again.
          if (st.sessions.count(addr)) d.sessions[addr] = p;
          counted();
        },
        [counted](caf::error&) { counted(); });
  }
}

void start_drain(pool_ptr self, std::chrono::milliseconds timeout) {
  auto& st = self->state;
  auto& d = st.drain;
  if (d.active) return;
  d.active = true;
  d.started = std::chrono::steady_clock::now();
  d.timeout = timeout;
  self->send(st.net, stop_accepting{});
  logging::event(spdlog::level::info, "drain_started",
                 logging::fields()
                   .add("sessions", st.sessions.size())
                   .add("timeout_ms", static_cast<std::uint64_t>(timeout.count())),
                 "draining: no new session or client (net closes the control and public "
                 "ports); {} session(s) told; joined pairs may finish for up to {} s",
                 st.sessions.size(), timeout.count() / 1000.0);
  self->delayed_send(self, timeout, drain_deadline_atom::value);
  self->delayed_send(self, drain_progress_interval, drain_tick_atom::value);
  if (!st.config.cluster) return drain_sessions(self);
  // Peers first (no server is sent here from now on), then our v2 servers
  // go where the cluster says.
  self->request(st.config.cluster, drain_report_timeout, drain_atom::value)
    .then(
      [self](host_port& to) {
        self->state.drain.redirect_to = to;
        if (to.host.empty())
          spdlog::warn("draining: no other node of the cluster has room; v2 servers are told "
                       "error draining");
        else
          spdlog::info("draining: v2 servers are sent to {}", format_host_port(to));
        drain_sessions(self);
      },
      [self](caf::error&) { drain_sessions(self); });
}

void log_drain_progress(pool_ptr self) {
  auto& d = self->state.drain;
  if (d.over) return;
  const auto t = drain_tally(self);
  const auto left_ms = std::max<std::int64_t>(
    0, d.timeout.count() - static_cast<std::int64_t>(drain_elapsed_ms(self)));
  logging::event(spdlog::level::info, "drain_progress",
                 logging::fields()
                   .add("sessions", t.sessions)
                   .add("pairs", t.pairs)
                   .add("waiting", t.waiting)
                   .add("pairs_finished", t.finished),
                 "draining: {} session(s), {} pair(s) still relaying, {} client(s) waiting, {} "
                 "pair(s) finished so far; {} s left",
                 t.sessions, t.pairs, t.waiting, t.finished, left_ms / 1000);
  self->delayed_send(self, drain_progress_interval, drain_tick_atom::value);
}

// A control connection that completed its handshake while the relay drains:
// a v2 server hears why (and comes back later), a v1 server has no such line.
void refuse_while_draining(pool_ptr self, const control_connected& ev) {
  auto& st = self->state;
  spdlog::info("control connection from {} refused: the relay is draining",
               format_host_port(ev.peer));
  if (ev.protocol == 2 && !st.drain.redirect_to.host.empty())
    self->send(st.net, send_and_close{ev.id, v2::format_line(v2::relay_message{
                                               v2::redirect{st.drain.redirect_to}})});
  else if (ev.protocol == 2)
    self->send(st.net, send_and_close{ev.id, v2::format_line(v2::relay_message{v2::error{
                                               v2::error_code::draining,
                                               std::string(wire::draining_text)}})});
  else
    self->send(st.net, close_connection{ev.id});
}

}  // namespace

caf::behavior pool_manager(caf::stateful_actor<pool_manager_state>* self, caf::actor net,
                           caf::actor auth, pool_manager_config config) {
  auto& st = self->state;
  st.net = std::move(net);
  st.auth = std::move(auth);
  st.config = std::move(config);
  const auto pairs = st.config.layout.pair_count();
  st.free_position.resize(pairs);
  st.is_free.assign(pairs, false);
  for (pair_index i = 0; i < pairs; ++i) give_back(self, i);
  restore(self);
  announce_claims(self);
  report_load(self);

  // Shutdown (or a crash of ours) takes every session down with us.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    for (auto& [addr, session] : self->state.sessions) self->send_exit(session, msg.reason);
    self->quit(msg.reason);
  });

  // A session ended, however it ended: its pair goes to the back of the
  // queue, or stays reserved for its name.
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    st.sessions.erase(msg.source);
    if (st.drain.active) {
      auto& d = st.drain;
      if (auto it = d.sessions.find(msg.source); it != d.sessions.end()) {
        d.finished_by_ended += it->second.pairs_finished;
        d.sessions.erase(it);
      }
      if (st.sessions.empty()) end_drain(self, false);
    }
    auto it = st.holdings.find(msg.source);
    if (it == st.holdings.end()) return;
    const auto held = std::move(it->second);
    st.holdings.erase(it);
    uncount(self, held);
    self->send(st.net, route_pair{held.pair, caf::actor{}, reverse_framing::raw});
    auto res = st.reservations.find(held.name);
    if (res != st.reservations.end() && res->second.holder == msg.source) {
      auto& r = res->second;
      r.holder = nullptr;
      r.expires_unix_ms = now_unix_ms() + st.config.reservation_ttl.count();
      ++r.generation;
      schedule_expiry(self, held.name, r);
      claims_changed(self);
      report_load(self);
      spdlog::info("name {} keeps public port {} for {} s", held.name,
                   st.config.layout.public_port(held.pair), st.config.reservation_ttl.count() / 1000);
      return;
    }
    give_back(self, held.pair);
    report_load(self);
  });

  return {
    [self](control_connected& ev) {
      auto& st = self->state;
      if (st.drain.active) return refuse_while_draining(self, ev);
      auto session = self->spawn<caf::monitored>(control_session, caf::actor_cast<caf::actor>(self),
                                                 st.net, st.auth, st.config.session, ev);
      st.sessions.emplace(session.address(), session);
    },
    // A v1 session: the next pair in the queue.
    [self](acquire_atom) -> caf::result<pair_assignment> {
      auto& st = self->state;
      if (st.drain.active) return make_error(relay_errc::draining, std::string(wire::draining_text));
      if (st.free_pairs.empty()) {
        spdlog::warn("pool exhausted: all {} pairs are in use", st.config.layout.pair_count());
        return make_error(relay_errc::pool_exhausted);
      }
      auto session = caf::actor_cast<caf::actor>(self->current_sender());
      if (!session) return caf::sec::invalid_argument;
      const pair_index pair = st.free_pairs.front();
      take(self, pair);
      return assign(self, session, pair, reverse_framing::raw, {}, {}, false);
    },
    // A v2 session: by name, by port, or the next in the queue; in a cluster,
    // a name not reserved here, or a full pool, asks the cluster first.
    [self](pair_request& req) -> caf::result<pair_assignment> {
      auto& st = self->state;
      auto session = caf::actor_cast<caf::actor>(self->current_sender());
      if (!session) return caf::sec::invalid_argument;
      const bool anonymous_name = req.owner.empty() && !req.name.empty();  // refused here
      const bool ask_cluster =
        st.config.cluster && !st.drain.active && !anonymous_name &&
        (req.name.empty() ? st.free_pairs.empty() : !st.reservations.count(req.name));
      if (!ask_cluster) {
        auto granted = local_grant(self, session, req);
        if (!granted) return std::move(granted.error());
        return std::move(*granted);
      }
      auto promise = self->make_response_promise<pair_assignment>();
      const auto grant_here = [self, session, req, promise] {
        auto answer = promise;
        // The session may have ended while the cluster was asked.
        if (!self->state.sessions.count(session.address())) {
          answer.deliver(caf::make_error(caf::sec::request_receiver_down));
          return;
        }
        auto granted = local_grant(self, session, req);
        if (granted)
          answer.deliver(std::move(*granted));
        else
          answer.deliver(std::move(granted.error()));
      };
      self
        ->request(st.config.cluster, defaults::placement_timeout,
                  placement_query{req.name, req.owner, st.free_pairs.empty()})
        .then(
          [promise, grant_here](placement& p) {
            auto answer = promise;
            switch (p.decision) {
              case placement_decision::here:
                grant_here();
                break;
              case placement_decision::redirect:
                answer.deliver(make_error(relay_errc::redirected, format_host_port(p.target)));
                break;
              case placement_decision::name_unavailable:
                answer.deliver(make_error(relay_errc::name_unavailable, p.reason));
                break;
              case placement_decision::pool_exhausted:
                answer.deliver(make_error(relay_errc::pool_exhausted));
                break;
            }
          },
          [self, grant_here](caf::error& err) {
            spdlog::warn("cluster: no placement answer ({}); serving the server here",
                         self->system().render(err));
            grant_here();
          });
      return promise;
    },
    // A reload's tokens file: the authenticator takes it, then the sessions
    // of removed tokens end. Replies with how many were ended.
    [self](token_table& table) -> caf::result<std::uint64_t> {
      auto promise = self->make_response_promise<std::uint64_t>();
      self->request(self->state.auth, defaults::reload_answer_timeout, std::move(table))
        .then([self, promise](token_owners& owners) mutable { promise.deliver(revoke(self, owners)); },
              [promise](caf::error& err) mutable { promise.deliver(std::move(err)); });
      return promise;
    },
    [self](expire_atom, const std::string& name, std::uint64_t generation) {
      auto& st = self->state;
      auto it = st.reservations.find(name);
      if (it == st.reservations.end() || it->second.holder || it->second.generation != generation)
        return;
      const auto pair = it->second.pair;
      st.reservations.erase(it);
      spdlog::info("reservation of name {} (public port {}) expired", name,
                   st.config.layout.public_port(pair));
      give_back(self, pair);
      claims_changed(self);
      report_load(self);
    },
    // The cluster settled a name claimed here and elsewhere for the other
    // node: its session here (if any) is sent there, the pair freed.
    [self](name_lost& lost) {
      auto& st = self->state;
      auto it = st.reservations.find(lost.name);
      if (it == st.reservations.end()) return;
      const auto pair = it->second.pair;
      const auto holder = it->second.holder;
      st.reservations.erase(it);
      if (holder) {
        // Its end gives the pair back (the down handler finds no reservation).
        if (auto session = st.sessions.find(holder); session != st.sessions.end()) {
          self->send(session->second, redirected_atom::value, lost.winner);
          self->send(st.config.cluster, redirected_atom::value, std::string(redirect_name_elsewhere),
                     std::uint64_t{1});
        }
      } else {
        give_back(self, pair);
      }
      claims_changed(self);
      report_load(self);
    },
    [self](status_atom) {
      auto promise = self->make_response_promise();
      answer_status(self, promise);
      return promise;
    },
    [self](session_ended& ev) {
      auto& st = self->state;
      st.ended.add(ev.activity);
      if (ev.had_pair)
        st.session_duration.observe(session_duration_bounds,
                                    static_cast<double>(ev.duration_ms) / 1000.0);
      // No longer live: a status answer it gave before is superseded by this.
      st.sessions.erase(caf::actor_cast<caf::actor_addr>(self->current_sender()));
    },
    [self](drain_atom, std::uint64_t timeout_ms) {
      start_drain(self, std::chrono::milliseconds(timeout_ms));
    },
    // A draining session's news: one of its pairs or waiting clients is done.
    [self](drain_progress& p) {
      auto& st = self->state;
      const auto sender = caf::actor_cast<caf::actor_addr>(self->current_sender());
      if (st.drain.active && st.sessions.count(sender)) st.drain.sessions[sender] = p;
    },
    [self](drain_tick_atom) { log_drain_progress(self); },
    [self](drain_deadline_atom) {
      if (self->state.drain.active) end_drain(self, true);
    },
    [self](unrouted_arrival& ev) {
      spdlog::debug("{} connection from {} on unowned pair {}: no controller linked",
                    to_string(ev.kind), ev.peer, ev.pair);
      self->send(self->state.net, send_and_close{ev.id, std::string(wire::no_controller_linked)});
    },
  };
}

}  // namespace tlsrelay
