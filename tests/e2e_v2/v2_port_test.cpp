// `hello 2 port=P` asks for one public port of the pool; a token holds at most
// --max-sessions-per-token sessions at once.
#include <thread>

#include "tests/e2e_v2/e2e_v2.hpp"

using namespace tlsrelay::test;

TEST_CASE("v2: port= is granted when that public port is free and refused with port_unavailable "
          "when it is taken or not in the pool",
          "[e2e][v2][port]") {
  relay_process relay(v2_relay(6));
  const auto wanted = relay.public_port(2);  // not the one the queue would give first

  auto first = v2_server_with_certificate(relay);
  first->greet(hello_with("", "", wanted));
  CHECK(first->public_listener().port == wanted);
  CHECK(first->reverse_listener().port == relay.reverse_port(2));

  struct attempt {
    const char* what;
    std::uint16_t port;
  };
  const attempt refused_ports[] = {
      {"the same port again, taken", wanted},
      {"the control port", relay.port()},
      {"a reverse port", relay.reverse_port(0)},
      {"the port just above the pool", static_cast<std::uint16_t>(relay.public_port(2) + 1)},
  };
  for (const auto& a : refused_ports) {
    INFO(a.what << ": port=" << a.port);
    auto server = v2_server_with_certificate(relay);
    const auto answer = server->say_hello(hello_with("", "", a.port));
    INFO("answer: " << printable(answer.first_line.value_or("<closed>")));
    CHECK_FALSE(answer.welcomed);
    CHECK(error_code_of(answer) == "port_unavailable");
    CHECK(answer.closed_after_refusal);
  }

  // The refusals took nothing: a nameless server gets the first pair.
  auto nameless = v2_server_with_certificate(relay);
  nameless->greet(hello_with());
  CHECK(nameless->public_listener().port == relay.public_port(0));

  // And the granted port really is the first server's.
  first->serve_echo();
  tcp_conn client = tcp_conn::connect(wanted);
  CHECK(client.exchange("port by request", 15) == "port by request");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: with --max-sessions-per-token 1 a token's second session gets too_many_sessions",
          "[e2e][v2][port][auth]") {
  temp_file tokens("tokens", "token-one-aaaa\ntoken-two-bbbb\n");
  relay_process relay(
      v2_relay(6, {"--tokens", tokens.str(), "--max-sessions-per-token", "1"}));

  auto first = v2_server_without_certificate(relay);
  first->greet(hello_with("token-one-aaaa"));

  auto second = v2_server_without_certificate(relay);
  const auto answer = second->say_hello(hello_with("token-one-aaaa"));
  INFO("answer: " << printable(answer.first_line.value_or("<closed>")));
  CHECK_FALSE(answer.welcomed);
  CHECK(error_code_of(answer) == "too_many_sessions");
  CHECK(answer.closed_after_refusal);

  // The limit is per token.
  auto other = v2_server_without_certificate(relay);
  CHECK(other->say_hello(hello_with("token-two-bbbb")).welcomed);

  // Once the first session has ended the token may open one again.
  first->disconnect();
  const auto deadline = steady::now() + 3s;
  for (;;) {
    auto again = v2_server_without_certificate(relay);
    const auto retry = again->say_hello(hello_with("token-one-aaaa"));
    if (retry.welcomed) break;
    INFO("answer: " << printable(retry.first_line.value_or("<closed>")));
    REQUIRE(error_code_of(retry) == "too_many_sessions");
    REQUIRE(steady::now() < deadline);
    std::this_thread::sleep_for(20ms);
  }
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
