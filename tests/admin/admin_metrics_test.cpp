// /metrics after real traffic: every pairing outcome played once or more
// (matched, matched_warm, timed_out, over_bound, client_left, bad_id), bytes
// both ways, a failed TLS handshake and a refused v1 server; the exposition
// is read back with prometheus_client's own parser (Debian's
// python3-prometheus-client) and linted with `promtool check metrics`.
#include <fstream>
#include <map>
#include <sstream>

#include "protocol/connection_id.hpp"
#include "tests/admin/admin.hpp"

using namespace tlsrelay::test;

namespace {

// Every sample prometheus_client read, by `name{labels}` (labels sorted),
// and every family's type and help.
struct parsed_metrics {
  std::map<std::string, double> samples;
  std::map<std::string, std::pair<std::string, std::string>> families;  // name -> type, help
};

parsed_metrics parse_with_prometheus_client(const std::string& text) {
  temp_file file("metrics.txt", text);
  const auto run = run_tool(TLSRELAY_SYSTEM_PYTHON3, {TLSRELAY_PARSE_METRICS, file.str()});
  INFO("parser stderr: " << run.stderr_text);
  REQUIRE(run.exit_code == 0);
  parsed_metrics out;
  std::istringstream lines(run.stdout_text);
  std::string kind, name, rest;
  while (lines >> kind >> name && std::getline(lines, rest)) {
    rest = rest.empty() ? rest : rest.substr(1);
    if (kind == "sample") {
      out.samples[name] = std::stod(rest);
    } else {
      const auto space = rest.find(' ');
      out.families[name] = {rest.substr(0, space),
                            space == std::string::npos ? "" : rest.substr(space + 1)};
    }
  }
  return out;
}

// `promtool check metrics` on the text: its exit code and what it said.
tool_run promtool_check(const std::string& text) {
  temp_file file("metrics.txt", text);
  return run_tool("sh", {"-c", "promtool check metrics < \"$1\" 2>&1", "promtool", file.str()});
}

// Waits for the relay to end `conn`, whatever it sends first (a TLS alert).
void wait_until_closed(tcp_conn& conn) {
  try {
    while (conn.recv_some(3000ms)) {
    }
  } catch (const io_error& e) {
    // A reset ends it too; a timeout does not.
    if (std::string(e.what()).find("timed out") != std::string::npos) throw;
  }
}

std::string pairings(const std::string& outcome) {
  return "tlsrelay_pairings_total{outcome=\"" + outcome + "\"}";
}

}  // namespace

TEST_CASE("admin: /metrics after real traffic counts every pairing outcome, byte and refusal "
          "played, as prometheus_client reads it, and promtool finds nothing to lint",
          "[admin][e2e]") {
  relay_process relay(
    v2_relay(6, with_admin({"--pending-timeout", "1", "--max-pending", "1"})));
  const auto admin = admin_port_of(relay);

  // A v1 server that never opens a reverse connection.
  auto quiet = connect_server(relay);
  const auto quiet_port = quiet->public_listener().port;
  tcp_conn waits = tcp_conn::connect(quiet_port);
  quiet->expect_new_connection();
  tcp_conn second = tcp_conn::connect(quiet_port);  // one more than --max-pending 1
  second.expect_closed(3000ms);                     // over_bound
  waits.expect_closed(4000ms);                      // timed_out after --pending-timeout 1
  // The session learns that its client is gone a moment after the client
  // does; until then a new client would still find --max-pending reached.
  const auto gone = scrape_until(admin, [](const std::string& text) {
    return sample_value(text, "tlsrelay_waiting_clients") == 0.0 &&
           sample_value(text, pairings("timed_out")) == 1.0;
  });
  REQUIRE(sample_value(gone, "tlsrelay_waiting_clients") == 0.0);
  tcp_conn leaves = tcp_conn::connect(quiet_port);
  quiet->expect_new_connection();
  leaves.close();                                   // client_left

  // A v1 server echoing: one client matched through new_connection.
  auto echo_server = connect_server(relay);
  echo_server->serve_echo();
  const auto payload = random_bytes(300 * KiB, 7);
  {
    tcp_conn client = tcp_conn::connect(echo_server->public_listener().port);
    const auto back = client.exchange(payload, payload.size());
    REQUIRE(bytes_diff(payload, back) == "");
  }

  // A v2 server: a bad id, a client through new_connection, one through a
  // warm connection.
  auto v2_server = v2_server_with_certificate(relay);
  v2_server->greet(hello_with());
  const auto v2_port = v2_server->public_listener().port;
  tcp_conn bad = v2_server->accept(tlsrelay::connection_id{});
  bad.expect_closed(3000ms);  // bad_id
  const std::string up1(1000, 'u'), down1(2000, 'd'), up2(3000, 'U'), down2(4000, 'D');
  {
    tcp_conn client = tcp_conn::connect(v2_port);
    tcp_conn reverse = v2_server->accept_client();
    client.send_all(up1);
    REQUIRE(reverse.recv_exact(up1.size()) == up1);
    reverse.send_all(down1);
    REQUIRE(client.recv_exact(down1.size()) == down1);
  }
  {
    tcp_conn warm = v2_server->open_warm(1);
    wait_until_peer_has_read(warm);
    tcp_conn client = tcp_conn::connect(v2_port);
    warm.read_line();  // `<ID> <CLIENT>`, written by the relay: not relayed bytes
    client.send_all(up2);
    REQUIRE(warm.recv_exact(up2.size()) == up2);
    warm.send_all(down2);
    REQUIRE(client.recv_exact(down2.size()) == down2);
  }

  // Not TLS on the control port; and a v1 server without a certificate.
  tcp_conn not_tls = tcp_conn::connect(relay.port());
  not_tls.send_all("GET / HTTP/1.0\r\n\r\n");
  wait_until_closed(not_tls);
  {
    v1_test_server anonymous(relay.port(), v2_test_server::without_certificate(relay.keys_dir()));
    CHECK(anonymous.control().read_until_closed() == "");
  }

  const double up_bytes = static_cast<double>(payload.size() + up1.size() + up2.size());
  const double down_bytes = static_cast<double>(payload.size() + down1.size() + down2.size());
  const std::map<std::string, double> expected_pairings = {
    {"matched", 2}, {"matched_warm", 1}, {"timed_out", 1}, {"over_bound", 1},
    {"client_left", 1}, {"bad_id", 1}, {"server_left", 0}};
  const auto all_counted = [&](const std::string& text) {
    for (const auto& [outcome, n] : expected_pairings)
      if (sample_value(text, pairings(outcome)) != n) return false;
    return sample_value(text, "tlsrelay_relayed_bytes_total{direction=\"client_to_server\"}") ==
             up_bytes &&
           sample_value(text, "tlsrelay_relayed_bytes_total{direction=\"server_to_client\"}") ==
             down_bytes &&
           sample_value(text, "tlsrelay_auth_failures_total") == 1.0 &&
           sample_value(text, "tlsrelay_tls_handshake_failures_total") == 1.0;
  };
  const auto live = scrape_until(admin, all_counted);
  INFO("live scrape:\n" << live);
  const auto m = parse_with_prometheus_client(live);
  for (const auto& [outcome, n] : expected_pairings) {
    INFO("outcome " << outcome);
    CHECK(m.samples.at("tlsrelay_pairings_total{outcome=\"" + outcome + "\"}") == n);
  }
  CHECK(m.samples.at("tlsrelay_relayed_bytes_total{direction=\"client_to_server\"}") == up_bytes);
  CHECK(m.samples.at("tlsrelay_relayed_bytes_total{direction=\"server_to_client\"}") == down_bytes);
  CHECK(m.samples.at("tlsrelay_auth_failures_total{}") == 1);
  CHECK(m.samples.at("tlsrelay_tls_handshake_failures_total{}") == 1);
  // One latency per joined pair: the two matched and the warm one.
  CHECK(m.samples.at("tlsrelay_pairing_latency_seconds_count{}") == 3);
  CHECK(m.samples.at("tlsrelay_pairing_latency_seconds_bucket{le=\"+Inf\"}") == 3);
  CHECK(m.samples.at("tlsrelay_control_sessions{protocol=\"1\"}") == 2);
  CHECK(m.samples.at("tlsrelay_control_sessions{protocol=\"2\"}") == 1);
  CHECK(m.samples.at("tlsrelay_pool_pairs{state=\"in_use\"}") == 3);
  CHECK(m.samples.at("tlsrelay_pool_pairs{state=\"free\"}") == 0);
  CHECK(m.samples.at("tlsrelay_session_duration_seconds_count{}") == 0);
  {
    // One build_info sample, naming a version and a commit ("unknown" outside a checkout).
    std::vector<std::string> build_info;
    for (const auto& [name, value] : m.samples)
      if (name.rfind("tlsrelay_build_info{", 0) == 0 && value == 1) build_info.push_back(name);
    REQUIRE(build_info.size() == 1);
    CHECK(build_info[0].find("commit=\"\"") == std::string::npos);
    CHECK(build_info[0].find("version=\"\"") == std::string::npos);
    CHECK(build_info[0].find("version=\"") != std::string::npos);
  }
  CHECK(m.samples.at("process_open_fds{}") > 0);
  CHECK(m.samples.at("process_max_fds{}") >= m.samples.at("process_open_fds{}"));
  CHECK(m.samples.at("process_resident_memory_bytes{}") > 1024 * 1024);
  CHECK(m.families.at("tlsrelay_pairings").first == "counter");
  CHECK(m.families.at("tlsrelay_pairing_latency_seconds").first == "histogram");
  for (const auto& [name, family] : m.families) {
    INFO("family " << name);
    CHECK(family.second != "");  // every family has its # HELP
  }

  // A session that ends keeps what it did in the totals, counted once.
  quiet->disconnect();
  const auto after = scrape_until(admin, [&](const std::string& text) {
    // (The session reports its end, then the pool_manager sees it go down
    // and takes its pair back: two steps.)
    return sample_value(text, "tlsrelay_control_sessions{protocol=\"1\"}") == 1.0 &&
           sample_value(text, "tlsrelay_session_duration_seconds_count") == 1.0 &&
           sample_value(text, "tlsrelay_pool_pairs{state=\"free\"}") == 1.0;
  });
  INFO("scrape after a session ended:\n" << after);
  const auto m2 = parse_with_prometheus_client(after);
  CHECK(m2.samples.at("tlsrelay_session_duration_seconds_count{}") == 1);
  CHECK(m2.samples.at("tlsrelay_control_sessions{protocol=\"1\"}") == 1);
  CHECK(m2.samples.at("tlsrelay_pool_pairs{state=\"free\"}") == 1);
  for (const auto& [outcome, n] : expected_pairings) {
    INFO("outcome " << outcome << " after the session ended");
    CHECK(m2.samples.at("tlsrelay_pairings_total{outcome=\"" + outcome + "\"}") == n);
  }

  const auto lint = promtool_check(after);
  INFO("promtool: " << lint.stdout_text);
  CHECK(lint.exit_code == 0);
  CHECK(lint.stdout_text == "");

  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("admin: the cluster families on a relay of one and on a cluster of one: no peers up "
          "or down, every redirect reason at 0, no conflict, as prometheus_client reads them, "
          "and promtool finds nothing to lint",
          "[admin][e2e][cluster]") {
  const pki keys;
  const unsigned port_count = 4;
  const auto port = pick_free_port_range(port_count + 1);
  const auto cluster_port = port + port_count + 1;
  relay_options clustered;
  clustered.port = port;
  clustered.port_count = port_count;
  clustered.extra_args = with_admin({"--cluster-listen", "127.0.0.1:" + std::to_string(cluster_port),
                                     "--node-name", "solo"});
  relay_options alone = v2_relay(4, with_admin());

  for (const auto* options : {&alone, &clustered}) {
    const bool in_cluster = options == &clustered;
    INFO((in_cluster ? "a cluster of one" : "a relay of one"));
    relay_process relay(keys.dir(), *options);
    const auto text = scrape(admin_port_of(relay));
    INFO("scrape:\n" << text);
    const auto m = parse_with_prometheus_client(text);
    CHECK(m.families.at("tlsrelay_cluster_peers").first == "gauge");
    CHECK(m.families.at("tlsrelay_redirects").first == "counter");
    CHECK(m.families.at("tlsrelay_reservation_conflicts").first == "counter");
    CHECK(m.samples.at("tlsrelay_cluster_peers{state=\"up\"}") == 0);
    CHECK(m.samples.at("tlsrelay_cluster_peers{state=\"down\"}") == 0);
    for (const char* reason : {"name_elsewhere", "full", "draining"})
      CHECK(m.samples.at("tlsrelay_redirects_total{reason=\"" + std::string(reason) + "\"}") == 0);
    CHECK(m.samples.count("tlsrelay_redirects_total{}") == 0);
    CHECK(m.samples.at("tlsrelay_reservation_conflicts_total{}") == 0);
    const auto lint = promtool_check(text);
    INFO("promtool: " << lint.stdout_text);
    CHECK(lint.exit_code == 0);
    CHECK(lint.stdout_text == "");
    CHECK_RELAY_STOPS_CLEANLY(relay);
  }
}
