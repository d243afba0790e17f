// Before a session serves: a v1 server must present a client certificate; a
// v2 server gets nothing before its hello, which must be a valid `hello 2`,
// arrive within the hello timeout and pass the authenticator (a certificate
// when no tokens are configured, else a token), whose refusals come late.
#include "relay_fixture.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

namespace {

const std::string alpha = "tok-alpha-0123456789";
const std::string beta = "tok-beta-9876543210";
const std::string a_only = "tok-a-only-5555";  // may use name a only
const std::string port_only = "tok-port-12005";  // may use public port 12005 only

std::vector<token_entry> some_tokens() {
  return {
    {alpha, {}, {}, 1},
    {beta, {}, {}, 2},
    {a_only, {"a"}, {}, 3},
    {port_only, {}, {12005}, 4},
  };
}

}  // namespace

SCENARIO_METHOD(v2_fixture, "A v1 server without a client certificate is closed without a word",
                "[v1][auth]") {
  GIVEN("a relay that requires a client certificate of v1 servers (the default)") {
    REQUIRE(config.session.v1_requires_certificate);
    start();

    WHEN("a v1 server completes its handshake without presenting a certificate") {
      const conn_id c = new_conn();
      net_sends(pool, control_connected{c, {"192.0.2.7", 40007}, 1, false});
      settle();

      THEN("net is told to close its control connection, and nothing else: no line, no route") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{c}}));
        CHECK(relay_actors_running() == 1);  // the pool manager: the session ended
      }
      AND_THEN("no pair was taken: the next server gets pair 0") {
        take_orders();
        CHECK(server_connects().pair == 0);
      }
    }
  }

  GIVEN("a relay whose operator turned client certificates off (v1_requires_certificate false)") {
    config.session.v1_requires_certificate = false;
    start();

    WHEN("a v1 server without a certificate connects") {
      auto s = server_connects(false);

      THEN("it is served like any other") {
        CHECK(s.pair == 0);
        client_arrives(s);
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "A v2 server is given nothing before its hello", "[v2][hello]") {
  GIVEN("a relay without tokens; v2 servers present client certificates") {
    start();

    WHEN("a v2 server completes its handshake") {
      auto c = v2_connects();  // REQUIREs route_connection{control, session} and nothing else

      THEN("its session only claims the control connection: no pair, no line") {
        CHECK(orders_so_far().empty());
        CHECK_FALSE(has_ended(c.session));
      }

      AND_WHEN("it says hello 2") {
        server_says(c, "hello 2");

        THEN("pair 0 is routed to it for accept-line reverse connections, and it is welcomed "
             "with a session secret, then told pair 0's listeners") {
          auto s = v2_accepted(c);  // REQUIREs exactly these four orders
          CHECK(s.pair == 0);
          CHECK(s.lines[1] == "public_listener 127.0.0.1:12004\r\n");
          CHECK(s.lines[2] == "reverse_listener 127.0.0.1:12001\r\n");
        }
      }

      AND_WHEN("just under the hello timeout passes without a line") {
        advance_time(config.session.hello_timeout - 1ms);

        THEN("nothing happens yet") {
          CHECK_THAT(take_orders(), are_exactly({}));
          CHECK_FALSE(has_ended(c.session));
        }

        AND_WHEN("the hello timeout is reached") {
          advance_time(1ms);

          THEN("its control connection is closed without a line and its session ends") {
            CHECK_THAT(take_orders(), are_exactly({close_connection{c.id}}));
            CHECK(has_ended(c.session));
          }
          AND_THEN("no pair was taken: the next v2 server gets pair 0") {
            take_orders();
            CHECK(v2_server_connects().pair == 0);
          }
        }

        AND_WHEN("its hello comes just in time") {
          server_says(c, "hello 2");
          auto s = v2_accepted(c);

          THEN("the hello timeout no longer applies: when it falls due nothing happens") {
            take_logged_errors();
            advance_time(1ms);
            advance_time(config.session.hello_timeout);
            CHECK_THAT(take_orders(), are_exactly({}));
            CHECK_FALSE(has_ended(s.session));
            v2_client_arrives(s);
          }
          THEN("nor is it an unexpected message to the serving session (logged as a bug)") {
            take_logged_errors();
            advance_time(1ms);
            advance_time(config.session.hello_timeout);
            CHECK(take_logged_errors() == std::vector<std::string>{});
          }
        }
      }

      AND_WHEN("it goes away before its hello") {
        net_sends(c.session, connection_closed{c.id, close_reason::peer_closed});
        settle();

        THEN("its session ends without a pair") {
          CHECK_THAT(take_orders(), are_exactly({close_connection{c.id}}));
          CHECK(has_ended(c.session));
          CHECK(v2_server_connects().pair == 0);
        }
      }
    }

    WHEN("two v2 servers are accepted") {
      auto s1 = v2_server_connects();
      auto s2 = v2_server_connects();

      THEN("they get pairs 0 and 1 and different session secrets") {
        CHECK(s1.pair == 0);
        CHECK(s2.pair == 1);
        CHECK(s1.session_secret != s2.session_secret);
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "A v2 first line other than a valid hello 2 is refused",
                "[v2][hello]") {
  GIVEN("a relay without tokens") {
    start();

    WHEN("servers open with lines the relay cannot accept, one server per line") {
      struct refused_line {
        std::string line;
        v2::error_code code;
      };
      const std::vector<refused_line> cases = {
        {"hello 2 colour=blue", v2::error_code::bad_request},  // unknown hello key
        {"hello 2 token", v2::error_code::bad_request},        // key without value
        {"hello 2 name=Web", v2::error_code::bad_request},     // not a valid name
        {"hello 2 port=0", v2::error_code::bad_request},
        {"hello 2 name=a name=b", v2::error_code::bad_request},
        {"hello 2  name=a", v2::error_code::bad_request},
        {"hello", v2::error_code::bad_request},
        {"GET / HTTP/1.1", v2::error_code::bad_request},  // garbage
        {"", v2::error_code::bad_request},
        {"ping", v2::error_code::bad_request},  // not a hello
        {"hello 3", v2::error_code::unsupported_version},
        {"hello 1", v2::error_code::unsupported_version},
        {"hello 3 token=abc", v2::error_code::unsupported_version},
      };

      THEN("each gets `error <code> <text>`, its control connection is closed after it and its "
           "session ends; no pair is taken") {
        for (const auto& k : cases) {
          INFO("first line: \"" << k.line << "\"");
          auto c = v2_connects();
          server_says(c, k.line);
          const auto err = v2_refused(c);  // REQUIREs exactly one send_and_close{control, error}
          CHECK(v2::to_string(err.code) == v2::to_string(k.code));
          CHECK_FALSE(err.text.empty());
          CHECK(has_ended(c.session));
        }
        CHECK(v2_server_connects().pair == 0);
      }
    }

    WHEN("a served v2 server says hello again") {
      auto s = v2_server_connects();
      server_says(s, "hello 2");

      THEN("it gets error bad_request and its session ends, unrouting its pair") {
        const auto got = take_orders();
        INFO(Catch::Detail::stringify(got));
        REQUIRE(got.size() == 2);
        auto* last = std::get_if<send_and_close>(&got[0]);
        REQUIRE(last);
        CHECK(last->id == s.control);
        CHECK(last->bytes.rfind("error bad_request ", 0) == 0);
        CHECK(same_order(got[1], route_pair{s.pair, caf::actor{}, reverse_framing::raw}));
        CHECK(has_ended(s.session));
      }
    }

    WHEN("a served v2 server sends a line that is no v2 line") {
      auto s = v2_server_connects();
      server_says(s, "new_connection");

      THEN("it gets error bad_request and its session ends") {
        const auto got = take_orders();
        INFO(Catch::Detail::stringify(got));
        REQUIRE(got.size() == 2);
        auto* last = std::get_if<send_and_close>(&got[0]);
        REQUIRE(last);
        CHECK(last->id == s.control);
        CHECK(last->bytes.rfind("error bad_request ", 0) == 0);
        CHECK(has_ended(s.session));
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "Without tokens, a v2 server needs a client certificate",
                "[v2][auth]") {
  GIVEN("a relay without tokens and with client authentication (open_access false)") {
    start();

    WHEN("a v2 server without a certificate says hello 2") {
      auto c = v2_connects(false, "203.0.113.9");
      server_says(c, "hello 2");

      THEN("nothing is answered before auth_failure_delay(1)") {
        CHECK_THAT(take_orders(), are_exactly({}));
        advance_time(auth_failure_delay(1) - 1ms);
        CHECK_THAT(take_orders(), are_exactly({}));
        CHECK_FALSE(has_ended(c.session));

        AND_THEN("then it gets error auth_failed and is closed; no pair was taken") {
          advance_time(1ms);
          CHECK(v2_refused(c).code == v2::error_code::auth_failed);
          CHECK(has_ended(c.session));
          CHECK(v2_server_connects().pair == 0);
        }
      }
    }
  }

  GIVEN("a relay without tokens; a v2 server without a certificate said hello 2 and waits "
        "for the late refusal") {
    start();
    auto c = v2_connects(false, "203.0.113.9");
    server_says(c, "hello 2");

    WHEN("it goes away meanwhile") {
      net_sends(c.session, connection_closed{c.id, close_reason::peer_closed});
      settle();

      THEN("its session ends at once, and the refusal, when it falls due, orders nothing") {
        CHECK_THAT(take_orders(), are_exactly({close_connection{c.id}}));
        CHECK(has_ended(c.session));
        advance_time(auth_failure_delay(1));
        CHECK_THAT(take_orders(), are_exactly({}));
        CHECK(v2_server_connects().pair == 0);
      }
    }
  }

  GIVEN("an open relay (open_access: --client-auth none)") {
    auth_config.open_access = true;
    start();

    WHEN("a v2 server without a certificate says hello 2") {
      auto s = v2_server_connects("hello 2", false);

      THEN("it is served") { CHECK(s.pair == 0); }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "With tokens configured, the token decides", "[v2][auth]") {
  GIVEN("tokens alpha and beta (any name, any port), a-only (name a only) and port-only (port "
        "12005 only)") {
    auth_config.tokens = some_tokens();
    start();

    WHEN("a server without a certificate says hello with alpha's token") {
      auto s = v2_server_connects("hello 2 token=" + alpha, false);

      THEN("it is served") {
        CHECK(s.pair == 0);
        v2_client_arrives(s);
      }
    }

    WHEN("a-only's server asks for name a") {
      auto s = v2_server_connects("hello 2 token=" + a_only + " name=a", false);

      THEN("it is served") { CHECK(s.pair == 0); }
    }

    WHEN("port-only's server asks for port 12005") {
      auto s = v2_server_connects("hello 2 token=" + port_only + " port=12005", false);

      THEN("it is served on that port") { CHECK(s.pair == 1); }
    }

    struct refusal {
      std::string why;
      std::string hello;
      bool client_certificate;
    };
    const std::vector<refusal> refusals = {
      {"an unknown token", "hello 2 token=tok-nobody-knows", false},
      {"a token differing from alpha's in its last character",
       "hello 2 token=" + alpha.substr(0, alpha.size() - 1) + "8", false},
      {"no token, though with a client certificate", "hello 2", true},
      {"a-only's token asking for name b", "hello 2 token=" + a_only + " name=b", false},
      {"port-only's token asking for port 12006", "hello 2 token=" + port_only + " port=12006",
       false},
    };
    for (const auto& r : refusals) {
      WHEN("a server says hello with " + r.why) {
        auto c = v2_connects(r.client_certificate, "203.0.113.9");
        server_says(c, r.hello);

        THEN("after auth_failure_delay(1), not before, it gets error auth_failed and is closed") {
          CHECK_THAT(take_orders(), are_exactly({}));
          advance_time(auth_failure_delay(1) - 1ms);
          CHECK_THAT(take_orders(), are_exactly({}));
          advance_time(1ms);
          CHECK(v2_refused(c).code == v2::error_code::auth_failed);
          CHECK(has_ended(c.session));
        }
        AND_THEN("no pair was taken: alpha's server then gets pair 0") {
          advance_time(auth_failure_delay(1));
          take_orders();
          CHECK(v2_server_connects("hello 2 token=" + alpha, false).pair == 0);
        }
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "Repeated authentication failures from one address are answered "
                            "later and later", "[v2][auth]") {
  GIVEN("a relay with tokens") {
    auth_config.tokens = some_tokens();
    start();
    REQUIRE(auth_failure_delay(1) > 0ms);
    REQUIRE(auth_failure_delay(2) > auth_failure_delay(1));

    WHEN("a server at 203.0.113.9 fails once, then again") {
      auto first = v2_connects(false, "203.0.113.9");
      server_says(first, "hello 2 token=wrong-guess-1");
      advance_time(auth_failure_delay(1));
      REQUIRE(v2_refused(first).code == v2::error_code::auth_failed);

      auto second = v2_connects(false, "203.0.113.9");
      server_says(second, "hello 2 token=wrong-guess-2");

      THEN("the second answer takes auth_failure_delay(2)") {
        advance_time(auth_failure_delay(2) - 1ms);
        CHECK_THAT(take_orders(), are_exactly({}));
        CHECK_FALSE(has_ended(second.session));
        advance_time(1ms);
        CHECK(v2_refused(second).code == v2::error_code::auth_failed);
      }

      AND_WHEN("a server at another address fails meanwhile") {
        auto other = v2_connects(false, "198.51.100.77");
        server_says(other, "hello 2 token=wrong-guess-3");

        THEN("its answer comes after auth_failure_delay(1), the repeated one's still pending") {
          advance_time(auth_failure_delay(1));
          CHECK(v2_refused(other).code == v2::error_code::auth_failed);
          CHECK_FALSE(has_ended(second.session));
        }
      }

      AND_WHEN("the same server then says hello with a good token") {
        auto good = v2_connects(false, "203.0.113.9");
        server_says(good, "hello 2 token=" + alpha);

        THEN("it is served at once: only failures are slowed down") {
          auto s = v2_accepted(good);
          CHECK(s.pair == 0);
        }
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "Control lines are taken under credit, and a line nobody expects ends "
                            "the session", "[v2][v1][flow][hostile]") {
  GIVEN("a relay with tokens") {
    auth_config.tokens = some_tokens();
    start();

    WHEN("a v2 server's hello is accepted and it pings") {
      auto s = v2_server_connects("hello 2 token=" + alpha, false);
      const auto after_hello = lines_credited(s.control);
      server_says(s, "ping");

      THEN("each line was given back as credit once dealt with") {
        CHECK(after_hello == 1);
        CHECK(lines_credited(s.control) == 2);
        CHECK_THAT(take_orders(), are_exactly({send_line{s.control, "pong\r\n"}}));
      }
    }
    WHEN("a server with a wrong token sends a line while its refusal is being slowed down") {
      auto c = v2_connects(false);
      server_says(c, "hello 2 token=wrong-token-1");
      REQUIRE(take_orders().empty());  // the refusal is not due yet
      server_says(c, "ping");

      THEN("it is refused at once with bad_request, without waiting for the verdict") {
        const auto refused = v2_refused(c);
        CHECK(refused.code == v2::error_code::bad_request);
        CHECK_THAT(refused.text, Catch::Contains("before the welcome"));
        CHECK(has_ended(c.session));
      }
    }
    WHEN("a server with a good token sends a line before its welcome") {
      auto c = v2_connects(false);
      net_sends(c.session, control_line{c.id, "hello 2 token=" + alpha});
      net_sends(c.session, control_line{c.id, "ping"});
      settle();

      THEN("it is refused with bad_request too: nothing may come between hello and welcome") {
        const auto got = take_orders();
        INFO("orders: " << Catch::Detail::stringify(got));
        REQUIRE_FALSE(got.empty());
        auto* last = std::get_if<send_and_close>(&got.back());
        REQUIRE(last);
        CHECK(last->bytes.rfind("error bad_request", 0) == 0);
        CHECK(has_ended(c.session));
      }
    }
  }
  GIVEN("a v1 server that is being served") {
    start();
    auto s = server_connects();

    WHEN("it sends lines v1 does not define") {
      server_says(s, "hello?");
      server_says(s, "still here");

      THEN("they are ignored, each given back as credit, and the session goes on") {
        CHECK(lines_credited(s.control) == 2);
        CHECK(take_orders().empty());
        CHECK_FALSE(has_ended(s.session));
        client_arrives(s);
      }
    }
  }
}
