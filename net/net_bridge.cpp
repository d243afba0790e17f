#include "net/net_bridge.hpp"

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "net/relay_network.hpp"

namespace tlsrelay::net {

namespace {

// Every handler is a post onto the io thread, so it never blocks a CAF worker.
caf::behavior net_bridge(caf::event_based_actor*, relay_network* network) {
  return {
    [network](send_line& o) { network->order(std::move(o)); },
    [network](send_and_close& o) { network->order(std::move(o)); },
    [network](close_connection& o) { network->order(o); },
    [network](route_connection& o) { network->order(std::move(o)); },
    [network](route_pair& o) { network->order(std::move(o)); },
    [network](join_pair& o) { network->order(std::move(o)); },
  };
}

}  // namespace

caf::actor spawn_net_bridge(caf::actor_system& system, relay_network& network) {
  // Spawned with an argument: CAF 0.17.6 dereferences a null argument tuple
  // when a function actor takes none (UBSan reports it).
  return system.spawn(net_bridge, &network);
}

}  // namespace tlsrelay::net
