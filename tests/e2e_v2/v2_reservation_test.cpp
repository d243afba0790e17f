// A v2 name keeps its public port after its session ends, for
// --reservation-ttl; with --state the reservations survive a restart. A
// corrupt state file or a bad tokens file stops the relay from starting.
#include <thread>

#include "tests/e2e_v2/e2e_v2.hpp"

using namespace tlsrelay::test;
using Catch::Matchers::Contains;

namespace {

// A nameless server that is welcomed: retried while the relay answers
// no_available_listeners, until `timeout`; `refusals` counts the retries.
std::unique_ptr<v2_test_server> nameless_until_welcomed(const relay_process& relay,
                                                        millis timeout, int& refusals) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    auto server = v2_server_with_certificate(relay);
    const auto answer = server->say_hello(hello_with());
    if (answer.welcomed) return server;
    if (!answer.no_available_listeners)
      throw io_error("a nameless server was answered " +
                     printable(answer.first_line.value_or("<closed>")));
    ++refusals;
    if (steady::now() >= deadline)
      throw io_error("nameless servers were still told no_available_listeners after " +
                     std::to_string(timeout.count()) + " ms");
    std::this_thread::sleep_for(20ms);
  }
}

}  // namespace

TEST_CASE("v2: a name gets its public port back after its server left, and nameless servers "
          "get other ports meanwhile",
          "[e2e][v2][reservation]") {
  relay_process relay(v2_relay(4));
  auto web = v2_server_with_certificate(relay);
  web->greet(hello_with("", "web"));
  const auto x = web->public_listener().port;
  CHECK(x == relay.public_port(0));

  auto other = v2_server_with_certificate(relay);
  other->greet(hello_with());
  CHECK(other->public_listener().port != x);

  web->disconnect();
  REQUIRE_NOTHROW(wait_for_no_controller_linked(x));  // the relay has let the session go

  // The only free-looking pair is web's: a nameless newcomer may not take it.
  auto nameless = v2_server_with_certificate(relay);
  const auto refused = nameless->say_hello(hello_with());
  INFO("nameless newcomer: " << printable(refused.first_line.value_or("<closed>")));
  CHECK(refused.no_available_listeners);

  auto web_again = v2_server_with_certificate(relay);
  web_again->greet(hello_with("", "web"));
  CHECK(web_again->public_listener().port == x);
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: after --reservation-ttl a name's public port returns to the pool",
          "[e2e][v2][reservation]") {
  // One pair: whether a nameless server is served says whether it is reserved.
  relay_process relay(v2_relay(2, {"--reservation-ttl", "0.3"}));
  auto web = v2_server_with_certificate(relay);
  web->greet(hello_with("", "web"));
  const auto x = web->public_listener().port;

  const auto left = steady::now();
  web->disconnect();
  int refusals = 0;
  auto nameless = nameless_until_welcomed(relay, 5s, refusals);
  const auto after = std::chrono::duration_cast<millis>(steady::now() - left);
  INFO("a nameless server got a port " << after.count() << " ms after web left ("
                                       << refusals << " told no_available_listeners before)");
  CHECK(nameless->public_listener().port == x);
  CHECK(after >= 280ms);   // not before the reservation lapsed (ms rounding aside)
  CHECK(after <= 3000ms);  // but soon after
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: with --state a name keeps its public port across a relay restart",
          "[e2e][v2][reservation]") {
  const pki keys;
  temp_file state("relay.state");
  std::uint16_t control_port = 0, x = 0, other_port = 0;
  {
    relay_process relay(keys.dir(), v2_relay(4, {"--state", state.str()}));
    control_port = relay.port();
    other_port = relay.public_port(1);
    auto web = v2_server_with_certificate(relay);
    web->greet(hello_with("", "web"));
    x = web->public_listener().port;
    REQUIRE(x == relay.public_port(0));
    CHECK_RELAY_STOPS_CLEANLY(relay);  // with web still connected
  }
  const std::string saved = state.read();
  INFO("state file: " << printable(saved, 400));
  CHECK_THAT(saved, Contains("reservation web " + std::to_string(x) + " "));

  // Same ports, same keys, same state file. (relay_process picks its own
  // ports, and a second --port in extra_args is refused by the CLI.)
  hand_run_relay restarted({"--listen", "127.0.0.1", "--port", std::to_string(control_port),
                            "--port-count", "4", "--keys", keys.dir().string(), "--state",
                            state.str()});
  {
    v2_test_server nameless(control_port, v2_test_server::with_certificate(keys.dir()));
    nameless.greet(hello_with());
    CHECK(nameless.public_listener().port != x);
    CHECK(nameless.public_listener().port == other_port);

    v2_test_server web(control_port, v2_test_server::with_certificate(keys.dir()));
    web.greet(hello_with("", "web"));
    CHECK(web.public_listener().port == x);
  }
  const std::string stop_problems = restarted.stop();
  CHECK(stop_problems == "");
}

TEST_CASE("v2: a corrupt --state file stops the relay from starting, naming the file and the line",
          "[e2e][v2][reservation][startup]") {
  const pki keys;
  const std::uint16_t port = pick_free_port_range(2);
  temp_file state("relay.state",
                  "tlsrelay-state 1\n"
                  "reservation web " + std::to_string(port + 2) + " 0 -\n"
                  "reservation api not-a-port 0 -\n");
  const auto attempt = run_serve_expecting_refusal(
      {"--listen", "127.0.0.1", "--port", std::to_string(port), "--port-count", "2", "--keys",
       keys.dir().string(), "--state", state.str()});
  INFO("stderr: " << printable(attempt.stderr_text, 2000));
  CHECK(attempt.exit_code == 2);
  CHECK_THAT(attempt.stderr_text, Contains("tlsrelay: error:"));
  CHECK_THAT(attempt.stderr_text, Contains(state.str()));
  CHECK_THAT(attempt.stderr_text, Contains("line 3"));
  CHECK_THAT(attempt.stdout_text, !Contains("tlsrelay: listening"));
  CHECK_FALSE(accepts_connections(port));
  CHECK_NO_SANITIZER_OUTPUT(attempt.stderr_text);
}

TEST_CASE("v2: a --tokens file with a bad line stops the relay from starting, naming the line "
          "but never a token",
          "[e2e][v2][auth][startup]") {
  const pki keys;
  const std::uint16_t port = pick_free_port_range(2);
  const std::string first_token = "first-secret-token-1234";
  const std::string second_token = "second-secret-token-5678";
  temp_file tokens("tokens", first_token + " name=web\n" + second_token + " name=Not_A_Name\n");
  const auto attempt = run_serve_expecting_refusal(
      {"--listen", "127.0.0.1", "--port", std::to_string(port), "--port-count", "2", "--keys",
       keys.dir().string(), "--tokens", tokens.str()});
  INFO("stderr: " << printable(attempt.stderr_text, 2000));
  CHECK(attempt.exit_code == 2);
  CHECK_THAT(attempt.stderr_text, Contains("--tokens"));
  CHECK_THAT(attempt.stderr_text, Contains(tokens.str()));
  CHECK_THAT(attempt.stderr_text, Contains("line 2"));
  CHECK_THAT(attempt.stderr_text, !Contains(first_token));
  CHECK_THAT(attempt.stderr_text, !Contains(second_token));
  CHECK_THAT(attempt.stdout_text, !Contains(second_token));
  CHECK_THAT(attempt.stdout_text, !Contains("tlsrelay: listening"));
  CHECK_FALSE(accepts_connections(port));
  CHECK_NO_SANITIZER_OUTPUT(attempt.stderr_text);
}
