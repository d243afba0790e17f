// serve --log-format json: every stderr line is one JSON object with the
// stable fields; --access-log: one line per relayed pair, with its bytes.
#include <csignal>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/drain/drain_test.hpp"
#include "tests/support/v2_test_server.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;
using Catch::Matchers::Contains;
using json = nlohmann::json;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// One echoed exchange through the v1 server: `size` bytes up, the same back,
// then both ends close. Returns the client's port (the relay logs it as peer).
std::uint16_t echo_through(std::uint16_t public_port, std::size_t size, std::uint64_t seed) {
  tcp_conn client = tcp_conn::connect(public_port);
  const auto port = local_port_of(client);
  const auto payload = random_bytes(size, seed);
  CHECK(bytes_diff(payload, client.exchange(payload, size)) == "");
  client.shutdown_write();
  CHECK(client.recv_until_eof() == "");
  return port;
}

}  // namespace

SCENARIO("logs: with --log-format json every stderr line of a run with traffic is a JSON object "
         "with the stable fields, and --access-log writes one line per pair with its bytes",
         "[logs][e2e]") {
  relay_process relay(draining_relay("5", {"--log-format", "json", "--access-log"}));
  auto v1 = connect_server(relay);
  v1->serve_echo();
  v2_test_server v2(relay.port(), v2_test_server::with_certificate(relay.keys_dir()));
  v2::hello hello;
  hello.name = "logs";
  v2.greet(hello);

  const std::vector<std::size_t> sizes = {1000, 20000, 300000};
  std::vector<std::uint16_t> client_ports;
  for (std::size_t i = 0; i < sizes.size(); ++i)
    client_ports.push_back(echo_through(relay.public_port(0), sizes[i], 70 + i));
  REQUIRE(wait_for_log(relay, "\"event\":\"pair_ended\"", sizes.size()));
  relay.signal(SIGTERM);
  const auto code = relay.wait_exit(5000ms);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK_NO_SANITIZER_OUTPUT(relay);

  const auto lines = lines_of(relay.stderr_text());
  REQUIRE(lines.size() >= 8);
  const std::regex rfc3339_utc_ms(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  const std::set<std::string> levels = {"trace", "debug", "info", "warn", "error", "critical"};
  std::multiset<std::string> events;
  std::vector<json> accesses;
  for (const auto& line : lines) {
    INFO("line: " << line);
    json j;
    REQUIRE_NOTHROW(j = json::parse(line));
    REQUIRE(j.is_object());
    REQUIRE(j.contains("ts"));
    CHECK(std::regex_match(j["ts"].get<std::string>(), rfc3339_utc_ms));
    CHECK(levels.count(j.value("level", "")) == 1);
    CHECK(j["event"].is_string());
    CHECK(j["msg"].is_string());
    events.insert(j["event"].get<std::string>());
    if (j["event"] == "pair_ended") accesses.push_back(j);
    if (j["event"] == "session_started" && j.contains("name")) {
      CHECK(j["name"] == "logs");
      CHECK(j["port"] == relay.public_port(1));
      CHECK(j["session"].is_number_unsigned());
      CHECK(j["peer"].is_string());
    }
  }
  for (const char* e : {"relay_started", "drain_started", "drain_ended", "relay_stopped"})
    CHECK(events.count(e) == 1);
  CHECK(events.count("session_started") == 2);
  CHECK(events.count("session_ended") == 2);

  REQUIRE(accesses.size() == sizes.size());
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    INFO("access line " << accesses[i].dump());
    CHECK(accesses[i]["level"] == "info");
    CHECK(accesses[i]["bytes_in"] == sizes[i]);
    CHECK(accesses[i]["bytes_out"] == sizes[i]);
    CHECK(accesses[i]["reason"] == "closed");
    CHECK(accesses[i]["port"] == relay.public_port(0));
    CHECK(accesses[i]["peer"] == "127.0.0.1:" + std::to_string(client_ports[i]));
    CHECK(accesses[i]["session"].is_number_unsigned());
    CHECK(accesses[i]["duration_ms"].is_number_unsigned());
  }
}

SCENARIO("logs: in the text format --access-log writes one access line per pair, and none "
         "without it",
         "[logs][e2e]") {
  GIVEN("--access-log") {
    relay_process relay(draining_relay("5", {"--access-log"}));
    auto v1 = connect_server(relay);
    v1->serve_echo();
    echo_through(relay.public_port(0), 4096, 80);
    echo_through(relay.public_port(0), 123456, 81);
    REQUIRE(wait_for_log(relay, "access: ", 2));
    const auto text = relay.stderr_text();
    CHECK(count_of(text, "info  access: ") == 2);
    CHECK_THAT(text, Contains("4096 bytes in, 4096 bytes out") &&
                       Contains("123456 bytes in, 123456 bytes out") && Contains(", closed"));
    CHECK_RELAY_STOPS_CLEANLY(relay);
  }
  GIVEN("no --access-log") {
    relay_process relay(draining_relay("5"));
    auto v1 = connect_server(relay);
    v1->serve_echo();
    echo_through(relay.public_port(0), 4096, 82);
    // The session's end line counts the pair, so the pair's end was handled.
    v1->disconnect();
    REQUIRE(wait_for_log(relay, "served 1 clients"));
    CHECK(count_of(relay.stderr_text(), "access: ") == 0);
    CHECK_RELAY_STOPS_CLEANLY(relay);
  }
}
