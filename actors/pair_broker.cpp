#include "actors/pair_broker.hpp"

#include <algorithm>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

namespace tlsrelay {
namespace {

using broker_ptr = caf::stateful_actor<pair_broker_state>*;

// Arms the one timer for the oldest client's deadline, if none is on its way.
// A timer that falls due after its client left finds nothing expired and
// re-arms for the next; so at most one is ever pending.
void arm(broker_ptr self) {
  auto& st = self->state;
  if (st.timer_armed || st.clients.empty()) return;
  const auto wait = std::max(st.clients.front().deadline - self->clock().now(),
                             caf::actor_clock::duration_type::zero());
  self->delayed_send(self, wait, pair_timeout_atom::value);
  st.timer_armed = true;
}

// Takes `client` out of the queue; false if it is not waiting (any more).
bool take(broker_ptr self, conn_id client) {
  auto& clients = self->state.clients;
  auto it = std::find_if(clients.begin(), clients.end(),
                         [client](const auto& w) { return w.client == client; });
  if (it == clients.end()) return false;
  clients.erase(it);
  return true;
}

}  // namespace

caf::behavior pair_broker(caf::stateful_actor<pair_broker_state>* self, caf::actor net,
                          caf::actor session, std::chrono::milliseconds pending_timeout) {
  return {
    [self, net, pending_timeout](client_waits& w) {
      self->state.clients.push_back({w.client, self->clock().now() + pending_timeout});
      self->send(net, route_connection{w.client, caf::actor_cast<caf::actor>(self)});
      arm(self);
    },
    [self, net, session](match_reverse& m) {
      if (!take(self, m.client)) {
        // It left or timed out a moment ago (its pairing_end is on its way
        // to the session): the session finds the reverse connection another use.
        self->send(session, match_missed{m.client, m.reverse});
        return;
      }
      self->send(net, join_pair{m.client, m.reverse, session, std::move(m.reverse_preamble)});
    },
    [self, session](connection_closed& ev) {
      if (take(self, ev.id)) self->send(session, pairing_end{ev.id, pairing_outcome::client_left});
    },
    [self, net, session, pending_timeout](pair_timeout_atom) {
      auto& st = self->state;
      st.timer_armed = false;
      const auto now = self->clock().now();
      while (!st.clients.empty() && st.clients.front().deadline <= now) {
        const auto client = st.clients.front().client;
        st.clients.pop_front();
        spdlog::info("client connection {} closed: no reverse connection within {} ms",
                     client.value, pending_timeout.count());
        self->send(net, close_connection{client});
        self->send(session, pairing_end{client, pairing_outcome::timed_out});
      }
      arm(self);
    },
  };
}

}  // namespace tlsrelay
