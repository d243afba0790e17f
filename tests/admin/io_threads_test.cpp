// --io-threads: pairs are pumped on the threads, spread by how many each
// runs; every byte still arrives. The placement shows in /metrics
// (tlsrelay_pairs_moved_between_io_threads_total). The rest of the e2e
// suites run with two io threads (relay_options::io_threads).
#include <future>
#include <string>
#include <vector>

#include "tests/admin/admin.hpp"

using namespace tlsrelay::test;

namespace {

const std::string moved_pairs = "tlsrelay_pairs_moved_between_io_threads_total";

// A relay with `threads` io threads and an admin endpoint, one v1 echo
// server, and `clients` clients joined one after the other and all held
// open; then every client exchanges 256 KiB at once. Returns how many pairs
// the relay moved to another thread while they were all open.
double pairs_moved_with(unsigned threads, unsigned clients) {
  relay_options options = relay_with(2);
  options.io_threads = threads;
  options.extra_args = with_admin();
  relay_process relay(options);
  auto server = connect_server(relay);
  server->serve_echo();

  std::vector<tcp_conn> open;
  for (unsigned i = 0; i < clients; ++i) {
    open.push_back(tcp_conn::connect(server->public_listener().port));
    // Joined (and placed) before the next one arrives.
    open.back().send_all("x");
    REQUIRE(open.back().recv_exact(1) == "x");
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

TEST_CASE("io threads: with two, the pairs of one session are pumped half on each thread and "
          "every byte arrives", "[e2e][io_threads]") {
  // Pair 0 is accepted on thread 0; each new pair goes to the thread with
  // the fewest, its own on a tie: 1st stays, 2nd moves, 3rd stays, ...
  CHECK(pairs_moved_with(2, 6) == 3);
}

TEST_CASE("io threads: with one, no pair is moved and every byte arrives", "[e2e][io_threads]") {
  CHECK(pairs_moved_with(1, 4) == 0);
}

TEST_CASE("io threads: with four (more than this machine's cores), v1 pairs are spread and "
          "every byte arrives", "[e2e][io_threads]") {
  // Thread 0 keeps 2 of 8, each other thread takes 2: six moved.
  CHECK(pairs_moved_with(4, 8) == 6);
}
