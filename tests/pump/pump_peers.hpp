// What the pump tests' peers do around a pump: shared by pair_pump_test.cpp
// and pair_pump_rehome_test.cpp.
#pragma once

#include <vector>

#include <catch2/catch.hpp>

#include "tests/net/peer_io.hpp"

namespace tlsrelay::test {

// `hello` from the client's peer to the server's, then `answer` back, each
// arriving whole: traffic both ways before what a test is about.
inline void exchange_hello(int client_peer, int server_peer, const std::vector<std::uint8_t>& hello,
                           const std::vector<std::uint8_t>& answer, clock::time_point deadline) {
  REQUIRE(send_all(client_peer, hello, deadline) == 0);
  REQUIRE(first_difference(read_exact(server_peer, hello.size(), deadline).data, hello) == -1);
  REQUIRE(send_all(server_peer, answer, deadline) == 0);
  REQUIRE(first_difference(read_exact(client_peer, answer.size(), deadline).data, answer) == -1);
}

}  // namespace tlsrelay::test
