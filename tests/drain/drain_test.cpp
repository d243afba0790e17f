// SIGTERM drains the relay: no new session or client, v2 servers told
// `error draining`, joined pairs finish (up to --drain-timeout), exit 0.
#include <csignal>
#include <future>

#include "tests/drain/drain_test.hpp"
#include "tests/support/v2_test_server.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;
using Catch::Matchers::Contains;

namespace {

// A joined pair: a v1 server, a client on its public port and the reverse
// connection the server opened for it, one byte each way through.
struct v1_pair {
  explicit v1_pair(const relay_process& relay)
      : server(connect_server(relay)),
        client(tcp_conn::connect(server->public_listener().port)),
        reverse(server->accept_client()) {
    client.send_all("?");
    REQUIRE(reverse.recv_exact(1) == "?");
    reverse.send_all("!");
    REQUIRE(client.recv_exact(1) == "!");
  }
  std::unique_ptr<v1_test_server> server;
  tcp_conn client;
  tcp_conn reverse;
};

}  // namespace

TEST_CASE("drain: an in-flight 5 MB transfer through a v1 server completes byte-exact while the "
          "relay drains, new clients are refused, then the relay exits 0",
          "[drain][e2e]") {
  relay_process relay(draining_relay("20"));
  v1_pair pair(relay);
  const auto up = random_bytes(5 * MiB, 41);
  const auto down = random_bytes(5 * MiB, 42);
  // The first megabyte each way before the signal: the transfer is under way.
  pair.client.send_all(std::string_view(up).substr(0, MiB));
  REQUIRE(bytes_diff(up.substr(0, MiB), pair.reverse.recv_exact(MiB)) == "");
  pair.reverse.send_all(std::string_view(down).substr(0, MiB));
  REQUIRE(bytes_diff(down.substr(0, MiB), pair.client.recv_exact(MiB)) == "");

  relay.signal(SIGTERM);
  REQUIRE(wait_for_log(relay, ports_closed_line));

  // A new client and a new server are refused at once, not kept waiting.
  CHECK_FALSE(accepts_connections(relay.public_port(0), 2000ms));
  CHECK_FALSE(accepts_connections(relay.public_port(1), 2000ms));
  CHECK_FALSE(accepts_connections(relay.port(), 2000ms));

  // The rest of the transfer goes through, byte-exact, and the relay exits 0 after it.
  {
    auto upstream = std::async(std::launch::async,
                               [&] { return pair.reverse.recv_exact(4 * MiB, 30000ms); });
    pair.client.send_all(std::string_view(up).substr(MiB), 30000ms);
    pair.client.shutdown_write();
    CHECK(bytes_diff(up.substr(MiB), upstream.get()) == "");
    CHECK(pair.reverse.recv_until_eof() == "");  // the client's EOF, passed on
    CHECK(relay.running());  // half the pair is still open: the drain waits

    auto downstream = std::async(std::launch::async,
                                 [&] { return pair.client.recv_until_eof(30000ms); });
    pair.reverse.send_all(std::string_view(down).substr(MiB), 30000ms);
    pair.reverse.shutdown_write();
    CHECK(bytes_diff(down.substr(MiB), downstream.get()) == "");
    const auto pair_done = steady::now();

    const auto code = relay.wait_exit(5000ms);
    INFO("relay stderr: " << relay.stderr_text());
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    CHECK(ms_since(pair_done) < 2000);  // at the pair's end, not at the drain timeout
    CHECK_NO_SANITIZER_OUTPUT(relay);
    CHECK_THAT(relay.stderr_text(), Contains("drain complete") &&
                                      Contains("1 pair(s) finished during the drain, none cut"));
    // v1 has no line for it: the server sees its control connection close.
    CHECK(pair.server->read_line(2000ms) == std::nullopt);
  }
}

SCENARIO("drain: a v2 server is told `error draining` and its control connection closed while "
         "its joined pair runs on",
         "[drain][e2e][v2]") {
  relay_process relay(draining_relay("20"));
  v2_test_server server(relay.port(), v2_test_server::with_certificate(relay.keys_dir()));
  server.greet(v2::hello{});
  tcp_conn client = tcp_conn::connect(server.public_listener().port);
  tcp_conn reverse = server.accept_client();
  client.send_all("before");
  REQUIRE(reverse.recv_exact(6) == "before");

  relay.signal(SIGTERM);
  const auto message = server.read_message(5000ms);
  const auto* error = std::get_if<v2::error>(&message);
  REQUIRE(error != nullptr);
  CHECK(error->code == v2::error_code::draining);
  CHECK(server.read_until_closed(5000ms) == "");

  client.send_all("after");
  CHECK(reverse.recv_exact(5) == "after");
  reverse.send_all("back");
  CHECK(client.recv_exact(4) == "back");
  CHECK(relay.running());

  client.close();
  reverse.close();
  const auto code = relay.wait_exit(5000ms);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK_NO_SANITIZER_OUTPUT(relay);
}

SCENARIO("drain: with no pair open, SIGTERM ends the drain at once: v2 servers hear `error "
         "draining`, v1 servers see their connection close, exit 0",
         "[drain][e2e]") {
  relay_process relay(draining_relay("30"));
  auto v1 = connect_server(relay);
  v2_test_server v2(relay.port(), v2_test_server::with_certificate(relay.keys_dir()));
  v2.greet(v2::hello{});

  const auto sent_at = steady::now();
  relay.signal(SIGTERM);
  const auto code = relay.wait_exit(2000ms);
  INFO("relay stderr: " << relay.stderr_text());
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(ms_since(sent_at) < 2000);
  CHECK_NO_SANITIZER_OUTPUT(relay);
  const auto message = v2.read_message(2000ms);
  const auto* error = std::get_if<v2::error>(&message);
  REQUIRE(error != nullptr);
  CHECK(error->code == v2::error_code::draining);
  CHECK(v1->read_line(2000ms) == std::nullopt);
}

SCENARIO("drain: --drain-timeout cuts a pair that never ends: the pair is reset and the relay "
         "exits 0 at the timeout",
         "[drain][e2e]") {
  relay_process relay(draining_relay("2"));
  v1_pair pair(relay);
  const auto sent_at = steady::now();
  relay.signal(SIGTERM);
  const auto code = relay.wait_exit(6000ms);
  const auto took = ms_since(sent_at);
  INFO("relay stderr: " << relay.stderr_text() << "\ntook " << took << " ms");
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(took >= 1900);  // it waited for the pair...
  CHECK(took < 4500);   // ...until the timeout, and a little more
  CHECK_NO_SANITIZER_OUTPUT(relay);
  CHECK_THAT(relay.stderr_text(), Contains("drain timeout (2 s) reached") &&
                                      Contains("1 still relaying are cut"));
  // Cut, not ended: both peers learn the stream did not finish.
  CHECK(reset_within(pair.client, 2000ms));
  CHECK(reset_within(pair.reverse, 2000ms));
}

SCENARIO("drain: a second SIGTERM during the drain stops the relay at once with exit code 0",
         "[drain][e2e]") {
  relay_process relay(draining_relay("30"));
  v1_pair pair(relay);
  relay.signal(SIGTERM);
  REQUIRE(wait_for_log(relay, ports_closed_line));
  const auto sent_at = steady::now();
  relay.signal(SIGTERM);
  const auto code = relay.wait_exit(3000ms);
  INFO("relay stderr: " << relay.stderr_text());
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(ms_since(sent_at) < 1500);
  CHECK_NO_SANITIZER_OUTPUT(relay);
  CHECK_THAT(relay.stderr_text(), Contains("received SIGTERM again: stopping now"));
  CHECK(reset_within(pair.client, 2000ms));
}

SCENARIO("drain: SIGINT drains as SIGTERM does", "[drain][e2e]") {
  relay_process relay(draining_relay("30"));
  v1_pair pair(relay);
  relay.signal(SIGINT);
  REQUIRE(wait_for_log(relay, ports_closed_line));
  CHECK_FALSE(accepts_connections(relay.public_port(0), 2000ms));
  pair.client.close();
  pair.reverse.close();
  const auto code = relay.wait_exit(3000ms);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK_NO_SANITIZER_OUTPUT(relay);
}

SCENARIO("drain: --drain-timeout 0 keeps the quick exit: SIGTERM stops at once, pair or not",
         "[drain][e2e]") {
  relay_process relay(draining_relay("0"));
  v1_pair pair(relay);
  const auto sent_at = steady::now();
  relay.signal(SIGTERM);
  const auto code = relay.wait_exit(3000ms);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(ms_since(sent_at) < 1500);
  CHECK_NO_SANITIZER_OUTPUT(relay);
  CHECK_THAT(relay.stderr_text(), !Contains("draining"));
  CHECK_NOTHROW(pair.client.expect_closed(2000ms));
}

SCENARIO("drain: a client waiting when the drain begins is still joined: the reverse port keeps "
         "working for it",
         "[drain][e2e]") {
  relay_process relay(draining_relay("20"));
  auto server = connect_server(relay);
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  server->expect_new_connection();

  relay.signal(SIGTERM);
  REQUIRE(wait_for_log(relay, ports_closed_line));
  CHECK_FALSE(accepts_connections(relay.public_port(0), 2000ms));

  tcp_conn reverse = server->open_reverse();
  client.send_all("late but welcome");
  CHECK(reverse.recv_exact(16) == "late but welcome");
  reverse.send_all("ok");
  CHECK(client.recv_exact(2) == "ok");
  CHECK(relay.running());

  client.close();
  reverse.close();
  const auto code = relay.wait_exit(5000ms);
  INFO("relay stderr: " << relay.stderr_text());
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK_NO_SANITIZER_OUTPUT(relay);
  CHECK_THAT(relay.stderr_text(), Contains("1 pair(s) finished during the drain, none cut"));
}
