// Waiting clients are bounded: each waits at most --pending-timeout for its
// reverse connection, and at most --max-pending wait per session.
#include "tests/e2e_v2/e2e_v2.hpp"

using namespace tlsrelay::test;

TEST_CASE("v2: a client whose reverse connection never comes is closed after --pending-timeout",
          "[e2e][v2][bounds]") {
  relay_process relay(v2_relay(2, {"--pending-timeout", "0.5"}));
  auto server = v2_server_with_certificate(relay);
  server->greet();

  const auto arrived = steady::now();
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  const auto announced = server->expect_new_connection();  // and never answered
  REQUIRE_NOTHROW(client.expect_closed(5s));
  const auto waited = std::chrono::duration_cast<millis>(steady::now() - arrived);
  INFO("the client was closed after " << waited.count() << " ms");
  CHECK(waited >= 450ms);
  CHECK(waited <= 3000ms);

  // Its id died with it.
  tcp_conn late = server->accept(announced.id);
  CHECK_NOTHROW(late.expect_closed(3s));

  // The session itself lives on and serves the next client.
  tcp_conn next = tcp_conn::connect(server->public_listener().port);
  tcp_conn reverse = server->accept_client();
  next.send_all("in time");
  CHECK(reverse.recv_exact(7) == "in time");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: with --max-pending 2 a third waiting client is closed at once while the first "
          "two still pair",
          "[e2e][v2][bounds]") {
  relay_process relay(v2_relay(2, {"--max-pending", "2"}));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  const auto port = server->public_listener().port;

  tcp_conn first = tcp_conn::connect(port);
  const auto first_announced = server->expect_new_connection();
  tcp_conn second = tcp_conn::connect(port);
  const auto second_announced = server->expect_new_connection();

  const auto arrived = steady::now();
  tcp_conn third = tcp_conn::connect(port);
  REQUIRE_NOTHROW(third.expect_closed(3s));
  const auto took = std::chrono::duration_cast<millis>(steady::now() - arrived);
  INFO("the third client was closed after " << took.count() << " ms");
  CHECK(took < 1500ms);  // at once, not after a timeout

  // The relay read our ping after it had dealt with the third client: had it
  // announced it, the line would have come before the pong.
  CHECK(server->ping_pong() == std::vector<std::string>{});

  tcp_conn second_reverse = server->accept(second_announced.id);
  tcp_conn first_reverse = server->accept(first_announced.id);
  first.send_all("one");
  second.send_all("two");
  CHECK(first_reverse.recv_exact(3) == "one");
  CHECK(second_reverse.recv_exact(3) == "two");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: a control connection that sends no hello is closed after --hello-timeout",
          "[e2e][v2][bounds]") {
  relay_process relay(v2_relay(2, {"--hello-timeout", "0.4"}));
  const auto connected = steady::now();
  auto silent = v2_server_with_certificate(relay);  // TLS done, no hello
  const auto said = silent->read_until_closed(5s);
  const auto waited = std::chrono::duration_cast<millis>(steady::now() - connected);
  INFO("closed after " << waited.count() << " ms, having sent: " << said);
  CHECK(said.empty());
  CHECK(waited >= 350ms);
  CHECK(waited <= 3000ms);

  // A server that says hello in time is served as usual.
  auto server = v2_server_with_certificate(relay);
  server->greet();
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  tcp_conn reverse = server->accept_client();
  client.send_all("hi");
  CHECK(reverse.recv_exact(2) == "hi");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
