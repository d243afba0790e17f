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

namespace tlsrelay::test {

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
