// Faults on a v2 reverse connection: the server's reverse connection goes
// through a fault_proxy that resets it in the middle of a transfer, stalls
// it, or cuts its `accept` line short. The client must learn of a broken
// pair (reset or EOF, never a hang), the session must stay up for the next
// client, and the relay must hold no more descriptors than before.
#include <sys/socket.h>

#include <cerrno>
#include <future>
#include <thread>

#include "tests/faults/faults.hpp"
#include "tests/e2e_v2/e2e_v2.hpp"
#include "tests/support/fault_proxy.hpp"

using namespace tlsrelay::test;

namespace {

relay_options one_pair(const std::string& data_path) {
  relay_options options = v2_relay(2);
  options.data_path = data_path;
  return options;
}

std::size_t spare_pipes(const std::string& data_path) {
  return data_path == "splice" ? splice_spare_pipe_fds : 0;
}

// The relay's descriptors with `extra` more sockets than `base`.
fd_census plus_sockets(fd_census base, std::size_t extra) {
  base.sockets += extra;
  return base;
}

// A reverse connection through `proxy` that presents the id.
tcp_conn accept_through(fault_proxy& proxy, const tlsrelay::connection_id& id) {
  tcp_conn reverse = tcp_conn::connect(proxy.port());
  reverse.send_all(tlsrelay::v2::format_line(tlsrelay::v2::accept{id}));
  return reverse;
}

// The client and the reverse connection are joined: bytes both ways.
void check_paired(tcp_conn& client, tcp_conn& reverse, const std::string& tag) {
  const std::string up = "up:" + tag, down = "down:" + tag;
  client.send_all(up);
  CHECK(reverse.recv_exact(up.size()) == up);
  reverse.send_all(down);
  CHECK(client.recv_exact(down.size()) == down);
}

void reverse_reset_mid_transfer(const std::string& data_path) {
  relay_process relay(one_pair(data_path));
  const fd_census baseline = census_of(relay.pid());
  auto server = v2_server_with_certificate(relay);
  server->greet();
  const std::uint16_t public_port = server->public_listener().port;
  {
    fault_proxy proxy(server->reverse_listener().port);
    tcp_conn client = tcp_conn::connect(public_port);
    const auto announced = server->expect_new_connection();
    tcp_conn reverse = accept_through(proxy, announced.id);
    check_paired(client, reverse, "before the fault");

    // The client uploads 8 MiB; the reverse connection is reset after the
    // first 1 MiB has reached the server.
    constexpr std::size_t delivered = 1024 * 1024;
    proxy.truncate(direction::downstream, delivered, truncate_end::reset);
    const std::string upload = random_bytes(8 * 1024 * 1024, 42);
    auto sending = std::async(std::launch::async, [&] {
      try {
        client.send_all(upload, 8s);
        return std::string("all sent");
      } catch (const io_error& e) {
        return std::string(e.what());
      }
    });
    const stream_outcome at_server = read_to_end(reverse);
    INFO("the server's reverse connection: " << describe(at_server));
    CHECK(at_server.ending == stream_end::reset);
    CHECK(bytes_diff(upload.substr(0, delivered), at_server.bytes) == "");

    // The client is told: its connection ends (reset or EOF), nothing hangs.
    const stream_outcome at_client = read_to_end(client);
    INFO("the client: " << describe(at_client));
    CHECK(at_client.bytes.empty());
    CHECK(at_client.ending != stream_end::timeout);
    const std::string send_result = sending.get();
    INFO("the client's upload: " << send_result);
    CHECK(send_result.find("within") == std::string::npos);  // ended, did not time out

    // While the session is up the relay holds its sockets plus the control
    // connection: both sockets of the broken pair are gone.
    CHECK(wait_for_descriptors(relay.pid(), plus_sockets(baseline, 1),
                               spare_pipes(data_path)) == "");
    CHECK(proxy.errors().empty());
  }
  // The session stays up: the server still answers, the next client pairs.
  CHECK_NOTHROW(server->ping_pong());
  tcp_conn next = tcp_conn::connect(public_port);
  tcp_conn next_reverse = server->accept_client();
  check_paired(next, next_reverse, "next client");

  next.close();
  next_reverse.close();
  server.reset();
  wait_for_no_controller_linked(public_port);
  CHECK(wait_for_descriptors(relay.pid(), baseline, spare_pipes(data_path)) == "");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

}  // namespace

TEST_CASE("faults: a reverse connection reset mid-transfer ends the client's connection, the "
          "session goes on and nothing leaks (splice data path)",
          "[e2e][faults][reverse]") {
  reverse_reset_mid_transfer("splice");
}

TEST_CASE("faults: a reverse connection reset mid-transfer ends the client's connection, the "
          "session goes on and nothing leaks (copy data path)",
          "[e2e][faults][reverse]") {
  reverse_reset_mid_transfer("copy");
}

TEST_CASE("faults: a stalled reverse connection makes the client's sends block, and after it "
          "resumes every byte arrives",
          "[e2e][faults][reverse]") {
  relay_process relay(one_pair("splice"));
  const fd_census baseline = census_of(relay.pid());
  auto server = v2_server_with_certificate(relay);
  server->greet();
  const std::uint16_t public_port = server->public_listener().port;
  {
    fault_proxy proxy(server->reverse_listener().port);
    tcp_conn client = tcp_conn::connect(public_port);
    const auto announced = server->expect_new_connection();
    tcp_conn reverse = accept_through(proxy, announced.id);
    check_paired(client, reverse, "before the stall");

    // The server side stops reading: the relay must not buffer the client's
    // upload without bound, so the client's sends end up blocking.
    proxy.stall(direction::downstream);
    const std::string chunk = random_bytes(64 * 1024, 9);
    std::string sent;
    for (;;) {
      const ssize_t n = ::send(client.fd(), chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        sent.append(chunk, 0, static_cast<std::size_t>(n));
        REQUIRE(sent.size() < 256u * 1024 * 1024);  // a sender that never blocks
        continue;
      }
      REQUIRE(n < 0);
      if (errno == EINTR) continue;
      REQUIRE((errno == EAGAIN || errno == EWOULDBLOCK));
      break;
    }
    INFO("the client sent " << sent.size() << " bytes before blocking");
    const std::uint64_t forwarded_before_resume = proxy.forwarded(direction::downstream);

    proxy.resume(direction::downstream);
    const std::string received = reverse.recv_exact(sent.size(), 10s);
    CHECK(bytes_diff(sent, received) == "");
    CHECK(proxy.forwarded(direction::downstream) >= forwarded_before_resume + sent.size());
    check_paired(client, reverse, "after the stall");
    CHECK(proxy.errors().empty());
  }
  server.reset();
  wait_for_no_controller_linked(public_port);
  CHECK(wait_for_descriptors(relay.pid(), baseline, splice_spare_pipe_fds) == "");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

namespace {

// "accept " and half of the id: what a reverse connection cut short sent.
constexpr std::size_t accept_line_part = 7 + 16;

// A reverse connection through a proxy that forwards only the first part of
// its accept line and then ends it as told; the relay must refuse it, and the
// id, not spent, must then open a reverse connection for the waiting client.
void accept_line_cut_short(truncate_end how) {
  relay_process relay(one_pair("splice"));
  const fd_census baseline = census_of(relay.pid());
  auto server = v2_server_with_certificate(relay);
  server->greet();
  const std::uint16_t public_port = server->public_listener().port;

  tcp_conn client = tcp_conn::connect(public_port);
  const auto announced = server->expect_new_connection();
  {
    fault_proxy proxy(server->reverse_listener().port);
    tcp_conn truncated = tcp_conn::connect(proxy.port());
    REQUIRE(proxy.wait_accepted(1));
    proxy.truncate(direction::upstream, accept_line_part, how, 0);
    truncated.send_all(tlsrelay::v2::format_line(tlsrelay::v2::accept{announced.id}));
    REQUIRE(proxy.wait_forwarded(direction::upstream, accept_line_part));
    // After a cut the relay must close without a byte; after a reset the
    // test's end was reset by the proxy itself.
    const stream_outcome seen = read_to_end(truncated, 3s);
    INFO("the truncated reverse connection: " << describe(seen));
    CHECK(seen.bytes.empty());
    CHECK(seen.ending != stream_end::timeout);
    CHECK(proxy.errors().empty());
  }
  // Refused well before the relay's 10 s accept-line timeout: only the
  // waiting client and the control connection remain.
  CHECK(wait_for_descriptors(relay.pid(), plus_sockets(baseline, 2), 0, 3s) == "");

  tcp_conn reverse = server->accept(announced.id);
  check_paired(client, reverse, "after the cut line");
  client.close();
  reverse.close();
  server.reset();
  wait_for_no_controller_linked(public_port);
  CHECK(wait_for_descriptors(relay.pid(), baseline, splice_spare_pipe_fds) == "");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

}  // namespace

TEST_CASE("faults: a reverse connection whose accept line is cut short (FIN) is refused and the "
          "id still opens the next reverse connection",
          "[e2e][faults][reverse]") {
  accept_line_cut_short(truncate_end::cut);
}

TEST_CASE("faults: a reverse connection reset in the middle of its accept line is dropped and "
          "the id still opens the next reverse connection",
          "[e2e][faults][reverse]") {
  accept_line_cut_short(truncate_end::reset);
}

TEST_CASE("faults: a reverse connection that stops in the middle of its accept line costs the "
          "relay no CPU while it waits",
          "[e2e][faults][reverse]") {
  relay_process relay(one_pair("splice"));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  const auto announced = server->expect_new_connection();

  const std::string line = tlsrelay::v2::format_line(tlsrelay::v2::accept{announced.id});
  tcp_conn stalled = server->open_reverse_with(line.substr(0, accept_line_part));
  // An idle relay uses next to no CPU; one that polls a socket that stays
  // readable uses all of a core it can get.
  const millis before = cpu_time_of(relay.pid());
  std::this_thread::sleep_for(1s);  // the window measured, not a synchronisation
  const millis used = cpu_time_of(relay.pid()) - before;
  INFO("relay CPU time during 1 s of waiting for the rest of the line: " << used.count() << " ms");
  CHECK(used < 100ms);

  stalled.send_all(line.substr(accept_line_part));
  check_paired(client, stalled, "after the pause");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
