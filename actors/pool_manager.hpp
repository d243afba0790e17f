// pool_manager: one per relay node. Owns the pool of port pairs and the name
// reservations; starts a control_session per authenticated control
// connection; hands pairs out in order (or the one a v2 server asks for) and
// takes them back (to the end of the queue) when a session ends, unless the
// session's name keeps its pair reserved for a while; answers connections on
// pairs that nobody owns. On a reload's new token table (via the
// authenticator) it ends the sessions whose token was removed.
//
// Draining (drain_atom, on SIGTERM): it orders net to stop accepting control
// connections and clients, refuses new sessions and pairs, tells every
// session to drain (a v2 server hears `error draining`; pairs run on), and
// calls `drained` once the last session has ended or the drain timeout has
// passed, whichever comes first. In a cluster it tells the cluster_member
// first (peers stop sending servers here) and v2 servers hear `redirect` to a
// live node instead of `error draining`.
//
// In a cluster, a v2 server whose name is not reserved here, or that comes
// when the pool is full, is placed by the cluster_member: served here,
// redirected, or refused; reservations and load are reported to it as they
// change, and a name it says was lost (name_lost) is given up.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/behavior.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/control_session.hpp"
#include "actors/messages.hpp"
#include "protocol/defaults.hpp"
#include "protocol/pool_layout.hpp"
#include "protocol/state_file.hpp"

namespace tlsrelay {

struct pool_manager_config {
  pool_layout layout;
  control_session_config session;
  std::chrono::milliseconds reservation_ttl{defaults::reservation_ttl};
  unsigned max_sessions_per_owner = defaults::max_sessions_per_token;  // 0: no limit
  std::vector<reservation_record> restored;  // from the state file at start-up
  // Called with the new state file contents whenever reservations change
  // (empty function: no state file). Runs in the actor; keep it short.
  std::function<void(const std::string&)> persist;
  // Called once when a drain is over (every session ended, or the drain
  // timeout passed). Runs in the actor; keep it short.
  std::function<void()> drained;
  // This node's cluster_member (serve --cluster-listen); none for a relay of
  // one, which then never asks anything of a cluster.
  caf::actor cluster;
};

struct pool_manager_state {
  struct reservation {
    pair_index pair = 0;
    std::string owner;
    caf::actor_addr holder;             // the session using it, or none
    std::int64_t expires_unix_ms = 0;   // when it lapses while nobody holds it
    std::uint64_t generation = 0;       // matches the pending expire_atom
    std::int64_t claimed_unix_ms = 0;   // when granted here (the cluster's conflict rule)
  };
  struct holding {
    pair_index pair = 0;
    std::string name;  // "" without a reservation
    std::string owner;
    bool counted = false;  // in sessions_of_owner (owners that are tokens)
  };

  pool_manager_config config;
  caf::actor net;
  caf::actor auth;
  std::list<pair_index> free_pairs;  // front = next handed out
  std::vector<std::list<pair_index>::iterator> free_position;  // valid where is_free
  std::vector<bool> is_free;
  std::unordered_map<caf::actor_addr, caf::actor> sessions;  // every live session
  std::unordered_map<caf::actor_addr, holding> holdings;     // sessions holding a pair
  std::unordered_map<std::string, reservation> reservations;  // by name
  std::unordered_map<std::string, unsigned> sessions_of_owner;  // token owners only
  // Tokens a reload removed (and no later reload brought back): a pair
  // request granted under the old table and still on its way is refused.
  std::unordered_set<std::string> revoked_owners;
  // For the admin endpoint: what the sessions that have ended did.
  session_activity ended;
  histogram session_duration;
  // What the cluster_member last heard of our load (sent only when it changes).
  local_load load_reported{~0u, ~0u};

  // The drain, once drain_atom came (see above).
  struct drain_state {
    bool active = false;
    bool over = false;            // `drained` was called
    std::size_t reports_due = 0;  // sessions yet to answer drain_atom
    std::chrono::steady_clock::time_point started;
    std::chrono::milliseconds timeout{0};
    host_port redirect_to;  // in a cluster: where v2 servers are sent (no host: nowhere)
    std::unordered_map<caf::actor_addr, drain_progress> sessions;  // last report of each
    std::uint64_t finished_by_ended = 0;  // pairs finished by sessions that have ended
    // What the sessions had when the drain began (their answers to drain_atom).
    std::uint64_t v1_at_start = 0, v2_at_start = 0, pairs_at_start = 0, waiting_at_start = 0;
  } drain;

  static inline const char* name = "pool_manager";
};

caf::behavior pool_manager(caf::stateful_actor<pool_manager_state>* self, caf::actor net,
                           caf::actor auth, pool_manager_config config);

}  // namespace tlsrelay
