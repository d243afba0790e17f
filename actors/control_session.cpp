#include "actors/control_session.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/pair_broker.hpp"
#include "protocol/v1.hpp"

namespace tlsrelay {
namespace {

using session_ptr = caf::stateful_actor<control_session_state>*;

void send_control(session_ptr self, const v1::relay_message& msg) {
  self->send(self->state.net, send_line{self->state.control, v1::format_line(msg)});
}

// Closes every connection of the session and terminates it.
void end_session(session_ptr self, const std::string& why) {
  auto& st = self->state;
  for (auto& w : st.waiting) {
    self->send(st.net, close_connection{w.client});
    self->send_exit(w.broker, caf::exit_reason::user_shutdown);
  }
  st.waiting.clear();
  for (auto& [client, reverse] : st.paired) {
    self->send(st.net, close_connection{client});
    self->send(st.net, close_connection{reverse});
  }
  st.paired.clear();
  self->send(st.net, close_connection{st.control});
  if (st.has_pair)
    spdlog::info("session {} ended ({}): public port {} served {} clients", st.peer, why,
                 st.pair.public_port, st.clients_served);
  else
    spdlog::info("session {} ended ({})", st.peer, why);
  self->quit();
}

// Hands `reverse` to the oldest waiting client; a broker that is gone by the
// time it is asked (its client left) passes the connection on to the next.
void match_reverse_connection(session_ptr self, conn_id reverse) {
  auto& st = self->state;
  if (st.waiting.empty()) {
    spdlog::debug("session {}: reverse connection with no waiting client, closed", st.peer);
    self->send(st.net, close_connection{reverse});
    return;
  }
  auto next = st.waiting.front();
  st.waiting.pop_front();
  st.paired.emplace(next.client, reverse);
  self->request(next.broker, caf::infinite, match_reverse{reverse})
    .then([self](bool) { ++self->state.clients_served; },
          [self, next, reverse](caf::error&) {
            self->state.paired.erase(next.client);
            match_reverse_connection(self, reverse);
          });
}

caf::result<caf::message> drop_unexpected(caf::scheduled_actor* self, caf::message_view& msg) {
  spdlog::error("{}: unexpected message dropped: {}", self->name(), to_string(msg.content()));
  return caf::none;
}

caf::behavior serving(session_ptr self) {
  return {
    [self](control_line& ev) {
      // v1 defines no server → relay line; the original dropped the session,
      // we only note it.
      spdlog::debug("session {}: ignoring line from v1 server: {:.80}", self->state.peer,
                    ev.line);
    },
    [self](connection_closed& ev) {
      if (ev.id == self->state.control) end_session(self, to_string(ev.reason));
    },
    [self](client_arrived& ev) {
      auto& st = self->state;
      if (st.waiting.size() >= st.config.max_pending) {
        spdlog::warn("session {}: {} clients already waiting, client {} closed", st.peer,
                     st.waiting.size(), ev.peer);
        self->send(st.net, close_connection{ev.id});
        return;
      }
      auto broker = self->spawn<caf::linked>(pair_broker, st.net,
                                                caf::actor_cast<caf::actor>(self), ev.id,
                                                st.config.pending_timeout);
      // Linked: a session that is killed takes its waiting clients' brokers
      // along; monitored: a broker that ends leaves the queue.
      self->monitor(broker);
      st.waiting.push_back({broker, ev.id});
      spdlog::debug("session {}: client {} waiting ({} waiting)", st.peer, ev.peer,
                    st.waiting.size());
      send_control(self, v1::new_connection{});
    },
    [self](reverse_arrived& ev) { match_reverse_connection(self, ev.id); },
    [self](pump_finished& ev) {
      self->state.paired.erase(ev.client);
      spdlog::debug("session {}: pair finished, {} bytes up, {} bytes down", self->state.peer,
                    ev.client_to_server_bytes, ev.server_to_client_bytes);
    },
  };
}

}  // namespace

caf::behavior control_session(caf::stateful_actor<control_session_state>* self, caf::actor pool,
                              caf::actor net, control_session_config config, conn_id control,
                              std::string peer) {
  auto& st = self->state;
  st.pool = std::move(pool);
  st.net = std::move(net);
  st.config = std::move(config);
  st.control = control;
  st.peer = std::move(peer);

  // A broker that ended before being matched (its client left or timed out)
  // leaves the queue.
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& waiting = self->state.waiting;
    for (auto it = waiting.begin(); it != waiting.end(); ++it) {
      if (it->broker.address() == msg.source) {
        waiting.erase(it);
        return;
      }
    }
  });
  // Arrivals while the pair is being acquired wait for the serving phase.
  self->set_default_handler(caf::skip);

  self->send(st.net, route_connection{st.control, caf::actor_cast<caf::actor>(self)});
  self->request(st.pool, caf::infinite, acquire_atom::value)
    .then(
      [self](pair_assignment& assigned) {
        auto& st = self->state;
        st.pair = assigned;
        st.has_pair = true;
        spdlog::info("session {} started: public port {}, reverse port {}", st.peer,
                     assigned.public_port, assigned.reverse_port);
        send_control(self, v1::public_listener{{st.config.myhost, assigned.public_port}});
        send_control(self, v1::reverse_listener{{st.config.myhost, assigned.reverse_port}});
        // From now on every expected message has a handler; anything else is a bug
        // to report, not to keep.
        self->set_default_handler(drop_unexpected);
        self->become(serving(self));
      },
      [self](caf::error& err) {
        auto& st = self->state;
        if (err == make_error(relay_errc::pool_exhausted)) {
          spdlog::warn("session {} refused: no_available_listeners", st.peer);
          self->send(st.net, send_and_close{st.control, v1::format_line(v1::no_available_listeners{})});
        } else {
          spdlog::error("session {}: pool manager failed: {}", st.peer,
                        self->system().render(err));
          self->send(st.net, close_connection{st.control});
        }
        self->quit();
      });

  return {
    [self](connection_closed& ev) {
      if (ev.id == self->state.control) end_session(self, to_string(ev.reason));
    },
  };
}

}  // namespace tlsrelay
