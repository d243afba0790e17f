// Compatibility: a server written from the original README alone (Python,
// standard library) works behind this relay.
#include <cstdlib>

#include "tests/e2e/e2e.hpp"

using namespace tlsrelay::test;

namespace {

std::string python3() {
  if (const char* env = std::getenv("TLSRELAY_PYTHON3"); env && *env) return env;
  return TLSRELAY_PYTHON3;
}

}  // namespace

TEST_CASE("a server written from the original README serves clients through the relay",
          "[e2e][readme]") {
  relay_process relay(relay_with(2));
  child_process server(python3(), {README_SERVER_PY, "--relay-host", "127.0.0.1", "--relay-port",
                                   std::to_string(relay.port()), "--keys",
                                   relay.keys_dir().string()});
  const auto ready = server.wait_stdout_line("public ", 15s);
  INFO("readme_server.py stderr: " << printable(server.stderr_text(), 2000));
  REQUIRE(ready.has_value());
  CHECK(*ready == "public 127.0.0.1:" + std::to_string(relay.public_port(0)));

  // Two clients at once, each answered on its own connection.
  tcp_conn first = tcp_conn::connect(relay.public_port(0));
  tcp_conn second = tcp_conn::connect(relay.public_port(0));
  first.send_all("hello from the first client\n");
  second.send_all("and from the second\n");
  CHECK(first.recv_exact(28) == "HELLO FROM THE FIRST CLIENT\n");
  CHECK(second.recv_exact(20) == "AND FROM THE SECOND\n");
  first.shutdown_write();
  CHECK(first.recv_until_eof() == "");

  // The README server is still serving (it did not fall over), and the
  // relay stops cleanly with it and the second client still connected.
  // (The README server is SIGKILLed, by its own PID, as `server` goes.)
  CHECK(server.running());
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
