#include "actors/pair_broker.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

namespace tlsrelay {

caf::behavior pair_broker(caf::event_based_actor* self, caf::actor net, caf::actor session,
                          conn_id client, std::chrono::milliseconds pending_timeout) {
  self->send(net, route_connection{client, caf::actor_cast<caf::actor>(self)});
  self->delayed_send(self, pending_timeout, pending_timeout_atom::value);
  return {
    [self, net, session, client](match_reverse& m) {
      self->send(net, join_pair{client, m.reverse, session, std::move(m.reverse_preamble)});
      self->quit();
      return true;
    },
    [self, client](connection_closed& ev) {
      if (ev.id == client) self->quit();
    },
    [self, net, client, pending_timeout](pending_timeout_atom) {
      spdlog::info("client connection {} closed: no reverse connection within {} ms", client.value,
                   pending_timeout.count());
      self->send(net, close_connection{client});
      self->quit();
    },
  };
}

}  // namespace tlsrelay
