// pair_broker: one per control session that has had a client, owning the
// session's waiting clients from their arrival until each is matched with a
// reverse connection, leaves, or waits longer than the pending timeout. It
// holds the client connections meanwhile (so it hears a client leave), and
// when the session matches one, tells net/ to join the two; the pair is then
// the session's. One timer serves all its clients: they wait in arrival order
// and all for the same time, so only the oldest deadline needs arming.
//
//   session ─client_waits─► broker ─route_connection─► net
//   session ─match_reverse─► broker ─join_pair─► net   (or match_missed ─► session)
//   net ─connection_closed─► broker ─pairing_end{client_left}─► session
//   (timeout)               broker ─close_connection─► net, pairing_end{timed_out} ─► session
#pragma once

#include <chrono>
#include <deque>

#include <caf/actor.hpp>
#include <caf/behavior.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/messages.hpp"

namespace tlsrelay {

struct pair_broker_state {
  struct waiting {
    conn_id client;
    caf::actor_clock::time_point deadline;
  };
  std::deque<waiting> clients;  // arrival order = deadline order
  bool timer_armed = false;     // a pair_timeout_atom is on its way

  static inline const char* name = "pair_broker";
};

caf::behavior pair_broker(caf::stateful_actor<pair_broker_state>* self, caf::actor net,
                          caf::actor session, std::chrono::milliseconds pending_timeout);

}  // namespace tlsrelay
