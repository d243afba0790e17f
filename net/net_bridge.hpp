// The one adapter from actors to sockets: an actor whose only behavior is to
// hand each order message to relay_network, which runs it on the io thread.
#pragma once

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

namespace tlsrelay::net {

class relay_network;

// `network` must outlive the returned actor.
caf::actor spawn_net_bridge(caf::actor_system& system, relay_network& network);

}  // namespace tlsrelay::net
