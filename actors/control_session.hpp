// control_session: one per control connection (one connected server).
//
//   acquiring ──pair──► serving ──control connection ends──► (terminated)
//       │                  ▲ client_arrived → pair_broker, "new_connection"
//       │                  └ reverse_arrived → oldest waiting broker (FIFO, v1)
//       └─pool exhausted─► "no_available_listeners", close, (terminated)
//
// Arrivals that come in while acquiring wait in the mailbox. On termination
// every connection of the session is closed; the pool_manager sees the
// session go down and takes its pair back.
#pragma once

#include <chrono>
#include <deque>
#include <string>
#include <unordered_map>

#include <caf/actor.hpp>
#include <caf/behavior.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/messages.hpp"
#include "protocol/defaults.hpp"

namespace tlsrelay {

struct control_session_config {
  std::string myhost{defaults::myhost};  // written into the listener lines
  std::chrono::milliseconds pending_timeout{defaults::pending_timeout};
  std::size_t max_pending = defaults::max_pending_clients;
};

struct control_session_state {
  struct waiting_client {
    caf::actor broker;
    conn_id client;
  };

  control_session_config config;
  caf::actor pool;
  caf::actor net;
  conn_id control;
  std::string peer;
  bool has_pair = false;
  pair_assignment pair;
  std::deque<waiting_client> waiting;               // FIFO, oldest first
  std::unordered_map<conn_id, conn_id> paired;      // client → reverse, until pump_finished
  std::uint64_t clients_served = 0;

  static inline const char* name = "control_session";
};

caf::behavior control_session(caf::stateful_actor<control_session_state>* self, caf::actor pool,
                              caf::actor net, control_session_config config, conn_id control,
                              std::string peer);

}  // namespace tlsrelay
