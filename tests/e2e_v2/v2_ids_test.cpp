// In v2 a reverse connection is paired by the id of `new_connection`, not by
// arrival order: an id nobody was given, one already used, one whose client
// has left, or a first line that is no accept line gets the connection closed
// without a byte, and the waiting client is not affected.
#include <map>
#include <thread>

#include "tests/e2e_v2/e2e_v2.hpp"

using namespace tlsrelay::test;

namespace {

tlsrelay::connection_id some_id(std::uint8_t fill) {
  tlsrelay::connection_id id;
  id.bytes.fill(fill);
  return id;
}

// The relay ends a refused reverse connection without writing to it.
void check_closed_without_a_byte(tcp_conn& reverse) {
  CHECK_NOTHROW(reverse.expect_closed(3s));
}

// The client and the reverse connection are joined: bytes both ways.
void check_paired(tcp_conn& client, tcp_conn& reverse, const std::string& tag) {
  const std::string up = "up:" + tag, down = "down:" + tag;
  client.send_all(up);
  CHECK(reverse.recv_exact(up.size()) == up);
  reverse.send_all(down);
  CHECK(client.recv_exact(down.size()) == down);
}

}  // namespace

TEST_CASE("v2: a reverse connection with an id nobody was given is closed without a byte and "
          "the waiting client is unaffected",
          "[e2e][v2][ids]") {
  relay_process relay(v2_relay(2));
  auto server = v2_server_with_certificate(relay);
  server->greet();

  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  const auto announced = server->expect_new_connection();
  REQUIRE(announced.id != some_id(0xab));

  tcp_conn stranger = server->accept(some_id(0xab));
  check_closed_without_a_byte(stranger);
  tcp_conn garbage = server->open_reverse_with("GET / HTTP/1.0\r\n\r\n");
  check_closed_without_a_byte(garbage);

  tcp_conn reverse = server->accept(announced.id);
  check_paired(client, reverse, "right id");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: an id opens one reverse connection only, a second one with it is closed without "
          "a byte",
          "[e2e][v2][ids]") {
  relay_process relay(v2_relay(2));
  auto server = v2_server_with_certificate(relay);
  server->greet();

  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  const auto announced = server->expect_new_connection();
  tcp_conn reverse = server->accept(announced.id);
  check_paired(client, reverse, "first use");

  tcp_conn replay = server->accept(announced.id);
  check_closed_without_a_byte(replay);
  // The pair made with the id is untouched by the replay.
  check_paired(client, reverse, "still paired");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: the id of a client that already left opens nothing and the next client pairs "
          "normally",
          "[e2e][v2][ids]") {
  // With one waiting client allowed, the relay announcing a second client
  // proves it has dropped the first from its queue.
  relay_process relay(v2_relay(2, {"--max-pending", "1"}));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  const auto port = server->public_listener().port;

  std::optional<tcp_conn> leaving(tcp_conn::connect(port));
  const auto left = server->expect_new_connection();
  leaving->close();

  const auto deadline = steady::now() + 5s;
  std::optional<tcp_conn> next;
  std::optional<tlsrelay::v2::new_connection> next_announced;
  int refused = 0;
  while (!next_announced) {
    REQUIRE(steady::now() < deadline);
    tcp_conn candidate = tcp_conn::connect(port);
    try {
      next_announced = server->expect_new_connection(300ms);
      next = std::move(candidate);
    } catch (const io_error&) {
      // No announcement yet: either the departed client still fills the
      // queue (then the relay closes this one at once) or the line is late.
      try {
        candidate.expect_closed(300ms);
        ++refused;
        std::this_thread::sleep_for(20ms);
      } catch (const io_error&) {
        next_announced = server->expect_new_connection(3s);
        next = std::move(candidate);
      }
    }
  }
  INFO("clients refused while the departed one was still queued: " << refused);
  REQUIRE(next_announced->id != left.id);

  tcp_conn stale = server->accept(left.id);
  check_closed_without_a_byte(stale);

  tcp_conn reverse = server->accept(next_announced->id);
  check_paired(*next, reverse, "next client");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: a reverse connection whose first line is longer than any accept line is closed "
          "without a byte",
          "[e2e][v2][ids]") {
  relay_process relay(v2_relay(2));
  auto server = v2_server_with_certificate(relay);
  server->greet();

  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  const auto announced = server->expect_new_connection();

  // The real id, padded past the limit: the relay must not read on to find
  // the end of the line.
  const std::string real_line = tlsrelay::v2::format_line(tlsrelay::v2::accept{announced.id});
  std::string too_long = real_line.substr(0, real_line.size() - 2) + std::string(64, '0') + "\r\n";
  REQUIRE(too_long.size() > tlsrelay::v2::max_accept_line_bytes);
  tcp_conn overlong = server->open_reverse_with(too_long);
  check_closed_without_a_byte(overlong);

  // The id was not spent by the refused connection.
  tcp_conn reverse = server->accept(announced.id);
  check_paired(client, reverse, "after the long line");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: two waiting clients answered in reverse order each reach their own client",
          "[e2e][v2][ids]") {
  relay_process relay(v2_relay(2));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  const auto port = server->public_listener().port;

  tcp_conn first = tcp_conn::connect(port);
  first.send_all("I am the first client");
  const auto first_announced = server->expect_new_connection();
  tcp_conn second = tcp_conn::connect(port);
  second.send_all("I am the second client");
  const auto second_announced = server->expect_new_connection();

  // new_connection names each client by the address it connects from.
  CHECK(first_announced.client.host == "127.0.0.1");
  CHECK(first_announced.client.port == local_port_of(first));
  CHECK(second_announced.client.host == "127.0.0.1");
  CHECK(second_announced.client.port == local_port_of(second));
  REQUIRE(first_announced.id != second_announced.id);

  tcp_conn second_reverse = server->accept(second_announced.id);
  CHECK(second_reverse.recv_exact(22) == "I am the second client");
  tcp_conn first_reverse = server->accept(first_announced.id);
  CHECK(first_reverse.recv_exact(21) == "I am the first client");

  second_reverse.send_all("for the second");
  first_reverse.send_all("for the first");
  CHECK(second.recv_exact(14) == "for the second");
  CHECK(first.recv_exact(13) == "for the first");

  // Nothing crossed over: each side ends with exactly its own bytes.
  first.shutdown_write();
  second.shutdown_write();
  CHECK(first_reverse.recv_until_eof(3s) == "");
  CHECK(second_reverse.recv_until_eof(3s) == "");
  first_reverse.shutdown_write();
  second_reverse.shutdown_write();
  CHECK(first.recv_until_eof(3s) == "");
  CHECK(second.recv_until_eof(3s) == "");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
