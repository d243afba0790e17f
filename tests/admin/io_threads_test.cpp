// --io-threads: a relayed pair is pumped on the io thread that accepted it;
// one that turns busy (1 MiB delivered) moves to the thread with the fewest
// busy pairs when that evens them out. Every byte still arrives. The moves
// show in /metrics (tlsrelay_pairs_moved_between_io_threads_total). Also
// the hostile case: 32 pairs of one session all busy at once, moved while
// every one of them carries bytes, with the relay's descriptors and memory
// bounded. The rest of the e2e suites run with two io threads
// (relay_options::io_threads).
// Also run under ThreadSanitizer with the rest of the admin suite; the moves
// themselves have their own tests in tests/pump (pair_pump_rehome_test.cpp).
#include <algorithm>
#include <future>
#include <string>
#include <string_view>
#include <vector>

#include "tests/admin/admin.hpp"
#include "tests/faults/faults.hpp"

using namespace tlsrelay::test;

namespace {

const std::string moved_pairs = "tlsrelay_pairs_moved_between_io_threads_total";
const std::string relayed_pairs = "tlsrelay_relayed_pairs";

// The value of `sample` in a scrape, required to be there.
double required_sample(const std::string& text, const std::string& sample) {
  const auto value = sample_value(text, sample);
  INFO(sample << " in /metrics");
  REQUIRE(value.has_value());
  return *value;
}

// A relay with `threads` io threads, an admin endpoint and two ports (one
// pool pair).
relay_options io_threads_relay(unsigned threads, const std::string& data_path = "splice") {
  relay_options options = relay_with(2, data_path);
  options.io_threads = threads;
  options.extra_args = with_admin();
  return options;
}

// Each of `conns` sends its `sent` and has it echoed, all of them at once:
// each first sends 16 KiB, and only once every one has, they send the rest,
// each reading its echo while it writes (exchange). So no exchange ends
// before the last has begun, and all pairs carry bytes together until the
// first is done. Checks every byte.
void check_echoed_at_once(std::vector<tcp_conn>& conns, const std::vector<std::string>& sent) {
  std::vector<std::promise<void>> began(conns.size());
  std::vector<std::future<void>> beginnings;
  for (auto& b : began) beginnings.push_back(b.get_future());
  std::promise<void> go;
  const std::shared_future<void> all_began = go.get_future().share();
  std::vector<std::future<std::string>> echoed;
  for (std::size_t i = 0; i < conns.size(); ++i)
    echoed.push_back(std::async(std::launch::async, [&, i] {
      const std::string_view out(sent[i]);
      const std::size_t head = std::min<std::size_t>(16 * KiB, out.size());
      try {
        conns[i].send_all(out.substr(0, head));
      } catch (...) {
        began[i].set_value();
        throw;
      }
      began[i].set_value();
      if (all_began.wait_for(20s) != std::future_status::ready)
        throw io_error("the other clients did not begin within 20 s");
      return conns[i].exchange(out.substr(head), out.size(), 40s);
    }));
  for (auto& b : beginnings) b.wait_for(20s);
  go.set_value();
  for (std::size_t i = 0; i < conns.size(); ++i) {
    INFO("client " << i);
    CHECK(bytes_diff(sent[i], echoed[i].get()) == "");
  }
}

// A relay with `threads` io threads and an admin endpoint and one v1 echo
// server (so every pair is accepted on the thread of pool pair 0). `clients`
// clients connect and stay open; one after the other, each has `bytes`
// echoed. Then all of them exchange 256 KiB more at once. Returns how many
// pairs the relay had moved to another thread before that last exchange.
double pairs_moved_with(unsigned threads, unsigned clients, std::size_t bytes) {
  relay_process relay(io_threads_relay(threads));
  auto server = connect_server(relay);
  server->serve_echo();

  std::vector<tcp_conn> open;
  for (unsigned i = 0; i < clients; ++i) {
    open.push_back(tcp_conn::connect(server->public_listener().port));
    const std::string payload = random_bytes(bytes, 10 + i);
    INFO("client " << i);
    REQUIRE(bytes_diff(payload, open.back().exchange(payload, payload.size(), 20s)) == "");
  }
  const double moved = required_sample(scrape(admin_port_of(relay)), moved_pairs);

  std::vector<std::string> sent;
  for (unsigned i = 0; i < clients; ++i) sent.push_back(random_bytes(256 * KiB, 100 + i));
  check_echoed_at_once(open, sent);
  open.clear();
  CHECK(server->errors().empty());
  CHECK_RELAY_STOPS_CLEANLY(relay);
  return moved;
}

// Waits until the relay reports no joined pair (they end a moment after the
// test closes its side); returns the last scrape.
std::string scrape_when_no_pair_is_relayed(std::uint16_t admin_port) {
  const auto text = scrape_until(
    admin_port, [](const std::string& t) { return sample_value(t, relayed_pairs) == 0.0; },
    10s);
  REQUIRE(required_sample(text, relayed_pairs) == 0);
  return text;
}

// The hostile case: every pair busy at once.
constexpr unsigned all_busy_pairs = 32;
constexpr std::size_t all_busy_bytes = 4 * MiB;  // each way, per pair
// How much the relay's resident memory may grow while they pump. At worst
// every direction of every pair holds a stage at once: 32 pairs x 2
// directions x 64 KiB (defaults::pump_buffer_bytes; a heap buffer on the
// copy path; on the splice path a pipe, whose pages are kernel memory and
// not in RSS) = 4 MiB. A joined pair's own state (its two sockets, the pump
// and its handlers, the actors' record of the pairing) is a few KiB: 32 x
// 32 KiB = 1 MiB, generously. The io threads that take moved pairs allocate
// for the first time, each in a malloc arena of its own: up to 4 x 1 MiB.
// And 3 MiB for the scrapes and the allocator's slack: 12 MiB in all.
constexpr long all_busy_rss_bound_kib = 12 * 1024;

// `all_busy_pairs` clients of one v1 echo session (so all of them are
// accepted on one io thread) push `all_busy_bytes` each way from the same
// moment: every pair turns busy at about the same time, and the relay moves
// them between its `threads` io threads while all of them carry bytes.
// Checks every byte of every pair, that the relay's resident memory grew by
// less than all_busy_rss_bound_kib meanwhile and that its descriptors come
// back once the pairs are closed. Returns the pairs moved.
double pairs_moved_with_all_busy(unsigned threads, const std::string& data_path) {
  relay_process relay(io_threads_relay(threads, data_path));
  const auto admin = admin_port_of(relay);
  auto server = connect_server(relay);
  server->serve_echo();
  const auto port = server->public_listener().port;

  // One busy pair first (alone, it stays where it is), so that what the
  // relay allocates on first use (the pump's stages, the first pair's
  // state) is in the baseline.
  {
    tcp_conn warm = tcp_conn::connect(port);
    const std::string payload = random_bytes(2 * MiB, 1);
    REQUIRE(bytes_diff(payload, warm.exchange(payload, payload.size(), 20s)) == "");
  }
  const double moved_before = required_sample(scrape_when_no_pair_is_relayed(admin), moved_pairs);
  const long rss_before_kib = status_kib(relay.pid(), "VmRSS");
  const fd_census fds_before = census_of(relay.pid());

  std::vector<tcp_conn> clients;
  std::vector<std::string> sent;
  for (unsigned i = 0; i < all_busy_pairs; ++i) {
    clients.push_back(tcp_conn::connect(port));
    sent.push_back(random_bytes(all_busy_bytes, 1000 + i));
  }
  // All pairs carry bytes both ways at once; each turns busy (1 MiB) and
  // may move while all the others still do.
  check_echoed_at_once(clients, sent);
  const long rss_peak_kib = status_kib(relay.pid(), "VmHWM");
  // The clients are still open: every pair is joined, every move counted.
  const auto busy = scrape(admin);
  CHECK(required_sample(busy, relayed_pairs) == all_busy_pairs);
  const double moved = required_sample(busy, moved_pairs) - moved_before;

  clients.clear();
  scrape_when_no_pair_is_relayed(admin);
  // Sockets: those of before, give or take one: the admin endpoint closes a
  // scrape's connection a moment after answering it (a lingering close), so
  // either census may count it. Other descriptors: no more than before.
  // Pipe ends: the splice path keeps emptied pipes for the next burst
  // (defaults::idle_stages), at most one per direction that had bytes in
  // flight at once: 4 per pair.
  const std::size_t spare_pipe_fds = data_path == "splice" ? 4 * all_busy_pairs : 0;
  const auto descriptors = wait_for_census(
    relay.pid(),
    [&](const fd_census& now) {
      return now.sockets <= fds_before.sockets + 1 && now.other <= fds_before.other &&
             now.pipes <= fds_before.pipes + spare_pipe_fds;
    },
    "at most " + fds_before.text() + " (one more socket, " + std::to_string(spare_pipe_fds) +
      " more pipe ends)",
    10s);
  INFO("moved " << moved << "; descriptors before: " << fds_before.text() << ", after: "
                << census_of(relay.pid()).text() << "; RSS before " << rss_before_kib
                << " KiB, peak " << rss_peak_kib << " KiB");
  CHECK(descriptors == "");
  if (rss_is_meaningful)
    CHECK(rss_peak_kib - rss_before_kib < all_busy_rss_bound_kib);
  else
    WARN("sanitizer build: the relay's RSS bound is checked by the Release build only");
  CHECK(server->errors().empty());
  CHECK_RELAY_STOPS_CLEANLY(relay);
  return moved;
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

TEST_CASE("io threads: with two, 32 pairs all busy at once are spread while they pump, every "
          "byte comes back, descriptors and memory stay bounded",
          "[e2e][io_threads][all_busy]") {
  // All of them start on one thread; each moves at most once.
  const double moved = pairs_moved_with_all_busy(2, "splice");
  CHECK(moved > 0);
  CHECK(moved <= all_busy_pairs);
}

TEST_CASE("io threads: with four and the copy path, 32 pairs all busy at once are spread while "
          "they pump, every byte comes back, descriptors and memory stay bounded",
          "[e2e][io_threads][all_busy]") {
  const double moved = pairs_moved_with_all_busy(4, "copy");
  CHECK(moved > 0);
  CHECK(moved <= all_busy_pairs);
}
