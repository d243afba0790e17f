// The one adapter from actors to sockets: an actor handle whose messages (the
// orders of actors/messages.hpp) are handed to relay_network as they are sent.
#pragma once

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

namespace tlsrelay::net {

class relay_network;

// `network` must outlive every actor that may still send to the returned
// handle (serve waits for all actors before destroying it).
caf::actor spawn_net_bridge(caf::actor_system& system, relay_network& network);

}  // namespace tlsrelay::net
