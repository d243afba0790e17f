#include "actors/pool_manager.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/messages.hpp"
#include "protocol/wire.hpp"

namespace tlsrelay {

caf::behavior pool_manager(caf::stateful_actor<pool_manager_state>* self, caf::actor net,
                           pool_manager_config config) {
  auto& st = self->state;
  st.net = std::move(net);
  st.config = std::move(config);
  for (pair_index i = 0; i < st.config.layout.pair_count(); ++i) st.free_pairs.push_back(i);

  // Shutdown (or a crash of ours) takes every session down with us.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    for (auto& [addr, session] : self->state.sessions) self->send_exit(session, msg.reason);
    self->quit(msg.reason);
  });

  // A session ended, however it ended: its pair goes to the back of the queue.
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    st.sessions.erase(msg.source);
    auto it = st.pair_of.find(msg.source);
    if (it == st.pair_of.end()) return;
    const pair_index pair = it->second;
    st.pair_of.erase(it);
    self->send(st.net, route_pair{pair, caf::actor{}});
    st.free_pairs.push_back(pair);
    spdlog::debug("pair {} (public port {}) returned to the pool, {} free", pair,
                  st.config.layout.public_port(pair), st.free_pairs.size());
  });

  return {
    [self](control_connected& ev) {
      auto& st = self->state;
      auto session = self->spawn<caf::monitored>(control_session, caf::actor_cast<caf::actor>(self), st.net,
                                                 st.config.session, ev.id, std::move(ev.peer));
      st.sessions.emplace(session.address(), session);
    },
    [self](acquire_atom) -> caf::result<pair_assignment> {
      auto& st = self->state;
      if (st.free_pairs.empty()) {
        spdlog::warn("pool exhausted: all {} pairs are in use", st.config.layout.pair_count());
        return make_error(relay_errc::pool_exhausted);
      }
      auto session = caf::actor_cast<caf::actor>(self->current_sender());
      if (!session) return caf::sec::invalid_argument;
      const pair_index pair = st.free_pairs.front();
      st.free_pairs.pop_front();
      st.pair_of[session.address()] = pair;
      // Routed before the reply, so no client of this pair is ever unannounced.
      self->send(st.net, route_pair{pair, session});
      return pair_assignment{pair, st.config.layout.public_port(pair),
                             st.config.layout.reverse_port(pair)};
    },
    [self](unrouted_arrival& ev) {
      spdlog::debug("{} connection from {} on unowned pair {}: no controller linked",
                    to_string(ev.kind), ev.peer, ev.pair);
      self->send(self->state.net, send_and_close{ev.id, std::string(wire::no_controller_linked)});
    },
  };
}

}  // namespace tlsrelay
