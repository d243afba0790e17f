// `tlsrelay expose` across a relay restart: the draining relay tells it
// `error draining`, it reconnects with the same hello, and the relay, back on
// the same ports with its --state file, gives its name the same public port.
#include <csignal>
#include <regex>

#include "tests/cli_e2e/cli_test.hpp"
#include "tests/drain/drain_test.hpp"
#include "tests/support/test_data.hpp"
#include "tests/support/v2_test_server.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;
using Catch::Matchers::Contains;

namespace {

// Every public address expose's log says it listens on, in order.
std::vector<std::string> listening_addresses(const std::string& expose_stderr) {
  static const std::regex line("listening through relay \\S+: public address (\\S+)");
  std::vector<std::string> found;
  for (std::sregex_iterator it(expose_stderr.begin(), expose_stderr.end(), line), end; it != end;
       ++it)
    found.push_back((*it)[1].str());
  return found;
}

}  // namespace

SCENARIO("drain: tlsrelay expose sees the drain, reconnects after the relay restarts on the same "
         "ports, and gets its name's public port back",
         "[drain][e2e][cli]") {
  const pki keys;
  const temp_dir dir;
  relay_runner::config config(keys.dir());
  config.extra = {"--tokens",
                  write_file(dir.path(), "tokens", "tok-expose name=web\ntok-other\n").string(),
                  "--state", (dir.path() / "state").string()};
  config.drain_timeout = "10";
  relay_runner relay(config);

  // Another server takes the first pair: a relay that forgot the name would
  // hand expose that one after the restart, not the one it had.
  v2_test_server other(relay.port(), v2_test_server::without_certificate(keys.dir()));
  v2::hello other_hello;
  other_hello.token = "tok-other";
  other.greet(other_hello);
  REQUIRE(other.public_listener().port == relay.public_port(0));

  io_thread io;
  echo_service echo(io.io());
  auto expose = run_tlsrelay({"expose", "127.0.0.1:" + std::to_string(echo.port()), "--relay",
                              "127.0.0.1:" + std::to_string(relay.port()), "--ca",
                              keys.ca().string(), "--token", "tok-expose", "--name", "web"});
  const host_port address = wait_exposed(*expose);
  CHECK(address.port == relay.public_port(1));
  {
    auto client = test_client::connect(address);
    CHECK(client.exchange("before the restart") == "before the restart");
  }

  // SIGTERM, the drain, exit 0 (checked), then the same command line again.
  relay.restart();
  INFO("expose stderr: " << expose->stderr_text() << "\nrelay stderr: " << relay.stderr_text());
  CHECK_THAT(relay.stderr_text(), Contains("drain complete"));
  CHECK(wait_stderr_count(*expose, "is draining", 1, 5000ms));
  // `other` heard it too; it does not come back (a test server, not a client library).
  const auto message = other.read_message(5000ms);
  CHECK(std::holds_alternative<v2::error>(message));

  REQUIRE(wait_stderr_count(*expose, "listening through relay", 2, 30000ms));
  const auto addresses = listening_addresses(expose->stderr_text());
  REQUIRE(addresses.size() >= 2);
  CHECK(addresses[0] == format_host_port(address));
  CHECK(addresses[1] == format_host_port(address));
  {
    auto client = test_client::connect(address);
    CHECK(client.exchange("after the restart") == "after the restart");
  }
  // Printed once: the address did not change.
  CHECK(count_of(expose->stdout_text(), "tlsrelay: exposing") == 1);

  CHECK(terminate(*expose) == 0);
  CHECK(find_sanitizer_output(expose->stderr_text()) == "");
  CHECK(relay.stop() == "");
}
