// Shared by the end-to-end scenarios: the relay is the real `tlsrelay`
// process, the server and the clients are played by the test over loopback.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/support/relay_process.hpp"
#include "tests/support/socket_io.hpp"
#include "tests/support/test_data.hpp"
#include "tests/support/v1_test_server.hpp"

// The last line of every test that starts a relay (one per relay): SIGTERM,
// and the relay must exit within 2 s with code 0 and without sanitizer
// output in its stderr (relay_process::stop()). Put it before the test's
// servers and clients go out of scope: stopping with them still connected is
// part of what it checks. A test that forgets it fails anyway (the relay's
// destructor stops it and says so); one that ends early (a failed REQUIRE,
// an exception) leaves the relay to the destructor's SIGKILL.
#define CHECK_RELAY_STOPS_CLEANLY(relay)                                      \
  do {                                                                        \
    const std::string relay_stop_problems = (relay).stop();                   \
    CHECK(relay_stop_problems == "");                                         \
  } while (false)

// Instead, for a test that ends the relay itself (a signal, then wait_exit,
// checking the exit code) or expects it to refuse to start: no sanitizer
// output in its stderr. Takes a relay_process or the stderr text of a
// tlsrelay run by hand.
#define CHECK_NO_SANITIZER_OUTPUT(relay_or_stderr_text)                       \
  do {                                                                        \
    const std::string sanitizer_output =                                      \
        ::tlsrelay::test::sanitizer_output_of(relay_or_stderr_text);          \
    CHECK(sanitizer_output == "");                                            \
  } while (false)

namespace tlsrelay::test {

// What CHECK_NO_SANITIZER_OUTPUT looks at.
inline std::string sanitizer_output_of(const relay_process& relay) {
  return relay.sanitizer_output();
}
inline std::string sanitizer_output_of(const std::string& stderr_text) {
  return find_sanitizer_output(stderr_text);
}

inline constexpr std::size_t KiB = 1024;
inline constexpr std::size_t MiB = 1024 * KiB;

// A relay with `port_count` ports (port_count / 2 pairs) and the given data path.
inline relay_options relay_with(unsigned port_count, std::string data_path = "splice") {
  relay_options options;
  options.port_count = port_count;
  options.data_path = std::move(data_path);
  return options;
}

// A server connected to the relay that has read its two listener lines.
inline std::unique_ptr<v1_test_server> connect_server(const relay_process& relay) {
  auto server = std::make_unique<v1_test_server>(relay.port(), relay.keys_dir());
  server->greet();
  return server;
}

// The two lines a server given pair `pair` must read, in order.
inline std::vector<std::string> listener_lines(const relay_process& relay, unsigned pair,
                                               const std::string& host = "127.0.0.1") {
  return {"public_listener " + host + ":" + std::to_string(relay.public_port(pair)),
          "reverse_listener " + host + ":" + std::to_string(relay.reverse_port(pair))};
}

}  // namespace tlsrelay::test
