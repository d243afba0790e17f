// pool_manager: hands pairs out in order, refuses when none is free, takes a
// pair back to the end of the queue, answers connections on unowned pairs.
#include "relay_fixture.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

SCENARIO_METHOD(relay_fixture, "The pool hands out its pairs in order", "[pool_manager]") {
  GIVEN("a pool of three pairs: reverse ports 12001-12003, public ports 12004-12006") {
    REQUIRE(config.layout.pair_count() == 3);

    WHEN("three servers complete their handshakes, one after another") {
      std::vector<conn_id> controls;
      std::vector<orders> seen;
      for (int i = 0; i < 3; ++i) {
        controls.push_back(new_conn());
        const host_port peer{"192.0.2.1", static_cast<std::uint16_t>(40000 + i)};
        net_sends(pool, control_connected{controls.back(), peer, 1, true});
        settle();
        seen.push_back(take_orders());
      }

      THEN("each gets its own session, routed pair 0, 1, 2 and told its ports on its control "
           "connection") {
        const std::vector<std::vector<std::string>> lines = {
          {"public_listener 127.0.0.1:12004\r\n", "reverse_listener 127.0.0.1:12001\r\n"},
          {"public_listener 127.0.0.1:12005\r\n", "reverse_listener 127.0.0.1:12002\r\n"},
          {"public_listener 127.0.0.1:12006\r\n", "reverse_listener 127.0.0.1:12003\r\n"},
        };
        std::vector<caf::actor> sessions;
        for (std::size_t i = 0; i < 3; ++i) {
          INFO("server " << i + 1);
          REQUIRE_FALSE(seen[i].empty());
          auto* routed = std::get_if<route_connection>(&seen[i].front());
          REQUIRE(routed);
          const caf::actor session = routed->owner;
          REQUIRE(session);
          CHECK(session != pool);
          name(session, "session " + std::to_string(i + 1));
          sessions.push_back(session);
          CHECK_THAT(seen[i], are_exactly({
                                route_connection{controls[i], session},
                                route_pair{static_cast<pair_index>(i), session,
                                           reverse_framing::raw},
                                send_line{controls[i], lines[i][0]},
                                send_line{controls[i], lines[i][1]},
                              }));
        }
        CHECK(sessions[0] != sessions[1]);
        CHECK(sessions[1] != sessions[2]);
        CHECK(sessions[0] != sessions[2]);
      }
    }
  }
}

SCENARIO_METHOD(relay_fixture_named_host, "Listener lines carry the configured host",
                "[pool_manager]") {
  GIVEN("a relay configured with myhost relay.example.org") {
    WHEN("a server connects") {
      auto s = server_connects();

      THEN("its listener lines name that host") {
        CHECK(s.pair == 0);
        CHECK(s.lines == std::vector<std::string>{"public_listener relay.example.org:12004\r\n",
                                                  "reverse_listener relay.example.org:12001\r\n"});
      }
    }
  }
}

SCENARIO_METHOD(relay_fixture, "An exhausted pool answers no_available_listeners",
                "[pool_manager]") {
  GIVEN("three sessions holding all three pairs") {
    auto s1 = server_connects();
    auto s2 = server_connects();
    auto s3 = server_connects();
    REQUIRE(std::vector<pair_index>{s1.pair, s2.pair, s3.pair} ==
            std::vector<pair_index>{0, 1, 2});

    WHEN("a fourth server connects") {
      const conn_id c4 = new_conn();
      net_sends(pool, control_connected{c4, {"192.0.2.4", 40004}, 1, true});
      settle();
      const auto got = take_orders();

      THEN("it is told no_available_listeners and closed; no pair, no listener line") {
        REQUIRE_FALSE(got.empty());
        auto* routed = std::get_if<route_connection>(&got.front());
        REQUIRE(routed);
        const caf::actor refused = routed->owner;
        name(refused, "refused session");
        CHECK_THAT(got, are_exactly({
                          route_connection{c4, refused},
                          send_and_close{c4, "no_available_listeners\r\n"},
                        }));

        AND_THEN("its session ends, and the pool is still in service") {
          watch(refused);
          settle();
          CHECK(has_ended(refused));
          CHECK(relay_actors_running() == 4);  // the pool manager and three sessions
          net_sends(s2.session, connection_closed{s2.control, close_reason::peer_closed});
          settle();
          CHECK_THAT(take_orders(), are_in_any_order({
                                      close_connection{s2.control},
                                      route_pair{1, caf::actor{}, reverse_framing::raw},
                                    }));
          auto s5 = server_connects();
          CHECK(s5.pair == 1);
        }
      }
    }
  }
}

SCENARIO_METHOD(relay_fixture, "A pair returns to the back of the queue", "[pool_manager]") {
  GIVEN("sessions on pairs 0 and 1, pair 2 still free") {
    auto s0 = server_connects();
    auto s1 = server_connects();
    REQUIRE(s0.pair == 0);
    REQUIRE(s1.pair == 1);

    WHEN("the server of pair 0 goes away") {
      net_sends(s0.session, connection_closed{s0.control, close_reason::peer_closed});
      settle();

      THEN("its control connection is closed and pair 0 is unrouted") {
        CHECK_THAT(take_orders(), are_in_any_order({
                                    close_connection{s0.control},
                                    route_pair{0, caf::actor{}, reverse_framing::raw},
                                  }));
        settle();
        CHECK(has_ended(s0.session));
      }

      AND_WHEN("three more servers connect") {
        take_orders();
        auto a = server_connects();
        auto b = server_connects();
        const conn_id c = new_conn();
        net_sends(pool, control_connected{c, {"192.0.2.9", 40009}, 1, true});
        settle();

        THEN("the first gets pair 2, free before pair 0 came back, the second pair 0, the "
             "third is refused") {
          CHECK(a.pair == 2);
          CHECK(a.lines == std::vector<std::string>{"public_listener 127.0.0.1:12006\r\n",
                                                    "reverse_listener 127.0.0.1:12003\r\n"});
          CHECK(b.pair == 0);
          CHECK(b.lines == std::vector<std::string>{"public_listener 127.0.0.1:12004\r\n",
                                                    "reverse_listener 127.0.0.1:12001\r\n"});
          const auto got = take_orders();
          REQUIRE(got.size() == 2);
          CHECK(same_order(got[1], send_and_close{c, "no_available_listeners\r\n"}));
        }
      }
    }

    WHEN("the server of pair 1 goes away, then the server of pair 0") {
      net_sends(s1.session, connection_closed{s1.control, close_reason::peer_error});
      settle();
      net_sends(s0.session, connection_closed{s0.control, close_reason::line_too_long});
      settle();
      take_orders();

      THEN("new servers get pairs 2, 1, 0: the order in which they became free") {
        CHECK(server_connects().pair == 2);
        CHECK(server_connects().pair == 1);
        CHECK(server_connects().pair == 0);
      }
    }
  }
}

SCENARIO_METHOD(relay_fixture, "A server that leaves before it has its pair leaks nothing",
                "[pool_manager]") {
  GIVEN("a pool of three free pairs") {
    WHEN("a server's control connection closes right after its session routed it, before the "
         "session heard back from the pool manager") {
      const conn_id c = new_conn();
      net_sends(pool, control_connected{c, {"192.0.2.1", 40001}, 1, true});
      // One message at a time until net has been told to route the control
      // connection: the session now exists and has asked for a pair.
      caf::actor session;
      while (!session && step()) {
        for (auto& o : orders_so_far())
          if (auto* r = std::get_if<route_connection>(&o); r && r->id == c) session = r->owner;
      }
      REQUIRE(session);
      name(session, "short-lived session");
      net_sends(session, connection_closed{c, close_reason::peer_closed});
      settle();

      THEN("the control connection is closed and the pair it got is unrouted again") {
        orders got = take_orders();
        orders without_lines;
        for (auto& o : got)
          if (!std::holds_alternative<send_line>(o)) without_lines.push_back(o);
        CHECK_THAT(without_lines, are_in_any_order({
                                    route_connection{c, session},
                                    route_pair{0, session, reverse_framing::raw},
                                    close_connection{c},
                                    route_pair{0, caf::actor{}, reverse_framing::raw},
                                  }));
      }
      AND_THEN("that pair went to the back of the queue: next servers get 1, 2, 0") {
        take_orders();
        CHECK(server_connects().pair == 1);
        CHECK(server_connects().pair == 2);
        CHECK(server_connects().pair == 0);
      }
    }
  }
}

SCENARIO_METHOD(relay_fixture, "A connection on a pair nobody owns gets 'no controller linked'",
                "[pool_manager]") {
  GIVEN("a session on pair 0; pairs 1 and 2 unowned") {
    auto s = server_connects();
    REQUIRE(s.pair == 0);

    WHEN("a client connects to the public port of pair 1") {
      const conn_id c = new_conn();
      net_sends(pool, unrouted_arrival{c, 1, port_kind::public_port, "198.51.100.1:5000"});
      settle();

      THEN("it is sent exactly \"no controller linked\", no line ending, and closed") {
        CHECK_THAT(take_orders(), are_exactly({send_and_close{c, "no controller linked"}}));
      }
    }

    WHEN("someone connects to the reverse port of pair 2") {
      const conn_id c = new_conn();
      net_sends(pool, unrouted_arrival{c, 2, port_kind::reverse_port, "198.51.100.2:5000"});
      settle();

      THEN("it gets the same answer") {
        CHECK_THAT(take_orders(), are_exactly({send_and_close{c, "no controller linked"}}));
      }
      AND_THEN("the session on pair 0 is not disturbed") {
        take_orders();
        CHECK_FALSE(has_ended(s.session));
        client_arrives(s);
      }
    }
  }
}
