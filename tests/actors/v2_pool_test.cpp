// The pool under v2: a name keeps its public port for its owner across
// reconnects (for the reservation TTL after its session ended, and across
// restarts through the state file); a server may ask for a public port; one
// token may hold a bounded number of sessions; an exhausted pool answers
// no_available_listeners.
#include "relay_fixture.hpp"

#include <algorithm>
#include <memory>

#include <openssl/evp.h>

#include "protocol/state_file.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

namespace {

const std::string alpha = "tok-alpha-0123456789";
const std::string beta = "tok-beta-9876543210";

std::vector<token_entry> two_tokens() { return {{alpha, {}, {}, 1}, {beta, {}, {}, 2}}; }

std::string hello(const std::string& token, const std::string& rest = {}) {
  return "hello 2 token=" + token + (rest.empty() ? "" : " " + rest);
}

// The owner the relay records for a token: the hex of its SHA-256.
std::string fingerprint(const std::string& token) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(token.data(), token.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += digits[digest[i] >> 4];
    out += digits[digest[i] & 0xf];
  }
  return out;
}

bool contains(const orders& got, const order& o) {
  return std::any_of(got.begin(), got.end(), [&](const order& x) { return same_order(x, o); });
}

std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

}  // namespace

SCENARIO_METHOD(v2_fixture, "A name keeps its public port for its owner for the reservation TTL",
                "[v2][reservation]") {
  GIVEN("tokens alpha and beta; alpha's server took name web (pair 0), then went away") {
    auth_config.tokens = two_tokens();
    start();
    auto web = v2_server_connects(hello(alpha, "name=web"), false);
    REQUIRE(web.pair == 0);
    net_sends(web.session, connection_closed{web.control, close_reason::peer_closed});
    settle();
    REQUIRE_THAT(take_orders(), are_in_any_order({
                                  close_connection{web.control},
                                  route_pair{0, caf::actor{}, reverse_framing::raw},
                                }));
    REQUIRE(has_ended(web.session));

    WHEN("a server asking for no name connects during the TTL") {
      advance_time(reservation_ttl - 1s);
      auto other = v2_server_connects(hello(beta), false);

      THEN("it gets pair 1: pair 0 is kept for web") { CHECK(other.pair == 1); }
    }

    WHEN("a v1 server connects during the TTL") {
      advance_time(reservation_ttl - 1s);
      auto other = server_connects();

      THEN("it gets pair 1 as well") { CHECK(other.pair == 1); }
    }

    WHEN("alpha's server comes back with name web within the TTL") {
      advance_time(reservation_ttl - 1s);
      auto back = v2_server_connects(hello(alpha, "name=web"), false);

      THEN("it gets pair 0 back: public port 12004") {
        CHECK(back.pair == 0);
        CHECK(back.lines[1] == "public_listener 127.0.0.1:12004\r\n");
      }

      AND_WHEN("the time the reservation would have lapsed passes") {
        advance_time(2s);

        THEN("nothing changes: the pair stays with the new session") {
          CHECK_THAT(take_orders(), are_exactly({}));
          CHECK_FALSE(has_ended(back.session));
          v2_client_arrives(back);
          CHECK(v2_server_connects(hello(beta), false).pair == 1);
          CHECK(v2_server_connects(hello(beta), false).pair == 2);
        }
      }
    }

    WHEN("beta's server asks for name web during the TTL") {
      advance_time(reservation_ttl / 2);
      auto c = v2_connects(false);
      server_says(c, hello(beta, "name=web"));

      THEN("it gets error name_unavailable and is closed") {
        CHECK(v2_refused(c).code == v2::error_code::name_unavailable);
        CHECK(has_ended(c.session));
      }
      AND_THEN("web is still alpha's: alpha's server gets pair 0 with it") {
        take_orders();
        CHECK(v2_server_connects(hello(alpha, "name=web"), false).pair == 0);
      }
    }

    WHEN("the TTL passes with nobody claiming web") {
      advance_time(reservation_ttl);

      THEN("nothing is ordered, and pair 0 went to the back of the queue: servers without a name "
           "get pairs 1, 2, then 0") {
        CHECK_THAT(take_orders(), are_exactly({}));
        CHECK(v2_server_connects(hello(beta), false).pair == 1);
        CHECK(v2_server_connects(hello(beta), false).pair == 2);
        CHECK(v2_server_connects(hello(beta), false).pair == 0);
      }
      AND_THEN("the name is free for anyone: beta's server takes web, on the first free pair") {
        CHECK(v2_server_connects(hello(beta, "name=web"), false).pair == 1);
      }
    }
  }

  GIVEN("tokens alpha and beta; alpha's session holds name web") {
    auth_config.tokens = two_tokens();
    start();
    auto web = v2_server_connects(hello(alpha, "name=web"), false);

    WHEN("beta's server asks for name web") {
      auto c = v2_connects(false);
      server_says(c, hello(beta, "name=web"));

      THEN("it gets error name_unavailable; alpha's session is not disturbed") {
        CHECK(v2_refused(c).code == v2::error_code::name_unavailable);
        CHECK_FALSE(has_ended(web.session));
        v2_client_arrives(web);
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "A second session of the same name and owner takes over from a live "
                            "one", "[v2][reservation]") {
  GIVEN("alpha's session holds name web on pair 0, with a client waiting") {
    auth_config.tokens = two_tokens();
    start();
    auto first = v2_server_connects(hello(alpha, "name=web"), false);
    REQUIRE(first.pair == 0);
    auto waiting = v2_client_arrives(first);

    WHEN("alpha's server connects again asking for web (the relay has not yet noticed that the "
         "old connection is dead)") {
      auto c = v2_connects(false);
      server_says(c, hello(alpha, "name=web"));
      const auto got = take_orders();
      INFO("orders: " << Catch::Detail::stringify(got));
      orders routes, lines, closes;
      for (auto& o : got) {
        if (std::holds_alternative<route_pair>(o)) routes.push_back(o);
        if (auto* l = std::get_if<send_line>(&o); l && l->id == c.id) lines.push_back(o);
        if (std::holds_alternative<close_connection>(o)) closes.push_back(o);
      }

      THEN("the new session gets pair 0, routed to it and never unrouted, and is welcomed") {
        CHECK_THAT(routes, are_exactly({route_pair{0, c.session, reverse_framing::accept_line}}));
        REQUIRE(lines.size() == 3);
        CHECK(std::get<send_line>(lines[0]).line.rfind("welcome session=", 0) == 0);
        CHECK(std::get<send_line>(lines[1]).line == "public_listener 127.0.0.1:12004\r\n");
        CHECK(std::get<send_line>(lines[2]).line == "reverse_listener 127.0.0.1:12001\r\n");
      }
      THEN("the old session ends") { CHECK(has_ended(first.session)); }
      THEN("the old session's control connection is closed") {
        CHECK(contains(closes, close_connection{first.control}));
      }
      THEN("the client that waited on the old session is closed, not left hanging") {
        CHECK(contains(closes, close_connection{waiting.id}));
      }
      AND_THEN("clients of pair 0 are the new session's, and web stays alpha's after it ends") {
        relay_fixture::server s;
        s.control = c.id;
        s.session = c.session;
        s.pair = 0;
        auto client = v2_client_arrives(s);
        const conn_id r = reverse_arrives(s, "accept " + client.accept_id);
        CHECK_THAT(take_orders(), are_exactly({join_pair{client.id, r, c.session, ""}}));
        net_sends(c.session, connection_closed{c.id, close_reason::peer_closed});
        settle();
        take_orders();
        CHECK(v2_server_connects(hello(beta), false).pair == 1);
        CHECK(v2_server_connects(hello(alpha, "name=web"), false).pair == 0);
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "A v2 server may ask for a public port", "[v2][port]") {
  GIVEN("a relay without tokens; public ports 12004-12006") {
    start();

    WHEN("a server asks for port 12005, which is free") {
      auto s = v2_server_connects("hello 2 port=12005");

      THEN("it gets that pair") {
        CHECK(s.pair == 1);
        CHECK(s.lines[1] == "public_listener 127.0.0.1:12005\r\n");
      }

      AND_WHEN("another server asks for port 12005") {
        auto c = v2_connects();
        server_says(c, "hello 2 port=12005");

        THEN("it gets error port_unavailable; the first session is not disturbed") {
          CHECK(v2_refused(c).code == v2::error_code::port_unavailable);
          CHECK(has_ended(c.session));
          CHECK_FALSE(has_ended(s.session));
        }
      }

      AND_WHEN("servers asking for no port connect") {
        THEN("they get the other pairs, in order") {
          CHECK(v2_server_connects().pair == 0);
          CHECK(v2_server_connects().pair == 2);
        }
      }
    }

    for (const std::string port : {"12007", "12001", "12000", "11999", "65535"}) {
      WHEN("a server asks for port " + port + ", not a public port of this relay") {
        auto c = v2_connects();
        server_says(c, "hello 2 port=" + port);

        THEN("it gets error port_unavailable; no pair was taken") {
          CHECK(v2_refused(c).code == v2::error_code::port_unavailable);
          CHECK(v2_server_connects().pair == 0);
        }
      }
    }

    WHEN("a server asks for the port of a name whose session ended within the TTL") {
      auto web = v2_server_connects("hello 2 name=web");
      REQUIRE(web.pair == 0);
      net_sends(web.session, connection_closed{web.control, close_reason::peer_closed});
      settle();
      take_orders();
      auto c = v2_connects();
      server_says(c, "hello 2 port=12004");

      THEN("it gets error port_unavailable") {
        CHECK(v2_refused(c).code == v2::error_code::port_unavailable);
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "One token holds at most max_sessions_per_owner sessions",
                "[v2][limits]") {
  GIVEN("tokens alpha and beta, at most 2 sessions per token") {
    auth_config.tokens = two_tokens();
    config.max_sessions_per_owner = 2;
    start();
    auto a1 = v2_server_connects(hello(alpha), false);
    auto a2 = v2_server_connects(hello(alpha), false);
    REQUIRE(a1.pair == 0);
    REQUIRE(a2.pair == 1);

    WHEN("alpha's third server says hello") {
      auto c = v2_connects(false);
      server_says(c, hello(alpha));

      THEN("it gets error too_many_sessions and is closed; no pair was taken") {
        CHECK(v2_refused(c).code == v2::error_code::too_many_sessions);
        CHECK(has_ended(c.session));
        CHECK(v2_server_connects(hello(beta), false).pair == 2);
      }
    }

    WHEN("one of alpha's sessions ends, then alpha's third server says hello") {
      net_sends(a1.session, connection_closed{a1.control, close_reason::peer_closed});
      settle();
      take_orders();
      auto a3 = v2_server_connects(hello(alpha), false);

      THEN("it is served") { CHECK(a3.pair == 2); }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "Reservations are written to the state file", "[v2][persistence]") {
  GIVEN("a relay with a state file (config.persist records what it is given) and tokens") {
    auto written = std::make_shared<std::vector<std::string>>();
    config.persist = [written](const std::string& text) { written->push_back(text); };
    auth_config.tokens = two_tokens();
    start();

    WHEN("alpha's server takes name web") {
      auto web = v2_server_connects(hello(alpha, "name=web"), false);

      THEN("the state written parses and holds web on port 12004 for alpha, with no expiry "
           "while held") {
        REQUIRE_FALSE(written->empty());
        std::vector<reservation_record> records;
        REQUIRE(parse_state(written->back(), records) == "");
        CHECK(records == std::vector<reservation_record>{{"web", 12004, 0, fingerprint(alpha)}});
      }

      AND_WHEN("its session ends") {
        const auto writes = written->size();
        const auto before = unix_ms_now();
        net_sends(web.session, connection_closed{web.control, close_reason::peer_closed});
        settle();
        const auto after = unix_ms_now();

        THEN("the state is written again, web now expiring one TTL after the end") {
          REQUIRE(written->size() > writes);
          std::vector<reservation_record> records;
          REQUIRE(parse_state(written->back(), records) == "");
          REQUIRE(records.size() == 1);
          CHECK(records[0].name == "web");
          CHECK(records[0].public_port == 12004);
          CHECK(records[0].owner == fingerprint(alpha));
          CHECK(records[0].expires_unix_ms >= before + reservation_ttl.count());
          CHECK(records[0].expires_unix_ms <= after + reservation_ttl.count());
        }

        AND_WHEN("the TTL passes") {
          advance_time(reservation_ttl);

          THEN("the state written last holds no reservation") {
            std::vector<reservation_record> records{{"stale", 1, 0, ""}};
            REQUIRE(parse_state(written->back(), records) == "");
            CHECK(records.empty());
          }
        }
      }
    }

    WHEN("a server without a name is served and leaves") {
      auto s = v2_server_connects(hello(beta), false);
      net_sends(s.session, connection_closed{s.control, close_reason::peer_closed});
      settle();

      THEN("no state is written: no reservation changed") { CHECK(written->empty()); }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "Reservations from the state file hold their ports at start",
                "[v2][persistence]") {
  GIVEN("a state file from before a restart: web held public port 12005 (pair 1), no owner") {
    config.restored = {{"web", 12005, 0, ""}};
    start();

    WHEN("servers asking for no name connect") {
      THEN("they get pairs 0 and 2, then no_available_listeners: pair 1 is web's") {
        CHECK(v2_server_connects().pair == 0);
        CHECK(v2_server_connects().pair == 2);
        auto c = v2_connects();
        server_says(c, "hello 2");
        CHECK_THAT(take_orders(),
                   are_exactly({send_and_close{c.id, "no_available_listeners\r\n"}}));
      }
    }

    WHEN("a v1 server connects") {
      THEN("it gets pair 0, not web's") { CHECK(server_connects().pair == 0); }
    }

    WHEN("a server asks for name web") {
      auto s = v2_server_connects("hello 2 name=web");

      THEN("it gets pair 1: public port 12005") {
        CHECK(s.pair == 1);
        CHECK(s.lines[1] == "public_listener 127.0.0.1:12005\r\n");
      }
    }

    WHEN("the TTL passes with nobody claiming web") {
      advance_time(reservation_ttl);

      THEN("pair 1 is free again: servers get 0, 2, 1") {
        CHECK(v2_server_connects().pair == 0);
        CHECK(v2_server_connects().pair == 2);
        CHECK(v2_server_connects().pair == 1);
      }
    }
  }

  GIVEN("a state file with web on port 12005 owned by alpha, expiring in a minute") {
    config.restored = {{"web", 12005, unix_ms_now() + 60000, fingerprint(alpha)}};
    auth_config.tokens = two_tokens();
    start();

    WHEN("beta's server asks for name web") {
      auto c = v2_connects(false);
      server_says(c, hello(beta, "name=web"));

      THEN("it gets error name_unavailable") {
        CHECK(v2_refused(c).code == v2::error_code::name_unavailable);
      }
    }

    WHEN("alpha's server asks for name web") {
      auto s = v2_server_connects(hello(alpha, "name=web"), false);

      THEN("it gets pair 1") { CHECK(s.pair == 1); }
    }
  }

  GIVEN("a state file whose web reservation has already expired") {
    config.restored = {{"web", 12005, unix_ms_now() - 1000, ""}};
    start();

    WHEN("servers asking for no name connect") {
      THEN("they get pairs 0, 1, 2: nothing is held") {
        CHECK(v2_server_connects().pair == 0);
        CHECK(v2_server_connects().pair == 1);
        CHECK(v2_server_connects().pair == 2);
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "An exhausted pool answers a v2 hello with no_available_listeners",
                "[v2][pool]") {
  GIVEN("three sessions, v1 and v2, holding all three pairs") {
    start();
    auto s1 = v2_server_connects();
    auto s2 = server_connects();
    auto s3 = v2_server_connects();
    REQUIRE(std::vector<pair_index>{s1.pair, s2.pair, s3.pair} ==
            std::vector<pair_index>{0, 1, 2});

    WHEN("a fourth server says hello 2") {
      auto c = v2_connects();
      server_says(c, "hello 2");

      THEN("it is told no_available_listeners and closed; its session ends") {
        CHECK_THAT(take_orders(),
                   are_exactly({send_and_close{c.id, "no_available_listeners\r\n"}}));
        CHECK(has_ended(c.session));
      }
      AND_THEN("when a pair comes back, the next server gets it") {
        take_orders();
        net_sends(s2.session, connection_closed{s2.control, close_reason::peer_closed});
        settle();
        take_orders();
        CHECK(v2_server_connects().pair == 1);
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "Without tokens a name belongs to the client certificate that took it",
                "[v2][reservation][identity][hostile]") {
  GIVEN("a relay without tokens, and certificate A's session holding name web on pair 0") {
    start();
    auto c = v2_connects(true, "192.0.2.10", certificate_a);
    server_says(c, "hello 2 name=web");
    auto web = v2_accepted(c);
    REQUIRE(web.pair == 0);

    WHEN("a server with another certificate B of the same CA asks for web") {
      auto thief = v2_connects(true, "192.0.2.66", certificate_b);
      server_says(thief, "hello 2 name=web");

      THEN("it gets error name_unavailable, and A's session keeps running on pair 0") {
        CHECK(v2_refused(thief).code == v2::error_code::name_unavailable);
        CHECK_FALSE(has_ended(web.session));
        auto client = v2_client_arrives(web);
        CHECK(client.accept_id.size() == 32);
      }
    }
    WHEN("A's session ended and B asks for web while it lingers") {
      net_sends(web.session, connection_closed{web.control, close_reason::peer_closed});
      settle();
      take_orders();
      auto thief = v2_connects(true, "192.0.2.66", certificate_b);
      server_says(thief, "hello 2 name=web");

      THEN("B is refused; A gets pair 0 back") {
        CHECK(v2_refused(thief).code == v2::error_code::name_unavailable);
        auto back = v2_connects(true, "192.0.2.10", certificate_a);
        server_says(back, "hello 2 name=web");
        CHECK(v2_accepted(back).pair == 0);
      }
    }
    WHEN("a server with the same certificate A asks for web (its old connection is dead)") {
      auto again = v2_connects(true, "192.0.2.11", certificate_a);
      server_says(again, "hello 2 name=web");

      THEN("it takes over pair 0, and the old session ends with its control connection closed") {
        const auto got = take_orders();
        INFO("orders: " << Catch::Detail::stringify(got));
        CHECK(contains(got, route_pair{0, again.session, reverse_framing::accept_line}));
        CHECK(contains(got, close_connection{web.control}));
        CHECK(has_ended(web.session));
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "An anonymous server may not use a name", "[v2][identity][hostile]") {
  GIVEN("a relay with --client-auth none and no tokens") {
    auth_config.open_access = true;
    start();

    WHEN("a server without certificate or token asks for name web") {
      auto c = v2_connects(false);
      server_says(c, "hello 2 name=web");

      THEN("it gets error name_unavailable and no pair was taken") {
        const auto refused = v2_refused(c);
        CHECK(refused.code == v2::error_code::name_unavailable);
        CHECK_THAT(refused.text, Catch::Contains("identity"));
        CHECK(v2_server_connects("hello 2", false).pair == 0);
      }
    }
    WHEN("it asks for no name") {
      THEN("it is welcomed") { CHECK(v2_server_connects("hello 2", false).pair == 0); }
    }
  }
}
