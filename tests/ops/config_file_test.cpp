// `serve --config FILE`: every flag is a key of the TOML file (a repeatable
// one, like the cluster's peer, an array), a flag on the command line wins
// over the file, and a file the relay cannot use stops the start with exit
// code 2 and one line naming the file, the line and the key.
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/http_client.hpp"
#include "tests/e2e_v2/e2e_v2.hpp"
#include "tests/ops/ops.hpp"

using namespace tlsrelay::test;
using Catch::Matchers::Contains;

TEST_CASE("config file: its keys set what the flags would, and flags win over it",
          "[ops][config]") {
  // myhost and port-count are also on the command line (relay_process passes
  // --port-count 4); max-pending is only in the file.
  const temp_file config("relay.toml",
                         "# as an operator writes it\n"
                         "myhost = \"from-file.example\"\n"
                         "port-count = 40\n"
                         "max-pending = 1\n");
  relay_options options = relay_with(4);
  options.myhost = "from-flag.example";
  options.extra_args = {"--config", config.str()};
  relay_process relay(options);

  CHECK_THAT(relay.listening_line(), Contains("2 pairs"));
  CHECK_THAT(relay.listening_line(), Contains("servers are told host from-flag.example"));
  auto server = connect_server(relay);
  CHECK(server->public_listener().host == "from-flag.example");

  // max-pending = 1 from the file: a second waiting client is turned away.
  auto first = tcp_conn::connect(relay.public_port(0));
  server->expect_new_connection();
  auto second = tcp_conn::connect(relay.public_port(0));
  CHECK(closed_within(second, 3000ms));

  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("config file: a key set only in the file is in force", "[ops][config]") {
  const temp_file config("relay.toml", "myhost = \"from-file.example\"\n");
  relay_options options = relay_with(4);
  options.extra_args = {"--config", config.str()};
  relay_process relay(options);
  CHECK_THAT(relay.listening_line(), Contains("servers are told host from-file.example"));
  auto server = connect_server(relay);
  CHECK(server->public_listener().host == "from-file.example");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

namespace {

// The port of `--admin 127.0.0.1:0`, from the relay's stdout line
// `tlsrelay: admin endpoint on http://127.0.0.1:<PORT> ...`.
std::uint16_t admin_port_of(const relay_process& relay) {
  const std::string marker = "admin endpoint on http://127.0.0.1:";
  const auto text = relay.stdout_text();
  const auto at = text.find(marker);
  if (at == std::string::npos) throw io_error("no admin endpoint line in: " + printable(text));
  return static_cast<std::uint16_t>(std::stoul(text.substr(at + marker.size())));
}

struct bad_file_case {
  const char* what;
  std::string text;   // the file; the fault is on `line`
  int line;
  std::string key;    // named in the message
  std::string reason; // and this part of why
};

}  // namespace

TEST_CASE("config file: an unknown key, a wrong type or a bad value stops the start naming "
          "file, line and key",
          "[ops][config]") {
  const std::vector<bad_file_case> cases = {
    {"unknown key", "port-count = 4\n\nprot = 5\n", 3, "prot", "unknown key"},
    {"a flag of another subcommand", "# x\nrelay = \"127.0.0.1:1\"\n", 2, "relay", "unknown key"},
    {"the command-line-only key", "config = \"other.toml\"\n", 1, "config", "unknown key"},
    {"a string for a number", "# the control port\nport = \"12000\"\n", 2, "port",
     "expected an integer, found a string"},
    {"a number for a string", "myhost = 5\n", 1, "myhost", "expected a string"},
    {"a string for a flag", "\nproxy-protocol = \"yes\"\n", 2, "proxy-protocol",
     "expected true or false"},
    {"a fraction for a count", "max-pending = 1.5\n", 1, "max-pending", "expected an integer"},
    {"out of range", "log-level = \"info\"\nport = 70000\n", 2, "port", "not in range"},
    {"not a member", "log-level = \"loud\"\n", 1, "log-level", "loud"},
    {"a file that must exist", "tokens = \"/nonexistent/tlsrelay-tokens\"\n", 1, "tokens",
     "/nonexistent/tlsrelay-tokens"},
    {"an odd port count", "port-count = 7\n", 1, "port-count", "even"},
    {"a negative timeout", "heartbeat = -1\n", 1, "heartbeat", "greater than 0"},
    {"not a finite number", "pending-timeout = inf\n", 1, "pending-timeout", "finite"},
    // Alphabetically "port" comes first; the file's first fault is the one named.
    {"two faults", "zzz-first = 1\nport = \"x\"\n", 1, "zzz-first", "unknown key"},
  };
  const pki keys;
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.what) {
      const temp_file config("bad.toml", c.text);
      const std::uint16_t port = pick_free_port_range(4);
      // The bad key is also on the command line for "port": the file is
      // checked all the same.
      const auto result = run_serve_expecting_refusal(
        {"--config", config.str(), "--listen", "127.0.0.1", "--port", std::to_string(port),
         "--port-count", "4", "--keys", keys.dir().string()});
      INFO("stderr: " << printable(result.stderr_text, 2000));
      CHECK(result.exit_code == 2);
      const auto errors = error_lines(result.stderr_text);
      REQUIRE(errors.size() == 1);
      CHECK_THAT(errors[0], Contains(config.str() + ":" + std::to_string(c.line) + ":"));
      CHECK_THAT(errors[0], Contains("\"" + c.key + "\""));
      CHECK_THAT(errors[0], Contains(c.reason));
      CHECK_THAT(result.stdout_text, !Contains("tlsrelay: listening"));
      CHECK_FALSE(accepts_connections(port));
      CHECK_NO_SANITIZER_OUTPUT(result.stderr_text);
    }
  }
}

TEST_CASE("config file: TOML that does not parse is refused with its line", "[ops][config]") {
  const temp_file config("broken.toml", "port-count = 4\nmyhost = \"unterminated\n");
  const pki keys;
  const auto result = run_serve_expecting_refusal(
    {"--config", config.str(), "--listen", "127.0.0.1", "--keys", keys.dir().string()});
  INFO("stderr: " << printable(result.stderr_text, 2000));
  CHECK(result.exit_code == 2);
  const auto errors = error_lines(result.stderr_text);
  REQUIRE(errors.size() == 1);
  CHECK_THAT(errors[0], Contains(config.str() + ":2:"));
  CHECK_THAT(errors[0], Contains("not valid TOML"));
}

TEST_CASE("config file: a missing --config file is named", "[ops][config]") {
  const temp_dir dir;
  const auto missing = (dir.path() / "absent.toml").string();
  const auto result = run_serve_expecting_refusal({"--config", missing});
  CHECK(result.exit_code == 2);
  const auto errors = error_lines(result.stderr_text);
  REQUIRE(errors.size() == 1);
  CHECK_THAT(errors[0], Contains("--config"));
  CHECK_THAT(errors[0], Contains(missing));
}

TEST_CASE("config file: the cluster flags are keys, a repeatable one as an array: every peer "
          "of `peer = [...]` is tried",
          "[ops][config][cluster]") {
  const pki keys;
  const unsigned port_count = 4;
  // Node a on its own range; node b's file lists a peer where nothing
  // listens first, then node a: b can only find a through the second element.
  const auto a_port = pick_free_port_range(port_count + 1);
  const auto a_cluster = "127.0.0.1:" + std::to_string(a_port + port_count + 1);
  relay_options a_options;
  a_options.port = a_port;
  a_options.port_count = port_count;
  a_options.extra_args = {"--cluster-listen", a_cluster, "--node-name", "node-a"};
  relay_process a(keys.dir(), a_options);

  const auto b_port = pick_free_port_range(port_count + 2);
  const auto b_cluster = "127.0.0.1:" + std::to_string(b_port + port_count + 1);
  const auto nobody = "127.0.0.1:" + std::to_string(b_port + port_count + 2);
  const temp_file config("node-b.toml",
                         "# node b of a cluster of two\n"
                         "cluster-listen = \"" + b_cluster + "\"\n"
                         "node-name = \"node-b\"\n"
                         "peer = [\"" + nobody + "\", \"" + a_cluster + "\"]\n"
                         "peer-timeout = 5\n"
                         "admin = \"127.0.0.1:0\"\n");
  relay_options b_options;
  b_options.port = b_port;
  b_options.port_count = port_count;
  b_options.extra_args = {"--config", config.str()};
  relay_process b(keys.dir(), b_options);
  CHECK(b.wait_for_log("cluster: node node-b listens for peers on " + b_cluster));
  CHECK(b.wait_for_log("2 seed peer(s)"));

  // b's /status lists node-a up, within a deadline.
  const auto admin = admin_port_of(b);
  const auto deadline = steady::now() + 20000ms;
  nlohmann::json status;
  const auto a_is_up = [&] {
    if (!status.contains("cluster")) return false;
    for (const auto& m : status["cluster"]["members"])
      if (m["name"] == "node-a" && m["state"] == "up") return true;
    return false;
  };
  do {
    const auto reply = http_get(admin, "/status");
    REQUIRE(reply.status == 200);
    status = nlohmann::json::parse(reply.body);
    if (a_is_up()) break;
    std::this_thread::sleep_for(200ms);  // between tries of a poll with a deadline
  } while (steady::now() < deadline);
  INFO("node-b's /status: " << status.dump(2));
  CHECK(a_is_up());
  CHECK(status["cluster"]["node"] == "node-b");

  CHECK_RELAY_STOPS_CLEANLY(b);
  CHECK_RELAY_STOPS_CLEANLY(a);
}

TEST_CASE("config file: a bad element of `peer = [...]` is named with the file, its line and "
          "the key",
          "[ops][config][cluster]") {
  const pki keys;
  const std::uint16_t port = pick_free_port_range(5);
  const std::string listen = "cluster-listen = \"127.0.0.1:" + std::to_string(port + 5) + "\"\n";
  const std::vector<bad_file_case> cases = {
    // An element on a line of its own is named with that line.
    {"not HOST:PORT", listen + "peer = [\n  \"127.0.0.1:1\",\n  \"no-port-here\",\n]\n", 4, "peer",
     "element no-port-here is not allowed: no-port-here: expected HOST:PORT"},
    {"not a string", "# peers\n" + listen + "peer = [\"127.0.0.1:1\", 12000]\n", 3, "peer",
     "an element: expected a string"},
    {"not a string, on its line", listen + "peer = [\n  \"127.0.0.1:1\",\n  true,\n]\n", 4,
     "peer", "an element: expected a string"},
    {"an array for a single flag", listen + "node-name = [\"a\", \"b\"]\n", 2, "node-name",
     "expected a string"},
  };
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.what) {
      const temp_file config("bad-cluster.toml", c.text);
      const auto result = run_serve_expecting_refusal(
        {"--config", config.str(), "--listen", "127.0.0.1", "--port", std::to_string(port),
         "--port-count", "4", "--keys", keys.dir().string()});
      INFO("stderr: " << printable(result.stderr_text, 2000));
      CHECK(result.exit_code == 2);
      const auto errors = error_lines(result.stderr_text);
      REQUIRE(errors.size() == 1);
      CHECK_THAT(errors[0], Contains(config.str() + ":" + std::to_string(c.line) + ":"));
      CHECK_THAT(errors[0], Contains("\"" + c.key + "\""));
      CHECK_THAT(errors[0], Contains(c.reason));
      CHECK_FALSE(accepts_connections(port));
      CHECK_NO_SANITIZER_OUTPUT(result.stderr_text);
    }
  }
}
