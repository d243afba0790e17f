#include "actors/cluster_member.hpp"

#include <algorithm>
#include <unordered_map>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "logging/structured_log.hpp"
#include "protocol/cluster_limits.hpp"
#include "protocol/v2.hpp"

namespace tlsrelay {

bool claim_wins(const name_claim& a, const std::string& node_a, const name_claim& b,
                const std::string& node_b) {
  // A session serving the name now beats a reservation nobody uses.
  if (a.held != b.held) return a.held;
  if (a.claimed_unix_ms != b.claimed_unix_ms) return a.claimed_unix_ms < b.claimed_unix_ms;
  return node_a < node_b;
}

namespace {

using member_ptr = caf::stateful_actor<cluster_member_state>*;
using address_phase = cluster_member_state::address::phase;

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

std::chrono::milliseconds heartbeat_interval(const cluster_config& c) {
  return std::max(std::chrono::milliseconds(10),
                  c.peer_timeout / static_cast<int>(defaults::heartbeats_per_peer_timeout));
}

std::size_t members_up(member_ptr self) {
  std::size_t n = 1;  // this node
  for (const auto& [name, p] : self->state.peers) n += p.up;
  return n;
}

// Every cluster address this node knows: its own, each member's, each seed.
std::vector<host_port> known_addresses(member_ptr self) {
  auto& st = self->state;
  std::vector<host_port> out{st.config.cluster_address};
  const auto add = [&out](const host_port& a) {
    if (!a.host.empty() && std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  };
  for (const auto& [name, p] : st.peers) add(p.status.cluster);
  for (const auto& [key, a] : st.addresses)
    if (a.now != address_phase::self) add(a.where);
  return out;
}

cluster_heartbeat heartbeat(member_ptr self) {
  return {self->state.self_status, known_addresses(self)};
}

node_claims own_claims(member_ptr self) {
  auto& st = self->state;
  return {st.config.node_name, st.self_status.started_unix_ms,
          st.self_status.reservations_version, st.own_claims};
}

void connect(member_ptr self, const std::string& key, bool verify);

// Dials `key` again after `delay`; a later call (or a join from that node,
// which bumps the attempt too) makes this one moot.
void try_again_in(member_ptr self, const std::string& key, std::chrono::milliseconds delay) {
  auto& a = self->state.addresses[key];
  self->delayed_send(self, delay, peer_retry_atom::value, key, ++a.attempt);
}

// After a failure: the delay doubles from retry_first to retry_last, ±50 %.
void schedule_retry(member_ptr self, const std::string& key) {
  auto& st = self->state;
  auto& a = st.addresses[key];
  a.now = address_phase::idle;
  const auto doubled = st.config.retry_first * (1LL << std::min(a.failures, 16u));
  const auto base = std::min<std::chrono::milliseconds>(doubled, st.config.retry_last);
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  const auto delay = std::chrono::milliseconds(
    static_cast<std::int64_t>(static_cast<double>(base.count()) * jitter(st.random)));
  ++a.failures;
  try_again_in(self, key, delay);
}

// Adds the addresses we did not know, and connects to them.
void learn(member_ptr self, const std::vector<host_port>& members) {
  auto& st = self->state;
  for (const auto& m : members) {
    if (!valid_peer_host(m.host) || m.port == 0 || m == st.config.cluster_address) continue;
    const auto key = format_host_port(m);
    if (st.addresses.count(key)) continue;
    if (st.addresses.size() >= max_cluster_addresses) {
      // Gossip from a peer gone wrong must not grow this map without end.
      if (!st.addresses_capped)
        spdlog::error("cluster: more than {} cluster addresses gossiped; ignoring {} and any "
                      "further new ones",
                      max_cluster_addresses, key);
      st.addresses_capped = true;
      return;
    }
    auto& a = st.addresses[key];
    a.where = m;
    spdlog::debug("cluster: learned of a member at {}", key);
    // Two members usually learn of each other from the same gossip, at the
    // same moment, before either knows the other's name (see connect): if
    // both dial, CAF 0.17 can stall both dials until the connect timeout. The
    // one with the smaller cluster address dials at once; the other dials
    // only if that one's join has not come within two heartbeats (the join
    // handler cancels this retry).
    if (format_host_port(st.config.cluster_address) < key) {
      connect(self, key, false);
    } else {
      std::uniform_real_distribution<double> jitter(1.0, 1.5);
      const auto wait = std::chrono::milliseconds(static_cast<std::int64_t>(
        2.0 * static_cast<double>(heartbeat_interval(st.config).count()) * jitter(st.random)));
      try_again_in(self, key, wait);
    }
  }
}

void send_to_up_peers(member_ptr self, const caf::message& msg) {
  for (auto& [name, p] : self->state.peers)
    if (p.up && p.handle) self->send(p.handle, msg);
}

// Names claimed here and by a peer that is up, where the peer's claim wins:
// the pool_manager gives ours up (its session is sent to the winner).
void resolve_conflicts(member_ptr self) {
  auto& st = self->state;
  if (st.own_claims.empty()) return;
  std::unordered_map<std::string, const name_claim*> own;
  for (const auto& c : st.own_claims)
    if (!st.given_up.count(c.name)) own.emplace(c.name, &c);
  for (auto& [node, p] : st.peers) {
    if (!p.up) continue;
    for (const auto& theirs : p.claims) {
      auto mine = own.find(theirs.name);
      if (mine == own.end() || !claim_wins(theirs, node, *mine->second, st.config.node_name))
        continue;
      st.given_up.insert(theirs.name);
      ++st.conflicts_resolved;
      logging::event(spdlog::level::warn, "name_conflict",
                     logging::fields().add("name", theirs.name).add("winner", node),
                     "cluster: name {} is claimed here and on node {}; node {}'s claim wins ({}), "
                     "so this node gives it up and sends its server there",
                     theirs.name, node, node,
                     theirs.held != mine->second->held ? "it is in use there"
                     : theirs.claimed_unix_ms != mine->second->claimed_unix_ms
                       ? "it was claimed first"
                       : "same time, smaller node name");
      if (st.pool) self->send(st.pool, name_lost{theirs.name, p.status.control});
      own.erase(mine);
    }
  }
}

// Whether a node's announced reservations may be kept; else why not. Every
// claim must be one its pool could have granted, and all nodes' claims
// together stay within max_cluster_claims.
std::string refuse_claims(member_ptr self, const node_claims& nc) {
  auto& st = self->state;
  if (nc.claims.size() > max_claims_per_node)
    return std::to_string(nc.claims.size()) + " reservations, more than " +
           std::to_string(max_claims_per_node);
  auto it = st.peers.find(nc.node);
  const std::size_t replaced = it == st.peers.end() ? 0 : it->second.claims.size();
  if (st.claims_known - replaced + nc.claims.size() > max_cluster_claims)
    return "the cluster would hold more than " + std::to_string(max_cluster_claims) +
           " reservations";
  for (const auto& c : nc.claims)
    if (!v2::valid_name(c.name) || !valid_claim_owner(c.owner) || c.public_port == 0)
      return "a reservation is not one a node grants (name, owner or port)";
  return {};
}

// Whether a node may be (or stay) among the peers; else why not. A peer
// with a valid certificate is still held to names and sizes the others can
// show and keep.
std::string refuse_peer(member_ptr self, const node_status& status) {
  auto& st = self->state;
  if (!valid_node_name(status.name)) return "node name is not 1..63 of [A-Za-z0-9._-]";
  if (!valid_peer_host(status.cluster.host) || !valid_peer_host(status.control.host))
    return "its cluster or control address has no valid host";
  if (!st.peers.count(status.name) && st.peers.size() + 1 >= max_cluster_nodes) {
    // Full: a node gone for good (down past the reservation TTL, nothing
    // claimed) makes room, with its learned addresses.
    const auto now = self->clock().now();
    auto gone = std::find_if(st.peers.begin(), st.peers.end(), [&](const auto& entry) {
      const auto& p = entry.second;
      return !p.up && p.claims.empty() && now - p.down_at >= st.config.reservation_ttl;
    });
    if (gone == st.peers.end())
      return "the cluster has " + std::to_string(max_cluster_nodes) + " nodes, its most";
    spdlog::info("cluster: node {}, down for the reservation TTL, forgotten to make room for {}",
                 gone->first, status.name);
    for (auto a = st.addresses.begin(); a != st.addresses.end();)
      a = a->second.node == gone->first && !a->second.seed ? st.addresses.erase(a) : std::next(a);
    st.peers.erase(gone);
  }
  return {};
}

void peer_up(member_ptr self, const caf::actor& handle, const node_status& status) {
  auto& st = self->state;
  auto& p = st.peers[status.name];
  const bool restarted = p.status.started_unix_ms != 0 &&
                         p.status.started_unix_ms != status.started_unix_ms;
  p.status = status;
  p.last_heard = self->clock().now();
  if (p.handle != handle) {
    if (p.handle) self->demonitor(p.handle);
    p.handle = handle;
    self->monitor(handle);
  }
  // Up all along (a connection replaced, see the down handler): no news.
  if (p.up && !restarted) return;
  p.up = true;
  p.since_unix_ms = now_unix_ms();
  if (restarted) {
    // A new incarnation announces its own claims; the old ones are void.
    st.claims_known -= p.claims.size();
    p.claims.clear();
    p.claims_incarnation = 0;
    p.claims_version = 0;
  }
  logging::event(spdlog::level::info, "peer_up",
                 logging::fields().add("node", status.name).add("address",
                                                                format_host_port(status.cluster)),
                 "cluster: node {} at {} is up (control {}, {} free pairs); {} of {} nodes up",
                 status.name, format_host_port(status.cluster), format_host_port(status.control),
                 status.free_pairs, members_up(self), st.peers.size() + 1);
  self->send(handle, own_claims(self));
  resolve_conflicts(self);
}

void peer_down(member_ptr self, const std::string& name, const std::string& why) {
  auto& st = self->state;
  auto it = st.peers.find(name);
  if (it == st.peers.end() || !it->second.up) return;
  auto& p = it->second;
  p.up = false;
  p.since_unix_ms = now_unix_ms();
  if (p.handle) self->demonitor(p.handle);
  p.handle = nullptr;
  // Its names wait one TTL (see tick) for their identity to claim them on a
  // live node; only that identity may meanwhile.
  p.down_at = self->clock().now();
  logging::event(spdlog::level::warn, "peer_down",
                 logging::fields().add("node", name).reason(why),
                 "cluster: node {} is down ({}); {} of {} nodes up", name, why, members_up(self),
                 st.peers.size() + 1);
  for (auto& [key, a] : st.addresses)
    if (a.node == name && a.now == address_phase::connected) {
      a.failures = 0;
      schedule_retry(self, key);
    }
}

void failed(member_ptr self, const std::string& key, const std::string& why) {
  auto& st = self->state;
  auto& a = st.addresses[key];
  if (!a.node.empty()) {
    auto p = st.peers.find(a.node);
    if (p != st.peers.end() && p->second.up && !p->second.handle) {
      // The check after a lost connection failed: the peer is down.
      const std::string node = a.node;
      a.now = address_phase::connected;  // peer_down schedules the retries
      peer_down(self, node, "connection lost (" + why + ")");
      return;
    }
  }
  // The first failure in a row is news; the retries that follow are not.
  if (a.failures == 0)
    spdlog::warn("cluster: cannot join the peer at {}: {}; trying again with backoff", key, why);
  else
    spdlog::debug("cluster: peer at {} still unreachable: {}", key, why);
  schedule_retry(self, key);
}

void joined(member_ptr self, const std::string& key, const caf::actor& handle,
            cluster_heartbeat& hb) {
  auto& st = self->state;
  auto& a = st.addresses[key];
  a.node = hb.from.name;
  if (hb.from.name == st.config.node_name) {
    a.now = address_phase::self;
    spdlog::debug("cluster: peer address {} is this node", key);
    return;
  }
  if (auto why = refuse_peer(self, hb.from); !why.empty()) {
    logging::event(spdlog::level::err, "peer_refused",
                   logging::fields().add("address", key).reason("limits"),
                   "cluster: the node at {} is not taken as a peer: {}", key, why);
    return failed(self, key, "not taken as a peer: " + why);
  }
  a.now = address_phase::connected;
  a.failures = 0;
  peer_up(self, handle, hb.from);
  learn(self, hb.members);
}

// Connects to the address, unless the node there is up with a connection
// already (`verify`: check that it still is). Between two nodes that know
// each other only the one with the smaller name dials: when both dial at
// once, CAF's middleman (0.17) may close a different one of the two
// connections on each side, and with both the routes to the other node.
void connect(member_ptr self, const std::string& key, bool verify) {
  auto& st = self->state;
  auto& a = st.addresses[key];
  if (a.now == address_phase::connecting || a.now == address_phase::self) return;
  if (!verify && !a.node.empty()) {
    auto p = st.peers.find(a.node);
    if (p != st.peers.end() && p->second.up && p->second.handle) {
      a.now = address_phase::connected;
      return;
    }
  }
  if (!verify && !a.node.empty() && st.config.node_name > a.node) {
    // It dials us; unless it has been down for a peer timeout (a node that
    // restarted without us among its --peer would never come back).
    auto p = st.peers.find(a.node);
    const bool long_down = p != st.peers.end() && !p->second.up &&
                           self->clock().now() - p->second.down_at >= st.config.peer_timeout;
    if (!long_down) {
      a.now = address_phase::idle;
      if (p != st.peers.end() && !p->second.up) {
        // Look again once it has been down that long.
        a.failures = 0;
        try_again_in(self, key, st.config.peer_timeout);
      }
      return;
    }
  }
  a.now = address_phase::connecting;
  const auto where = a.where;
  self
    ->request(st.config.connector, defaults::peer_connect_timeout, caf::connect_atom::value, where.host,
              where.port)
    .then(
      [self, key](caf::node_id&, caf::strong_actor_ptr& ptr, std::set<std::string>&) {
        if (!ptr) return failed(self, key, "no cluster node is published there");
        auto handle = caf::actor_cast<caf::actor>(ptr);
        auto& st = self->state;
        cluster_join join{st.config.cluster_version, st.self_status, known_addresses(self)};
        self->request(handle, defaults::peer_connect_timeout, std::move(join))
          .then([self, key, handle](cluster_heartbeat& hb) { joined(self, key, handle, hb); },
                [self, key](caf::error& err) {
                  const auto reason = reason_of(err);
                  failed(self, key,
                         reason.empty() ? self->system().render(err) : "refused: " + reason);
                });
      },
      [self, key](caf::error& err) { failed(self, key, self->system().render(err)); });
}

// The up and not draining peer with the most free pairs, if it has any.
const cluster_member_state::peer* roomiest_peer(member_ptr self) {
  const cluster_member_state::peer* best = nullptr;
  for (const auto& [name, p] : self->state.peers)
    if (p.up && !p.status.draining && p.status.free_pairs > 0 &&
        (!best || p.status.free_pairs > best->status.free_pairs))
      best = &p;
  return best;
}

placement redirect_to(member_ptr self, const host_port& target, std::string_view reason) {
  ++self->state.redirects[std::string(reason)];
  return {placement_decision::redirect, target, std::string(reason)};
}

placement decide(member_ptr self, const placement_query& q) {
  auto& st = self->state;
  if (!q.name.empty()) {
    // The claim of this name that wins, among the other nodes.
    const name_claim* winner = nullptr;
    const cluster_member_state::peer* holder = nullptr;
    std::string holder_name;
    const auto now = now_unix_ms();
    for (const auto& [node, p] : st.peers)
      for (const auto& c : p.claims) {
        if (c.name != q.name || (c.expires_unix_ms != 0 && c.expires_unix_ms <= now)) continue;
        if (!winner || claim_wins(c, node, *winner, holder_name)) {
          winner = &c;
          holder = &p;
          holder_name = node;
        }
      }
    if (winner) {
      if (winner->owner != q.owner)
        return {placement_decision::name_unavailable, {},
                "name " + q.name + " belongs to another identity (on node " + holder_name + ")"};
      // Held by a node that is down or going away: its identity may take it here.
      if (holder->up && !holder->status.draining)
        return redirect_to(self, holder->status.control, redirect_name_elsewhere);
    }
  }
  if (q.local_full || st.self_status.draining) {
    if (const auto* best = roomiest_peer(self))
      return redirect_to(self, best->status.control,
                         st.self_status.draining ? redirect_draining : redirect_full);
    return {placement_decision::pool_exhausted, {}, "every node of the cluster is full"};
  }
  return {placement_decision::here, {}, {}};
}

cluster_report report(member_ptr self) {
  auto& st = self->state;
  cluster_report r;
  r.enabled = true;
  r.node = st.config.node_name;
  cluster_member_report me;
  me.name = st.config.node_name;
  me.cluster_address = format_host_port(st.config.cluster_address);
  me.control_address = format_host_port(st.config.control_address);
  me.self = true;
  me.up = true;
  me.draining = st.self_status.draining;
  me.since_unix_ms = st.self_status.started_unix_ms;
  me.free_pairs = st.self_status.free_pairs;
  me.sessions = st.self_status.sessions;
  r.members.push_back(std::move(me));
  std::set<std::string> names;
  for (const auto& c : st.own_claims) names.insert(c.name);
  const auto now = now_unix_ms();
  for (const auto& [name, p] : st.peers) {
    cluster_member_report m;
    m.name = name;
    m.cluster_address = format_host_port(p.status.cluster);
    m.control_address = format_host_port(p.status.control);
    m.up = p.up;
    m.draining = p.status.draining;
    m.since_unix_ms = p.since_unix_ms;
    m.free_pairs = p.status.free_pairs;
    m.sessions = p.status.sessions;
    r.members.push_back(std::move(m));
    for (const auto& c : p.claims)
      if (c.expires_unix_ms == 0 || c.expires_unix_ms > now) names.insert(c.name);
  }
  for (const auto reason : redirect_reasons) {
    auto it = st.redirects.find(std::string(reason));
    r.redirects.emplace_back(std::string(reason), it == st.redirects.end() ? 0 : it->second);
  }
  r.conflicts_resolved = st.conflicts_resolved;
  r.names = static_cast<std::uint32_t>(names.size());
  return r;
}

void tick(member_ptr self) {
  auto& st = self->state;
  const auto now = self->clock().now();
  std::vector<std::string> silent;
  for (auto& [name, p] : st.peers)
    if (p.up && now - p.last_heard > st.config.peer_timeout) silent.push_back(name);
  for (const auto& name : silent)
    peer_down(self, name,
              "no heartbeat for " + std::to_string(st.config.peer_timeout.count()) + " ms");
  send_to_up_peers(self, caf::make_message(heartbeat(self)));
  // Names of nodes that stayed down past the TTL are free again.
  for (auto it = st.peers.begin(); it != st.peers.end();) {
    auto& [name, p] = *it;
    // Claims that came before a join that never did: a node unknown still.
    if (!p.up && p.since_unix_ms == 0 && now - p.down_at >= st.config.peer_timeout) {
      spdlog::debug("cluster: node {} announced reservations but never joined; forgotten", name);
      st.claims_known -= p.claims.size();
      it = st.peers.erase(it);
      continue;
    }
    if (!p.up && !p.claims.empty() && now - p.down_at >= st.config.reservation_ttl) {
      spdlog::info("cluster: {} reservation(s) of node {}, down for the reservation TTL, dropped",
                   p.claims.size(), name);
      st.claims_known -= p.claims.size();
      p.claims.clear();
    }
    ++it;
  }
  self->delayed_send(self, heartbeat_interval(st.config), cluster_tick_atom::value);
}

}  // namespace

caf::behavior cluster_member(caf::stateful_actor<cluster_member_state>* self,
                             cluster_config config) {
  auto& st = self->state;
  st.config = std::move(config);
  st.random.seed(std::random_device{}());
  st.self_status.name = st.config.node_name;
  st.self_status.cluster = st.config.cluster_address;
  st.self_status.control = st.config.control_address;
  st.self_status.started_unix_ms = now_unix_ms();
  for (const auto& seed : st.config.seeds) {
    const auto key = format_host_port(seed);
    auto& a = st.addresses[key];
    a.where = seed;
    a.seed = true;
  }
  for (auto& [key, a] : st.addresses) connect(self, key, false);
  self->delayed_send(self, heartbeat_interval(st.config), cluster_tick_atom::value);

  // A peer's connection ended. CAF also ends a connection it finds
  // redundant (two nodes that dialled each other at once), taking the routes
  // to that node with it; so the peer is first dialled again, and only if
  // that fails is it down (a dead node refuses at once). Of two nodes, the
  // one with the smaller name dials; the other waits up to the peer timeout.
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    for (auto& [name, p] : st.peers) {
      if (!p.handle || p.handle.address() != msg.source) continue;
      p.handle = nullptr;
      const auto key = format_host_port(p.status.cluster);
      auto& a = st.addresses[key];
      a.where = p.status.cluster;
      a.node = name;
      if (a.now == address_phase::connected) a.now = address_phase::idle;
      if (st.config.node_name < name) {
        // Soon, not at once: the middleman answers a dial to that address
        // from its cache until it has seen the same down message.
        spdlog::debug("cluster: connection to node {} ended; checking it at {}", name, key);
        a.failures = 0;
        schedule_retry(self, key);
      } else {
        // It dials us again (see connect), normally within its first retry;
        // if it has not by half the peer timeout, this node checks.
        spdlog::debug("cluster: connection to node {} ended; waiting for it to reconnect", name);
        a.failures = 0;
        try_again_in(self, key, st.config.peer_timeout / 2);
      }
      return;
    }
  });

  return {
    // A node joins us.
    [self](cluster_join& join) -> caf::result<cluster_heartbeat> {
      auto& st = self->state;
      const auto from = format_host_port(join.from.cluster);
      if (join.cluster_version != st.config.cluster_version) {
        logging::event(spdlog::level::err, "peer_refused",
                       logging::fields().add("node", join.from.name).reason("version"),
                       "cluster: node {} at {} speaks cluster version {}, this node {}: refused "
                       "(run one tlsrelay version across the cluster)",
                       join.from.name, from, join.cluster_version, st.config.cluster_version);
        return make_error(relay_errc::unsupported_version,
                          "node " + st.config.node_name + " speaks cluster version " +
                            std::to_string(st.config.cluster_version) + ", not " +
                            std::to_string(join.cluster_version));
      }
      if (join.from.name == st.config.node_name) {
        if (join.from.started_unix_ms == st.self_status.started_unix_ms) return heartbeat(self);
        logging::event(spdlog::level::err, "peer_refused",
                       logging::fields().add("node", join.from.name).reason("name"),
                       "cluster: a node at {} calls itself {}, the name of this node: refused "
                       "(every node needs its own --node-name)",
                       from, join.from.name);
        return make_error(relay_errc::name_unavailable,
                          "node name " + join.from.name + " is taken (by the node at " +
                            format_host_port(st.config.cluster_address) + ")");
      }
      if (auto why = refuse_peer(self, join.from); !why.empty()) {
        logging::event(spdlog::level::err, "peer_refused",
                       logging::fields().add("address", from).reason("limits"),
                       "cluster: a node at {} is refused: {}", from, why);
        return make_error(relay_errc::bad_request, "refused by node " + st.config.node_name +
                                                     ": " + why);
      }
      auto handle = caf::actor_cast<caf::actor>(self->current_sender());
      if (!handle) return caf::sec::invalid_argument;
      // Its address is one we keep a connection to from now on.
      const auto key = format_host_port(join.from.cluster);
      auto& a = st.addresses[key];
      a.where = join.from.cluster;
      a.node = join.from.name;
      if (a.now == address_phase::idle) {
        a.now = address_phase::connected;
        a.failures = 0;
        ++a.attempt;  // a retry under way is moot
      }
      peer_up(self, handle, join.from);
      learn(self, join.members);
      return heartbeat(self);
    },
    [self](cluster_heartbeat& hb) {
      auto& st = self->state;
      auto it = st.peers.find(hb.from.name);
      if (it == st.peers.end() || !it->second.up) {
        auto handle = caf::actor_cast<caf::actor>(self->current_sender());
        if (!handle || !refuse_peer(self, hb.from).empty()) return;
        peer_up(self, handle, hb.from);
      } else {
        auto& p = it->second;
        p.status = hb.from;
        p.last_heard = self->clock().now();
        // The node_claims it sent when we met may have been lost (two nodes
        // that dial each other at once: CAF closes one connection, and what
        // travelled on it); nothing sends them again until they change. Its
        // heartbeat says which claims it has: if not the ones we have, ask.
        if (hb.from.started_unix_ms != p.claims_incarnation ||
            hb.from.reservations_version != p.claims_version)
          self->send(caf::actor_cast<caf::actor>(self->current_sender()),
                     claims_wanted_atom::value);
      }
      learn(self, hb.members);
    },
    [self](claims_wanted_atom) {
      if (auto peer = caf::actor_cast<caf::actor>(self->current_sender()))
        self->send(peer, own_claims(self));
    },
    [self](node_claims& nc) {
      auto& st = self->state;
      if (nc.node == st.config.node_name) return;
      auto found = st.peers.find(nc.node);
      if (found == st.peers.end() &&
          (!valid_node_name(nc.node) || st.peers.size() + 1 >= max_cluster_nodes))
        return;
      if (auto why = refuse_claims(self, nc); !why.empty()) {
        logging::event(spdlog::level::err, "claims_refused",
                       logging::fields().add("node", nc.node).reason("limits"),
                       "cluster: the reservations announced by node {} are refused: {}",
                       nc.node, why);
        return;
      }
      // A joining node's claims may come before the answer to its join:
      // kept, and weighed once it is up (peer_up); dropped if it never is.
      if (found == st.peers.end()) {
        found = st.peers.emplace(nc.node, cluster_member_state::peer{}).first;
        found->second.down_at = self->clock().now();
      }
      auto& p = found->second;
      if (nc.started_unix_ms < p.claims_incarnation) return;
      if (nc.started_unix_ms == p.claims_incarnation && nc.version < p.claims_version) return;
      p.claims_incarnation = nc.started_unix_ms;
      p.claims_version = nc.version;
      st.claims_known -= p.claims.size();
      p.claims = std::move(nc.claims);
      st.claims_known += p.claims.size();
      resolve_conflicts(self);
    },
    [self](peer_retry_atom, const std::string& key, std::uint64_t attempt) {
      auto& st = self->state;
      auto it = st.addresses.find(key);
      if (it == st.addresses.end() || it->second.attempt != attempt) return;
      // A node that lost its connection (up, no handle) is checked.
      auto p = st.peers.find(it->second.node);
      const bool check = p != st.peers.end() && p->second.up && !p->second.handle;
      connect(self, key, check);
    },
    [self](cluster_tick_atom) { tick(self); },
    // -- from the local pool_manager
    [self](local_load& load) {
      auto& st = self->state;
      st.pool = caf::actor_cast<caf::actor>(self->current_sender());
      st.self_status.free_pairs = load.free_pairs;
      st.self_status.sessions = load.sessions;
    },
    [self](local_claims& claims) {
      auto& st = self->state;
      st.own_claims = std::move(claims.claims);
      for (auto it = st.given_up.begin(); it != st.given_up.end();) {
        const bool still = std::any_of(st.own_claims.begin(), st.own_claims.end(),
                                       [&](const name_claim& c) { return c.name == *it; });
        it = still ? std::next(it) : st.given_up.erase(it);
      }
      ++st.self_status.reservations_version;
      send_to_up_peers(self, caf::make_message(own_claims(self)));
      resolve_conflicts(self);
    },
    [self](placement_query& q) -> placement { return decide(self, q); },
    // The node drains: no peer sends servers here any more. Replies where
    // this node's v2 servers go instead (no host: nowhere).
    [self](drain_atom) -> host_port {
      auto& st = self->state;
      st.self_status.draining = true;
      send_to_up_peers(self, caf::make_message(heartbeat(self)));
      const auto* best = roomiest_peer(self);
      return best ? best->status.control : host_port{};
    },
    [self](redirected_atom, const std::string& reason, std::uint64_t n) {
      self->state.redirects[reason] += n;
    },
    [self](status_atom) -> cluster_report { return report(self); },
  };
}

}  // namespace tlsrelay
