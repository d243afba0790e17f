// pair_broker: a waiting client is closed when no reverse connection comes
// within the pending timeout (simulated time, 5 s in the fixture's config).
#include "relay_fixture.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

SCENARIO_METHOD(relay_fixture, "A client with no reverse connection within the pending timeout "
                               "is closed", "[pair_broker]") {
  GIVEN("a session with one waiting client") {
    REQUIRE(config.session.pending_timeout == 5s);
    auto s = server_connects();
    auto c = client_arrives(s);

    WHEN("just under the pending timeout passes") {
      advance_time(pending_timeout - 1ms);

      THEN("the client is still waiting") {
        CHECK_THAT(take_orders(), are_exactly({}));
        CHECK(clients_waiting(s.session) == 1);
      }

      AND_WHEN("a reverse connection then arrives") {
        const conn_id r = new_conn();
        net_sends(s.session, reverse_arrived{r, "192.0.2.10:50001", ""});
        settle();

        THEN("the client is joined with it, and is not closed when the timeout falls due") {
          CHECK_THAT(take_orders(), are_exactly({join_pair{c.id, r, s.session, ""}}));
          advance_time(1ms);
          advance_time(pending_timeout);
          CHECK_THAT(take_orders(), are_exactly({}));
        }
      }
    }

    WHEN("the pending timeout passes") {
      advance_time(pending_timeout);

      THEN("net closes the client, which no longer waits; the session goes on") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{c.id}}));
        CHECK(clients_waiting(s.session) == 0);
        CHECK_FALSE(has_ended(s.session));
      }

      AND_WHEN("the server goes away afterwards") {
        take_orders();
        net_sends(s.session, connection_closed{s.control, close_reason::peer_closed});
        settle();

        THEN("the timed-out client is not closed a second time") {
          CHECK_THAT(take_orders(), are_in_any_order({
                                      close_connection{s.control},
                                      route_pair{s.pair, caf::actor{}, reverse_framing::raw},
                                    }));
        }
      }

      AND_WHEN("a reverse connection arrives afterwards") {
        take_orders();
        const conn_id r = new_conn();
        net_sends(s.session, reverse_arrived{r, "192.0.2.10:50001", ""});
        settle();

        THEN("it finds nobody waiting and is closed") {
          CHECK_THAT(take_orders(), are_exactly({close_connection{r}}));
        }
      }
    }

    WHEN("the timeout falls due just as a reverse connection arrives (the timeout reaches the "
         "broker first)") {
      sched.advance_time(std::chrono::duration_cast<caf::timespan>(pending_timeout));
      const conn_id r = new_conn();
      net_sends(s.session, reverse_arrived{r, "192.0.2.10:50001", ""});
      settle();

      THEN("the client is closed, and so is the reverse connection: no join") {
        CHECK_THAT(take_orders(), are_in_any_order({close_connection{c.id}, close_connection{r}}));
      }
    }
  }

  GIVEN("a session with a client that arrived 2 s before a second one") {
    auto s = server_connects();
    auto first = client_arrives(s);
    advance_time(2s);
    auto second = client_arrives(s);

    WHEN("the first client's pending timeout passes") {
      advance_time(pending_timeout - 2s);

      THEN("only the first client is closed") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{first.id}}));
        CHECK(clients_waiting(s.session) == 1);
      }

      AND_WHEN("a reverse connection arrives") {
        take_orders();
        const conn_id r = new_conn();
        net_sends(s.session, reverse_arrived{r, "192.0.2.10:50001", ""});
        settle();

        THEN("it is joined with the second client") {
          CHECK_THAT(take_orders(), are_exactly({join_pair{second.id, r, s.session, ""}}));
        }
      }
    }

    WHEN("the second client's pending timeout passes too") {
      advance_time(pending_timeout);

      THEN("both are closed, first the first") {
        CHECK_THAT(take_orders(),
                   are_exactly({close_connection{first.id}, close_connection{second.id}}));
      }
    }
  }
}

SCENARIO_METHOD(relay_fixture, "One broker per session times out each of its waiting clients at "
                               "its own deadline", "[pair_broker]") {
  GIVEN("three clients of one session, arriving 1 s apart, the middle one leaving early") {
    auto s = server_connects();
    auto a = client_arrives(s);
    advance_time(1s);
    auto b = client_arrives(s);
    advance_time(1s);
    auto c = client_arrives(s);
    REQUIRE(a.broker == b.broker);
    REQUIRE(b.broker == c.broker);
    net_sends(b.broker, connection_closed{b.id, close_reason::peer_closed});
    settle();
    REQUIRE(clients_waiting(s.session) == 2);

    THEN("each is closed when its own pending timeout passes, not before, the one that left "
         "never, and the broker lives on for the next client") {
      advance_time(pending_timeout - 2s - 1ms);
      CHECK_THAT(take_orders(), are_exactly({}));
      advance_time(1ms);
      CHECK_THAT(take_orders(), are_exactly({close_connection{a.id}}));
      advance_time(1s);
      CHECK_THAT(take_orders(), are_exactly({}));
      advance_time(1s - 1ms);
      CHECK_THAT(take_orders(), are_exactly({}));
      advance_time(1ms);
      CHECK_THAT(take_orders(), are_exactly({close_connection{c.id}}));
      CHECK(clients_waiting(s.session) == 0);
      CHECK_FALSE(has_ended(c.broker));
      auto d = client_arrives(s);
      CHECK(d.broker == a.broker);
      advance_time(pending_timeout);
      CHECK_THAT(take_orders(), are_exactly({close_connection{d.id}}));
    }
  }
}
