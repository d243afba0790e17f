// A serving v2 session: each client is announced with a fresh 128-bit id and
// its address; a reverse connection is joined with the client its first line
// `accept <ID>` names, and closed when it names none that waits (the waiting
// clients are not disturbed); with proxy_protocol the join carries a PROXY v2
// header; the session pings its server and ends when it hears nothing.
#include "relay_fixture.hpp"

#include "protocol/proxy_header.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

namespace {

std::string accept_line(const relay_fixture::v2_client& c) { return "accept " + c.accept_id; }

// The same id with its last hex digit changed: one that was never issued.
std::string other_id(const std::string& id) {
  std::string out = id;
  out.back() = out.back() == '0' ? '1' : '0';
  return out;
}

}  // namespace

SCENARIO_METHOD(v2_fixture, "A v2 reverse connection is joined with the client its accept line "
                            "names", "[v2][pairing]") {
  GIVEN("a v2 session with two waiting clients, the first arrived first") {
    start();
    auto s = v2_server_connects();
    auto c1 = v2_client_arrives(s, {"198.51.100.20", 51001});  // REQUIREs the new_connection line
    auto c2 = v2_client_arrives(s, {"2001:db8::20", 51002});

    THEN("each was announced with its own id and its own address") {
      CHECK(c1.accept_id != c2.accept_id);
      CHECK(c1.accept_id != s.session_secret);
      CHECK(c1.peer == host_port{"198.51.100.20", 51001});
      CHECK(c2.peer == host_port{"2001:db8::20", 51002});  // written as [2001:db8::20]:51002
    }

    WHEN("the reverse connection for the SECOND id arrives first") {
      const conn_id r2 = reverse_arrives(s, accept_line(c2));

      THEN("it is joined with the second client, without a preamble") {
        CHECK_THAT(take_orders(), are_exactly({join_pair{c2.id, r2, s.session, ""}}));
        CHECK(clients_waiting(s.session) == 1);
      }

      AND_WHEN("then the one for the first id") {
        take_orders();
        const conn_id r1 = reverse_arrives(s, accept_line(c1));

        THEN("it is joined with the first client") {
          CHECK_THAT(take_orders(), are_exactly({join_pair{c1.id, r1, s.session, ""}}));
          CHECK(clients_waiting(s.session) == 0);
        }
      }
    }

    WHEN("both reverse connections arrive together, the first client's first") {
      const conn_id r1 = new_conn();
      const conn_id r2 = new_conn();
      net_sends(s.session, reverse_arrived{r1, "192.0.2.10:50001", accept_line(c1)});
      net_sends(s.session, reverse_arrived{r2, "192.0.2.10:50002", accept_line(c2)});
      settle();

      THEN("each is joined with its own client") {
        CHECK_THAT(take_orders(), are_in_any_order({
                                    join_pair{c1.id, r1, s.session, ""},
                                    join_pair{c2.id, r2, s.session, ""},
                                  }));
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "A v2 reverse connection that names no waiting client is closed; "
                            "the waiting clients are not disturbed", "[v2][pairing]") {
  GIVEN("a v2 session with a waiting client") {
    start();
    auto s = v2_server_connects();
    auto c = v2_client_arrives(s);

    struct bad_first_line {
      std::string why;
      std::string line;
    };
    const std::vector<bad_first_line> cases = {
      {"an id that was never issued", "accept " + other_id(c.accept_id)},
      {"the session secret instead of an id", "accept " + s.session_secret},
      {"an empty first line (none in time, or one too long)", ""},
      {"a first line that is no accept line", "GET / HTTP/1.1"},
      {"accept without an id", "accept"},
      {"an id one digit short", "accept " + c.accept_id.substr(1)},
      {"the id followed by more", "accept " + c.accept_id + " x"},
    };
    for (const auto& k : cases) {
      WHEN("a reverse connection arrives with " + k.why) {
        const conn_id r = reverse_arrives(s, k.line);

        THEN("that reverse connection is closed; the client keeps waiting, the session serving") {
          CHECK_THAT(take_orders(), are_exactly({close_connection{r}}));
          CHECK(clients_waiting(s.session) == 1);
          CHECK_FALSE(has_ended(s.session));
        }
        AND_THEN("the client is still joined by a reverse connection with its id") {
          take_orders();
          const conn_id good = reverse_arrives(s, accept_line(c));
          CHECK_THAT(take_orders(), are_exactly({join_pair{c.id, good, s.session, ""}}));
        }
      }
    }
  }

  GIVEN("a v2 session whose first client was joined, a second one waiting") {
    start();
    auto s = v2_server_connects();
    auto c1 = v2_client_arrives(s);
    auto c2 = v2_client_arrives(s);
    const conn_id r1 = reverse_arrives(s, accept_line(c1));
    REQUIRE_THAT(take_orders(), are_exactly({join_pair{c1.id, r1, s.session, ""}}));

    WHEN("another reverse connection arrives with the first client's id, already used") {
      const conn_id again = reverse_arrives(s, accept_line(c1));

      THEN("it is closed, and the second client is still joined by its own id") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{again}}));
        CHECK(clients_waiting(s.session) == 1);
        const conn_id r2 = reverse_arrives(s, accept_line(c2));
        CHECK_THAT(take_orders(), are_exactly({join_pair{c2.id, r2, s.session, ""}}));
      }
    }
  }

  GIVEN("a v2 session with two waiting clients") {
    start();
    auto s = v2_server_connects();
    auto c1 = v2_client_arrives(s);
    auto c2 = v2_client_arrives(s);

    WHEN("the first client leaves, then a reverse connection with its id arrives") {
      net_sends(c1.broker, connection_closed{c1.id, close_reason::peer_closed});
      settle();
      REQUIRE_THAT(take_orders(), are_exactly({}));
      const conn_id r = reverse_arrives(s, accept_line(c1));

      THEN("it is closed, not joined with the second client; the second still waits for its "
           "own") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{r}}));
        CHECK(clients_waiting(s.session) == 1);
        const conn_id r2 = reverse_arrives(s, accept_line(c2));
        CHECK_THAT(take_orders(), are_exactly({join_pair{c2.id, r2, s.session, ""}}));
      }
    }

    WHEN("a reverse connection with the first client's id reaches the session just as that "
         "client leaves (the departure reaches its broker first)") {
      const conn_id r = new_conn();
      net_sends(c1.broker, connection_closed{c1.id, close_reason::peer_closed});
      net_sends(s.session, reverse_arrived{r, "192.0.2.10:50001", accept_line(c1)});
      settle();

      THEN("the reverse connection is closed, and the second client still waits for its own") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{r}}));
        CHECK(clients_waiting(s.session) == 1);
        const conn_id r2 = reverse_arrives(s, accept_line(c2));
        CHECK_THAT(take_orders(), are_exactly({join_pair{c2.id, r2, s.session, ""}}));
      }
    }
  }

  GIVEN("a v2 session with a client that arrived 1 s before a second one") {
    start();
    auto s = v2_server_connects();
    auto c1 = v2_client_arrives(s);
    advance_time(1s);
    auto c2 = v2_client_arrives(s);

    WHEN("the first client's pending timeout passes, then a reverse connection with its id "
         "arrives") {
      advance_time(pending_timeout - 1s);
      REQUIRE_THAT(take_orders(), are_exactly({close_connection{c1.id}}));
      const conn_id r = reverse_arrives(s, accept_line(c1));

      THEN("it is closed; the second client still waits and is joined by its own id") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{r}}));
        CHECK(clients_waiting(s.session) == 1);
        const conn_id r2 = reverse_arrives(s, accept_line(c2));
        CHECK_THAT(take_orders(), are_exactly({join_pair{c2.id, r2, s.session, ""}}));
      }
    }
  }

  GIVEN("two v2 sessions, a client waiting on the first") {
    start();
    auto s1 = v2_server_connects();
    auto s2 = v2_server_connects();
    auto c = v2_client_arrives(s1);

    WHEN("a reverse connection with that client's id arrives at the second session") {
      const conn_id r = reverse_arrives(s2, accept_line(c));

      THEN("it is closed, and the client is joined by its own session") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{r}}));
        const conn_id r1 = reverse_arrives(s1, accept_line(c));
        CHECK_THAT(take_orders(), are_exactly({join_pair{c.id, r1, s1.session, ""}}));
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "With proxy_protocol, a join carries a PROXY v2 header naming the "
                            "client", "[v2][proxy]") {
  GIVEN("a relay with proxy_protocol on and a v2 session") {
    config.session.proxy_protocol = true;
    start();
    auto s = v2_server_connects();

    WHEN("a client from 198.51.100.20:51000 reaches the relay at 203.0.113.5:12004 and its "
         "reverse connection arrives") {
      auto c = v2_client_arrives(s, {"198.51.100.20", 51000}, {"203.0.113.5", 12004});
      const conn_id r = reverse_arrives(s, accept_line(c));

      THEN("the join's reverse preamble is the PROXY v2 header of those two addresses") {
        const proxy_v2::addresses addr{"198.51.100.20", 51000, "203.0.113.5", 12004};
        const std::string header = proxy_v2::encode(addr);
        REQUIRE_FALSE(header.empty());
        const auto got = take_orders();
        CHECK_THAT(got, are_exactly({join_pair{c.id, r, s.session, header}}));
        REQUIRE(got.size() == 1);
        REQUIRE(std::holds_alternative<join_pair>(got[0]));
        const auto decoded = proxy_v2::decode(std::get<join_pair>(got[0]).reverse_preamble);
        CHECK(decoded.status == proxy_v2::decode_status::complete);
        CHECK_FALSE(decoded.local);
        CHECK(decoded.addr == addr);
      }
    }

    WHEN("an IPv6 client from [2001:db8::7]:51000 reaches the relay at [2001:db8::1]:12004") {
      auto c = v2_client_arrives(s, {"2001:db8::7", 51000}, {"2001:db8::1", 12004});
      const conn_id r = reverse_arrives(s, accept_line(c));

      THEN("the header names the IPv6 addresses") {
        const std::string header = proxy_v2::encode({"2001:db8::7", 51000, "2001:db8::1", 12004});
        REQUIRE_FALSE(header.empty());
        CHECK_THAT(take_orders(), are_exactly({join_pair{c.id, r, s.session, header}}));
      }
    }

    WHEN("two clients wait and their reverse connections arrive in reverse order") {
      auto c1 = v2_client_arrives(s, {"198.51.100.21", 51021}, {"203.0.113.5", 12004});
      auto c2 = v2_client_arrives(s, {"198.51.100.22", 51022}, {"203.0.113.5", 12004});
      const conn_id r2 = reverse_arrives(s, accept_line(c2));
      const conn_id r1 = reverse_arrives(s, accept_line(c1));

      THEN("each join names its own client") {
        CHECK_THAT(take_orders(),
                   are_exactly({
                     join_pair{c2.id, r2, s.session,
                               proxy_v2::encode({"198.51.100.22", 51022, "203.0.113.5", 12004})},
                     join_pair{c1.id, r1, s.session,
                               proxy_v2::encode({"198.51.100.21", 51021, "203.0.113.5", 12004})},
                   }));
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "proxy_protocol is for v2 sessions: a v1 server gets raw reverse "
                            "connections", "[v1][proxy]") {
  GIVEN("a relay with proxy_protocol on and a v1 session with a waiting client") {
    config.session.proxy_protocol = true;
    start();
    auto s = server_connects();
    auto c = client_arrives(s);

    WHEN("its reverse connection arrives") {
      const conn_id r = new_conn();
      net_sends(s.session, reverse_arrived{r, "192.0.2.10:50001", ""});
      settle();

      THEN("it is joined without a preamble: a v1 server expects the client's bytes at once") {
        CHECK_THAT(take_orders(), are_exactly({join_pair{c.id, r, s.session, ""}}));
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "A v2 session pings its server and ends when it hears nothing",
                "[v2][heartbeat]") {
  GIVEN("a heartbeat interval of 15 s and a serving v2 session") {
    config.session.heartbeat = 15s;
    config.session.pending_timeout = 10min;  // waiting clients outlast these scenarios
    start();
    const auto beat = config.session.heartbeat;
    auto s = v2_server_connects();
    const send_line ping{s.control, "ping\r\n"};

    WHEN("just under one interval passes") {
      advance_time(beat - 1ms);

      THEN("nothing is sent") { CHECK_THAT(take_orders(), are_exactly({})); }
    }

    WHEN("one interval passes, then another") {
      advance_time(beat);
      const auto first = take_orders();
      advance_time(beat);
      const auto second = take_orders();

      THEN("the session sends ping each time") {
        CHECK_THAT(first, are_exactly({ping}));
        CHECK_THAT(second, are_exactly({ping}));
      }
    }

    WHEN("the server sends ping") {
      server_says(s, "ping");

      THEN("the session answers pong at once") {
        CHECK_THAT(take_orders(), are_exactly({send_line{s.control, "pong\r\n"}}));
        CHECK_FALSE(has_ended(s.session));
      }
    }

    WHEN("the server answers every ping with pong for ten intervals") {
      bool only_pings = true;
      for (int i = 0; i < 10; ++i) {
        advance_time(beat);
        only_pings = only_pings && are_exactly({ping}).match(take_orders());
        server_says(s, "pong");
      }

      THEN("it got a ping each interval and its session still serves") {
        CHECK(only_pings);
        CHECK_FALSE(has_ended(s.session));
        CHECK_THAT(take_orders(), are_exactly({}));
        v2_client_arrives(s);
      }
    }

    WHEN("the server, with a client waiting, says nothing at all") {
      auto c = v2_client_arrives(s);
      advance_time(beat);
      advance_time(beat);
      CHECK_THAT(take_orders(), are_exactly({ping, ping}));
      advance_time(beat - 1ms);

      THEN("its session is alive until three intervals have passed") {
        CHECK_THAT(take_orders(), are_exactly({}));
        CHECK_FALSE(has_ended(s.session));
      }

      AND_WHEN("three intervals have passed, and the heartbeat after them") {
        take_orders();
        advance_time(1ms);
        advance_time(beat);
        orders got;
        for (auto& o : take_orders())
          if (!same_order(o, ping)) got.push_back(o);

        THEN("the session has ended: its control connection and waiting client are closed, its "
             "pair unrouted") {
          CHECK(has_ended(s.session));
          CHECK_THAT(got, are_in_any_order({
                            close_connection{s.control},
                            close_connection{c.id},
                            route_pair{s.pair, caf::actor{}, reverse_framing::raw},
                          }));
        }
        AND_THEN("no more pings are sent, and its pair is the pool's again") {
          advance_time(beat);
          CHECK_THAT(take_orders(), are_exactly({}));
          // Pair 0 went to the back of the queue, behind 1 and 2.
          CHECK(v2_server_connects().pair == 1);
          CHECK(v2_server_connects().pair == 2);
          CHECK(v2_server_connects().pair == 0);
        }
      }
    }
  }
}
