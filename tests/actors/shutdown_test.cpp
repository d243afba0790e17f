// Shutdown: an exit sent to the pool manager ends every actor of the relay,
// so the actor system can be destroyed without hanging.
#include "relay_fixture.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

SCENARIO_METHOD(relay_fixture, "The relay's actors all end when the pool manager is told to "
                               "exit", "[shutdown]") {
  GIVEN("two sessions, one with a joined pair and two waiting clients") {
    auto s1 = server_connects();
    auto s2 = server_connects();
    auto joined = client_arrives(s1);
    const conn_id reverse = new_conn();
    net_sends(s1.session, reverse_arrived{reverse, "192.0.2.10:50001", ""});
    settle();
    REQUIRE_THAT(take_orders(), are_exactly({join_pair{joined.id, reverse, s1.session, ""}}));
    auto w1 = client_arrives(s1);
    auto w2 = client_arrives(s1);
    REQUIRE(relay_actors_running() == 4);  // pool manager, two sessions, s1's broker

    WHEN("the pool manager is sent exit(user_shutdown)") {
      caf::anon_send_exit(pool, caf::exit_reason::user_shutdown);
      settle();

      THEN("the pool manager, both sessions and s1's broker have ended") {
        CHECK(has_ended(pool));
        CHECK(has_ended(s1.session));
        CHECK(has_ended(s2.session));
        CHECK(has_ended(w1.broker));
        CHECK(w2.broker == w1.broker);
        CHECK(relay_actors_running() == 0);
      }

      AND_THEN("a pending timeout falling due afterwards orders nothing") {
        take_orders();
        advance_time(pending_timeout);
        CHECK_THAT(take_orders(), are_exactly({}));
      }
    }
  }

  GIVEN("an idle relay") {
    WHEN("the pool manager is sent exit(user_shutdown)") {
      caf::anon_send_exit(pool, caf::exit_reason::user_shutdown);
      settle();

      THEN("it ends") {
        CHECK(has_ended(pool));
        CHECK(relay_actors_running() == 0);
      }
    }
  }
}
