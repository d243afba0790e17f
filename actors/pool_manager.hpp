// pool_manager: one per relay node. Owns the pool of port pairs, starts a
// control_session per authenticated control connection, hands pairs out in
// order and takes them back (to the end of the queue) when a session ends,
// and answers connections on pairs that nobody owns.
#pragma once

#include <deque>
#include <string>
#include <unordered_map>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/behavior.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/control_session.hpp"
#include "protocol/pool_layout.hpp"

namespace tlsrelay {

struct pool_manager_config {
  pool_layout layout;
  control_session_config session;
};

struct pool_manager_state {
  pool_manager_config config;
  caf::actor net;
  std::deque<pair_index> free_pairs;                       // front = next handed out
  std::unordered_map<caf::actor_addr, caf::actor> sessions;  // every live session
  std::unordered_map<caf::actor_addr, pair_index> pair_of;   // sessions holding a pair

  static inline const char* name = "pool_manager";
};

caf::behavior pool_manager(caf::stateful_actor<pool_manager_state>* self, caf::actor net,
                           pool_manager_config config);

}  // namespace tlsrelay
