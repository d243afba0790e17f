// The drain as the actors decide it (SIGTERM sends drain_atom to the pool
// manager): what net is told, and when the drain is reported over.
#include "tests/actors/relay_fixture.hpp"

#include "protocol/wire.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

namespace {

const std::string draining_line =
  "error draining " + std::string(wire::draining_text) + "\r\n";

void start_drain(relay_fixture& f, std::chrono::milliseconds timeout) {
  caf::anon_send(f.pool, drain_atom::value, static_cast<std::uint64_t>(timeout.count()));
  f.settle();
}

}  // namespace

SCENARIO("drain: net stops accepting, a v1 session keeps its control connection and its pair, "
         "closes a late client and ends when its pair does, then the drain is over",
         "[actors][drain]") {
  relay_fixture f(6, "127.0.0.1", false);
  int drained = 0;
  f.config.drained = [&drained] { ++drained; };
  f.start();
  const auto s = f.server_connects();
  const auto c = f.client_arrives(s);
  const auto r = f.reverse_arrives(s, "");
  f.take_orders();  // the join

  start_drain(f, 30s);
  CHECK_THAT(f.take_orders(), are_exactly({stop_accepting{}}));
  CHECK_FALSE(f.has_ended(s.session));
  CHECK(drained == 0);

  WHEN("a client that connected just before the public port closed arrives") {
    const auto late = f.new_conn();
    f.net_sends(s.session, client_arrived{late, {"198.51.100.7", 4000}, {"127.0.0.1", 12004}});
    f.settle();
    THEN("it is closed at once, without a new_connection line") {
      CHECK_THAT(f.take_orders(), are_exactly({close_connection{late}}));
    }
  }
  WHEN("the pair ends") {
    f.net_sends(s.session, pump_finished{c.id, r, true, 10, 20, pair_end::closed});
    f.settle();
    THEN("the session closes its control connection (v1 has no line for it) and the drain is "
         "over") {
      CHECK_THAT(f.take_orders(),
                 are_in_any_order({close_connection{s.control},
                                   route_pair{s.pair, caf::actor{}, reverse_framing::raw}}));
      CHECK(f.has_ended(s.session));
      CHECK(drained == 1);
    }
  }
}

SCENARIO("drain: a v2 session is told `error draining` at once while its pair runs on, and "
         "the drain timeout reports the drain over",
         "[actors][drain][v2]") {
  v2_fixture f;
  int drained = 0;
  f.config.drained = [&drained] { ++drained; };
  f.start();
  const auto s = f.v2_server_connects();
  const auto c = f.v2_client_arrives(s);
  f.reverse_arrives(s, "accept " + c.accept_id);
  f.take_orders();  // the join

  start_drain(f, 5s);
  CHECK_THAT(f.take_orders(),
             are_exactly({stop_accepting{}, send_and_close{s.control, draining_line}}));
  CHECK_FALSE(f.has_ended(s.session));
  f.advance_time(4s);
  CHECK(drained == 0);
  f.advance_time(1s);
  CHECK(drained == 1);
  // Cutting the pair is left to the relay's stop.
  CHECK(f.take_orders().empty());
}

SCENARIO("drain: with no session the drain is over at once, and a server whose handshake "
         "completes during the drain is refused",
         "[actors][drain]") {
  relay_fixture f(6, "127.0.0.1", false);
  int drained = 0;
  f.config.drained = [&drained] { ++drained; };
  f.start();
  start_drain(f, 30s);
  CHECK_THAT(f.take_orders(), are_exactly({stop_accepting{}}));
  CHECK(drained == 1);

  const auto v2 = f.new_conn();
  f.net_sends(f.pool, control_connected{v2, {"192.0.2.10", 40000}, 2, true, std::string(64, 'a')});
  const auto v1 = f.new_conn();
  f.net_sends(f.pool, control_connected{v1, {"192.0.2.11", 40001}, 1, true, std::string(64, 'b')});
  f.settle();
  CHECK_THAT(f.take_orders(),
             are_exactly({send_and_close{v2, draining_line}, close_connection{v1}}));
  CHECK(drained == 1);
}
