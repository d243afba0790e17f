// Cluster membership as an operator sees it: /status of each node, the log
// lines about peers, and servers that keep being served when a node dies.
#include <catch2/catch.hpp>

#include "tests/cli_e2e/cli_test.hpp"
#include "tests/cluster/cluster.hpp"
#include "tests/support/v2_test_server.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

namespace {

const std::map<std::string, std::string> all_three_up = {{"a", "up"}, {"b", "up"}, {"c", "up"}};

// Long enough for a loaded 2-core machine; a healthy cluster needs well under a second.
constexpr millis converge_timeout = 10000ms;

}  // namespace

SCENARIO("cluster: nodes given only the first node as a peer find each other and every node's "
         "status lists three members up",
         "[cluster][e2e]") {
  const auto keys = cluster_pki();
  const auto ports = pick_cluster_ports();
  cluster_node a(keys->dir(), ports, node("a", 0));
  cluster_node b(keys->dir(), ports, node("b", 1, {0}));
  cluster_node c(keys->dir(), ports, node("c", 2, {0}));

  for (const cluster_node* node : {&a, &b, &c}) {
    std::string seen;
    const bool converged = wait_members(*node, all_three_up, converge_timeout, &seen);
    INFO("node " << node->name() << " lists " << seen);
    CHECK(converged);
  }
  // b and c met only through a's gossip: each logs the other as up.
  CHECK(b.wait_for_log("cluster: node c at " + node_addresses[2], 1000ms));
  CHECK(c.wait_for_log("cluster: node b at " + node_addresses[1], 1000ms));

  const auto status = b.status();
  const auto& cluster = status.at("cluster");
  CHECK(cluster.at("node") == "b");
  for (const auto& m : cluster.at("members")) {
    const std::string name = m.at("name");
    const auto& address = node_addresses[static_cast<std::size_t>(name[0] - 'a')];
    CHECK(m.at("self") == (name == "b"));
    CHECK(m.at("control_address") == address + ":" + std::to_string(ports.control));
    CHECK(m.at("cluster_address") == address + ":" + std::to_string(ports.cluster()));
    CHECK(m.at("free_pairs") == 1);
    CHECK(m.at("sessions") == 0);
  }
  const auto metrics = b.metrics();
  CHECK(metric_value(metrics, "tlsrelay_cluster_peers{state=\"up\"}") == 2.0);
  CHECK(metric_value(metrics, "tlsrelay_cluster_peers{state=\"down\"}") == 0.0);

  CHECK_NODE_STOPS_CLEANLY(c);
  CHECK_NODE_STOPS_CLEANLY(b);
  CHECK_NODE_STOPS_CLEANLY(a);
}

SCENARIO("cluster: a SIGKILLed node is down within the peer timeout, its expose moves to the next "
         "seed and is reached there, and the node rejoins after a restart",
         "[cluster][e2e][cli]") {
  const auto keys = cluster_pki();
  const auto ports = pick_cluster_ports();
  cluster_node a(keys->dir(), ports, node("a", 0));
  cluster_node b(keys->dir(), ports, node("b", 1, {0}));
  cluster_node c(keys->dir(), ports, node("c", 2, {0}));
  for (const cluster_node* node : {&a, &b, &c})
    REQUIRE(wait_members(*node, all_three_up, converge_timeout));

  io_thread io;
  echo_service echo(io.io());
  // c first, b second: the expose lands on c, and when c is gone, on b.
  auto expose = start_expose(echo.port(), {c.control_text(), b.control_text()}, keys->dir(),
                             {"--name", "svc"});
  const log_on_failure expose_log(*expose, "expose");
  const auto on_c = wait_exposed_on(*expose, echo.port(), c.address(), 10000ms);
  REQUIRE(on_c);
  {
    auto client = test_client::connect(*on_c);
    CHECK(client.exchange("through c") == "through c");
  }

  WHEN("node c is killed") {
    c.kill();
    THEN("a and b log it down and show it down within the peer timeout (1 s)") {
      // The peer timeout bounds a silent peer; a killed one's connections
      // break at once. 1 s of slack for a loaded machine.
      CHECK(a.wait_for_log("cluster: node c is down", 2000ms));
      CHECK(b.wait_for_log("cluster: node c is down", 2000ms));
      const std::map<std::string, std::string> c_down = {{"a", "up"}, {"b", "up"}, {"c", "down"}};
      CHECK(wait_members(a, c_down, 1000ms));
      CHECK(wait_members(b, c_down, 1000ms));
      CHECK(metric_value(a.metrics(), "tlsrelay_cluster_peers{state=\"down\"}") == 1.0);

      AND_THEN("the expose takes its name to b, where a client reaches the service") {
        const auto on_b = wait_exposed_on(*expose, echo.port(), b.address(), 10000ms);
        REQUIRE(on_b);
        auto client = test_client::connect(*on_b);
        CHECK(client.exchange("through b") == "through b");

        AND_THEN("c, started again with the same command line, is up on every node") {
          c.start();
          for (const cluster_node* node : {&a, &b, &c}) {
            std::string seen;
            const bool converged = wait_members(*node, all_three_up, converge_timeout, &seen);
            INFO("node " << node->name() << " lists " << seen);
            CHECK(converged);
          }
          // The expose stays where it is.
          CHECK(client.exchange("still through b") == "still through b");
        }
      }
    }
  }

  CHECK(terminate(*expose) == 0);
  CHECK(find_sanitizer_output(expose->stderr_text()) == "");
  if (c.running()) CHECK_NODE_STOPS_CLEANLY(c);
  CHECK_NODE_STOPS_CLEANLY(b);
  CHECK_NODE_STOPS_CLEANLY(a);
}

SCENARIO("cluster: a node whose certificate comes from a foreign CA never becomes a member, nor "
         "does a plain TCP connection to the cluster port",
         "[cluster][e2e][hostile]") {
  const auto keys = cluster_pki();
  const pki foreign;  // certs init in another directory: another CA, its own node certificate
  const auto ports = pick_cluster_ports();
  cluster_node a(keys->dir(), ports, node("a", 0));
  cluster_node b(keys->dir(), ports, node("b", 1, {0}));
  const std::map<std::string, std::string> a_and_b = {{"a", "up"}, {"b", "up"}};
  REQUIRE(wait_members(a, a_and_b, converge_timeout));
  REQUIRE(wait_members(b, a_and_b, converge_timeout));

  // Same --keys as the others (their CA, so it would accept them), but the
  // certificate it presents is signed by the foreign CA.
  node_options mallory = node("mallory", 3, {0, 1});
  mallory.extra = {"--node-cert", foreign.file("node.crt.pem").string(), "--node-key",
                   foreign.file("node.key.pem").string(), "--log-level", "debug"};
  cluster_node m(keys->dir(), ports, mallory);

  // It tried both and was turned away by both.
  CHECK(m.wait_for_log("cluster: cannot join the peer at " + node_addresses[0], 10000ms));
  CHECK(m.wait_for_log("cluster: cannot join the peer at " + node_addresses[1], 10000ms));
  CHECK(member_states(m.status()) == std::map<std::string, std::string>{{"mallory", "up"}});

  // A plain TCP connection that sends bytes which are no TLS handshake is
  // closed, and makes no member either.
  auto plain = tcp_connect_to(a.address(), ports.cluster());
  plain.send_all("hello 2 name=mallory\r\n");
  CHECK_NOTHROW(plain.expect_closed(5000ms));

  // Mallory keeps trying (backoff) and is never let in.
  CHECK(m.wait_for_log("cluster: peer at " + node_addresses[0] + ":" +
                         std::to_string(ports.cluster()) + " still unreachable",
                       10000ms));
  for (const cluster_node* node : {&a, &b}) {
    const auto seen = member_states(node->status());
    INFO("node " << node->name() << " lists " << describe_members(seen));
    CHECK(seen == a_and_b);
    CHECK(node->log().find("mallory") == std::string::npos);
  }

  CHECK_NODE_STOPS_CLEANLY(m);
  CHECK_NODE_STOPS_CLEANLY(b);
  CHECK_NODE_STOPS_CLEANLY(a);
}

// Every server behind the relay holds a client certificate of the relay's CA
// (keys/client.crt.pem); node certificates come from a cluster CA of their
// own, so a server cannot join the cluster, claim names and advertise room.
SCENARIO("cluster: a server's client certificate is not a node certificate",
         "[cluster][e2e][hostile]") {
  const auto keys = cluster_pki();
  const auto ports = pick_cluster_ports();
  cluster_node a(keys->dir(), ports, node("a", 0));
  node_options impostor = node("impostor", 1, {0});
  impostor.extra = {"--node-cert", keys->client_cert().string(), "--node-key",
                    keys->client_key().string()};
  cluster_node i(keys->dir(), ports, impostor);

  // It dials a at once: turned away, or let in.
  const std::string refused = "cluster: cannot join the peer at " + a.address();
  const std::string let_in = "cluster: node a at " + a.address();
  REQUIRE(eventually(
    [&] {
      const auto log = i.log();
      return log.find(refused) != std::string::npos || log.find(let_in) != std::string::npos;
    },
    10000ms));
  CHECK(i.log().find(let_in) == std::string::npos);
  CHECK(member_states(a.status()) == std::map<std::string, std::string>{{"a", "up"}});

  CHECK_NODE_STOPS_CLEANLY(i);
  CHECK_NODE_STOPS_CLEANLY(a);
}
