// A server that a node sends elsewhere while it is served: its name was
// claimed on two nodes that had not met (the conflict rule), or its node
// drains.
#include <csignal>

#include <catch2/catch.hpp>

#include "protocol/wire.hpp"
#include "tests/cli_e2e/cli_test.hpp"
#include "tests/cluster/cluster.hpp"
#include "tests/support/v2_test_server.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

namespace {

constexpr millis converge_timeout = 10000ms;

}  // namespace

SCENARIO("cluster: a name claimed on two nodes apart goes to the earlier claim when they meet, "
         "and the later claimant's expose is redirected there",
         "[cluster][e2e][cli]") {
  const auto keys = cluster_pki();
  const auto ports = pick_cluster_ports();
  // a and b know nothing of each other.
  cluster_node a(keys->dir(), ports, node("a", 0));
  cluster_node b(keys->dir(), ports, node("b", 1));

  // First claim: "web" on a, by a server with the relay's client
  // certificate. (A test server, not expose: it does not come back when the
  // name is taken over, so the two do not fight over it afterwards.)
  v2_test_server::options on_a;
  on_a.host = a.address();
  v2_test_server first(ports.control, v2_test_server::with_certificate(keys->dir()), on_a);
  v2::hello hello;
  hello.name = "web";
  first.greet(hello);
  const auto web_port = first.public_listener().port;

  // Later claim: the same name and identity on b, by expose.
  io_thread io;
  echo_service echo(io.io());
  auto expose = start_expose(echo.port(), {b.control_text()}, keys->dir(), {"--name", "web"});
  const log_on_failure expose_log(*expose, "expose");
  const auto on_b = wait_exposed_on(*expose, echo.port(), b.address(), 10000ms);
  REQUIRE(on_b);

  // They meet through a third node that peers both.
  cluster_node c(keys->dir(), ports, node("c", 2, {0, 1}));
  const std::map<std::string, std::string> all_up = {{"a", "up"}, {"b", "up"}, {"c", "up"}};
  CHECK(wait_members(a, all_up, converge_timeout));
  CHECK(wait_members(b, all_up, converge_timeout));

  // b gives the name up and sends its server to a ...
  CHECK(b.wait_for_log("cluster: name web is claimed here and on node a", converge_timeout));
  CHECK(wait_stderr(*expose, "relay " + b.control_text() + " redirects us to " + a.control_text(),
                    converge_timeout));
  // ... where it gets the name's port (the first claimant's session is taken over).
  const auto on_a_now = wait_exposed_on(*expose, echo.port(), a.address(), 10000ms);
  REQUIRE(on_a_now);
  CHECK(on_a_now->port == web_port);
  CHECK_NOTHROW(first.read_until_closed(5000ms));
  {
    auto client = test_client::connect(*on_a_now);
    CHECK(client.exchange("web, settled on a") == "web, settled on a");
  }
  // b let the name go: its port there has no session any more.
  {
    auto stale = tcp_connect_to(b.address(), on_b->port);
    CHECK(stale.recv_until_eof(5000ms) == wire::no_controller_linked);
  }
  CHECK(metric_value(b.metrics(), "tlsrelay_reservation_conflicts_total").value_or(0) > 0);
  CHECK(metric_value(a.metrics(), "tlsrelay_reservation_conflicts_total") == 0.0);
  CHECK(b.status().at("cluster").at("conflicts_resolved").get<int>() > 0);
  CHECK(metric_value(b.metrics(), "tlsrelay_redirects_total{reason=\"name_elsewhere\"}") == 1.0);

  CHECK(terminate(*expose) == 0);
  CHECK(find_sanitizer_output(expose->stderr_text()) == "");
  CHECK_NODE_STOPS_CLEANLY(c);
  CHECK_NODE_STOPS_CLEANLY(b);
  CHECK_NODE_STOPS_CLEANLY(a);
}

SCENARIO("cluster: a draining node sends its expose to another node, where clients reach it",
         "[cluster][e2e][cli][drain]") {
  const auto keys = cluster_pki();
  const auto ports = pick_cluster_ports();
  node_options a_options = node("a", 0);
  a_options.drain_timeout = "10";
  cluster_node a(keys->dir(), ports, a_options);
  cluster_node b(keys->dir(), ports, node("b", 1, {0}));
  const std::map<std::string, std::string> a_and_b = {{"a", "up"}, {"b", "up"}};
  REQUIRE(wait_members(a, a_and_b, converge_timeout));
  REQUIRE(wait_members(b, a_and_b, converge_timeout));

  io_thread io;
  echo_service echo(io.io());
  // Only a as a seed: b is where a's drain sends it.
  auto expose = start_expose(echo.port(), {a.control_text()}, keys->dir());
  const log_on_failure expose_log(*expose, "expose");
  const auto on_a = wait_exposed_on(*expose, echo.port(), a.address(), 10000ms);
  REQUIRE(on_a);
  {
    auto client = test_client::connect(*on_a);
    CHECK(client.exchange("before the drain") == "before the drain");
  }

  a.signal(SIGTERM);
  CHECK(a.wait_for_log("draining: v2 servers are sent to " + b.control_text(), 5000ms));
  CHECK(wait_stderr(*expose, "relay " + a.control_text() + " redirects us to " + b.control_text(),
                    5000ms));
  const auto on_b = wait_exposed_on(*expose, echo.port(), b.address(), 10000ms);
  REQUIRE(on_b);
  {
    auto client = test_client::connect(*on_b);
    CHECK(client.exchange("after the drain") == "after the drain");
  }
  // a had nothing left to wait for: it ends well before its drain timeout.
  CHECK(a.wait_exit(5000ms) == 0);
  CHECK(a.log().find("drain complete") != std::string::npos);
  CHECK(find_sanitizer_output(a.log()) == "");
  CHECK(wait_members(b, {{"a", "down"}, {"b", "up"}}, converge_timeout));

  CHECK(terminate(*expose) == 0);
  CHECK(find_sanitizer_output(expose->stderr_text()) == "");
  CHECK_NODE_STOPS_CLEANLY(b);
}
