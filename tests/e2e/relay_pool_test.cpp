// The port pool and sessions as servers and clients see them: which ports a
// server is given, what a port without a session answers, and what happens
// to clients when their server goes away.
#include <thread>

#include "tests/e2e/e2e.hpp"

using namespace tlsrelay::test;

namespace {

// A server that got a pair. A server that leaves returns its pair a moment
// later (the relay has to notice the closed control connection), and there
// is no event a newcomer could wait for: until `timeout`, a newcomer told
// no_available_listeners tries again.
std::unique_ptr<v1_test_server> connect_until_assigned(const relay_process& relay,
                                                       millis timeout = 3000ms) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    auto server = std::make_unique<v1_test_server>(relay.port(), relay.keys_dir());
    if (server->try_greet()) return server;
    if (steady::now() >= deadline)
      throw io_error("the relay still answered no_available_listeners " +
                     std::to_string(timeout.count()) +
                     " ms after a server left: its pair did not return to the pool");
    std::this_thread::sleep_for(20ms);
  }
}

}  // namespace

TEST_CASE("when the only pair is taken a second server is told no_available_listeners and "
          "closed",
          "[e2e][pool]") {
  relay_process relay(relay_with(2));
  auto first = connect_server(relay);
  CHECK(first->greeting() == listener_lines(relay, 0));

  v1_test_server second(relay.port(), relay.keys_dir());
  const auto line = second.read_line();
  INFO("control connection: " << second.control().close_reason());
  REQUIRE(line.has_value());
  CHECK(*line == "no_available_listeners");
  CHECK(second.control().read_until_closed() == "");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("pairs are handed out in order and a departed server's pair serves the next one",
          "[e2e][pool]") {
  relay_process relay(relay_with(4));
  auto a = connect_server(relay);
  CHECK(a->greeting() == listener_lines(relay, 0));
  CHECK(a->public_listener().port == relay.port() + 3);
  CHECK(a->reverse_listener().port == relay.port() + 1);
  auto b = connect_server(relay);
  CHECK(b->greeting() == listener_lines(relay, 1));

  a->disconnect();
  auto c = connect_until_assigned(relay);
  CHECK(c->greeting() == listener_lines(relay, 0));
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("a pair returned to the pool goes to the back of the queue", "[e2e][pool]") {
  relay_process relay(relay_with(6));
  auto a = connect_server(relay);
  CHECK(a->greeting() == listener_lines(relay, 0));
  a->disconnect();

  // Whether or not pair 0 is back yet, it queues behind pairs 1 and 2.
  auto b = connect_server(relay);
  CHECK(b->greeting() == listener_lines(relay, 1));
  auto c = connect_server(relay);
  CHECK(c->greeting() == listener_lines(relay, 2));
  auto d = connect_until_assigned(relay);
  CHECK(d->greeting() == listener_lines(relay, 0));
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("the listener lines name the host given with --myhost", "[e2e][pool]") {
  relay_options options = relay_with(2);
  options.myhost = "relay.example.test";
  relay_process relay(options);
  auto server = connect_server(relay);
  CHECK(server->greeting() == listener_lines(relay, 0, "relay.example.test"));
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("a public or reverse port whose pair has no server answers no controller linked",
          "[e2e][pool]") {
  relay_process relay(relay_with(4));
  const auto answer_of = [](std::uint16_t port) {
    tcp_conn conn = tcp_conn::connect(port);
    return conn.recv_until_eof();
  };
  SECTION("no server at all") {
    CHECK(answer_of(relay.public_port(0)) == "no controller linked");
    CHECK(answer_of(relay.reverse_port(0)) == "no controller linked");
  }
  SECTION("the other pair has a server") {
    auto server = connect_server(relay);
    REQUIRE(server->greeting() == listener_lines(relay, 0));
    CHECK(answer_of(relay.public_port(1)) == "no controller linked");
    CHECK(answer_of(relay.reverse_port(1)) == "no controller linked");
  }
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("a reverse connection with no waiting client is closed without any data",
          "[e2e][pool]") {
  relay_process relay(relay_with(2));
  auto server = connect_server(relay);
  tcp_conn stray = server->open_reverse();
  CHECK_NOTHROW(stray.expect_closed(3s));

  // The stray connection was not kept for the next client.
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  tcp_conn reverse = server->accept_client();
  client.send_all("still works");
  CHECK(reverse.recv_exact(11) == "still works");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("clients are closed when their server's control connection ends", "[e2e][pool]") {
  relay_process relay(relay_with(2));
  auto server = connect_server(relay);

  tcp_conn paired = tcp_conn::connect(server->public_listener().port);
  tcp_conn reverse = server->accept_client();
  paired.send_all("are you there");
  REQUIRE(reverse.recv_exact(13) == "are you there");

  tcp_conn waiting = tcp_conn::connect(server->public_listener().port);
  server->expect_new_connection();  // announced; the server never answers it

  server->disconnect();
  // Well under the relay's 10 s limit for an unanswered client.
  CHECK_NOTHROW(waiting.expect_closed(3s));
  CHECK_NOTHROW(paired.expect_closed(3s));
  CHECK_NOTHROW(reverse.expect_closed(3s));
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
