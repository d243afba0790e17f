// Warm reverse connections of a v2 session: a reverse connection that starts
// `ready <SERIAL> <TAG>` with a genuine, unused ticket is kept (claimed by the
// session), and a client arriving while one is kept is joined with the newest
// at once, the warm connection first receiving `<ID> <CLIENT>` (and a PROXY v2
// header with proxy_protocol); no new_connection is sent. A bad, replayed or
// too old ticket, or one more than warm_max, is closed; an unused warm
// connection is closed after warm_idle; one its server closed, or one whose
// session ended, is gone. Without a warm connection a client is announced
// with new_connection as before.
#include "relay_fixture.hpp"

#include "protocol/proxy_header.hpp"
#include "protocol/warm_ticket.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

namespace {

connection_id secret_of(const relay_fixture::v2_server& s) {
  connection_id secret;
  REQUIRE_FALSE(parse_connection_id(s.session_secret, secret));
  return secret;
}

// `ready <SERIAL> <TAG>` without its line ending.
std::string line_of(std::uint64_t serial, const connection_id& tag) {
  auto line = v2::format_line(v2::ready{serial, tag});
  line.resize(line.size() - 2);
  return line;
}

// The first line of a warm connection of `s` with a genuine ticket `serial`.
std::string ready_line(const relay_fixture::v2_server& s, std::uint64_t serial) {
  return line_of(serial, warm_ticket::tag(secret_of(s), serial));
}

// A warm connection with a genuine ticket reaches `s`: REQUIREs that it is
// kept, i.e. net is told exactly route_connection{warm, session} (the session
// watches it; nothing is written to it, nothing else happens).
conn_id warm_kept(relay_fixture& f, const relay_fixture::v2_server& s, std::uint64_t serial) {
  const conn_id r = f.reverse_arrives(s, ready_line(s, serial));
  INFO("orders after a warm connection with serial "
       << serial << ": " << Catch::Detail::stringify(f.orders_so_far()));
  REQUIRE_THAT(f.take_orders(), are_exactly({route_connection{r, s.session}}));
  return r;
}

struct warm_join {
  conn_id client;
  conn_id reverse;
  caf::actor owner;
  std::string preamble;  // everything written to the warm connection before client bytes
  v2::paired line;       // its first line, parsed
  std::string rest;      // what follows that line (a PROXY header, or nothing)
};

// A client from `peer` reaches the relay at `local` while `s` keeps a warm
// connection: REQUIREs that net is told exactly one join_pair for that
// client (no new_connection line, no route_connection to a broker), whose
// preamble starts with a complete `<ID> <CLIENT>` line naming `peer`.
warm_join client_joins_warm(relay_fixture& f, const relay_fixture::v2_server& s,
                            host_port peer = {}, host_port local = {}) {
  warm_join j;
  j.client = f.new_conn();
  if (peer.host.empty()) peer = {"198.51.100.20", static_cast<std::uint16_t>(j.client.value)};
  if (local.host.empty()) local = {"127.0.0.1", f.config.layout.public_port(s.pair)};
  f.net_sends(s.session, client_arrived{j.client, peer, local});
  f.settle();
  const auto got = f.take_orders();
  INFO("orders after client_arrived{conn " << j.client.value
                                           << "}: " << Catch::Detail::stringify(got));
  REQUIRE(got.size() == 1);
  const auto* joined = std::get_if<join_pair>(&got[0]);
  REQUIRE(joined);
  REQUIRE(joined->client == j.client);
  j.reverse = joined->reverse;
  j.owner = joined->owner;
  j.preamble = joined->reverse_preamble;
  const auto end = j.preamble.find("\r\n");
  REQUIRE(end != std::string::npos);
  REQUIRE(end + 2 <= v2::max_paired_line_bytes);
  REQUIRE_FALSE(v2::parse_paired_line(j.preamble.substr(0, end), j.line));
  // Written as the relay writes it: lower-case hex id, the client as given.
  REQUIRE(j.preamble.substr(0, end + 2) == v2::format_line(j.line));
  REQUIRE(is_lower_hex(j.preamble.substr(0, 32), 32));
  REQUIRE(j.line.client == peer);  // it names the client that arrived
  j.rest = j.preamble.substr(end + 2);
  return j;
}

// The same tag with one bit changed.
connection_id flipped(connection_id tag) {
  tag.bytes[0] ^= 0x01;
  return tag;
}

}  // namespace

SCENARIO_METHOD(v2_fixture, "A client arriving while a warm connection is kept is joined with it "
                            "at once, its address first", "[v2][warm]") {
  GIVEN("a v2 session (warm_max 16) that keeps one warm connection") {
    start();
    auto s = v2_server_connects();
    REQUIRE(s.lines[0].find(" warm=16\r\n") != std::string::npos);
    const conn_id r = warm_kept(*this, s, 1);

    THEN("it is not closed, joined or written to while no client comes") {
      advance_time(config.session.warm_idle - 1ms);
      CHECK_THAT(take_orders(), are_exactly({}));
      CHECK_FALSE(has_ended(s.session));
    }

    WHEN("a client from 198.51.100.20:51000 arrives") {
      const auto j = client_joins_warm(*this, s, {"198.51.100.20", 51000});

      THEN("it is joined with the warm connection, which first gets `<ID> <CLIENT>` and "
           "nothing else") {
        CHECK(j.reverse == r);
        CHECK(j.owner == s.session);
        CHECK(j.line.client == host_port{"198.51.100.20", 51000});
        CHECK(j.rest.empty());
        CHECK(to_hex(j.line.id) != s.session_secret);
      }

      AND_WHEN("another client arrives") {
        auto c2 = v2_client_arrives(s);  // REQUIREs new_connection and a broker

        THEN("there is no warm connection left: it is announced with new_connection and "
             "joined by its accept line") {
          const conn_id r2 = reverse_arrives(s, "accept " + c2.accept_id);
          CHECK_THAT(take_orders(), are_exactly({join_pair{c2.id, r2, s.session, ""}}));
        }
      }

      AND_WHEN("the warm connection's idle time passes after the join") {
        advance_time(config.session.warm_idle + 1s);

        THEN("the joined connection is not closed by the expiry") {
          CHECK_THAT(take_orders(), are_exactly({}));
        }
      }

      AND_WHEN("the pair finishes, and the server sends a ping") {
        net_sends(s.session, pump_finished{j.client, r, true, 10, 20});
        settle();
        server_says(s, "ping");

        THEN("the session answers pong and sent nothing else") {
          CHECK_THAT(take_orders(), are_exactly({send_line{s.control, "pong\r\n"}}));
        }
      }
    }

    WHEN("an IPv6 client arrives") {
      const auto j = client_joins_warm(*this, s, {"2001:db8::7", 5}, {"2001:db8::1", 12004});

      THEN("the first line names it bracketed") {
        CHECK(j.reverse == r);
        CHECK(j.preamble.substr(32) == " [2001:db8::7]:5\r\n");
      }
    }
  }

  GIVEN("a v2 session that keeps three warm connections, opened in the order 1, 2, 3") {
    start();
    auto s = v2_server_connects();
    const conn_id r1 = warm_kept(*this, s, 1);
    const conn_id r2 = warm_kept(*this, s, 2);
    const conn_id r3 = warm_kept(*this, s, 3);

    WHEN("four clients arrive one after the other") {
      const auto j1 = client_joins_warm(*this, s);
      const auto j2 = client_joins_warm(*this, s);
      const auto j3 = client_joins_warm(*this, s);

      THEN("the newest warm connection is used first, and each pairing has its own id") {
        CHECK(j1.reverse == r3);
        CHECK(j2.reverse == r2);
        CHECK(j3.reverse == r1);
        CHECK(j1.line.id != j2.line.id);
        CHECK(j2.line.id != j3.line.id);
        CHECK(j1.line.id != j3.line.id);
        CHECK(j1.line.client.port == j1.client.value);
        CHECK(j3.line.client.port == j3.client.value);
        // The fourth finds none: new_connection (REQUIREd by the helper).
        v2_client_arrives(s);
      }
    }

    WHEN("serials arrive out of order") {
      const conn_id r5 = warm_kept(*this, s, 5);
      const conn_id r4 = warm_kept(*this, s, 4);

      THEN("both are kept, and the one that arrived last is used first") {
        CHECK(client_joins_warm(*this, s).reverse == r4);
        CHECK(client_joins_warm(*this, s).reverse == r5);
        CHECK(client_joins_warm(*this, s).reverse == r3);
      }
    }
  }

  GIVEN("a v2 session with a client announced by new_connection, still waiting") {
    start();
    auto s = v2_server_connects();
    auto c = v2_client_arrives(s);

    WHEN("a warm connection arrives before the client's accept line") {
      const conn_id r = warm_kept(*this, s, 1);  // REQUIREs: kept, and nothing else

      THEN("the waiting client is still joined by its accept line, and the warm connection "
           "goes to the next client") {
        const conn_id accepted = reverse_arrives(s, "accept " + c.accept_id);
        CHECK_THAT(take_orders(), are_exactly({join_pair{c.id, accepted, s.session, ""}}));
        CHECK(client_joins_warm(*this, s).reverse == r);
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "A warm connection without a genuine, unused ticket is closed at "
                            "once", "[v2][warm]") {
  GIVEN("a v2 session") {
    start();
    auto s = v2_server_connects();
    const auto secret = secret_of(s);

    struct bad_ticket {
      std::string why;
      std::string line;
    };
    connection_id other_secret = secret;
    other_secret.bytes[15] ^= 0x80;
    const std::vector<bad_ticket> cases = {
      {"the tag of another serial", line_of(1, warm_ticket::tag(secret, 2))},
      {"a tag with one bit changed", line_of(1, flipped(warm_ticket::tag(secret, 1)))},
      {"the tag made with another session's secret", line_of(1, warm_ticket::tag(other_secret, 1))},
      {"the session secret itself as the tag", line_of(1, secret)},
      {"an all-zero tag", line_of(1, connection_id{})},
      {"serial 0", "ready 0 " + to_hex(warm_ticket::tag(secret, 0))},
      {"a serial with a leading zero", "ready 01 " + to_hex(warm_ticket::tag(secret, 1))},
      {"no tag", "ready 1"},
      {"the session secret alone (`ready <secret>`)", "ready " + s.session_secret},
      {"a tag one digit short", "ready 1 " + to_hex(warm_ticket::tag(secret, 1)).substr(1)},
    };
    for (const auto& k : cases) {
      WHEN("a warm connection arrives with " + k.why) {
        const conn_id r = reverse_arrives(s, k.line);

        THEN("it is closed, nothing else happens, and the session goes on serving") {
          CHECK_THAT(take_orders(), are_exactly({close_connection{r}}));
          CHECK_FALSE(has_ended(s.session));
        }
        AND_THEN("a client arriving next is announced with new_connection") {
          take_orders();
          v2_client_arrives(s);
        }
        AND_THEN("serial 1 was not used up: a genuine ticket for it is still kept") {
          take_orders();
          const conn_id good = warm_kept(*this, s, 1);
          CHECK(client_joins_warm(*this, s).reverse == good);
        }
      }
    }
  }

  GIVEN("a v2 session that kept a warm connection with serial 1") {
    start();
    auto s = v2_server_connects();
    const conn_id r1 = warm_kept(*this, s, 1);

    WHEN("another warm connection arrives with the same line (a replay)") {
      const conn_id replay = reverse_arrives(s, ready_line(s, 1));

      THEN("the replay is closed and the first is still kept") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{replay}}));
        CHECK(client_joins_warm(*this, s).reverse == r1);
      }
    }

    WHEN("the first is joined with a client, then its line is replayed") {
      REQUIRE(client_joins_warm(*this, s).reverse == r1);
      const conn_id replay = reverse_arrives(s, ready_line(s, 1));

      THEN("the replay is closed: a used ticket stays used") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{replay}}));
        v2_client_arrives(s);  // and the next client gets new_connection
      }
    }

    WHEN("serial 70 is used, then serial 6 (64 behind) and serial 7 (63 behind)") {
      const conn_id r70 = warm_kept(*this, s, 70);
      const conn_id r6 = reverse_arrives(s, ready_line(s, 6));
      const auto after6 = take_orders();
      const conn_id r7 = reverse_arrives(s, ready_line(s, 7));
      const auto after7 = take_orders();

      THEN("6 is closed as too old, 7 is kept") {
        CHECK_THAT(after6, are_exactly({close_connection{r6}}));
        CHECK_THAT(after7, are_exactly({route_connection{r7, s.session}}));
        CHECK(client_joins_warm(*this, s).reverse == r7);
        CHECK(client_joins_warm(*this, s).reverse == r70);
        CHECK(client_joins_warm(*this, s).reverse == r1);
      }
    }
  }

  GIVEN("two v2 sessions") {
    start();
    auto s1 = v2_server_connects();
    auto s2 = v2_server_connects();
    REQUIRE(s1.session_secret != s2.session_secret);

    WHEN("the second receives a warm connection with a ticket of the first") {
      const conn_id r = reverse_arrives(s2, ready_line(s1, 1));

      THEN("it is closed, and the first still accepts that ticket") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{r}}));
        const conn_id own = warm_kept(*this, s1, 1);
        CHECK(client_joins_warm(*this, s1).reverse == own);
        v2_client_arrives(s2);
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "A session keeps at most warm_max warm connections", "[v2][warm]") {
  GIVEN("warm_max 2 and a v2 session that keeps two warm connections") {
    config.session.warm_max = 2;
    start();
    auto s = v2_server_connects();  // REQUIREs "warm=2" in the welcome
    REQUIRE(s.lines[0].find(" warm=2\r\n") != std::string::npos);
    const conn_id r1 = warm_kept(*this, s, 1);
    const conn_id r2 = warm_kept(*this, s, 2);

    WHEN("a third arrives with a genuine ticket") {
      const conn_id r3 = reverse_arrives(s, ready_line(s, 3));

      THEN("it is closed, and the two kept ones serve the next two clients") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{r3}}));
        CHECK(client_joins_warm(*this, s).reverse == r2);
        CHECK(client_joins_warm(*this, s).reverse == r1);
        v2_client_arrives(s);
      }
    }

    WHEN("a client takes one, then another warm connection arrives") {
      REQUIRE(client_joins_warm(*this, s).reverse == r2);
      const conn_id r4 = warm_kept(*this, s, 4);

      THEN("there is room for it again") { CHECK(client_joins_warm(*this, s).reverse == r4); }
    }
  }

  GIVEN("warm_max 0 and a v2 session") {
    config.session.warm_max = 0;
    start();
    auto s = v2_server_connects();
    REQUIRE(s.lines[0].find(" warm=0\r\n") != std::string::npos);

    WHEN("warm connections with genuine tickets arrive") {
      const conn_id r1 = reverse_arrives(s, ready_line(s, 1));
      const auto after1 = take_orders();
      const conn_id r2 = reverse_arrives(s, ready_line(s, 2));
      const auto after2 = take_orders();

      THEN("every one is closed, and a client is announced with new_connection") {
        CHECK_THAT(after1, are_exactly({close_connection{r1}}));
        CHECK_THAT(after2, are_exactly({close_connection{r2}}));
        auto c = v2_client_arrives(s);
        const conn_id r = reverse_arrives(s, "accept " + c.accept_id);
        CHECK_THAT(take_orders(), are_exactly({join_pair{c.id, r, s.session, ""}}));
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "A warm connection leaves the session when unused for warm_idle, "
                            "closed by its server, or when the session ends", "[v2][warm]") {
  GIVEN("warm_idle 30 s and a v2 session that kept a warm connection") {
    config.session.warm_idle = 30s;
    start();
    auto s = v2_server_connects();
    const conn_id r = warm_kept(*this, s, 1);

    WHEN("just under 30 s pass") {
      advance_time(30s - 1ms);

      THEN("it is still kept") {
        CHECK_THAT(take_orders(), are_exactly({}));
        CHECK(client_joins_warm(*this, s).reverse == r);
      }
    }

    WHEN("30 s pass") {
      advance_time(30s - 1ms);
      REQUIRE_THAT(take_orders(), are_exactly({}));
      advance_time(1ms);

      THEN("the relay closes it, and the next client is announced with new_connection") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{r}}));
        v2_client_arrives(s);
      }
    }

    WHEN("a second one is kept 20 s later, and 30 s pass after the first") {
      advance_time(20s);
      const conn_id later = warm_kept(*this, s, 2);
      advance_time(10s);

      THEN("only the first is closed; the second still serves a client") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{r}}));
        CHECK(client_joins_warm(*this, s).reverse == later);
      }
      AND_THEN("the second is closed 30 s after it came") {
        take_orders();
        advance_time(20s - 1ms);
        CHECK_THAT(take_orders(), are_exactly({}));
        advance_time(1ms);
        CHECK_THAT(take_orders(), are_exactly({close_connection{later}}));
      }
    }

    WHEN("its server closes it") {
      net_sends(s.session, connection_closed{r, close_reason::peer_closed});
      settle();

      THEN("nothing is sent, and the next client is announced with new_connection") {
        CHECK_THAT(take_orders(), are_exactly({}));
        v2_client_arrives(s);
      }
      AND_THEN("its idle timer closes nothing later") {
        advance_time(30s);
        CHECK_THAT(take_orders(), are_exactly({}));
      }
    }

    WHEN("a newer one is kept and the newer one fails (reset)") {
      const conn_id newer = warm_kept(*this, s, 2);
      net_sends(s.session, connection_closed{newer, close_reason::peer_error});
      settle();

      THEN("the next client gets the older one") {
        CHECK_THAT(take_orders(), are_exactly({}));
        CHECK(client_joins_warm(*this, s).reverse == r);
      }
    }

    WHEN("a client was joined with it, another warm one is kept, and the control connection "
         "ends") {
      const auto j = client_joins_warm(*this, s);
      REQUIRE(j.reverse == r);
      const conn_id kept = warm_kept(*this, s, 2);
      net_sends(s.session, connection_closed{s.control, close_reason::peer_closed});
      settle();

      THEN("the session ends and closes the joined pair, the kept warm connection and the "
           "control connection, and gives its pair back") {
        CHECK(has_ended(s.session));
        CHECK_THAT(take_orders(), are_in_any_order({
                                    close_connection{j.client},
                                    close_connection{r},
                                    close_connection{kept},
                                    close_connection{s.control},
                                    route_pair{s.pair, caf::actor{}, reverse_framing::raw},
                                  }));
      }
    }

    WHEN("its server sends a second hello (a bad request) while it is kept") {
      server_says(s, "hello 2");

      THEN("the session ends with an error and closes the warm connection too") {
        CHECK(has_ended(s.session));
        const auto got = take_orders();
        bool warm_closed = false;
        for (const auto& o : got)
          if (same_order(o, close_connection{r})) warm_closed = true;
        INFO("orders: " << Catch::Detail::stringify(got));
        CHECK(warm_closed);
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "With proxy_protocol, a warm connection gets the client's line, then "
                            "a PROXY v2 header", "[v2][warm][proxy]") {
  GIVEN("proxy_protocol on and a v2 session that keeps a warm connection") {
    config.session.proxy_protocol = true;
    start();
    auto s = v2_server_connects();
    const conn_id r = warm_kept(*this, s, 1);

    WHEN("a client from 198.51.100.20:51000 reaches the relay at 203.0.113.5:12004") {
      const auto j = client_joins_warm(*this, s, {"198.51.100.20", 51000}, {"203.0.113.5", 12004});

      THEN("the preamble is the paired line followed by exactly the header of those addresses") {
        CHECK(j.reverse == r);
        CHECK(j.line.client == host_port{"198.51.100.20", 51000});
        const proxy_v2::addresses addr{"198.51.100.20", 51000, "203.0.113.5", 12004};
        CHECK(j.rest == proxy_v2::encode(addr));
        const auto decoded = proxy_v2::decode(j.rest);
        REQUIRE(decoded.status == proxy_v2::decode_status::complete);
        CHECK(decoded.header_bytes == j.rest.size());
        CHECK_FALSE(decoded.local);
        CHECK(decoded.addr == addr);
      }
    }

    WHEN("an IPv6 client from [2001:db8::7]:51000 reaches the relay at [2001:db8::1]:12004") {
      const auto j = client_joins_warm(*this, s, {"2001:db8::7", 51000}, {"2001:db8::1", 12004});

      THEN("the line and the header name the IPv6 addresses") {
        CHECK(j.line.client == host_port{"2001:db8::7", 51000});
        CHECK(j.preamble.find(" [2001:db8::7]:51000\r\n") == 32);
        const auto decoded = proxy_v2::decode(j.rest);
        REQUIRE(decoded.status == proxy_v2::decode_status::complete);
        CHECK(decoded.header_bytes == j.rest.size());
        CHECK(decoded.addr == proxy_v2::addresses{"2001:db8::7", 51000, "2001:db8::1", 12004});
      }
    }
  }
}
