// A client that resets its connection while it waits for the server's
// reverse connection: the relay must drop it at once (not at the pending
// timeout), refuse a late reverse connection meant for it, never hand its
// bytes to anyone, keep pairing later clients, and hold no more descriptors
// than before. Each scenario comes twice: a client that left without a
// word, and one that had sent bytes first (the relay leaves those in the
// kernel while the client waits).
#include <sys/socket.h>

#include "tests/faults/faults.hpp"
#include "tests/e2e_v2/e2e_v2.hpp"
#include "tests/support/fault_proxy.hpp"

using namespace tlsrelay::test;

namespace {

// Well below the relay's pending timeout (10 s): a relay that only drops the
// client when that timeout fires fails the check.
constexpr millis dropped_within = 3000ms;

const std::string departed_bytes = "bytes of a client that will not stay";

fd_census plus_sockets(fd_census base, std::size_t extra) {
  base.sockets += extra;
  return base;
}

void check_paired(tcp_conn& client, tcp_conn& reverse, const std::string& tag) {
  const std::string up = "up:" + tag, down = "down:" + tag;
  client.send_all(up);
  CHECK(reverse.recv_exact(up.size()) == up);
  reverse.send_all(down);
  CHECK(client.recv_exact(down.size()) == down);
}

// Closes with SO_LINGER 0: the relay's end gets a reset, not a FIN.
void reset_connection(tcp_conn& conn) {
  const linger hard{1, 0};
  REQUIRE(::setsockopt(conn.fd(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard) == 0);
  conn.close();
}

// A late reverse connection for the departed client, opened by `open`,
// must be closed without a byte: above all, without the departed client's
// bytes. (A relay may close it so fast that opening it already fails.)
template <class Open>
void check_refused(Open open) {
  stream_outcome seen;
  std::string failed_to_open;
  try {
    tcp_conn late = open();
    seen = read_to_end(late, 3s);
  } catch (const io_error& e) {
    failed_to_open = e.what();
    seen.ending = stream_end::reset;
  }
  INFO("the late reverse connection: " << describe(seen) << ", bytes " << printable(seen.bytes)
                                       << (failed_to_open.empty() ? "" : "; " + failed_to_open));
  CHECK(seen.bytes.empty());
  CHECK(seen.ending != stream_end::timeout);
}

void v2_waiting_client_reset(bool spoke) {
  relay_process relay(v2_relay(2));
  const fd_census baseline = census_of(relay.pid());
  auto server = v2_server_with_certificate(relay);
  server->greet();
  const std::uint16_t public_port = server->public_listener().port;

  tlsrelay::v2::new_connection left{};
  {
    fault_proxy proxy(public_port);
    tcp_conn client = tcp_conn::connect(proxy.port());
    if (spoke) {
      client.send_all(departed_bytes);
      REQUIRE(proxy.wait_forwarded(direction::upstream, departed_bytes.size()));
    }
    left = server->expect_new_connection();
    proxy.reset();
    CHECK(read_to_end(client).ending == stream_end::reset);
  }
  // The relay holds the control connection only: the reset client is gone.
  CHECK(wait_for_descriptors(relay.pid(), plus_sockets(baseline, 1), 0, dropped_within) == "");

  check_refused([&] { return server->accept(left.id); });

  tcp_conn next = tcp_conn::connect(public_port);
  const auto next_announced = server->expect_new_connection();
  CHECK(next_announced.id != left.id);
  tcp_conn reverse = server->accept(next_announced.id);
  check_paired(next, reverse, "next client");
  // Nothing of the departed client reaches the next pair either.
  next.shutdown_write();
  CHECK(reverse.recv_until_eof(3s) == "");

  next.close();
  reverse.close();
  server.reset();
  wait_for_no_controller_linked(public_port);
  CHECK(wait_for_descriptors(relay.pid(), baseline, splice_spare_pipe_fds) == "");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

void v1_waiting_client_reset(bool spoke) {
  relay_process relay(relay_with(2));
  const fd_census baseline = census_of(relay.pid());
  auto server = connect_server(relay);
  const std::uint16_t public_port = server->public_listener().port;

  tcp_conn client = tcp_conn::connect(public_port);
  if (spoke) client.send_all(departed_bytes);
  server->expect_new_connection();
  reset_connection(client);
  CHECK(wait_for_descriptors(relay.pid(), plus_sockets(baseline, 1), 0, dropped_within) == "");

  // v1 pairs reverse connections first come, first served: with the reset
  // client dropped, none is waiting and the late reverse connection is closed.
  check_refused([&] { return server->open_reverse(); });

  tcp_conn next = tcp_conn::connect(public_port);
  tcp_conn reverse = server->accept_client();
  check_paired(next, reverse, "next client");
  next.shutdown_write();
  CHECK(reverse.recv_until_eof(3s) == "");

  next.close();
  reverse.close();
  server.reset();
  wait_for_no_controller_linked(public_port);
  CHECK(wait_for_descriptors(relay.pid(), baseline, splice_spare_pipe_fds) == "");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

}  // namespace

TEST_CASE("faults: v2, a silent waiting client reset (through the proxy) is dropped, a late "
          "accept for its id is refused and the next client pairs",
          "[e2e][faults][waiting]") {
  v2_waiting_client_reset(false);
}

TEST_CASE("faults: v2, a waiting client that sent bytes and then reset is dropped, a late "
          "accept for its id gets none of its bytes and the next client pairs",
          "[e2e][faults][waiting]") {
  v2_waiting_client_reset(true);
}

TEST_CASE("faults: v1, a silent waiting client reset (SO_LINGER 0) is dropped, a late reverse "
          "connection is closed and the next client pairs",
          "[e2e][faults][waiting]") {
  v1_waiting_client_reset(false);
}

TEST_CASE("faults: v1, a waiting client that sent bytes and then reset is dropped, a late "
          "reverse connection gets none of its bytes and the next client pairs",
          "[e2e][faults][waiting]") {
  v1_waiting_client_reset(true);
}
