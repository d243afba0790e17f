// pair_broker: one per waiting client, from its arrival until it is matched
// with a reverse connection, leaves, or waits longer than the pending timeout.
// It owns the client connection meanwhile (so it hears the client leave) and,
// when matched, tells net/ to join the two; the pair is then the session's.
#pragma once

#include <chrono>

#include <caf/actor.hpp>
#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>

#include "actors/messages.hpp"

namespace tlsrelay {

caf::behavior pair_broker(caf::event_based_actor* self, caf::actor net, caf::actor session,
                          conn_id client, std::chrono::milliseconds pending_timeout);

}  // namespace tlsrelay
