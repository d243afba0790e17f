// `serve --config FILE`: every flag is a key of the TOML file, a flag on the
// command line wins over the file, and a file the relay cannot use stops the
// start with exit code 2 and one line naming the file, the line and the key.
#include <regex>

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
