// control_session: announces clients, matches reverse connections FIFO,
// ignores v1 server lines, and releases everything when its server leaves.
#include "relay_fixture.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

SCENARIO_METHOD(relay_fixture, "Waiting clients are matched with reverse connections in arrival "
                               "order", "[control_session]") {
  GIVEN("a session with two waiting clients, the first arrived first") {
    auto s = server_connects();
    auto c1 = client_arrives(s);  // REQUIREs "new_connection\r\n" and a route to a broker
    auto c2 = client_arrives(s);
    REQUIRE(c1.broker == c2.broker);  // the session's one broker holds both

    WHEN("a reverse connection arrives") {
      const conn_id r1 = new_conn();
      net_sends(s.session, reverse_arrived{r1, "192.0.2.10:50001", ""});
      settle();

      THEN("it is joined with the first client, the pump reporting to the session") {
        CHECK_THAT(take_orders(), are_exactly({join_pair{c1.id, r1, s.session, ""}}));
        CHECK(clients_waiting(s.session) == 1);
      }

      AND_WHEN("a second reverse connection arrives") {
        take_orders();
        const conn_id r2 = new_conn();
        net_sends(s.session, reverse_arrived{r2, "192.0.2.10:50002", ""});
        settle();

        THEN("it is joined with the second client") {
          CHECK_THAT(take_orders(), are_exactly({join_pair{c2.id, r2, s.session, ""}}));
          CHECK(clients_waiting(s.session) == 0);
        }

        AND_WHEN("a third reverse connection arrives, with nobody left waiting") {
          take_orders();
          const conn_id r3 = new_conn();
          net_sends(s.session, reverse_arrived{r3, "192.0.2.10:50003", ""});
          settle();

          THEN("it is closed") {
            CHECK_THAT(take_orders(), are_exactly({close_connection{r3}}));
          }
        }
      }
    }

    WHEN("two reverse connections arrive together") {
      const conn_id r1 = new_conn();
      const conn_id r2 = new_conn();
      net_sends(s.session, reverse_arrived{r1, "192.0.2.10:50001", ""});
      net_sends(s.session, reverse_arrived{r2, "192.0.2.10:50002", ""});
      settle();

      THEN("the first goes to the first client, the second to the second") {
        CHECK_THAT(take_orders(), are_in_any_order({
                                    join_pair{c1.id, r1, s.session, ""},
                                    join_pair{c2.id, r2, s.session, ""},
                                  }));
      }
    }
  }
}

SCENARIO_METHOD(relay_fixture, "A client that leaves while waiting is dropped from the queue",
                "[control_session]") {
  GIVEN("a session with two waiting clients") {
    auto s = server_connects();
    auto c1 = client_arrives(s);
    auto c2 = client_arrives(s);

    WHEN("the first client leaves (net tells its broker, to which it is routed)") {
      net_sends(c1.broker, connection_closed{c1.id, close_reason::peer_closed});
      settle();

      THEN("nothing is ordered (the connection is gone already) and it no longer waits") {
        CHECK_THAT(take_orders(), are_exactly({}));
        CHECK(clients_waiting(s.session) == 1);
        CHECK_FALSE(has_ended(s.session));
      }

      AND_WHEN("a reverse connection arrives") {
        const conn_id r = new_conn();
        net_sends(s.session, reverse_arrived{r, "192.0.2.10:50001", ""});
        settle();

        THEN("it is joined with the second client, not the departed one") {
          CHECK_THAT(take_orders(), are_exactly({join_pair{c2.id, r, s.session, ""}}));
        }
      }

      AND_WHEN("the server goes away") {
        take_orders();
        net_sends(s.session, connection_closed{s.control, close_reason::peer_closed});
        settle();

        THEN("only the client still waiting is closed, not the departed one") {
          CHECK_THAT(take_orders(), are_in_any_order({
                                      close_connection{c2.id},
                                      close_connection{s.control},
                                      route_pair{s.pair, caf::actor{}, reverse_framing::raw},
                                    }));
        }
      }
    }

    WHEN("the first client leaves and a reverse connection arrives at the same moment "
         "(the departure reaches the broker first)") {
      const conn_id r = new_conn();
      net_sends(c1.broker, connection_closed{c1.id, close_reason::peer_error});
      net_sends(s.session, reverse_arrived{r, "192.0.2.10:50001", ""});
      settle();

      THEN("the reverse connection is joined with the second client") {
        CHECK_THAT(take_orders(), are_exactly({join_pair{c2.id, r, s.session, ""}}));
      }
    }

    WHEN("a reverse connection arrives and the first client leaves at the same moment "
         "(the reverse connection reaches the session first)") {
      const conn_id r = new_conn();
      net_sends(s.session, reverse_arrived{r, "192.0.2.10:50001", ""});
      net_sends(c1.broker, connection_closed{c1.id, close_reason::peer_closed});
      settle();

      THEN("the reverse connection is joined with the second client") {
        CHECK_THAT(take_orders(), are_exactly({join_pair{c2.id, r, s.session, ""}}));
      }
    }

    WHEN("both clients leave, then a reverse connection arrives") {
      net_sends(c1.broker, connection_closed{c1.id, close_reason::peer_closed});
      net_sends(c2.broker, connection_closed{c2.id, close_reason::peer_closed});
      settle();
      const conn_id r = new_conn();
      net_sends(s.session, reverse_arrived{r, "192.0.2.10:50001", ""});
      settle();

      THEN("the reverse connection is closed") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{r}}));
      }
    }
  }
}

SCENARIO_METHOD(relay_fixture, "A reverse connection with no waiting client is closed",
                "[control_session]") {
  GIVEN("a session nobody has connected to yet") {
    auto s = server_connects();

    WHEN("a reverse connection arrives") {
      const conn_id r = new_conn();
      net_sends(s.session, reverse_arrived{r, "192.0.2.10:50001", ""});
      settle();

      THEN("it is closed, and the session goes on") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{r}}));
        CHECK_FALSE(has_ended(s.session));
        auto c = client_arrives(s);
        const conn_id r2 = new_conn();
        net_sends(s.session, reverse_arrived{r2, "192.0.2.10:50002", ""});
        settle();
        CHECK_THAT(take_orders(), are_exactly({join_pair{c.id, r2, s.session, ""}}));
      }
    }
  }
}

SCENARIO_METHOD(relay_fixture, "Lines from a v1 server are ignored", "[control_session]") {
  GIVEN("a serving session") {
    auto s = server_connects();

    WHEN("the server sends lines on its control connection") {
      net_sends(s.session, control_line{s.control, "new_connection"});
      net_sends(s.session, control_line{s.control, "hello 2 token=abc"});
      net_sends(s.session, control_line{s.control, ""});
      net_sends(s.session, control_line{s.control, std::string(1000, 'x')});
      settle();

      THEN("no order results and the session keeps serving") {
        CHECK_THAT(take_orders(), are_exactly({}));
        CHECK_FALSE(has_ended(s.session));
        auto c = client_arrives(s);
        CHECK(c.broker);
      }
    }
  }
}

SCENARIO_METHOD(relay_fixture, "Clients arriving while the session acquires its pair are "
                               "announced after the listener lines", "[control_session]") {
  GIVEN("a server whose session has asked the pool manager for a pair") {
    const conn_id control = new_conn();
    net_sends(pool, control_connected{control, {"192.0.2.1", 40001}, 1, true});
    // One message at a time until net has been told to route the control
    // connection: the session exists and its request for a pair is on its way.
    caf::actor session;
    while (!session && step()) {
      for (auto& o : orders_so_far())
        if (auto* r = std::get_if<route_connection>(&o); r && r->id == control) session = r->owner;
    }
    REQUIRE(session);
    name(session, "session");
    REQUIRE(orders_so_far().size() == 1);

    WHEN("a client arrival reaches the session before the pool manager's answer (net may "
         "announce a client as soon as the pair is routed, before that answer is sent)") {
      const conn_id c = new_conn();
      net_sends(session, client_arrived{c, {"198.51.100.1", 5000}, {"127.0.0.1", 12004}});
      settle();

      THEN("the server is told its listeners first, then new_connection") {
        std::vector<std::string> lines;
        for (auto& o : take_orders())
          if (auto* l = std::get_if<send_line>(&o)) {
            CHECK(l->id == control);
            lines.push_back(l->line);
          }
        CHECK(lines == std::vector<std::string>{"public_listener 127.0.0.1:12004\r\n",
                                                "reverse_listener 127.0.0.1:12001\r\n",
                                                "new_connection\r\n"});
      }
    }
  }
}

SCENARIO_METHOD(relay_fixture, "When its server leaves, a session releases everything",
                "[control_session]") {
  GIVEN("a full pool; the session on pair 0 has a joined pair and a waiting client") {
    auto s = server_connects();
    auto other1 = server_connects();
    auto other2 = server_connects();
    REQUIRE(s.pair == 0);
    auto joined = client_arrives(s);
    const conn_id reverse = new_conn();
    net_sends(s.session, reverse_arrived{reverse, "192.0.2.10:50001", ""});
    settle();
    REQUIRE_THAT(take_orders(), are_exactly({join_pair{joined.id, reverse, s.session, ""}}));
    auto waiting = client_arrives(s);

    WHEN("the control connection of the session closes") {
      net_sends(s.session, connection_closed{s.control, close_reason::peer_closed});
      settle();

      THEN("net closes the waiting client, both sides of the joined pair and the control "
           "connection, and unroutes pair 0") {
        CHECK_THAT(take_orders(), are_in_any_order({
                                    close_connection{waiting.id},
                                    close_connection{joined.id},
                                    close_connection{reverse},
                                    close_connection{s.control},
                                    route_pair{0, caf::actor{}, reverse_framing::raw},
                                  }));
        CHECK(has_ended(s.session));
        CHECK(has_ended(waiting.broker));
        CHECK_FALSE(has_ended(other1.session));
        CHECK_FALSE(has_ended(other2.session));
      }

      AND_THEN("pair 0 is back in the pool: the next server gets it") {
        take_orders();
        auto next = server_connects();
        CHECK(next.pair == 0);
        CHECK(next.lines == std::vector<std::string>{"public_listener 127.0.0.1:12004\r\n",
                                                     "reverse_listener 127.0.0.1:12001\r\n"});
      }

      AND_THEN("the waiting client's pending timeout, when it falls due, orders nothing more") {
        take_orders();
        advance_time(pending_timeout);
        CHECK_THAT(take_orders(), are_exactly({}));
      }
    }

    WHEN("the joined pair finishes first, then the control connection closes") {
      net_sends(s.session, pump_finished{joined.id, reverse, true, 1234, 5678});
      settle();
      REQUIRE_THAT(take_orders(), are_exactly({}));
      net_sends(s.session, connection_closed{s.control, close_reason::write_backlog});
      settle();

      THEN("the finished pair is not closed again") {
        CHECK_THAT(take_orders(), are_in_any_order({
                                    close_connection{waiting.id},
                                    close_connection{s.control},
                                    route_pair{0, caf::actor{}, reverse_framing::raw},
                                  }));
      }
    }

    WHEN("the control connection closes while a reverse connection is being handed to the "
         "waiting client's broker") {
      const conn_id r2 = new_conn();
      net_sends(s.session, reverse_arrived{r2, "192.0.2.10:50002", ""});
      net_sends(s.session, connection_closed{s.control, close_reason::peer_closed});
      settle();

      THEN("that client and that reverse connection are closed along with the rest (a join "
           "order for them that comes late is harmless: net closes what is already gone)") {
        orders got = take_orders();
        orders without_late_join;
        for (auto& o : got)
          if (!same_order(o, join_pair{waiting.id, r2, s.session, ""}))
            without_late_join.push_back(o);
        CHECK_THAT(without_late_join, are_in_any_order({
                                        close_connection{waiting.id},
                                        close_connection{r2},
                                        close_connection{joined.id},
                                        close_connection{reverse},
                                        close_connection{s.control},
                                        route_pair{0, caf::actor{}, reverse_framing::raw},
                                      }));
        CHECK(has_ended(waiting.broker));
      }
    }

    WHEN("a connection other than the control connection is reported closed to the session") {
      net_sends(s.session, connection_closed{reverse, close_reason::peer_closed});
      settle();

      THEN("the session goes on") {
        CHECK_THAT(take_orders(), are_exactly({}));
        CHECK_FALSE(has_ended(s.session));
      }
    }
  }
}

SCENARIO_METHOD(relay_fixture, "Sessions do not share their clients", "[control_session]") {
  GIVEN("two sessions, a client waiting on the first") {
    auto s1 = server_connects();
    auto s2 = server_connects();
    auto c = client_arrives(s1);

    WHEN("a reverse connection arrives on the second session's reverse port") {
      const conn_id r = new_conn();
      net_sends(s2.session, reverse_arrived{r, "192.0.2.20:50001", ""});
      settle();

      THEN("it is closed, and the first session's client keeps waiting for its own") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{r}}));
        const conn_id r1 = new_conn();
        net_sends(s1.session, reverse_arrived{r1, "192.0.2.10:50001", ""});
        settle();
        CHECK_THAT(take_orders(), are_exactly({join_pair{c.id, r1, s1.session, ""}}));
      }
    }
  }
}
