// Where a cluster puts a v2 server (tlsrelay expose): on a node with room
// when the one it asked is full, where its name is held, nowhere (and
// without a redirect loop) when every node is full.
#include <catch2/catch.hpp>

#include "cli/expose_command.hpp"
#include "tests/cli_e2e/cli_test.hpp"
#include "tests/cluster/cluster.hpp"
#include "tests/support/v2_test_server.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

namespace {

constexpr millis converge_timeout = 10000ms;

v2_test_server::options on_node(const cluster_node& node) {
  v2_test_server::options o;
  o.host = node.address();
  return o;
}

v2::hello hello_named(const std::string& name) {
  v2::hello h;
  h.name = name;
  return h;
}

// Whether `viewer`'s /status shows, within the timeout, every member with the
// free pairs given (name -> free pairs): the load it decides placements by.
bool wait_free_pairs(const cluster_node& viewer, const std::map<std::string, int>& expected,
                     millis timeout, std::string* last) {
  return eventually(
    [&] {
      std::map<std::string, int> seen;
      const auto status = viewer.status();
      for (const auto& m : status.at("cluster").at("members"))
        if (m.at("state") == "up") seen[m.at("name")] = m.at("free_pairs").get<int>();
      *last = "";
      for (const auto& [name, n] : seen) *last += name + "=" + std::to_string(n) + " ";
      return seen == expected;
    },
    timeout);
}

}  // namespace

SCENARIO("cluster: a full node redirects expose to a node with room, where a client reaches the "
         "service",
         "[cluster][e2e][cli]") {
  const auto keys = cluster_pki();
  const auto ports = pick_cluster_ports();
  cluster_node a(keys->dir(), ports, node("a", 0));  // one pair
  cluster_node b(keys->dir(), ports, node("b", 1, {0}, 4));
  cluster_node c(keys->dir(), ports, node("c", 2, {0}));

  // a's only pair is taken.
  v2_test_server occupant(ports.control, v2_test_server::with_certificate(keys->dir()), on_node(a));
  occupant.greet();
  // b has the most room: two pairs to c's one.
  std::string seen;
  const bool converged =
    wait_free_pairs(a, {{"a", 0}, {"b", 2}, {"c", 1}}, converge_timeout, &seen);
  INFO("a's view of free pairs: " << seen);
  REQUIRE(converged);

  io_thread io;
  echo_service echo(io.io());
  auto expose = start_expose(echo.port(), {a.control_text()}, keys->dir());
  const log_on_failure expose_log(*expose, "expose");

  const auto on_b = wait_exposed_on(*expose, echo.port(), b.address(), 10000ms);
  REQUIRE(on_b);
  CHECK(on_b->port == b.public_port(0));
  CHECK(wait_stderr(*expose, "relay " + a.control_text() + " redirects us to " + b.control_text(),
                    1000ms));
  {
    auto client = test_client::connect(*on_b);
    CHECK(client.exchange("served by b") == "served by b");
  }
  const auto status = a.status();
  CHECK(status.at("cluster").at("redirects").at("full") == 1);
  CHECK(status.at("cluster").at("redirects").at("name_elsewhere") == 0);
  CHECK(metric_value(a.metrics(), "tlsrelay_redirects_total{reason=\"full\"}") == 1.0);

  CHECK(terminate(*expose) == 0);
  CHECK(find_sanitizer_output(expose->stderr_text()) == "");
  CHECK_NODE_STOPS_CLEANLY(c);
  CHECK_NODE_STOPS_CLEANLY(b);
  CHECK_NODE_STOPS_CLEANLY(a);
}

SCENARIO("cluster: a name held on one node before another joins sends its own identity there from "
         "the other node, and refuses another identity with name_unavailable",
         "[cluster][e2e][cli]") {
  const auto keys = cluster_pki();
  const auto ports = pick_cluster_ports();
  // The name "web" is held on b by a server with the relay's client
  // certificate (keys/client.crt.pem, the identity expose -k uses) ...
  cluster_node b(keys->dir(), ports, node("b", 1, {}, 4));
  v2_test_server holder(ports.control, v2_test_server::with_certificate(keys->dir()), on_node(b));
  holder.greet(hello_named("web"));
  const auto web_port = holder.public_listener().port;
  // ... before a joins (a dials b: b's claims reach a while they meet).
  cluster_node a(keys->dir(), ports, node("a", 0, {1}, 4));
  const std::map<std::string, std::string> a_and_b = {{"a", "up"}, {"b", "up"}};
  REQUIRE(wait_members(a, a_and_b, converge_timeout));
  REQUIRE(wait_members(b, a_and_b, converge_timeout));
  CHECK(eventually([&] { return a.status().at("cluster").at("names") == 1; }, converge_timeout));

  io_thread io;
  echo_service echo(io.io());

  // Expose of the same identity asks a for the name: a sends it to b, where
  // it gets the name's port and a client reaches it.
  auto expose = start_expose(echo.port(), {a.control_text()}, keys->dir(), {"--name", "web"});
  const log_on_failure expose_log(*expose, "expose");
  const auto on_b = wait_exposed_on(*expose, echo.port(), b.address(), 10000ms);
  REQUIRE(on_b);
  CHECK(on_b->port == web_port);
  CHECK(wait_stderr(*expose, "relay " + a.control_text() + " redirects us to " + b.control_text(),
                    1000ms));
  // The same identity took the name over: the old session is ended.
  CHECK_NOTHROW(holder.read_until_closed(5000ms));
  {
    auto client = test_client::connect(*on_b);
    CHECK(client.exchange("web on b") == "web on b");
  }
  const auto status = a.status();
  CHECK(status.at("cluster").at("redirects").at("name_elsewhere") == 1);
  CHECK(metric_value(a.metrics(), "tlsrelay_redirects_total{reason=\"name_elsewhere\"}") == 1.0);

  // Another identity (a second client certificate of the same CA) asks a,
  // then b, for the name: refused, exit code 6, name_unavailable.
  const auto [cert, key] = keys->issue_client("other");
  for (const cluster_node* node : {&a, &b}) {
    auto other = start_expose(echo.port(), {node->control_text()}, keys->dir(),
                              {"--cert", cert.string(), "--key", key.string(), "--name", "web"});
    const log_on_failure other_log(*other, "expose of another identity");
    const int code = exit_code_within(*other, 10000ms);
    const auto err = other->stderr_text();
    INFO("asking node " << node->name() << "; expose stderr: " << err);
    CHECK(code == cli::exit_code::refused);
    CHECK(err.find("tlsrelay: error:") != std::string::npos);
    CHECK(err.find("name_unavailable") != std::string::npos);
    CHECK(err.find("redirects us to") == std::string::npos);
    CHECK(other->stdout_text().find("tlsrelay: exposing") == std::string::npos);
  }
  // The name still reaches the first expose.
  {
    auto client = test_client::connect(*on_b);
    CHECK(client.exchange("still web on b") == "still web on b");
  }

  CHECK(terminate(*expose) == 0);
  CHECK(find_sanitizer_output(expose->stderr_text()) == "");
  CHECK_NODE_STOPS_CLEANLY(b);
  CHECK_NODE_STOPS_CLEANLY(a);
}

SCENARIO("cluster: with every node full expose gets no_available_listeners and no redirect",
         "[cluster][e2e][cli]") {
  const auto keys = cluster_pki();
  const auto ports = pick_cluster_ports();
  cluster_node a(keys->dir(), ports, node("a", 0));
  cluster_node b(keys->dir(), ports, node("b", 1, {0}));
  cluster_node c(keys->dir(), ports, node("c", 2, {0}));

  std::vector<std::unique_ptr<v2_test_server>> occupants;
  for (const cluster_node* node : {&a, &b, &c}) {
    occupants.push_back(std::make_unique<v2_test_server>(
      ports.control, v2_test_server::with_certificate(keys->dir()), on_node(*node)));
    occupants.back()->greet();
  }
  // Every node knows that every node is full.
  for (const cluster_node* node : {&a, &b, &c}) {
    std::string seen;
    const bool converged =
      wait_free_pairs(*node, {{"a", 0}, {"b", 0}, {"c", 0}}, converge_timeout, &seen);
    INFO("node " << node->name() << "'s view of free pairs: " << seen);
    REQUIRE(converged);
  }

  io_thread io;
  echo_service echo(io.io());
  // Each node as the first seed, and all of them as seeds.
  const std::vector<std::vector<std::string>> seed_lists = {
    {a.control_text()}, {b.control_text()}, {c.control_text(), a.control_text(), b.control_text()}};
  for (const auto& seeds : seed_lists) {
    auto expose = start_expose(echo.port(), seeds, keys->dir());
    const log_on_failure expose_log(*expose, "expose");
    INFO("seeds: " << seeds.front() << " (" << seeds.size() << ")");
    CHECK(exit_code_within(*expose, 10000ms) == cli::exit_code::refused);
    const auto err = expose->stderr_text();
    INFO("expose stderr: " << err);
    CHECK(err.find("no_available_listeners") != std::string::npos);
    CHECK(err.find("redirects us to") == std::string::npos);
  }
  for (const cluster_node* node : {&a, &b, &c}) {
    const auto redirects = node->status().at("cluster").at("redirects");
    INFO("node " << node->name() << " redirects: " << redirects.dump());
    CHECK(redirects.at("full") == 0);
    CHECK(redirects.at("name_elsewhere") == 0);
  }

  occupants.clear();
  CHECK_NODE_STOPS_CLEANLY(c);
  CHECK_NODE_STOPS_CLEANLY(b);
  CHECK_NODE_STOPS_CLEANLY(a);
}
