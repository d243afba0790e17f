// control_session: one per control connection (one connected server).
//
//  v1:  acquiring ──pair──► serving ─────────────────────────┐
//  v2:  hello ──auth──► acquiring ──pair──► serving ─────────┤
//        │                  │                  ▲ client_arrived → the session's pair_broker,
//        │                  │                  │   new_connection
//        │                  │                  └ reverse_arrived → matched, via the broker (v1:
//        │                  │                    oldest waiting, FIFO; v2: by `accept <ID>`)
//        │                  │                    or, v2 `ready`, kept warm: a client arriving
//        │                  │                    then is joined with it at once, no broker
//        └─ refused ────────┴─► error / no_available_listeners, close ──────► (terminated)
//
//  drain_atom (the relay drains), in any phase: no new client (one arriving is
//  closed); warm connections closed; a v2 server is told `error draining` (in
//  a cluster: `redirect` to the node the drain names) and its control
//  connection closed (a v1 server's stays open: v1 has no such line); waiting
//  clients can still be joined; the session ends, closing its control
//  connection, once it has no pair and no waiting client left.
//
//  redirected_atom while serving (the cluster gave its name to another node):
//  `redirect HOST:PORT`, and the session ends.
//
// Messages that arrive before serving wait in the mailbox. On termination
// every connection of the session is closed; the pool_manager sees the
// session go down and takes its pair back (or keeps it for the name).
#pragma once

#include <chrono>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_clock.hpp>
#include <caf/behavior.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/messages.hpp"
#include "protocol/connection_id.hpp"
#include "protocol/defaults.hpp"
#include "protocol/warm_ticket.hpp"

namespace tlsrelay {

struct control_session_config {
  std::string myhost{defaults::myhost};  // written into the listener lines
  std::chrono::milliseconds pending_timeout{defaults::pending_timeout};
  std::size_t max_pending = defaults::max_pending_clients;
  // v1 servers must present a client certificate unless the operator turned
  // client authentication off altogether.
  bool v1_requires_certificate = true;
  std::chrono::milliseconds hello_timeout{defaults::hello_timeout};
  std::chrono::milliseconds heartbeat{defaults::heartbeat_interval};
  bool proxy_protocol = false;  // v2: PROXY v2 header first on each reverse connection
  unsigned warm_max = defaults::warm_max;  // v2 warm reverse connections kept; 0: none
  std::chrono::milliseconds warm_idle{defaults::warm_idle_timeout};
  // Every pair's end at info (the access log) rather than at debug.
  bool access_log = false;
};

struct control_session_state {
  using steady_time = std::chrono::steady_clock::time_point;
  struct waiting_client {
    conn_id client;
    connection_id id;  // v2 only
    host_port peer;
    host_port local;
    steady_time arrived;
  };

  control_session_config config;
  caf::actor pool;
  caf::actor net;
  caf::actor auth;
  caf::actor broker;  // holds the waiting clients; spawned with the first one
  conn_id control;
  std::uint64_t session_id = 0;  // the control connection's number, for logs
  host_port peer_address;
  std::string peer;  // formatted, for logs
  unsigned protocol = 1;
  bool client_certificate = false;
  std::string certificate_fingerprint;
  std::string reservation;  // v2 name asked for, for logs
  bool has_pair = false;
  pair_assignment pair;
  // Oldest first; at most max_pending. A vector, not a deque: an empty deque
  // still holds a node (~0.5 KiB), and most sessions have no client waiting.
  std::vector<waiting_client> waiting;
  warm_ticket::signer warm_signer;              // v2: keyed with the secret sent in welcome
  warm_ticket::replay_window warm_serials;      // v2: tickets already used
  struct warm_connection {
    conn_id id;
    caf::actor_clock::time_point expires;
  };
  std::vector<warm_connection> warm;            // v2: oldest first; at most warm_max
  bool warm_sweep_pending = false;              // a warm_expire_atom is on its way
  std::uint64_t warm_served = 0;                // clients relayed over a warm connection
  // A client handed to net to be joined, until pump_finished or join_failed.
  struct pairing {
    conn_id reverse;
    host_port peer;   // the client's, to announce it again if the join fails
    host_port local;
    bool warm = false;
    steady_time arrived;  // when the client was announced to the session
  };
  std::unordered_map<conn_id, pairing> paired;  // by client
  std::uint64_t clients_served = 0;             // pairs that were joined
  std::uint64_t reverse_rejected = 0;  // v2: bad, used or expired ids
  caf::actor_clock::time_point last_heard;  // the actor clock, which tests can drive
  // For the admin endpoint: what it has done, who it is, since when.
  session_activity activity;
  std::string identity;  // see session_report::identity
  std::int64_t connected_unix_ms = 0;
  caf::actor_clock::time_point connected_at;
  // The relay drains (see above).
  bool draining = false;
  bool control_closed = false;          // by us: `error draining` sent (v2)
  std::uint64_t pairs_finished_draining = 0;

  static inline const char* name = "control_session";
};

caf::behavior control_session(caf::stateful_actor<control_session_state>* self, caf::actor pool,
                              caf::actor net, caf::actor auth, control_session_config config,
                              control_connected connection);

}  // namespace tlsrelay
