// pair_pump::rehome()/resume(): a pump moved from one io_context's thread to
// another's, as its user sees it: the peers' bytes, the meter and the done
// handler (and on which thread they run). As in pair_pump_test.cpp: two real
// TCP connections on 127.0.0.1, the test playing client and server with
// plain POSIX calls, every wait bounded by a deadline.
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>

#include "pump/pair_pump.hpp"
#include "tests/net/peer_io.hpp"
#include "tests/pump/pump_peers.hpp"

namespace {

using tlsrelay::pump::data_path;
using tlsrelay::pump::direction;
using tlsrelay::pump::end_reason;
using tlsrelay::pump::pair_pump;
using namespace tlsrelay::test;

constexpr std::size_t megabyte = 1024 * 1024;

std::string errno_name(int e) { return e == 0 ? "none" : std::string(std::strerror(e)); }

// Outlives every pump of the run, including those that handlers left queued
// on a stopped io_context still hold.
tlsrelay::pump::stage_pool& test_stages() {
  static tlsrelay::pump::stage_pool pool(16);
  return pool;
}

std::thread::id thread_of(io_thread& io) {
  std::thread::id id;
  REQUIRE(io.run([&] { id = std::this_thread::get_id(); }));
  return id;
}

int slot(direction d) { return d == direction::a_to_b ? 0 : 1; }

// What the pump's meter and done handler were told, and on which thread.
// The test sets `moved` on the pump's thread right before rehome(): a
// delivery counted "after" was reported after the move began, so it must
// have run on the new thread.
struct observations {
  std::mutex mutex;
  std::condition_variable changed;
  bool moved = false;
  std::thread::id new_home;
  std::uint64_t before[2] = {0, 0};           // per direction, a_to_b first
  std::uint64_t total[2] = {0, 0};            // whenever and wherever
  std::uint64_t after_at_home[2] = {0, 0};    // after the move, on the new thread
  std::uint64_t after_elsewhere[2] = {0, 0};  // after the move, on any other thread
  int ended_calls = 0;
  std::thread::id ended_thread;
  std::uint64_t ended_totals[2] = {0, 0};
  int done_calls = 0;
  std::thread::id done_thread;
  pair_pump::totals totals;
  // Called (once, on the pump's thread) when both directions (or, without
  // `trigger_on_both`, either) have delivered `trigger_at` bytes.
  std::function<void()> trigger;
  std::uint64_t trigger_at = 0;
  bool trigger_on_both = true;

  bool wait_done(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, timeout, [this] { return done_calls > 0; });
  }
  int done_count() {
    std::lock_guard lock(mutex);
    return done_calls;
  }
};

struct thread_meter final : tlsrelay::pump::pump_meter {
  explicit thread_meter(std::shared_ptr<observations> s) : seen(std::move(s)) {}
  void delivered(direction dir, std::uint64_t bytes) override {
    std::function<void()> fire;
    {
      std::lock_guard lock(seen->mutex);
      const int i = slot(dir);
      seen->total[i] += bytes;
      if (!seen->moved)
        seen->before[i] += bytes;
      else if (std::this_thread::get_id() == seen->new_home)
        seen->after_at_home[i] += bytes;
      else
        seen->after_elsewhere[i] += bytes;
      const auto past = [&](int d) { return seen->total[d] >= seen->trigger_at; };
      if (seen->trigger && (seen->trigger_on_both ? past(0) && past(1) : past(0) || past(1))) {
        fire = std::move(seen->trigger);
        seen->trigger = nullptr;
      }
    }
    if (fire) fire();
  }
  void ended(std::uint64_t a_to_b, std::uint64_t b_to_a) override {
    std::lock_guard lock(seen->mutex);
    ++seen->ended_calls;
    seen->ended_thread = std::this_thread::get_id();
    seen->ended_totals[0] = a_to_b;
    seen->ended_totals[1] = b_to_a;
  }
  std::shared_ptr<observations> seen;
};

// On the pump's thread: rehome() to `to`, resume() posted there; what
// rehome() returned.
bool rehome_on_this_thread(const std::shared_ptr<pair_pump>& pump, observations& seen,
                           boost::asio::io_context& to, std::thread::id to_id) {
  {
    std::lock_guard lock(seen.mutex);
    seen.moved = true;
    seen.new_home = to_id;
  }
  const bool rehomed = pump->rehome(to);
  if (rehomed) boost::asio::post(to, [p = pump] { p->resume(); });
  return rehomed;
}

struct rig_options {
  tlsrelay::pump::timeouts limits;
  std::optional<int> socket_buffers;  // SO_SNDBUF and SO_RCVBUF of all four sockets
  // Where the pump's stages come from; must outlive the io threads.
  tlsrelay::pump::stage_pool* stages = &test_stages();
};

// client_peer <-> a ==pump== b <-> server_peer, the pump started on `first`'s
// thread. `home` is the io thread the pump runs on now.
struct moving_rig {
  moving_rig(io_thread& first, data_path path, rig_options options = {}) : home(&first) {
    auto client = make_tcp_pair(first.io(), options.socket_buffers);
    auto server = make_tcp_pair(first.io(), options.socket_buffers);
    client_peer = std::move(client.peer);
    server_peer = std::move(server.peer);
    auto on_done = [s = seen](const pair_pump::totals& t) {
      std::lock_guard lock(s->mutex);
      ++s->done_calls;
      s->done_thread = std::this_thread::get_id();
      s->totals = t;
      s->changed.notify_all();
    };
    pump = std::make_shared<pair_pump>(first.io().get_executor(), std::move(client.side),
                                       std::move(server.side), path, *options.stages, on_done,
                                       options.limits, std::make_unique<thread_meter>(seen));
    start_checking_path(first, *pump, path);
  }

  // The sockets belong to the current home's io_context: close them there.
  ~moving_rig() {
    {
      std::lock_guard lock(seen->mutex);
      seen->trigger = nullptr;
    }
    home->run([p = pump] { p->close(); });
  }

  // Moves the pump the way its user does: on the pump's thread, rehome(), then
  // resume() posted to the new thread. Returns what rehome() returned.
  bool move_to(io_thread& to) {
    const auto to_id = thread_of(to);
    bool rehomed = false;
    REQUIRE(home->run([&] { rehomed = rehome_here(to, to_id); }));
    if (rehomed) home = &to;
    return rehomed;
  }

  // The part of move_to() on the pump's thread.
  bool rehome_here(io_thread& to, std::thread::id to_id) {
    return rehome_on_this_thread(pump, *seen, to.io(), to_id);
  }

  // Whether the pump's executor is `io`'s (read on the pump's thread, as the
  // header asks).
  bool runs_on(io_thread& io) {
    bool same = false;
    REQUIRE(home->run([&] {
      same = pump->executor() == pair_pump::executor_type(io.io().get_executor());
    }));
    return same;
  }

  io_thread* home;
  std::shared_ptr<observations> seen = std::make_shared<observations>();
  unique_fd client_peer;
  unique_fd server_peer;
  std::shared_ptr<pair_pump> pump;
};

// `hello` from the client to the server, then `answer` back, each arriving
// whole.
void exchange(moving_rig& rig, const std::vector<std::uint8_t>& hello,
              const std::vector<std::uint8_t>& answer, clock::time_point deadline) {
  exchange_hello(rig.client_peer.get(), rig.server_peer.get(), hello, answer, deadline);
}

// Bytes received so far by each peer, for the test to act at a point of the
// transfer; and a gate at which readers may be told to stop and wait.
struct transfer_progress {
  std::mutex mutex;
  std::condition_variable changed;
  std::size_t received[2] = {0, 0};  // the client's, the server's
  bool released = false;

  void add(int who, std::size_t n) {
    std::lock_guard lock(mutex);
    received[who] += n;
    changed.notify_all();
  }
  template <class Predicate>
  bool wait_until(clock::time_point deadline, Predicate p) {
    std::unique_lock lock(mutex);
    return changed.wait_until(lock, deadline, [&] { return p(received); });
  }
  std::size_t received_by(int who) {
    std::lock_guard lock(mutex);
    return received[who];
  }
  void release() {
    std::lock_guard lock(mutex);
    released = true;
    changed.notify_all();
  }
  bool wait_released(clock::time_point deadline) {
    std::unique_lock lock(mutex);
    return changed.wait_until(lock, deadline, [this] { return released; });
  }
};

// Opens the gate however the test ends, so no reader waits out its deadline.
struct release_on_exit {
  transfer_progress& progress;
  ~release_on_exit() { progress.release(); }
};

// Reads until EOF, an error or the deadline. Having received `hold_at` bytes
// (reported as peer `who`'s progress), it reads nothing more until the gate
// opens: what follows then waits in the kernel's buffers and in the pump's
// stage. Without `hold_at` it reads straight to the end.
read_result read_holding(int fd, int who, std::optional<std::size_t> hold_at,
                         transfer_progress& progress, clock::time_point deadline) {
  read_result held;
  if (hold_at) {
    held = read_exact(fd, *hold_at, deadline);
    progress.add(who, held.data.size());
    if (held.data.size() < *hold_at) return held;  // ended, failed or timed out before it
    if (!progress.wait_released(deadline)) {
      held.timed_out = true;
      return held;
    }
  }
  auto rest = read_to_end(fd, deadline);
  rest.data.insert(rest.data.begin(), held.data.begin(), held.data.end());
  return rest;
}

// Both peers received the other's bytes whole, then its EOF (`near`: the
// client's exchange, `far`: the server's).
void check_both_ways(const exchange_result& near, const exchange_result& far,
                     const std::vector<std::uint8_t>& up, const std::vector<std::uint8_t>& down) {
  INFO("client received " << near.received.data.size() << " (timed out " << near.received.timed_out
                          << "), server received " << far.received.data.size() << " (timed out "
                          << far.received.timed_out << ")");
  CHECK(first_difference(far.received.data, up) == -1);
  CHECK(first_difference(near.received.data, down) == -1);
  CHECK(near.received.eof);
  CHECK(far.received.eof);
}

// Sends everything, then half-closes; the errno of a failure, or 0.
int send_and_shutdown(int fd, const std::vector<std::uint8_t>& data, clock::time_point deadline) {
  const int error = send_all(fd, data, deadline);
  if (error == 0) ::shutdown(fd, SHUT_WR);
  return error;
}

}  // namespace

TEST_CASE("pair_pump moved to another io thread mid-transfer delivers every byte both ways, in order",
          "[pump][pair_pump][rehome]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  // Held: both readers stop after 1 MiB; once the pump has filled the small
  // kernel buffers behind them and waits to write with a full stage each way
  // (checked between its handlers, on its thread), the test moves it.
  // Flowing: nobody stops; once 1 MiB has been delivered one way, the meter
  // posts the move to the pump's thread, where it lands among the pump's own
  // handlers while it reads and writes, a few hundred KiB later at most, so
  // neither direction can have ended (the test thread would come too late:
  // the kernel's buffers let the pump run megabytes ahead of the readers;
  // and waiting for 1 MiB each way, one direction may be over by then).
  const bool held = GENERATE(true, false);
  INFO("data path: " << name(path) << ", readers " << (held ? "held at 1 MiB" : "flowing"));
  // A pool of its own, to see this pump's stages; declared before the io
  // threads, as it must outlive handlers queued on them that hold the pump.
  tlsrelay::pump::stage_pool stages(4);
  // b before a, destroyed after it: handlers queued on `a` may still hold the
  // pump, whose sockets are b's after the move.
  io_thread b;
  io_thread a;
  const auto b_id = thread_of(b);
  rig_options options;
  options.stages = &stages;
  // Small enough that the pump fills them and blocks well before the end.
  if (held) options.socket_buffers = 128 * 1024;
  moving_rig rig(a, path, options);

  auto moved = std::make_shared<std::promise<bool>>();
  auto moved_result = moved->get_future();
  if (!held) {
    std::lock_guard lock(rig.seen->mutex);
    rig.seen->trigger_at = megabyte;
    rig.seen->trigger_on_both = false;
    rig.seen->trigger = [&a, &b, b_id, moved, r = &rig] {
      boost::asio::post(a.io(), [&b, b_id, moved, r] { moved->set_value(r->rehome_here(b, b_id)); });
    };
  }

  const auto up = pattern(8 * megabyte, 0xa1a1);
  const auto down = pattern(8 * megabyte, 0xb2b2);
  const auto deadline = clock::now() + 30s;
  const auto hold_at = held ? std::optional<std::size_t>(megabyte) : std::nullopt;
  transfer_progress progress;
  const int client_fd = rig.client_peer.get();
  const int server_fd = rig.server_peer.get();
  auto client_sends =
    std::async(std::launch::async, [&] { return send_and_shutdown(client_fd, up, deadline); });
  auto server_sends =
    std::async(std::launch::async, [&] { return send_and_shutdown(server_fd, down, deadline); });
  auto client_reads = std::async(std::launch::async, [&] {
    return read_holding(client_fd, 0, hold_at, progress, deadline);
  });
  auto server_reads = std::async(std::launch::async, [&] {
    return read_holding(server_fd, 1, hold_at, progress, deadline);
  });
  release_on_exit gate{progress};

  if (held) {
    REQUIRE(progress.wait_until(deadline, [&](const std::size_t* received) {
      return received[0] >= megabyte && received[1] >= megabyte;
    }));
    // Between two of the pump's handlers a direction holds a stage only
    // while its bytes wait for the receiver: move once both do.
    bool rehomed = false;
    bool both_staged = false;
    while (!both_staged && clock::now() < deadline) {
      REQUIRE(a.run([&] {
        both_staged = stages.pipes_in_use() + stages.buffers_in_use() == 2;
        if (both_staged) rehomed = rig.rehome_here(b, b_id);
      }));
    }
    REQUIRE(both_staged);
    REQUIRE(rehomed);
    rig.home = &b;
  } else {
    REQUIRE(moved_result.wait_until(deadline) == std::future_status::ready);
    REQUIRE(moved_result.get());
    rig.home = &b;
  }
  const std::size_t at_move[2] = {progress.received_by(0), progress.received_by(1)};
  progress.release();

  const int client_send_error = client_sends.get();
  const int server_send_error = server_sends.get();
  const auto client = client_reads.get();
  const auto server = server_reads.get();
  INFO("at the move the client had received " << at_move[0] << ", the server " << at_move[1]);
  INFO("client: send error " << errno_name(client_send_error) << ", received " << client.data.size()
                             << ", eof " << client.eof << ", recv error " << errno_name(client.error)
                             << ", timed out " << client.timed_out);
  INFO("server: send error " << errno_name(server_send_error) << ", received " << server.data.size()
                             << ", eof " << server.eof << ", recv error " << errno_name(server.error)
                             << ", timed out " << server.timed_out);
  CHECK(client_send_error == 0);
  CHECK(server_send_error == 0);
  CHECK(client.eof);
  CHECK(server.eof);
  CHECK(first_difference(server.data, up) == -1);
  CHECK(first_difference(client.data, down) == -1);

  REQUIRE(rig.seen->wait_done(5s));
  std::lock_guard lock(rig.seen->mutex);
  const auto& seen = *rig.seen;
  CHECK(seen.totals.end == end_reason::closed);
  CHECK_FALSE(seen.totals.reset);
  CHECK(seen.totals.a_to_b == up.size());
  CHECK(seen.totals.b_to_a == down.size());
  // The move came in the middle: bytes went both ways before and after it.
  INFO("meter: a_to_b " << seen.before[0] << " before the move, " << seen.after_at_home[0]
                        << " after on the new thread, " << seen.after_elsewhere[0]
                        << " after elsewhere; b_to_a " << seen.before[1] << ", "
                        << seen.after_at_home[1] << ", " << seen.after_elsewhere[1]);
  if (held) {
    CHECK(seen.before[0] >= megabyte);
    CHECK(seen.before[1] >= megabyte);
  } else {
    CHECK(std::max(seen.before[0], seen.before[1]) >= megabyte);
  }
  CHECK(seen.after_at_home[0] > 0);
  CHECK(seen.after_at_home[1] > 0);
  // After the move, every delivery ran on the new thread, as did the end.
  CHECK(seen.after_elsewhere[0] == 0);
  CHECK(seen.after_elsewhere[1] == 0);
  CHECK(seen.before[0] + seen.after_at_home[0] == up.size());
  CHECK(seen.before[1] + seen.after_at_home[1] == down.size());
  CHECK(seen.ended_calls == 1);
  CHECK(seen.ended_thread == b_id);
  CHECK(seen.done_thread == b_id);
  CHECK(seen.done_calls == 1);
}

TEST_CASE("pair_pump moved back and forth during a transfer delivers every byte both ways, in order",
          "[pump][pair_pump][rehome]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  INFO("data path: " << name(path));
  io_thread b;
  io_thread a;
  io_thread* const threads[2] = {&a, &b};
  const std::thread::id ids[2] = {thread_of(a), thread_of(b)};
  moving_rig rig(a, path);

  // Hop k (from 1) moves the pump from threads[(k - 1) % 2] to
  // threads[k % 2], posted by the meter on the pump's thread once k MiB have
  // been delivered each way; each hop arms the next one. Stale handlers of
  // earlier homes may still be queued at each hop.
  constexpr int hops = 5;
  struct chain {
    std::mutex mutex;
    int done = 0;         // hops whose rehome() returned true
    bool failed = false;  // a rehome() returned false
    std::uint64_t at[hops][2] = {};  // bytes delivered each way at each hop
    std::promise<void> finished;
  };
  auto state = std::make_shared<chain>();
  auto finished = state->finished.get_future();
  auto arm = std::make_shared<std::function<void(int)>>();
  *arm = [state, arm_weak = std::weak_ptr<std::function<void(int)>>(arm), threads, ids,
          pump = rig.pump, seen = rig.seen](int hop) {
    std::lock_guard lock(seen->mutex);
    seen->trigger_at = static_cast<std::uint64_t>(hop) * megabyte;
    seen->trigger = [=] {
      auto& from = threads[(hop - 1) % 2]->io();
      boost::asio::post(from, [=] {
        std::uint64_t a_to_b = 0, b_to_a = 0;
        {
          std::lock_guard lock(seen->mutex);
          a_to_b = seen->total[0];
          b_to_a = seen->total[1];
        }
        // The next hop is armed before this one, while the pump cannot move:
        // once resumed, the new thread may run far before this one gets to
        // arm anything.
        if (hop < hops)
          if (auto next = arm_weak.lock()) (*next)(hop + 1);
        const bool rehomed = rehome_on_this_thread(pump, *seen, threads[hop % 2]->io(), ids[hop % 2]);
        // (Once resumed, the next hop may get here first.)
        std::lock_guard lock(state->mutex);
        state->at[hop - 1][0] = a_to_b;
        state->at[hop - 1][1] = b_to_a;
        if (rehomed) ++state->done;
        if (!rehomed && !state->failed) state->finished.set_value();
        state->failed = state->failed || !rehomed;
        if (state->done == hops) state->finished.set_value();
      });
    };
  };
  (*arm)(1);

  const auto up = pattern(8 * megabyte, 0x1f1f);
  const auto down = pattern(8 * megabyte, 0x2e2e);
  const auto deadline = clock::now() + 30s;
  const int server_fd = rig.server_peer.get();
  auto far = std::async(std::launch::async,
                        [&] { return tlsrelay::test::exchange(server_fd, down, deadline); });
  const auto near = tlsrelay::test::exchange(rig.client_peer.get(), up, deadline);
  const auto far_seen = far.get();
  const bool hopped = finished.wait_until(deadline) == std::future_status::ready;
  int done = 0;
  bool failed = false;
  std::string at;
  {
    std::lock_guard lock(state->mutex);
    done = state->done;
    failed = state->failed;
    for (const auto& hop : state->at) at += " " + std::to_string(hop[0]) + "/" + std::to_string(hop[1]);
  }
  // Where the pump is now, for the rig to close it there.
  if (hopped) rig.home = threads[done % 2];
  INFO("hops done: " << done << (failed ? ", then a rehome() returned false" : "")
                     << "; delivered a_to_b/b_to_a at each:" << at);
  REQUIRE(hopped);
  CHECK_FALSE(failed);
  CHECK(done == hops);

  check_both_ways(near, far_seen, up, down);

  REQUIRE(rig.seen->wait_done(5s));
  std::lock_guard lock(rig.seen->mutex);
  const auto& seen = *rig.seen;
  CHECK(seen.totals.end == end_reason::closed);
  CHECK(seen.totals.a_to_b == up.size());
  CHECK(seen.totals.b_to_a == down.size());
  CHECK(seen.total[0] == up.size());
  CHECK(seen.total[1] == down.size());
  // Every delivery after the first move ran on the thread of the latest one.
  CHECK(seen.after_elsewhere[0] == 0);
  CHECK(seen.after_elsewhere[1] == 0);
  CHECK(seen.done_thread == ids[hops % 2]);
}

TEST_CASE("after a move the pump's handlers run on the new io thread, and the old one can go",
          "[pump][pair_pump][rehome]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  INFO("data path: " << name(path));
  io_thread b;
  std::optional<io_thread> a;
  a.emplace();
  const auto b_id = thread_of(b);
  moving_rig rig(*a, path);
  const auto deadline = clock::now() + 20s;

  const auto hello = pattern(1000, 0xc3c3);
  const auto answer = pattern(3000, 0xd4d4);
  exchange(rig, hello, answer, deadline);
  CHECK(rig.runs_on(*a));

  REQUIRE(rig.move_to(b));
  CHECK(rig.runs_on(b));
  // The old io thread stops and its io_context is destroyed: the pump must
  // need nothing of it any more.
  a.reset();

  // More than a pipe or a buffer each way, both at once, then both EOFs.
  const auto up = pattern(megabyte + 12345, 0xe5e5);
  const auto down = pattern(megabyte + 54321, 0xf6f6);
  const int server_fd = rig.server_peer.get();
  auto far = std::async(std::launch::async,
                        [&] { return tlsrelay::test::exchange(server_fd, down, deadline); });
  const auto near = tlsrelay::test::exchange(rig.client_peer.get(), up, deadline);
  const auto far_seen = far.get();
  check_both_ways(near, far_seen, up, down);

  REQUIRE(rig.seen->wait_done(5s));
  std::lock_guard lock(rig.seen->mutex);
  const auto& seen = *rig.seen;
  CHECK(seen.before[0] == hello.size());
  CHECK(seen.before[1] == answer.size());
  CHECK(seen.after_at_home[0] == up.size());
  CHECK(seen.after_at_home[1] == down.size());
  CHECK(seen.after_elsewhere[0] == 0);
  CHECK(seen.after_elsewhere[1] == 0);
  CHECK(seen.ended_calls == 1);
  CHECK(seen.ended_thread == b_id);
  CHECK(seen.ended_totals[0] == hello.size() + up.size());
  CHECK(seen.ended_totals[1] == answer.size() + down.size());
  CHECK(seen.done_thread == b_id);
  CHECK(seen.totals.end == end_reason::closed);
}

TEST_CASE("pair_pump passes a half-close on after a move, and the other direction still flows",
          "[pump][pair_pump][rehome]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  const bool client_first = GENERATE(true, false);
  // Whether the first half-close reaches the pump before or after the move:
  // after it, the new thread passes it on; before it, resume() must leave the
  // ended direction alone and carry the other one.
  const bool half_closed_before_move = GENERATE(false, true);
  INFO("data path: " << name(path) << ", first to half-close: " << (client_first ? "client" : "server")
                     << (half_closed_before_move ? ", before the move" : ", after the move"));
  io_thread b;
  io_thread a;
  const auto b_id = thread_of(b);
  moving_rig rig(a, path);
  unique_fd& first = client_first ? rig.client_peer : rig.server_peer;
  unique_fd& second = client_first ? rig.server_peer : rig.client_peer;
  const auto deadline = clock::now() + 20s;

  const auto hello = pattern(2000, 0x1a1a);
  const auto answer = pattern(1000, 0x2b2b);
  exchange(rig, hello, answer, deadline);

  // More than every buffer on the way: the EOF follows bytes still in flight.
  const auto request = pattern(2 * megabyte, 0x3c3c);
  const auto half_close = [&] {
    const int first_fd = first.get();
    auto requester = std::async(std::launch::async,
                                [&] { return send_and_shutdown(first_fd, request, deadline); });
    const auto got = read_to_end(second.get(), deadline);
    CHECK(requester.get() == 0);
    INFO("request: received " << got.data.size() << ", recv error " << errno_name(got.error)
                              << ", timed out " << got.timed_out);
    REQUIRE(got.eof);
    CHECK(first_difference(got.data, request) == -1);
  };
  if (half_closed_before_move) half_close();
  REQUIRE(rig.move_to(b));
  if (!half_closed_before_move) half_close();
  // One direction has ended, the other has not: the pair is alive.
  CHECK(rig.seen->done_count() == 0);

  // The answer still flows, in two parts, the second only after the first
  // has arrived; then the second peer closes.
  const auto reply1 = pattern(100'000, 0x4d4d);
  const auto reply2 = pattern(300'000, 0x5e5e);
  REQUIRE(send_all(second.get(), reply1, deadline) == 0);
  const auto got1 = read_exact(first.get(), reply1.size(), deadline);
  CHECK_FALSE(got1.eof);
  CHECK(got1.error == 0);
  CHECK(first_difference(got1.data, reply1) == -1);
  const int second_fd = second.get();
  auto closer =
    std::async(std::launch::async, [&] { return send_and_shutdown(second_fd, reply2, deadline); });
  const auto got2 = read_to_end(first.get(), deadline);
  CHECK(closer.get() == 0);
  INFO("reply: received " << got2.data.size() << ", recv error " << errno_name(got2.error)
                          << ", timed out " << got2.timed_out);
  CHECK(got2.eof);
  CHECK(got2.error == 0);
  CHECK(first_difference(got2.data, reply2) == -1);

  REQUIRE(rig.seen->wait_done(5s));
  std::lock_guard lock(rig.seen->mutex);
  const auto& seen = *rig.seen;
  const std::uint64_t requested = request.size();
  const std::uint64_t replied = reply1.size() + reply2.size();
  CHECK(seen.totals.end == end_reason::closed);
  CHECK_FALSE(seen.totals.reset);
  CHECK(seen.totals.a_to_b == hello.size() + (client_first ? requested : replied));
  CHECK(seen.totals.b_to_a == answer.size() + (client_first ? replied : requested));
  CHECK(seen.done_calls == 1);
  CHECK(seen.done_thread == b_id);
  CHECK(seen.after_elsewhere[0] == 0);
  CHECK(seen.after_elsewhere[1] == 0);
}

TEST_CASE("pair_pump rehome() on a finished pump returns false and changes nothing",
          "[pump][pair_pump][rehome]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  INFO("data path: " << name(path));
  io_thread b;
  io_thread a;
  const auto a_id = thread_of(a);
  moving_rig rig(a, path);
  const auto deadline = clock::now() + 10s;
  exchange(rig, pattern(500, 0x6f6f), pattern(700, 0x7a7a), deadline);

  SECTION("closed by its owner") {
    REQUIRE(a.run([p = rig.pump] { p->close(); }));
  }
  SECTION("ended by both peers' EOFs") {
    ::shutdown(rig.client_peer.get(), SHUT_WR);
    ::shutdown(rig.server_peer.get(), SHUT_WR);
    CHECK(read_to_end(rig.client_peer.get(), deadline).eof);
    CHECK(read_to_end(rig.server_peer.get(), deadline).eof);
  }
  REQUIRE(rig.seen->wait_done(5s));

  CHECK_FALSE(rig.move_to(b));
  CHECK(rig.runs_on(a));
  CHECK_FALSE(rig.runs_on(b));
  // Still finished: the done handler does not run again.
  REQUIRE(a.run([p = rig.pump] { p->close(); }));
  CHECK(rig.seen->done_count() == 1);
  std::lock_guard lock(rig.seen->mutex);
  CHECK(rig.seen->done_thread == a_id);
}

TEST_CASE("pair_pump's timeouts still end a pair after a move", "[pump][pair_pump][rehome]") {
  const auto path = GENERATE(data_path::splice, data_path::copy);
  // Idle: no byte either way after the move. Half-close: the client has
  // half-closed before the move and the server stays silent after it.
  const bool half_close = GENERATE(false, true);
  INFO("data path: " << name(path) << ", timeout: " << (half_close ? "half-close" : "idle"));
  constexpr auto limit = 300ms;
  io_thread b;
  io_thread a;
  const auto b_id = thread_of(b);
  rig_options options;
  (half_close ? options.limits.half_close : options.limits.idle) = limit;
  moving_rig rig(a, path, options);
  const auto deadline = clock::now() + 10s;

  const auto hello = pattern(4000, 0x8b8b);
  const auto answer = pattern(6000, 0x9c9c);
  const auto traffic_start = clock::now();
  exchange(rig, hello, answer, deadline);
  if (half_close) {
    ::shutdown(rig.client_peer.get(), SHUT_WR);
    const auto got = read_to_end(rig.server_peer.get(), deadline);
    REQUIRE(got.eof);
    CHECK(got.data.empty());
  }
  REQUIRE(rig.move_to(b));
  // Moved before the timeout was due (the move is quick; were it not, the
  // timeout would have ended the pair on the old thread and the test would
  // say nothing about the move).
  REQUIRE(rig.seen->done_count() == 0);

  // No byte either way from now on: the timer the new thread armed fires.
  REQUIRE(rig.seen->wait_done(limit + 5s));
  const auto ended_after = clock::now() - traffic_start;
  CHECK(ended_after >= limit);

  // Both peers see the reset; except, after a half-close, the server: it has
  // read the client's EOF, and recv() keeps returning 0 after that.
  for (auto* peer : {&rig.client_peer, &rig.server_peer}) {
    if (half_close && peer == &rig.server_peer) continue;
    const auto seen = read_to_end(peer->get(), clock::now() + 2s);
    INFO((peer == &rig.client_peer ? "client" : "server")
         << ": received " << seen.data.size() << ", eof " << seen.eof << ", recv error "
         << errno_name(seen.error) << ", timed out " << seen.timed_out);
    CHECK(seen.data.empty());
    CHECK(seen.error == ECONNRESET);
  }

  std::lock_guard lock(rig.seen->mutex);
  const auto& seen = *rig.seen;
  CHECK(seen.totals.end == (half_close ? end_reason::half_close_timeout : end_reason::idle_timeout));
  CHECK(seen.totals.reset);
  CHECK(seen.totals.error == boost::asio::error::timed_out);
  CHECK(seen.totals.a_to_b == hello.size());
  CHECK(seen.totals.b_to_a == answer.size());
  CHECK(seen.done_calls == 1);
  CHECK(seen.done_thread == b_id);
}
