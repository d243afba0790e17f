#include "net/net_bridge.hpp"

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "net/relay_network.hpp"

namespace tlsrelay::net {

caf::actor spawn_net_bridge(caf::actor_system& system, relay_network& network) {
  // Detached from the scheduler's actors only by being trivial: every handler
  // is a post onto the io thread, so it never blocks a CAF worker.
  return system.spawn([&network](caf::event_based_actor*) -> caf::behavior {
    return {
      [&network](send_line& o) { network.order(std::move(o)); },
      [&network](send_and_close& o) { network.order(std::move(o)); },
      [&network](close_connection& o) { network.order(o); },
      [&network](route_connection& o) { network.order(std::move(o)); },
      [&network](route_pair& o) { network.order(std::move(o)); },
      [&network](join_pair& o) { network.order(std::move(o)); },
    };
  });
}

}  // namespace tlsrelay::net
