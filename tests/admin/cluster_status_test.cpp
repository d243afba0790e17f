// `tlsrelay status --cluster` and the "cluster" object of /status: the table
// rendered from a /status document, then against real relays: a cluster of
// one, two nodes on 127.0.0.2 and 127.0.0.3 with the same ports, and a relay
// that is not clustered (exit 3, one line).
#include <algorithm>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/status_command.hpp"
#include "tests/admin/admin.hpp"

using namespace tlsrelay::test;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

// A /status document of node relay-a, whose clock reads 1 600 000 ms (it
// started at 1 000 000 and has been up 600 s).
json status_of_three_nodes() {
  return json::parse(R"({
    "relay": {"version": "1.0.0", "commit": "abc", "started_unix_ms": 1000000,
              "uptime_seconds": 600.0, "listen_address": "127.0.0.2", "control_port": 12000,
              "myhost": "127.0.0.2",
              "pool": {"pairs": 100, "free": 98, "in_use": 2, "reserved": 0,
                       "reverse_ports": [12001, 12100], "public_ports": [12101, 12200]},
              "limits": {}},
    "sessions": [],
    "cluster": {
      "node": "relay-a",
      "members": [
        {"name": "relay-a", "self": true, "cluster_address": "127.0.0.2:12300",
         "control_address": "127.0.0.2:12000", "state": "up", "since_unix_ms": 1000000,
         "free_pairs": 98, "sessions": 2},
        {"name": "relay-b", "self": false, "cluster_address": "127.0.0.3:12300",
         "control_address": "127.0.0.3:12000", "state": "draining", "since_unix_ms": 1408000,
         "free_pairs": 100, "sessions": 0},
        {"name": "relay-c", "self": false, "cluster_address": "127.0.0.4:12300",
         "control_address": "127.0.0.4:12000", "state": "down", "since_unix_ms": 1596000,
         "free_pairs": 7, "sessions": 93}
      ],
      "names": 3,
      "redirects": {"draining": 2, "full": 0, "name_elsewhere": 5},
      "conflicts_resolved": 1
    }
  })");
}

// `tlsrelay status --cluster` against `admin_url`, run until its output
// satisfies `done` or `timeout` passes; the last run. (A peer is up a moment
// after its relay says it listens: the nodes still have to find each other.)
template <class Pred>
tool_run cluster_status_until(const std::string& admin_url, Pred done, millis timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    auto run = run_tlsrelay({"status", "--cluster", "--admin", admin_url});
    if ((run.exit_code == 0 && done(run.stdout_text)) || steady::now() >= deadline) return run;
    std::this_thread::sleep_for(200ms);  // between tries of a poll with a deadline
  }
}

// The row of node `name` in a `status --cluster` table, "" if none.
std::string row_of(const std::string& table, const std::string& name) {
  std::size_t at = 0;
  while (at < table.size()) {
    const auto end = table.find('\n', at);
    const auto line = table.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (line.rfind(name + " ", 0) == 0) return line;
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return {};
}

// The words of `line`, split at runs of spaces.
std::vector<std::string> cells_of(const std::string& line) {
  std::vector<std::string> cells;
  std::istringstream words(line);
  for (std::string w; words >> w;) cells.push_back(w);
  return cells;
}

bool shows_up(const std::string& table, const std::string& name) {
  const auto cells = cells_of(row_of(table, name));
  return std::find(cells.begin(), cells.end(), "up") != cells.end();
}

json status_json(std::uint16_t admin_port) {
  const auto reply = http_get(admin_port, "/status");
  INFO("GET /status: " << reply.status << " " << printable(reply.body));
  REQUIRE(reply.status == 200);
  return json::parse(reply.body);
}

// serve flags of a node of a cluster listening on `address` with the same
// control port, pool and cluster port as its peers.
relay_options cluster_node(const std::string& address, std::uint16_t port, unsigned port_count,
                           std::uint16_t cluster_port, const std::string& name,
                           std::vector<std::string> more = {}) {
  relay_options options;
  options.listen = address;
  options.port = port;
  options.port_count = port_count;
  options.myhost = address;
  options.extra_args = {"--cluster-listen", address + ":" + std::to_string(cluster_port),
                        "--node-name", name, "--admin", "127.0.0.1:0"};
  options.extra_args.insert(options.extra_args.end(), more.begin(), more.end());
  return options;
}

}  // namespace

TEST_CASE("status --cluster: the table has a row per node with state, time since, addresses, "
          "free pairs and sessions, this node marked, then the redirects and conflicts",
          "[admin][cluster]") {
  const auto table = tlsrelay::cli::format_cluster_table(status_of_three_nodes().dump());
  CHECK(table ==
        "cluster seen from node relay-a: 3 nodes (1 up, 1 draining, 1 down), 3 names reserved\n"
        "NODE                 STATE     SINCE   CONTROL          CLUSTER          FREE PAIRS  SESSIONS\n"
        "relay-a (this node)  up        10m00s  127.0.0.2:12000  127.0.0.2:12300  98          2\n"
        "relay-b              draining  3m12s   127.0.0.3:12000  127.0.0.3:12300  100         0\n"
        "relay-c              down      4s      127.0.0.4:12000  127.0.0.4:12300  -           -\n"
        "redirects sent by this node: name_elsewhere 5, full 0, draining 2\n"
        "name conflicts resolved: 1\n");
}

TEST_CASE("status --cluster: a reason of redirect this tlsrelay does not know is shown after "
          "the known ones, and times count on the relay's clock, not this machine's",
          "[admin][cluster]") {
  auto doc = status_of_three_nodes();
  doc["cluster"]["redirects"]["overloaded"] = 4;
  // Ten days later by the relay's clock.
  doc["relay"]["uptime_seconds"] = 600.0 + 10 * 86400.0;
  const auto table = tlsrelay::cli::format_cluster_table(doc.dump());
  CHECK_THAT(table,
             Contains("redirects sent by this node: name_elsewhere 5, full 0, draining 2, "
                      "overloaded 4\n"));
  CHECK_THAT(row_of(table, "relay-a"), Contains(" 10d00h "));
}

TEST_CASE("status --cluster: a /status without a cluster gives no table, and one that is not "
          "/status is refused",
          "[admin][cluster]") {
  auto doc = status_of_three_nodes();
  doc.erase("cluster");
  CHECK(tlsrelay::cli::format_cluster_table(doc.dump()) == "");
  CHECK_THROWS(tlsrelay::cli::format_cluster_table("{\"cluster\": {}}"));
  CHECK_THROWS(tlsrelay::cli::format_cluster_table("not json"));
}

TEST_CASE("status: compact durations for the SINCE column", "[admin][cluster]") {
  using tlsrelay::cli::format_duration_compact;
  CHECK(format_duration_compact(4.9) == "4s");
  CHECK(format_duration_compact(192) == "3m12s");
  CHECK(format_duration_compact(3723) == "1h02m");
  CHECK(format_duration_compact(2 * 86400 + 3 * 3600) == "2d03h");
  CHECK(format_duration_compact(-5) == "0s");  // a peer's clock ahead of ours
}

TEST_CASE("status --cluster: a cluster of one shows the node itself, up, and its /status has "
          "the cluster object",
          "[admin][cluster][e2e]") {
  const pki keys;
  const unsigned port_count = 4;
  const auto port = pick_free_port_range(port_count + 1);
  const auto cluster_port = static_cast<std::uint16_t>(port + port_count + 1);
  relay_process relay(keys.dir(),
                      cluster_node("127.0.0.1", port, port_count, cluster_port, "solo"));
  const auto url = admin_url_of(relay);

  const auto run = run_tlsrelay({"status", "--cluster", "--admin", url});
  INFO("stdout:\n" << run.stdout_text << "stderr:\n" << run.stderr_text);
  REQUIRE(run.exit_code == 0);
  CHECK_THAT(run.stdout_text, Contains("cluster seen from node solo: 1 node (1 up, 0 draining, "
                                       "0 down), 0 names reserved\n"));
  const auto cells = cells_of(row_of(run.stdout_text, "solo"));
  const std::string control = "127.0.0.1:" + std::to_string(port);
  const std::string cluster = "127.0.0.1:" + std::to_string(cluster_port);
  // solo (this node) up SINCE CONTROL CLUSTER FREE-PAIRS SESSIONS
  REQUIRE(cells.size() == 9);
  CHECK(cells[3] == "up");
  CHECK(cells[5] == control);
  CHECK(cells[6] == cluster);
  CHECK(cells[7] == "2");
  CHECK(cells[8] == "0");
  CHECK_THAT(run.stdout_text,
             Contains("redirects sent by this node: name_elsewhere 0, full 0, draining 0\n"));

  const auto status = status_json(admin_port_of(relay));
  REQUIRE(status.contains("cluster"));
  const auto& c = status.at("cluster");
  CHECK(c.at("node") == "solo");
  REQUIRE(c.at("members").size() == 1);
  CHECK(c.at("members")[0].at("self") == true);
  CHECK(c.at("members")[0].at("state") == "up");
  CHECK(c.at("members")[0].at("control_address") == control);
  CHECK(c.at("members")[0].at("cluster_address") == cluster);
  CHECK(c.at("conflicts_resolved") == 0);

  // --json with --cluster: the cluster object alone.
  const auto as_json = run_tlsrelay({"status", "--cluster", "--json", "--admin", url});
  REQUIRE(as_json.exit_code == 0);
  CHECK(json::parse(as_json.stdout_text).at("node") == "solo");

  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("status --cluster: a relay that is not clustered has no cluster object in /status, "
          "and status --cluster says so in one line and exits 3",
          "[admin][cluster][e2e]") {
  relay_process relay(v2_relay(4, with_admin()));
  const auto url = admin_url_of(relay);
  CHECK_FALSE(status_json(admin_port_of(relay)).contains("cluster"));
  for (const bool as_json : {false, true}) {
    std::vector<std::string> args{"status", "--cluster", "--admin", url};
    if (as_json) args.push_back("--json");
    const auto run = run_tlsrelay(args);
    INFO("--json " << as_json << " stderr: " << run.stderr_text);
    CHECK(run.exit_code == tlsrelay::cli::status_exit_not_clustered);
    CHECK(run.exit_code == 3);
    CHECK(run.stdout_text == "");
    CHECK(run.stderr_text == "tlsrelay: error: the relay at " + url +
                               " is not clustered (it was started without --cluster-listen)\n");
  }
  // Without --cluster, status is as it was.
  CHECK(run_tlsrelay({"status", "--admin", url}).exit_code == 0);
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("status --cluster: two nodes on 127.0.0.2 and 127.0.0.3 with the same ports each show "
          "both up",
          "[admin][cluster][e2e]") {
  const pki keys;
  const unsigned port_count = 4;
  // Free on 127.0.0.1, where another test's relay would be; nothing else of
  // ours listens on 127.0.0.2 or .3.
  const auto port = pick_free_port_range(port_count + 1);
  const auto cluster_port = static_cast<std::uint16_t>(port + port_count + 1);
  const std::string a_cluster = "127.0.0.2:" + std::to_string(cluster_port);
  relay_process a(keys.dir(),
                  cluster_node("127.0.0.2", port, port_count, cluster_port, "node-a"));
  relay_process b(keys.dir(), cluster_node("127.0.0.3", port, port_count, cluster_port, "node-b",
                                           {"--peer", a_cluster}));

  const auto both_up = [](const std::string& table) {
    return shows_up(table, "node-a") && shows_up(table, "node-b");
  };
  for (const auto* node : {&a, &b}) {
    const auto run = cluster_status_until(admin_url_of(*node), both_up, 20000ms);
    INFO("status --cluster of " << admin_url_of(*node) << ":\n"
                                << run.stdout_text << "stderr: " << run.stderr_text);
    REQUIRE(run.exit_code == 0);
    CHECK(both_up(run.stdout_text));
    CHECK_THAT(run.stdout_text, Contains("2 nodes (2 up, 0 draining, 0 down)"));
    const auto self = node == &a ? "node-a" : "node-b";
    CHECK_THAT(row_of(run.stdout_text, self), Contains(self + std::string(" (this node)")));
    const auto a_row = cells_of(row_of(run.stdout_text, "node-a"));
    const auto b_row = cells_of(row_of(run.stdout_text, "node-b"));
    CHECK(std::find(a_row.begin(), a_row.end(), "127.0.0.2:" + std::to_string(port)) != a_row.end());
    CHECK(std::find(a_row.begin(), a_row.end(), a_cluster) != a_row.end());
    CHECK(std::find(b_row.begin(), b_row.end(), "127.0.0.3:" + std::to_string(port)) != b_row.end());
    CHECK(std::find(b_row.begin(), b_row.end(), "127.0.0.3:" + std::to_string(cluster_port)) !=
          b_row.end());
  }

  CHECK_RELAY_STOPS_CLEANLY(b);
  CHECK_RELAY_STOPS_CLEANLY(a);
}
