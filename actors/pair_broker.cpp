#include "actors/pair_broker.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

namespace tlsrelay {

caf::behavior pair_broker(caf::event_based_actor* self, caf::actor net, caf::actor session,
                          conn_id client, std::chrono::milliseconds pending_timeout) {
  self->send(net, route_connection{client, caf::actor_cast<caf::actor>(self)});
  // The pending timeout is a receive timeout, cancelled when the broker ends.
  // A delayed message to itself would keep the finished broker in memory
  // until it fell due: ~1 KB per relayed connection for the first 10 s.
  const auto finish = [self] {
    self->clock().cancel_timeouts(self);
    self->quit();
  };
  return {
    [self, net, session, client, finish](match_reverse& m) {
      self->send(net, join_pair{client, m.reverse, session, std::move(m.reverse_preamble)});
      finish();
      return true;
    },
    [self, session, client, finish](connection_closed& ev) {
      if (ev.id != client) return;
      self->send(session, pairing_end{client, pairing_outcome::client_left});
      finish();
    },
    caf::after(pending_timeout) >>
      [self, net, session, client, pending_timeout, finish] {
        spdlog::info("client connection {} closed: no reverse connection within {} ms",
                     client.value, pending_timeout.count());
        self->send(net, close_connection{client});
        self->send(session, pairing_end{client, pairing_outcome::timed_out});
        finish();
      },
  };
}

}  // namespace tlsrelay
