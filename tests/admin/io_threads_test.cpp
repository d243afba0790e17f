// --io-threads: a relayed pair is pumped on the io thread that accepted it;
// one that turns busy (1 MiB delivered) moves to the thread with the fewest
// busy pairs when that evens them out. Every byte still arrives. The moves
// show in /metrics (tlsrelay_pairs_moved_between_io_threads_total). The rest
// of the e2e suites run with two io threads (relay_options::io_threads).
// Not in the ThreadSanitizer build (nor is any admin test): there, a scrape
// draws a report on the CAF hand-over of the pool's answer to the admin
// thread's scoped_actor, which tests/support/tsan_caf_sync.cpp does not yet
// cover. The moves themselves run under TSan in tests/pump
// (pair_pump_rehome_test.cpp).
#include <future>
#include <string>
#include <vector>

#include "tests/admin/admin.hpp"

using namespace tlsrelay::test;

namespace {

const std::string moved_pairs = "tlsrelay_pairs_moved_between_io_threads_total";

// A relay with `threads` io threads and an admin endpoint and one v1 echo
// server (so every pair is accepted on the thread of pool pair 0). `clients`
// clients connect and stay open; one after the other, each has `bytes`
// echoed. Then all of them exchange 256 KiB more at once. Returns how many
// pairs the relay had moved to another thread before that last exchange.
double pairs_moved_with(unsigned threads, unsigned clients, std::size_t bytes) {
  relay_options options = relay_with(2);
  options.io_threads = threads;
  options.extra_args = with_admin();
  relay_process relay(options);
  auto server = connect_server(relay);
  server->serve_echo();

  std::vector<tcp_conn> open;
  for (unsigned i = 0; i < clients; ++i) {
    open.push_back(tcp_conn::connect(server->public_listener().port));
    const std::string payload = random_bytes(bytes, 10 + i);
    INFO("client " << i);
    REQUIRE(bytes_diff(payload, open.back().exchange(payload, payload.size(), 20s)) == "");
  }
  const auto moved = sample_value(scrape(admin_port_of(relay)), moved_pairs);
  REQUIRE(moved.has_value());

  std::vector<std::future<std::string>> echoed;
  std::vector<std::string> sent;
  for (unsigned i = 0; i < clients; ++i) sent.push_back(random_bytes(256 * KiB, 100 + i));
  for (unsigned i = 0; i < clients; ++i)
    echoed.push_back(std::async(std::launch::async, [&, i] {
      return open[i].exchange(sent[i], sent[i].size(), 20s);
    }));
  for (unsigned i = 0; i < clients; ++i) {
    INFO("client " << i);
    CHECK(bytes_diff(sent[i], echoed[i].get()) == "");
  }
  open.clear();
  CHECK(server->errors().empty());
  CHECK_RELAY_STOPS_CLEANLY(relay);
  return *moved;
}

}  // namespace

TEST_CASE("io threads: with two, busy pairs of one session are spread half on each thread and "
          "every byte arrives", "[e2e][io_threads]") {
  // Each client's 2 MiB make its pair busy while the others stay open. A
  // busy pair moves when its thread has two more busy pairs than the other:
  // the 2nd, 4th and 6th move, three stay.
  CHECK(pairs_moved_with(2, 6, 2 * MiB) == 3);
}

TEST_CASE("io threads: pairs that move little stay on the thread that accepted them",
          "[e2e][io_threads]") {
  CHECK(pairs_moved_with(2, 20, 16 * KiB) == 0);
}

TEST_CASE("io threads: with one, no pair is moved and every byte arrives", "[e2e][io_threads]") {
  CHECK(pairs_moved_with(1, 4, 2 * MiB) == 0);
}

TEST_CASE("io threads: with four (more than this machine's cores), busy pairs end up two on "
          "each thread and every byte arrives", "[e2e][io_threads]") {
  // Thread 0 keeps the 1st and 5th; the others take two each: six moved.
  CHECK(pairs_moved_with(4, 8, 2 * MiB) == 6);
}
