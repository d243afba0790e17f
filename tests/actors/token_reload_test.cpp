// A reload's new token table (config part of issue 10): the authenticator
// takes it, the pool_manager ends the sessions of removed tokens, each told
// `error auth_failed token revoked`; sessions of tokens still there, and
// sessions by certificate, go on; a removed token opens no new session, even
// one whose hello was granted under the old table.
#include "relay_fixture.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

namespace {

const std::string alpha = "tok-alpha-0123456789";
const std::string beta = "tok-beta-9876543210";
const std::string revoked_line = "error auth_failed token revoked\r\n";

// Whether `got` holds send_and_close{control, revoked_line}.
bool told_revoked(const orders& got, conn_id control) {
  for (const auto& o : got)
    if (auto* last = std::get_if<send_and_close>(&o))
      if (last->id == control && last->bytes == revoked_line) return true;
  return false;
}

}  // namespace

SCENARIO_METHOD(v2_fixture, "A reload that removes a token ends that token's sessions only",
                "[v2][auth][reload]") {
  GIVEN("tokens alpha and beta, a server of each, and one by certificate") {
    auth_config.tokens = {{alpha, {}, {}, 1}, {beta, {}, {}, 2}};
    start();
    auto by_alpha = v2_server_connects("hello 2 token=" + alpha, false);
    auto by_beta = v2_server_connects("hello 2 token=" + beta, false);
    auto by_certificate = v2_server_connects("hello 2 token=" + beta, true);
    take_orders();

    WHEN("the new table has beta only") {
      net_sends(pool, token_table{{{beta, {}, {}, 1}}});
      settle();

      THEN("alpha's session is told error auth_failed token revoked and ends; its pair is "
           "unrouted; the others are untouched") {
        const auto got = take_orders();
        CHECK(told_revoked(got, by_alpha.control));
        CHECK_FALSE(told_revoked(got, by_beta.control));
        CHECK_FALSE(told_revoked(got, by_certificate.control));
        CHECK(std::count_if(got.begin(), got.end(), [&](const order& o) {
                auto* r = std::get_if<route_pair>(&o);
                return r && r->pair == by_alpha.pair && !r->owner;
              }) == 1);
        CHECK(has_ended(by_alpha.session));
        CHECK_FALSE(has_ended(by_beta.session));
        CHECK_FALSE(has_ended(by_certificate.session));
      }
      AND_THEN("a new hello with alpha is refused, beta's still works") {
        take_orders();
        auto c = v2_connects(false, "203.0.113.9");
        server_says(c, "hello 2 token=" + alpha);
        advance_time(auth_failure_delay(1));
        CHECK(v2_refused(c).code == v2::error_code::auth_failed);
        CHECK(v2_server_connects("hello 2 token=" + beta, false).pair == by_alpha.pair);
      }
    }

  }

  GIVEN("token alpha and a server of it") {
    auth_config.tokens = {{alpha, {}, {}, 1}};
    start();
    auto by_alpha = v2_server_connects("hello 2 token=" + alpha, false);
    take_orders();

    WHEN("the new table keeps alpha and adds gamma") {
      net_sends(pool, token_table{{{alpha, {}, {}, 1}, {"tok-gamma-1", {}, {}, 2}}});
      settle();

      THEN("nobody is told anything, and gamma opens a session at once") {
        CHECK_THAT(take_orders(), are_exactly({}));
        CHECK_FALSE(has_ended(by_alpha.session));
        CHECK(v2_server_connects("hello 2 token=tok-gamma-1", false).pair == 1);
      }
    }
  }
}

SCENARIO_METHOD(v2_fixture, "A hello granted under the old table does not outlive the removal "
                "of its token", "[v2][auth][reload]") {
  GIVEN("token alpha, and a server whose hello with it the authenticator has just granted") {
    auth_config.tokens = {{alpha, {}, {}, 1}};
    start();
    auto c = v2_connects(false, "203.0.113.9");
    take_orders();
    net_sends(c.session, control_line{c.id, "hello 2 token=" + alpha});
    REQUIRE(sched.prioritize(c.session));
    REQUIRE(step());  // the session asks the authenticator
    REQUIRE(sched.prioritize(auth));
    REQUIRE(step());  // which grants under the old table; the session has not seen it yet

    WHEN("the table without alpha reaches the pool manager and the authenticator before the "
         "session asks for its pair") {
      net_sends(pool, token_table{{{beta, {}, {}, 1}}});
      REQUIRE(sched.prioritize(pool));
      REQUIRE(step());  // the pool manager hands the table to the authenticator
      REQUIRE(sched.prioritize(auth));
      REQUIRE(step());  // which answers that alpha is removed
      REQUIRE(sched.prioritize(pool));
      REQUIRE(step());  // the pool manager notes it
      settle();         // the session asks for its pair

      THEN("the pair request is refused: error auth_failed token revoked, no pair routed") {
        const auto got = take_orders();
        CHECK(told_revoked(got, c.id));
        CHECK(std::none_of(got.begin(), got.end(),
                           [](const order& o) { return std::holds_alternative<route_pair>(o); }));
        CHECK(has_ended(c.session));
      }
    }
  }

  GIVEN("token alpha, and a server whose hello the session has just passed on") {
    auth_config.tokens = {{alpha, {}, {}, 1}};
    start();
    auto c = v2_connects(false, "203.0.113.9");
    take_orders();
    net_sends(c.session, control_line{c.id, "hello 2 token=" + alpha});
    REQUIRE(step());  // the session takes the hello and asks the authenticator
    net_sends(pool, token_table{{{beta, {}, {}, 1}}});

    WHEN("the table without alpha arrives meanwhile, in whatever order the actors run") {
      settle();

      THEN("however the messages interleave, the server is told error auth_failed token "
           "revoked and its session ends") {
        CHECK(told_revoked(take_orders(), c.id));
        CHECK(has_ended(c.session));
      }
    }
  }
}
