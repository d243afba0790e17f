// What the pump tests' peers do around a pump: shared by pair_pump_test.cpp
// and pair_pump_rehome_test.cpp.
#pragma once

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "pump/pair_pump.hpp"
#include "tests/net/peer_io.hpp"

namespace tlsrelay::test {

inline const char* name(pump::data_path p) {
  return p == pump::data_path::splice ? "splice" : "copy";
}

// Starts `pump` on `io`, the thread of its executor, and checks that it runs
// the path asked for: a silent fallback would test the wrong path.
inline void start_checking_path(io_thread& io, pump::pair_pump& pump, pump::data_path path) {
  pump::data_path started = path;
  REQUIRE(io.run([&] {
    pump.start();
    started = pump.path();
  }));
  REQUIRE(name(started) == std::string(name(path)));
}

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
