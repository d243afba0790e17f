#include "net/net_bridge.hpp"

#include <caf/actor_companion.hpp>
#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/messages.hpp"
#include "net/relay_network.hpp"

namespace tlsrelay::net {

namespace {

// True (and the order handed over) if `content` is one `Order`.
template <class Order>
bool hand_over(caf::type_erased_tuple& content, relay_network& network) {
  if (!content.match_elements<Order>()) return false;
  network.order(std::move(content.get_mutable_as<Order>(0)));
  return true;
}

}  // namespace

// An actor_companion, not a scheduled actor: its "mailbox" is the sender's
// call. relay_network::order only posts onto the io thread, so it is cheap and
// never blocks the sending actor, and an order no longer waits for a CAF
// worker to run a bridge actor first (one scheduling hop less per order; a
// relayed connection takes three orders).
caf::actor spawn_net_bridge(caf::actor_system& system, relay_network& network) {
  // Hidden: it never terminates on its own, and serve's wait for all actors
  // must not wait for it.
  auto handle = system.spawn<caf::actor_companion, caf::hidden>();
  auto* self = caf::actor_cast<caf::actor_companion*>(handle);
  self->on_enqueue([network = &network](caf::mailbox_element_ptr element) {
    auto& content = element->content();
    if (hand_over<send_line>(content, *network) || hand_over<send_and_close>(content, *network) ||
        hand_over<close_connection>(content, *network) ||
        hand_over<line_credit>(content, *network) ||
        hand_over<route_connection>(content, *network) || hand_over<route_pair>(content, *network) ||
        hand_over<join_pair>(content, *network) || hand_over<stop_accepting>(content, *network))
      return;
    // Exit and down messages (an actor linked to or monitoring the bridge)
    // mean nothing to it; anything else is a bug worth a line.
    if (!content.match_elements<caf::exit_msg>() && !content.match_elements<caf::down_msg>())
      spdlog::error("net bridge: unexpected message dropped: {}", content.stringify());
  });
  return handle;
}

}  // namespace tlsrelay::net
