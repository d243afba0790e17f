// Warm reverse connections against the real relay: a server opens reverse
// connections ahead of demand, each starting `ready <SERIAL> <TAG>`; a client
// that arrives while one is kept is joined with it at once, the server
// reading `<ID> <CLIENT>` on it (then, with --proxy-protocol, a PROXY v2
// header) before the client's bytes, and no new_connection is sent. Bad,
// replayed and surplus tickets are closed without a byte; unused warm
// connections expire; without one the relay falls back to new_connection.
//
// The relay reads a reverse connection's first line asynchronously; a test
// that needs a warm connection to be kept before a client arrives waits until
// the relay has taken that line out of the kernel (wait_until_peer_has_read),
// after which its actors learn of the warm connection before any later client.
#include <chrono>

#include "protocol/proxy_header.hpp"
#include "protocol/warm_ticket.hpp"
#include "tests/e2e_v2/e2e_v2.hpp"

using namespace tlsrelay::test;
namespace v2 = tlsrelay::v2;

namespace {

// A warm connection of `server` with ticket `serial` that the relay has read.
tcp_conn open_warm_read(v2_test_server& server, std::uint64_t serial) {
  tcp_conn warm = server.open_warm(serial);
  wait_until_peer_has_read(warm);
  return warm;
}

// The first line the relay writes on a warm connection, parsed; REQUIREs that
// it is `<ID> <CLIENT>` and names `client` (its local address: 127.0.0.1 and
// its port).
v2::paired expect_paired_with(tcp_conn& warm, const tcp_conn& client) {
  const std::string line = warm.read_line(3s);
  INFO("first line on the warm connection: " << printable(line));
  REQUIRE(line.size() >= 2);
  REQUIRE(line.substr(line.size() - 2) == "\r\n");
  REQUIRE(line.size() <= v2::max_paired_line_bytes);
  v2::paired paired;
  REQUIRE_FALSE(v2::parse_paired_line(line.substr(0, line.size() - 2), paired));
  REQUIRE(v2::format_line(paired) == line);  // lower-case id, as the relay writes it
  CHECK(paired.client.host == "127.0.0.1");
  CHECK(paired.client.port == local_port_of(client));
  return paired;
}

// Bytes both ways between a client and the connection it was joined with.
void check_joined(tcp_conn& client, tcp_conn& reverse, const std::string& tag) {
  const std::string up = "up:" + tag, down = "down:" + tag;
  client.send_all(up);
  CHECK(reverse.recv_exact(up.size()) == up);
  reverse.send_all(down);
  CHECK(client.recv_exact(down.size()) == down);
}

// Nothing was announced on the control connection: the relay answers our
// ping with pong and no line before it (had it sent new_connection for a
// client that arrived before the ping, that line would come first).
void check_no_announcement(v2_test_server& server) {
  CHECK(server.ping_pong() == std::vector<std::string>{});
}

}  // namespace

TEST_CASE("v2 warm: a client is joined with a warm connection at once, named on its first line, "
          "without new_connection",
          "[e2e][v2][warm]") {
  relay_process relay(v2_relay(2));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  // The relay says how many warm connections it keeps (the default, 16).
  REQUIRE(server->greeting().at(0).size() > 8);
  CHECK(server->greeting().at(0).substr(server->greeting().at(0).size() - 8) == " warm=16");

  tcp_conn warm = open_warm_read(*server, 1);
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  // The client speaks first; its bytes must come after the relay's line.
  client.send_all("GET / HTTP/1.0\r\n\r\n");

  const auto paired = expect_paired_with(warm, client);
  CHECK(tlsrelay::to_hex(paired.id) != server->session_secret());
  CHECK(warm.recv_exact(18) == "GET / HTTP/1.0\r\n\r\n");
  warm.send_all("HTTP/1.0 200 OK\r\n\r\nwarm");
  CHECK(client.recv_exact(23) == "HTTP/1.0 200 OK\r\n\r\nwarm");
  check_joined(client, warm, "second round");
  check_no_announcement(*server);

  // Half-close is passed on both ways.
  client.shutdown_write();
  CHECK(warm.recv_until_eof(3s) == "");
  warm.send_all("after the client's EOF");
  CHECK(client.recv_exact(22) == "after the client's EOF");
  warm.shutdown_write();
  CHECK(client.recv_until_eof(3s) == "");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2 warm: with one warm connection and two clients, the second client is announced "
          "with new_connection and served through accept",
          "[e2e][v2][warm]") {
  relay_process relay(v2_relay(2));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  const auto port = server->public_listener().port;

  tcp_conn warm = open_warm_read(*server, 1);
  tcp_conn first = tcp_conn::connect(port);
  expect_paired_with(warm, first);
  check_no_announcement(*server);

  tcp_conn second = tcp_conn::connect(port);
  const auto announced = server->expect_new_connection();
  CHECK(announced.client.host == "127.0.0.1");
  CHECK(announced.client.port == local_port_of(second));
  tcp_conn reverse = server->accept(announced.id);
  check_joined(second, reverse, "second client, through accept");
  check_joined(first, warm, "first client, still on the warm connection");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2 warm: an unused warm connection is closed after --warm-idle, and the next client "
          "is announced with new_connection",
          "[e2e][v2][warm]") {
  relay_process relay(v2_relay(2, {"--warm-idle", "0.3"}));
  auto server = v2_server_with_certificate(relay);
  server->greet();

  const auto opened = steady::now();
  tcp_conn warm = server->open_warm(1);
  warm.expect_closed(5s);  // EOF without a byte
  const auto lived = std::chrono::duration_cast<millis>(steady::now() - opened);
  INFO("the warm connection was closed " << lived.count() << " ms after it was opened");
  CHECK(lived >= 290ms);  // not before --warm-idle (0.3 s; a little slack for clock rounding)

  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  const auto announced = server->expect_new_connection();
  CHECK(announced.client.port == local_port_of(client));
  tcp_conn reverse = server->accept(announced.id);
  check_joined(client, reverse, "after expiry");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2 warm: a replayed ready line is closed without a byte, the first connection with it "
          "is kept",
          "[e2e][v2][warm]") {
  relay_process relay(v2_relay(2));
  auto server = v2_server_with_certificate(relay);
  server->greet();

  tcp_conn warm = open_warm_read(*server, 1);
  tcp_conn replay = server->open_reverse_with(server->ready_line(1));
  CHECK_NOTHROW(replay.expect_closed(3s));

  // The first is still kept: the next client is joined with it.
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  expect_paired_with(warm, client);
  check_joined(client, warm, "kept despite the replay");
  check_no_announcement(*server);

  // A used ticket stays used, even once its connection is joined.
  tcp_conn late_replay = server->open_reverse_with(server->ready_line(1));
  CHECK_NOTHROW(late_replay.expect_closed(3s));
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2 warm: with --warm-max 1 a second warm connection is closed without a byte",
          "[e2e][v2][warm]") {
  relay_process relay(v2_relay(2, {"--warm-max", "1"}));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  CHECK(server->greeting().at(0).substr(server->greeting().at(0).size() - 7) == " warm=1");

  tcp_conn warm = open_warm_read(*server, 1);
  tcp_conn surplus = server->open_warm(2);
  CHECK_NOTHROW(surplus.expect_closed(3s));

  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  expect_paired_with(warm, client);
  check_joined(client, warm, "the one kept");
  check_no_announcement(*server);
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2 warm: a ready line with a wrong tag is closed without a byte and does not use up "
          "its serial",
          "[e2e][v2][warm]") {
  relay_process relay(v2_relay(2));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  tlsrelay::connection_id secret;
  REQUIRE_FALSE(tlsrelay::parse_connection_id(server->session_secret(), secret));
  auto other_secret = secret;
  other_secret.bytes[0] ^= 0x01;

  // The tag of another serial, one made with another secret, and the secret
  // itself: none is a ticket for serial 1.
  for (const auto& tag : {tlsrelay::warm_ticket::tag(secret, 2),
                          tlsrelay::warm_ticket::tag(other_secret, 1), secret}) {
    const std::string line = v2::format_line(v2::ready{1, tag});
    INFO("first line: " << printable(line));
    tcp_conn forged = server->open_reverse_with(line);
    CHECK_NOTHROW(forged.expect_closed(3s));
  }
  // The relay announced nothing because of them.
  check_no_announcement(*server);

  // Serial 1 is still good with its genuine tag.
  tcp_conn warm = open_warm_read(*server, 1);
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  expect_paired_with(warm, client);
  check_joined(client, warm, "genuine ticket");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2 warm: with --proxy-protocol the PROXY v2 header follows the line naming the client "
          "and comes before its bytes",
          "[e2e][v2][warm][proxy]") {
  relay_process relay(v2_relay(2, {"--proxy-protocol"}));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  const auto port = server->public_listener().port;

  tcp_conn warm = open_warm_read(*server, 1);
  tcp_conn client = tcp_conn::connect(port);
  client.send_all("client bytes");

  expect_paired_with(warm, client);
  std::string header = warm.recv_exact(tlsrelay::proxy_v2::fixed_bytes);
  const auto length = static_cast<std::size_t>(static_cast<unsigned char>(header[14]) << 8 |
                                               static_cast<unsigned char>(header[15]));
  header += warm.recv_exact(length);
  const auto decoded = tlsrelay::proxy_v2::decode(header);
  REQUIRE(decoded.status == tlsrelay::proxy_v2::decode_status::complete);
  CHECK(decoded.header_bytes == header.size());
  CHECK_FALSE(decoded.local);
  CHECK(decoded.addr == tlsrelay::proxy_v2::addresses{"127.0.0.1", local_port_of(client),
                                                      "127.0.0.1", port});
  CHECK(warm.recv_exact(12) == "client bytes");
  check_joined(client, warm, "after the header");
  check_no_announcement(*server);
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2 warm: a warm connection its server closed is no longer used, the next client is "
          "announced with new_connection",
          "[e2e][v2][warm]") {
  relay_process relay(v2_relay(2));
  auto server = v2_server_with_certificate(relay);
  server->greet();

  tcp_conn warm = open_warm_read(*server, 1);
  const auto ends = ends_of(warm);
  warm.close();
  // The relay noticed (it closes its end once it has told its actors).
  wait_until_peer_closed(ends);

  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  const auto announced = server->expect_new_connection();
  CHECK(announced.client.port == local_port_of(client));
  tcp_conn reverse = server->accept(announced.id);
  check_joined(client, reverse, "fallback");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2 warm: when the server's control connection ends, its warm connections are closed",
          "[e2e][v2][warm]") {
  relay_process relay(v2_relay(2));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  const auto port = server->public_listener().port;

  tcp_conn warm1 = open_warm_read(*server, 1);
  tcp_conn warm2 = open_warm_read(*server, 2);
  server->disconnect();
  CHECK_NOTHROW(warm1.expect_closed(3s));
  CHECK_NOTHROW(warm2.expect_closed(3s));
  // And a client is not joined with anything: the port has no session.
  wait_for_no_controller_linked(port);
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2 warm: a warm connection its server closes in the instant a client arrives never "
          "costs the client its connection (200 times)",
          "[e2e][v2][warm][hostile]") {
  relay_process relay(v2_relay(2));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  // Clients that fall back to new_connection are served by the server's echo.
  server->serve_echo();
  const auto port = server->public_listener().port;

  constexpr int rounds = 200;
  int served = 0;
  for (int i = 1; i <= rounds; ++i) {
    tcp_conn warm = open_warm_read(*server, static_cast<std::uint64_t>(i));
    // The FIN reaches the relay before the client's SYN does, but its actors
    // may learn of the client first: then the relay must notice the warm
    // connection is gone when it joins them, and announce the client instead.
    warm.close();
    tcp_conn client = tcp_conn::connect(port);
    const std::string text = "client " + std::to_string(i);
    client.send_all(text);
    std::string back;
    try {
      back = client.recv_exact(text.size(), 3s);
    } catch (const io_error& e) {
      FAIL_CHECK("client " << i << " lost its connection: " << e.what());
    }
    if (back == text) ++served;
  }
  CHECK(served == rounds);
  CHECK(server->errors() == std::vector<std::string>{});
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
