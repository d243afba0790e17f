// v2 liveness: the relay pings every --heartbeat seconds and ends a control
// connection that stays silent for three intervals; a server that answers
// keeps its session; a server may ping the relay too.
#include <thread>

#include "tests/e2e_v2/e2e_v2.hpp"

using namespace tlsrelay::test;

namespace {

// Reads (and, as configured, ignores) control lines until the relay ends
// the connection; throws io_error at the deadline or on any line other
// than a ping.
void read_until_relay_ends(v2_test_server& server, millis timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    const auto left =
        std::max(millis(0), std::chrono::duration_cast<millis>(deadline - steady::now()));
    const auto line = server.read_line(left);
    if (!line) return;
    throw io_error("unexpected control line " + printable(*line));
  }
}

}  // namespace

TEST_CASE("v2: a server that does not answer pings loses its control connection after three "
          "heartbeats and its port answers no controller linked",
          "[e2e][v2][heartbeat]") {
  relay_process relay(v2_relay(2, {"--heartbeat", "0.2"}));
  v2_test_server::options dead_agent;
  dead_agent.answer_pings = false;
  auto server = v2_server_with_certificate(relay, dead_agent);

  const auto hello_sent = steady::now();  // the relay last heard from it no earlier
  server->greet();
  const auto port = server->public_listener().port;
  REQUIRE_NOTHROW(read_until_relay_ends(*server, 5s));
  const auto lasted = std::chrono::duration_cast<millis>(steady::now() - hello_sent);
  INFO("the control connection ended " << lasted.count() << " ms after the hello, after "
                                       << server->pings_received() << " pings; "
                                       << server->control().close_reason());
  CHECK(lasted >= 600ms);
  CHECK(lasted <= 3000ms);
  CHECK(server->pings_received() >= 2);

  CHECK_NOTHROW(wait_for_no_controller_linked(port));
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: a named server that stops answering pings loses its session but keeps its "
          "public port reserved",
          "[e2e][v2][heartbeat]") {
  // One pair only: while it is reserved, a nameless server has none to get.
  relay_process relay(v2_relay(2, {"--heartbeat", "0.2"}));
  v2_test_server::options dead_agent;
  dead_agent.answer_pings = false;
  auto dead = v2_server_with_certificate(relay, dead_agent);
  dead->greet(hello_with("", "web"));
  const auto port = dead->public_listener().port;
  REQUIRE_NOTHROW(read_until_relay_ends(*dead, 5s));
  REQUIRE_NOTHROW(wait_for_no_controller_linked(port));  // the relay has let the session go

  auto nameless = v2_server_with_certificate(relay);
  const auto refused = nameless->say_hello(hello_with());
  INFO("nameless server: " << printable(refused.first_line.value_or("<closed>")));
  CHECK(refused.no_available_listeners);

  auto back = v2_server_with_certificate(relay);
  back->greet(hello_with("", "web"));
  CHECK(back->public_listener().port == port);
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: a server that answers pings keeps its session and serves clients",
          "[e2e][v2][heartbeat]") {
  relay_process relay(v2_relay(2, {"--heartbeat", "0.2"}));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  server->serve_echo();

  // Ten heartbeat intervals, more than three times what a silent server gets.
  std::this_thread::sleep_for(2s);
  INFO("pings answered: " << server->pings_received());
  CHECK_FALSE(server->control_ended());
  CHECK(server->pings_received() >= 5);

  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  CHECK(client.exchange("still alive", 11) == "still alive");
  CHECK(server->errors() == std::vector<std::string>{});
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: the relay answers a server's ping with pong", "[e2e][v2][heartbeat]") {
  relay_process relay(v2_relay(2));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  CHECK(server->ping_pong() == std::vector<std::string>{});
  CHECK(server->ping_pong() == std::vector<std::string>{});
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
