// pair_pump in isolation: two real TCP connections on 127.0.0.1, the pump
// between their accepted ends on an io thread, and the test playing client and
// server with plain POSIX calls. Every scenario runs on both data paths.
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

#include <catch2/catch.hpp>

#include "pump/pair_pump.hpp"
#include "protocol/defaults.hpp"
#include "tests/net/peer_io.hpp"
#include "tests/pump/pump_peers.hpp"

namespace {

using tlsrelay::pump::data_path;
using tlsrelay::pump::pair_pump;
using namespace tlsrelay::test;

std::string errno_name(int e) { return e == 0 ? "none" : std::string(std::strerror(e)); }

// Records the done handler's calls. The handler shares ownership, so it
// stays valid however long the pump keeps it.
class done_log : public std::enable_shared_from_this<done_log> {
 public:
  pair_pump::done_handler handler() {
    return [self = shared_from_this()](const pair_pump::totals& t) {
      std::lock_guard lock(self->mutex_);
      ++self->calls_;
      self->totals_ = t;
      self->changed_.notify_all();
    };
  }
  // True when the handler has run (at least once) within the timeout.
  bool wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [this] { return calls_ > 0; });
  }
  int calls() {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  pair_pump::totals totals() {
    std::lock_guard lock(mutex_);
    return totals_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int calls_ = 0;
  pair_pump::totals totals_;
};

// One pool for every pump of the run: it must outlive pumps that io handlers
// still hold after a test's rig is gone.
tlsrelay::pump::stage_pool& test_stages() {
  static tlsrelay::pump::stage_pool pool(16);
  return pool;
}

// client_peer <-> client_side ==pump== reverse_side <-> server_peer
struct pump_rig {
  pump_rig(io_thread& thread, data_path path, std::optional<int> buffers = std::nullopt)
    : io(thread) {
    auto client = make_tcp_pair(io.io(), buffers);
    auto server = make_tcp_pair(io.io(), buffers);
    client_peer = std::move(client.peer);
    server_peer = std::move(server.peer);
    for (auto* side : {&client.side, &server.side})
      for (int option : {SO_SNDBUF, SO_RCVBUF})
        side_buffer_bytes += socket_buffer(side->native_handle(), option);
    pump = std::make_shared<pair_pump>(io.io().get_executor(), std::move(client.side),
                                       std::move(server.side), path, test_stages(),
                                       done->handler());
    start_checking_path(io, *pump, path);
  }

  // The pump's sockets belong to the io_context: close them on its thread
  // before the io thread goes.
  ~pump_rig() {
    io.run([p = pump] { p->close(); });
  }

  void close() { REQUIRE(io.run([p = pump] { p->close(); })); }

  io_thread& io;
  std::shared_ptr<done_log> done = std::make_shared<done_log>();
  unique_fd client_peer;
  unique_fd server_peer;
  std::shared_ptr<pair_pump> pump;
  int side_buffer_bytes = 0;  // SO_SNDBUF + SO_RCVBUF of both accepted ends
};

// The done handler ran exactly once, and a later close() does not run it again.
void check_done_once(pump_rig& rig) {
  rig.close();
  CHECK(rig.done->calls() == 1);
}

// `hello` from the client to the server, then `answer` back, each arriving
// whole: traffic both ways before what a test is about.
void exchange(pump_rig& rig, const std::vector<std::uint8_t>& hello,
              const std::vector<std::uint8_t>& answer, clock::time_point deadline) {
  exchange_hello(rig.client_peer.get(), rig.server_peer.get(), hello, answer, deadline);
}

constexpr std::size_t megabyte = 1024 * 1024;

}  // namespace

TEST_CASE("pair_pump moves 8 MB each way at the same time, byte-exact", "[pump][pair_pump]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  INFO("data path: " << name(path));
  io_thread io;
  pump_rig rig(io, path);

  const auto up = pattern(8 * megabyte, 0x1111);
  const auto down = pattern(8 * megabyte, 0x2222);
  const auto deadline = clock::now() + 20s;
  auto client_side = std::async(std::launch::async,
                                [&] { return exchange(rig.client_peer.get(), up, deadline); });
  const auto server = exchange(rig.server_peer.get(), down, deadline);
  const auto client = client_side.get();

  INFO("server: sent " << server.sent << ", send error " << errno_name(server.send_error)
                       << ", received " << server.received.data.size() << ", recv error "
                       << errno_name(server.received.error) << ", timed out " << server.received.timed_out);
  INFO("client: sent " << client.sent << ", send error " << errno_name(client.send_error)
                       << ", received " << client.received.data.size() << ", recv error "
                       << errno_name(client.received.error) << ", timed out " << client.received.timed_out);
  CHECK(client.send_error == 0);
  CHECK(server.send_error == 0);
  CHECK(client.received.eof);
  CHECK(server.received.eof);
  CHECK(server.received.data.size() == up.size());
  CHECK(client.received.data.size() == down.size());
  CHECK(first_difference(server.received.data, up) == -1);
  CHECK(first_difference(client.received.data, down) == -1);

  REQUIRE(rig.done->wait(5s));
  const auto t = rig.done->totals();
  CHECK(t.a_to_b == up.size());
  CHECK(t.b_to_a == down.size());
  CHECK_FALSE(t.reset);
  check_done_once(rig);
}

TEST_CASE("pair_pump forwards a half-close and keeps the other direction open", "[pump][pair_pump]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  const bool client_first = GENERATE(true, false);
  INFO("data path: " << name(path) << ", first to half-close: " << (client_first ? "client" : "server"));
  io_thread io;
  pump_rig rig(io, path);
  // `first` half-closes after its request; `second` answers, then closes.
  unique_fd& first = client_first ? rig.client_peer : rig.server_peer;
  unique_fd& second = client_first ? rig.server_peer : rig.client_peer;

  // Larger than every buffer on the way, so the EOF arrives while bytes are
  // still in flight behind it.
  const auto request = pattern(2 * megabyte, 0x3333);
  const auto reply1 = pattern(100'000, 0x4444);
  const auto reply2 = pattern(300'000, 0x5555);
  const auto deadline = clock::now() + 10s;

  auto requester = std::async(std::launch::async, [&] {
    const int error = send_all(first.get(), request, deadline);
    if (error == 0) ::shutdown(first.get(), SHUT_WR);
    return error;
  });
  const auto got = read_to_end(second.get(), deadline);
  CHECK(requester.get() == 0);
  INFO("request: received " << got.data.size() << ", recv error " << errno_name(got.error)
                            << ", timed out " << got.timed_out);
  REQUIRE(got.eof);
  CHECK(first_difference(got.data, request) == -1);
  // One direction has ended, the other has not: the pair is still alive.
  CHECK(rig.done->calls() == 0);

  // The answer still flows after the half-close, in two parts, the second
  // part only after the first has arrived.
  REQUIRE(send_all(second.get(), reply1, deadline) == 0);
  const auto got1 = read_exact(first.get(), reply1.size(), deadline);
  CHECK_FALSE(got1.eof);
  CHECK(got1.error == 0);
  CHECK(first_difference(got1.data, reply1) == -1);

  auto closer = std::async(std::launch::async, [&] {
    const int error = send_all(second.get(), reply2, deadline);
    second.reset();  // orderly close: FIN after the last byte
    return error;
  });
  const auto got2 = read_to_end(first.get(), deadline);
  CHECK(closer.get() == 0);
  INFO("reply: received " << got2.data.size() << ", recv error " << errno_name(got2.error)
                          << ", timed out " << got2.timed_out);
  CHECK(got2.eof);
  CHECK(got2.error == 0);
  CHECK(first_difference(got2.data, reply2) == -1);

  REQUIRE(rig.done->wait(5s));
  const auto t = rig.done->totals();
  const std::uint64_t replied = reply1.size() + reply2.size();
  CHECK(t.a_to_b == (client_first ? request.size() : replied));
  CHECK(t.b_to_a == (client_first ? replied : request.size()));
  CHECK_FALSE(t.reset);
  check_done_once(rig);
}

TEST_CASE("pair_pump passes a reset on to the other peer", "[pump][pair_pump]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  INFO("data path: " << name(path));
  io_thread io;
  pump_rig rig(io, path);
  const auto deadline = clock::now() + 5s;

  // Some traffic first, so the totals say something.
  const auto hello = pattern(1000, 0x6666);
  const auto answer = pattern(2000, 0x7777);
  exchange(rig, hello, answer, deadline);

  bool exact_totals = true;
  unique_fd* survivor = nullptr;
  SECTION("the server resets") {
    close_with_reset(rig.server_peer);
    survivor = &rig.client_peer;
  }
  SECTION("the client resets") {
    close_with_reset(rig.client_peer);
    survivor = &rig.server_peer;
  }
  SECTION("the server resets with bytes for it still in flight") {
    // The server has unread bytes and more are on the way through the pump.
    REQUIRE(send_all(rig.client_peer.get(), pattern(200'000, 0x8888), deadline) == 0);
    close_with_reset(rig.server_peer);
    survivor = &rig.client_peer;
    exact_totals = false;
  }
  REQUIRE(survivor != nullptr);

  // The survivor learns that the stream broke (a reset, not an orderly EOF:
  // bytes may have been lost), promptly.
  const auto seen = read_to_end(survivor->get(), clock::now() + 2s);
  INFO("survivor: received " << seen.data.size() << ", eof " << seen.eof << ", recv error "
                             << errno_name(seen.error) << ", timed out " << seen.timed_out);
  CHECK_FALSE(seen.timed_out);
  CHECK(seen.data.empty());
  CHECK(seen.error == ECONNRESET);

  REQUIRE(rig.done->wait(2s));
  const auto t = rig.done->totals();
  CHECK(t.reset);
  CHECK(t.end == tlsrelay::pump::end_reason::reset);
  INFO("error " << t.error.message() << " (" << t.error_where << ")");
  CHECK(t.error);
  CHECK_FALSE(t.error_where.empty());
  if (exact_totals) {
    CHECK(t.a_to_b == hello.size());
    CHECK(t.b_to_a == answer.size());
  }
  check_done_once(rig);
}

TEST_CASE("pair_pump reads ahead a bounded amount when the receiver stops reading",
          "[pump][pair_pump]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  INFO("data path: " << name(path));
  io_thread io;
  pump_rig rig(io, path, 16 * 1024);  // small kernel buffers on all four sockets

  // What may legitimately sit between the client's send() and the server's
  // recv(): every kernel buffer on the way, one stage per direction of the
  // pump, and slack for TCP's accounting.
  const int kernel_bytes = rig.side_buffer_bytes +
                           socket_buffer(rig.client_peer.get(), SO_SNDBUF) +
                           socket_buffer(rig.client_peer.get(), SO_RCVBUF) +
                           socket_buffer(rig.server_peer.get(), SO_SNDBUF) +
                           socket_buffer(rig.server_peer.get(), SO_RCVBUF);
  const std::size_t bound = static_cast<std::size_t>(kernel_bytes) +
                            2 * tlsrelay::defaults::pump_buffer_bytes + 128 * 1024;
  REQUIRE(bound < 8 * megabyte);

  // The server reads nothing. The client sends until no byte has been
  // accepted for 500 ms: that is "send blocked". A pump that read without
  // limit would take all of `data`.
  const auto data = pattern(16 * megabyte, 0x9999);
  const auto fill = send_until_blocked(rig.client_peer.get(), data, 500ms, clock::now() + 10s);
  const std::size_t accepted = fill.accepted;
  INFO("accepted " << accepted << " bytes before send blocked; bound " << bound << " (kernel buffers "
                   << kernel_bytes << "); send error " << errno_name(fill.error));
  REQUIRE(fill.error == 0);
  REQUIRE(fill.blocked);
  CHECK(accepted < bound);
  // The pair is alive.
  CHECK(rig.done->calls() == 0);

  // Now the server reads: every accepted byte arrives, in order.
  ::shutdown(rig.client_peer.get(), SHUT_WR);
  const auto got = read_to_end(rig.server_peer.get(), clock::now() + 10s);
  INFO("server: received " << got.data.size() << ", recv error " << errno_name(got.error)
                           << ", timed out " << got.timed_out);
  CHECK(got.eof);
  const std::vector<std::uint8_t> sent(data.begin(), data.begin() + static_cast<long>(accepted));
  CHECK(got.data.size() == accepted);
  CHECK(first_difference(got.data, sent) == -1);

  ::shutdown(rig.server_peer.get(), SHUT_WR);
  const auto end = read_to_end(rig.client_peer.get(), clock::now() + 5s);
  CHECK(end.eof);
  CHECK(end.data.empty());

  REQUIRE(rig.done->wait(5s));
  const auto t = rig.done->totals();
  CHECK(t.a_to_b == accepted);
  CHECK(t.b_to_a == 0);
  CHECK_FALSE(t.reset);
  check_done_once(rig);
}

TEST_CASE("pair_pump close() ends both connections of an idle pair", "[pump][pair_pump]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  INFO("data path: " << name(path));
  io_thread io;
  pump_rig rig(io, path);
  const auto deadline = clock::now() + 5s;

  const auto hello = pattern(1000, 0xaaaa);
  const auto answer = pattern(500, 0xbbbb);
  exchange(rig, hello, answer, deadline);
  // Both peers idle now; nothing has ended yet.
  CHECK(rig.done->calls() == 0);

  rig.close();

  for (auto* peer : {&rig.client_peer, &rig.server_peer}) {
    const bool is_client = peer == &rig.client_peer;
    const auto seen = read_to_end(peer->get(), clock::now() + 2s);
    INFO((is_client ? "client" : "server") << ": received " << seen.data.size() << ", eof " << seen.eof
                                           << ", recv error " << errno_name(seen.error)
                                           << ", timed out " << seen.timed_out);
    CHECK_FALSE(seen.timed_out);
    CHECK(seen.data.empty());
    CHECK((seen.eof || seen.error == ECONNRESET));
  }

  REQUIRE(rig.done->wait(2s));
  const auto t = rig.done->totals();
  CHECK(t.a_to_b == hello.size());
  CHECK(t.b_to_a == answer.size());
  CHECK_FALSE(t.reset);
  check_done_once(rig);
}

// DESIGN.md: "A byte accepted from a client or server is delivered or the
// connection is reset — never silently dropped". close() while the pump holds
// bytes it has read but not yet delivered must not end the receiver's stream
// with an orderly EOF after a truncated stream.
TEST_CASE("pair_pump close() with undelivered bytes does not end the receiver's stream cleanly",
          "[pump][pair_pump]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  INFO("data path: " << name(path));
  io_thread io;
  pump_rig rig(io, path, 16 * 1024);

  // The server does not read; the client sends until blocked, so the pump's
  // stage for the server is full.
  const auto data = pattern(4 * megabyte, 0xdddd);
  const auto fill = send_until_blocked(rig.client_peer.get(), data, 300ms, clock::now() + 10s);
  REQUIRE(fill.error == 0);
  REQUIRE(fill.blocked);

  rig.close();

  const auto got = read_to_end(rig.server_peer.get(), clock::now() + 5s);
  INFO("client's send() accepted " << fill.accepted << "; after close() the server received "
                                   << got.data.size() << ", eof " << got.eof << ", recv error "
                                   << errno_name(got.error) << ", timed out " << got.timed_out);
  REQUIRE_FALSE(got.timed_out);
  CHECK(got.data.size() <= fill.accepted);
  CHECK(first_difference(got.data, std::vector<std::uint8_t>(
                                     data.begin(), data.begin() + static_cast<long>(got.data.size()))) == -1);
  // All of it and then EOF, or a reset: never EOF after part of it.
  CHECK((got.error == ECONNRESET || (got.eof && got.data.size() == fill.accepted)));

  // The client's bytes did not all arrive either: it must learn so too.
  const auto client_saw = read_to_end(rig.client_peer.get(), clock::now() + 2s);
  INFO("client: received " << client_saw.data.size() << ", eof " << client_saw.eof << ", recv error "
                           << errno_name(client_saw.error) << ", timed out " << client_saw.timed_out);
  CHECK(client_saw.error == ECONNRESET);

  REQUIRE(rig.done->wait(2s));
  check_done_once(rig);
}

TEST_CASE("pair_pump keeps a ping-pong responsive while another pair on the io thread moves bulk",
          "[pump][pair_pump]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  INFO("data path: " << name(path));
  io_thread io;
  pump_rig bulk(io, path);
  pump_rig ping(io, path);
  const auto deadline = clock::now() + 20s;

  // Bulk: the client sends without pause until told to stop, the server
  // drains; both on their own threads.
  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::condition_variable progress;
  std::uint64_t drained = 0;
  auto sender = std::async(std::launch::async, [&] {
    const auto block = pattern(megabyte, 0xcccc);
    std::uint64_t sent = 0;
    int error = 0;
    while (!stop && error == 0 && clock::now() < deadline) {
      const ssize_t n = ::send(bulk.client_peer.get(), block.data() + sent % block.size(),
                               block.size() - sent % block.size(), MSG_NOSIGNAL);
      if (n > 0)
        sent += static_cast<std::uint64_t>(n);
      else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        error = errno;
      else
        wait_ready(bulk.client_peer.get(), POLLOUT, clock::now() + 100ms);
    }
    ::shutdown(bulk.client_peer.get(), SHUT_WR);
    return std::make_pair(sent, error);
  });
  auto drainer = std::async(std::launch::async, [&] {
    std::vector<std::uint8_t> chunk(256 * 1024);
    for (;;) {
      const ssize_t n = ::recv(bulk.server_peer.get(), chunk.data(), chunk.size(), 0);
      if (n > 0) {
        std::lock_guard lock(mutex);
        drained += static_cast<std::uint64_t>(n);
        progress.notify_all();
      } else if (n == 0) {
        return 0;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        return errno;
      } else if (wait_ready(bulk.server_peer.get(), POLLIN, deadline) == 0) {
        return ETIMEDOUT;
      }
    }
  });
  const auto drained_now = [&] {
    std::lock_guard lock(mutex);
    return drained;
  };

  // Wait until the bulk transfer is well under way.
  {
    std::unique_lock lock(mutex);
    CHECK(progress.wait_for(lock, 5s, [&] { return drained >= 8 * megabyte; }));
  }

  // Round trips, each within 1 s, until at least `min_round_trips` are done
  // and the bulk pair has moved `min_bulk` more bytes meanwhile (so the two
  // really overlapped), for at most `ping_time`.
  constexpr int min_round_trips = 50;
  constexpr std::uint64_t min_bulk = 4 * megabyte;
  constexpr auto ping_time = 5s;
  const std::uint64_t bulk_before = drained_now();
  const auto ping_end = clock::now() + ping_time;
  auto slowest = clock::duration::zero();
  int completed = 0;
  bool failed = false;
  while ((completed < min_round_trips || drained_now() - bulk_before < min_bulk) &&
         clock::now() < ping_end) {
    const auto message = pattern(64, 0x10000 + static_cast<std::uint64_t>(completed));
    const auto start = clock::now();
    const auto limit = start + 1s;
    failed = true;
    if (send_all(ping.client_peer.get(), message, limit) != 0) break;
    const auto at_server = read_exact(ping.server_peer.get(), message.size(), limit);
    if (first_difference(at_server.data, message) != -1) break;
    if (send_all(ping.server_peer.get(), at_server.data, limit) != 0) break;
    const auto at_client = read_exact(ping.client_peer.get(), message.size(), limit);
    if (first_difference(at_client.data, message) != -1) break;
    failed = false;
    slowest = std::max(slowest, clock::now() - start);
    ++completed;
  }
  const std::uint64_t bulk_after = drained_now();
  stop = true;
  const auto [sent, send_error] = sender.get();
  const int drain_error = drainer.get();

  INFO("round trips completed: " << completed << ", slowest "
                                 << std::chrono::duration_cast<std::chrono::microseconds>(slowest).count()
                                 << " us; bulk moved " << bulk_after - bulk_before
                                 << " bytes during the ping-pong");
  CHECK_FALSE(failed);
  CHECK(completed >= min_round_trips);
  CHECK(slowest < 1s);
  // The bulk transfer really ran alongside.
  CHECK(bulk_after - bulk_before >= min_bulk);
  CHECK(send_error == 0);
  CHECK(drain_error == 0);
  CHECK(drained_now() == sent);

  CHECK(bulk.done->calls() == 0);  // its server has not closed yet
  ::shutdown(bulk.server_peer.get(), SHUT_WR);
  CHECK(read_to_end(bulk.client_peer.get(), clock::now() + 5s).eof);
  REQUIRE(bulk.done->wait(5s));
  CHECK(bulk.done->totals().a_to_b == sent);
  CHECK_FALSE(bulk.done->totals().reset);
}

TEST_CASE("an idle pair holds no pipe and no buffer once its bytes are delivered",
          "[pump][pair_pump]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  INFO("data path: " << name(path));
  io_thread io;
  pump_rig rig(io, path);
  const auto in_use = [&] {
    std::size_t n = 0;
    REQUIRE(io.run([&] { n = test_stages().pipes_in_use() + test_stages().buffers_in_use(); }));
    return n;
  };
  const auto deadline = clock::now() + 10s;
  std::uint64_t taken_before = 0;
  REQUIRE(io.run([&] { taken_before = test_stages().stages_taken(); }));

  // A request and its answer, both read to the last byte: nothing is in flight.
  const auto request = pattern(300 * 1024, 7);
  REQUIRE(send_all(rig.client_peer.get(), request, deadline) == 0);
  const auto got_request = read_exact(rig.server_peer.get(), request.size(), deadline);
  REQUIRE(first_difference(got_request.data, request) == -1);
  const auto answer = pattern(200 * 1024, 8);
  REQUIRE(send_all(rig.server_peer.get(), answer, deadline) == 0);
  const auto got_answer = read_exact(rig.client_peer.get(), answer.size(), deadline);
  REQUIRE(first_difference(got_answer.data, answer) == -1);

  // The pump gives a stage back right after its last write; the peer may
  // read that write a moment before, so look until the deadline.
  auto held = in_use();
  while (held != 0 && clock::now() < deadline) held = in_use();
  CHECK(held == 0);
  // ... and it did use stages to move the bytes.
  std::uint64_t taken_after = 0;
  REQUIRE(io.run([&] { taken_after = test_stages().stages_taken(); }));
  CHECK(taken_after > taken_before);
  CHECK_FALSE(rig.done->wait(0s));  // the pair itself is still open
}

namespace {

// What a pump_meter was told, in order ("ended" last).
struct recording_meter final : tlsrelay::pump::pump_meter {
  struct log {
    std::mutex mutex;
    std::uint64_t a_to_b = 0, b_to_a = 0;
    std::uint64_t ended_a_to_b = 0, ended_b_to_a = 0;
    int ended_calls = 0;
    bool ended_before_done = false;
  };
  explicit recording_meter(std::shared_ptr<log> l) : seen(std::move(l)) {}
  void delivered(tlsrelay::pump::direction dir, std::uint64_t bytes) override {
    std::lock_guard lock(seen->mutex);
    (dir == tlsrelay::pump::direction::a_to_b ? seen->a_to_b : seen->b_to_a) += bytes;
  }
  void ended(std::uint64_t a_to_b, std::uint64_t b_to_a) override {
    std::lock_guard lock(seen->mutex);
    ++seen->ended_calls;
    seen->ended_a_to_b = a_to_b;
    seen->ended_b_to_a = b_to_a;
  }
  std::shared_ptr<log> seen;
};

}  // namespace

TEST_CASE("pair_pump tells its meter every delivered byte, and the totals before the done handler",
          "[pump][pair_pump]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  INFO("data path: " << name(path));
  io_thread io;
  auto a = make_tcp_pair(io.io());
  auto b = make_tcp_pair(io.io());
  auto seen = std::make_shared<recording_meter::log>();
  auto done = std::make_shared<done_log>();
  auto handler = [seen, inner = done->handler()](const pair_pump::totals& t) {
    {
      std::lock_guard lock(seen->mutex);
      seen->ended_before_done = seen->ended_calls == 1;
    }
    inner(t);
  };
  auto p = std::make_shared<pair_pump>(io.io().get_executor(), std::move(a.side),
                                       std::move(b.side), path, test_stages(), handler,
                                       tlsrelay::pump::timeouts{},
                                       std::make_unique<recording_meter>(seen));
  REQUIRE(io.run([p] { p->start(); }));

  const auto deadline = clock::now() + 10s;
  const auto up = pattern(300'000, 0x1212);  // more than a pipe
  const auto down = pattern(5'000, 0x3434);
  auto far = std::async(std::launch::async, [&] { return exchange(b.peer.get(), down, deadline); });
  const auto near = exchange(a.peer.get(), up, deadline);
  const auto far_seen = far.get();
  CHECK(first_difference(far_seen.received.data, up) == -1);
  CHECK(first_difference(near.received.data, down) == -1);

  REQUIRE(done->wait(5s));
  std::lock_guard lock(seen->mutex);
  CHECK(seen->a_to_b == up.size());
  CHECK(seen->b_to_a == down.size());
  CHECK(seen->ended_calls == 1);
  CHECK(seen->ended_a_to_b == up.size());
  CHECK(seen->ended_b_to_a == down.size());
  CHECK(seen->ended_before_done);
}
