// `tlsrelay expose` in front of a local echo service, and `tlsrelay connect`
// to what it exposes: what a user types, and what they see (the printed
// address, the bytes, the exit codes).
#include <signal.h>

#include <catch2/catch.hpp>

#include "tests/cli_e2e/cli_test.hpp"
#include "tests/support/test_data.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

namespace {

// A relay whose v2 servers need the token "tok" (or a client certificate).
struct token_relay {
  explicit token_relay(std::vector<std::string> more = {}, unsigned port_count = 4) {
    relay_options o;
    o.port_count = port_count;
    o.extra_args = {"--tokens", write_file(dir.path(), "tokens", "tok\n").string()};
    o.extra_args.insert(o.extra_args.end(), more.begin(), more.end());
    relay = std::make_unique<relay_process>(o);
  }
  temp_dir dir;
  std::unique_ptr<relay_process> relay;
};

std::string local_of(const echo_service& echo) { return "127.0.0.1:" + std::to_string(echo.port()); }
std::string relay_of(std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

// What expose and connect wrote to stderr must not be a sanitizer's report.
#define CHECK_NO_SANITIZER_REPORT(child)                                   \
  do {                                                                     \
    const std::string report = find_sanitizer_output((child).stderr_text()); \
    CHECK(report == "");                                                   \
  } while (false)

}  // namespace

SCENARIO("expose: a client through the printed public address gets its bytes back",
         "[cli][expose]") {
  token_relay r;
  auto& relay = *r.relay;
  io_thread io;
  echo_service echo(io.io());
  auto expose = run_tlsrelay({"expose", local_of(echo), "--relay", relay_of(relay.port()),
                              "--ca", relay.keys_dir() / "ca.crt.pem", "--token", "tok"});
  const auto line = expose->wait_stdout_line("tlsrelay: exposing", default_timeout);
  INFO("expose stderr: " << expose->stderr_text());
  REQUIRE(line.has_value());
  CHECK(*line == "tlsrelay: exposing " + local_of(echo) + " on 127.0.0.1:" +
                   std::to_string(relay.public_port(0)));
  const host_port address = *exposed_address(*line);

  WHEN("clients connect there") {
    auto a = test_client::connect(address);
    auto b = test_client::connect(address);
    const auto payload = random_bytes(512 * 1024, 5);
    CHECK(bytes_diff(payload, a.exchange(payload)) == "");
    CHECK(b.exchange("small") == "small");
    THEN("half-close travels both ways: EOF in, EOF back") {
      a.shutdown_write();
      CHECK(a.recv_until_eof() == "");
      CHECK(echo.accepted() == 2);
    }
  }
  THEN("SIGTERM ends it with exit code 0") {
    CHECK(terminate(*expose) == 0);
    CHECK_NO_SANITIZER_REPORT(*expose);
  }
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("expose --relay twice: the first seed is down, clients get their bytes back through "
         "the second",
         "[cli][expose][seeds]") {
  token_relay r;
  auto& relay = *r.relay;
  io_thread io;
  echo_service echo(io.io());
  refusing_port down;
  auto expose = run_tlsrelay({"expose", local_of(echo), "--relay", relay_of(down.port()),
                              "--relay", relay_of(relay.port()), "--ca",
                              relay.keys_dir() / "ca.crt.pem", "--token", "tok"});
  const auto address = wait_exposed(*expose);
  INFO("expose stderr: " << expose->stderr_text());
  CHECK(address.port == relay.public_port(0));
  auto c = test_client::connect(address);
  const auto payload = random_bytes(256 * 1024, 11);
  CHECK(bytes_diff(payload, c.exchange(payload)) == "");
  // Each seed tried is logged, the dead one with why it was left.
  const std::string log = expose->stderr_text();
  CHECK_THAT(log, Catch::Contains("trying relay " + relay_of(down.port()) + " (seed 1 of 2)") &&
                    Catch::Contains("trying relay " + relay_of(relay.port()) + " (seed 2 of 2)") &&
                    Catch::Contains("relay " + relay_of(down.port()) + " not usable"));
  CHECK(terminate(*expose) == 0);
  CHECK_NO_SANITIZER_REPORT(*expose);
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("expose --help says that --relay is repeatable", "[cli][expose][seeds]") {
  auto help = run_tlsrelay({"expose", "--help"});
  CHECK(exit_code_within(*help) == 0);
  CHECK_THAT(help->stdout_text(),
             Catch::Contains("repeatable: seeds tried in turn on every (re)connect"));
}

SCENARIO("expose --protocol 1 with the server's certificate", "[cli][expose][v1]") {
  relay_process relay;
  io_thread io;
  echo_service echo(io.io());
  const auto keys = relay.keys_dir();
  auto expose = run_tlsrelay({"expose", local_of(echo), "--relay", relay_of(relay.port()),
                              "--protocol", "1", "--ca", keys / "ca.crt.pem", "--cert",
                              keys / "client.crt.pem", "--key", keys / "client.key.pem"});
  const auto address = wait_exposed(*expose);
  CHECK(address.port == relay.public_port(0));
  auto c = test_client::connect(address);
  CHECK(c.exchange("v1 through expose") == "v1 through expose");
  CHECK(terminate(*expose) == 0);
  CHECK_NO_SANITIZER_REPORT(*expose);
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("connect joins stdin and stdout to a service exposed through the relay",
         "[cli][connect]") {
  token_relay r;
  auto& relay = *r.relay;
  io_thread io;
  echo_service echo(io.io());
  auto expose = run_tlsrelay({"expose", local_of(echo), "--relay", relay_of(relay.port()),
                              "--ca", relay.keys_dir() / "ca.crt.pem", "--token", "tok"});
  const auto address = wait_exposed(*expose);
  temp_dir dir;

  WHEN("stdin is a file") {
    const std::string input = random_bytes(300 * 1024, 9);
    const auto file = write_file(dir.path(), "input", input);
    auto connect = run_tlsrelay_with_stdin(file, {"connect", format_host_port(address)});
    THEN("stdout is the echo of all of it, and connect exits 0 once the service closed") {
      CHECK(exit_code_within(*connect, 10000ms) == 0);
      INFO("connect stderr: " << connect->stderr_text());
      CHECK(bytes_diff(input, connect->stdout_text()) == "");
      CHECK_NO_SANITIZER_REPORT(*connect);
    }
  }
  WHEN("stdin is empty (/dev/null)") {
    auto connect = run_tlsrelay({"connect", format_host_port(address)});
    THEN("EOF goes out at once, EOF comes back, exit 0") {
      CHECK(exit_code_within(*connect) == 0);
      CHECK(connect->stdout_text().empty());
    }
  }
  CHECK(terminate(*expose) == 0);
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("expose --tls-cert: end-to-end TLS that connect --tls verifies", "[cli][expose][tls]") {
  token_relay r;
  auto& relay = *r.relay;
  pki service;
  io_thread io;
  echo_service echo(io.io());
  auto expose = run_tlsrelay({"expose", local_of(echo), "--relay", relay_of(relay.port()),
                              "--ca", relay.keys_dir() / "ca.crt.pem", "--token", "tok",
                              "--tls-cert", service.file("server.crt.pem"), "--tls-key",
                              service.file("server.key.pem")});
  const auto address = wait_exposed(*expose);
  temp_dir dir;
  const std::string input = "over TLS, end to end\n";
  const auto file = write_file(dir.path(), "input", input);

  WHEN("connect trusts the service's CA") {
    auto connect = run_tlsrelay_with_stdin(
      file, {"connect", "--tls", "--ca", service.ca(), format_host_port(address)});
    THEN("the echo comes back and connect exits 0") {
      CHECK(exit_code_within(*connect) == 0);
      INFO("connect stderr: " << connect->stderr_text());
      CHECK(connect->stdout_text() == input);
    }
  }
  WHEN("connect trusts another CA") {
    auto connect = run_tlsrelay_with_stdin(
      file, {"connect", "--tls", "--ca", relay.keys_dir() / "ca.crt.pem", format_host_port(address)});
    THEN("it exits 4 with one line saying the certificate was not verified") {
      CHECK(exit_code_within(*connect) == 4);
      CHECK_THAT(connect->stderr_text(), Catch::StartsWith("tlsrelay: error: TLS handshake"));
      CHECK_THAT(connect->stderr_text(), Catch::Contains("certificate verification failed"));
      CHECK(connect->stdout_text().empty());
    }
  }
  WHEN("a plain client talks to it") {
    auto c = test_client::connect(address);
    c.send_all("GET / HTTP/1.0\r\n\r\n");
    THEN("it gets no plaintext answer: the handshake fails and the connection ends") {
      CHECK(c.closed_within());
    }
  }
  CHECK(terminate(*expose) == 0);
  CHECK_NO_SANITIZER_REPORT(*expose);
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("expose reconnects after the relay restarts and goes on serving", "[cli][expose]") {
  pki keys;
  temp_dir dir;
  relay_runner::config config(keys.dir());
  config.extra = {"--tokens", write_file(dir.path(), "tokens", "tok\n").string()};
  relay_runner relay(config);
  io_thread io;
  echo_service echo(io.io());
  auto expose = run_tlsrelay({"expose", local_of(echo), "--relay", relay_of(relay.port()),
                              "--ca", keys.ca(), "--token", "tok", "--name", "svc"});
  const auto address = wait_exposed(*expose);
  {
    auto c = test_client::connect(address);
    CHECK(c.exchange("before") == "before");
  }
  relay.restart();
  // The relay gives the first pair again, so the address is unchanged and
  // not printed again; expose logs each session it establishes.
  INFO("expose stderr: " << expose->stderr_text());
  REQUIRE(wait_stderr_count(*expose, "listening through relay", 2, 15000ms));
  auto c = test_client::connect(address);
  CHECK(c.exchange("after") == "after");
  CHECK(expose->running());
  CHECK(terminate(*expose) == 0);
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("a stopped expose loses its session to the heartbeat and gets its named port back",
         "[cli][expose][heartbeat]") {
  token_relay r({"--heartbeat", "0.2", "--reservation-ttl", "30"});
  auto& relay = *r.relay;
  io_thread io;
  echo_service echo(io.io());
  auto expose = run_tlsrelay({"expose", local_of(echo), "--relay", relay_of(relay.port()),
                              "--ca", relay.keys_dir() / "ca.crt.pem", "--token", "tok",
                              "--name", "svc", "--heartbeat", "0.2"});
  const auto address = wait_exposed(*expose);
  {
    auto c = test_client::connect(address);
    CHECK(c.exchange("before") == "before");
  }
  WHEN("the agent is frozen (SIGSTOP) for longer than three heartbeats") {
    expose->signal(SIGSTOP);
    // The relay says in its log when it gives up on a silent session.
    const auto deadline = steady::now() + 5000ms;
    while (relay.stderr_text().find("heartbeat lost") == std::string::npos &&
           steady::now() < deadline)
      std::this_thread::sleep_for(20ms);
    INFO("relay stderr: " << relay.stderr_text());
    REQUIRE(relay.stderr_text().find("heartbeat lost") != std::string::npos);
    THEN("its public port is kept for the name, with nobody behind it") {
      auto c = test_client::connect(address);
      CHECK(c.recv_until_eof() == "no controller linked");
    }
    AND_WHEN("it runs again") {
      expose->signal(SIGCONT);
      INFO("expose stderr: " << expose->stderr_text());
      REQUIRE(wait_stderr_count(*expose, "listening through relay", 2, 15000ms));
      THEN("it has reconnected with the same public port and serves again") {
        auto c = test_client::connect(address);
        CHECK(c.exchange("after") == "after");
        CHECK(expose->stdout_text().find("exposing") == expose->stdout_text().rfind("exposing"));
      }
    }
    expose->signal(SIGCONT);
  }
  CHECK(terminate(*expose) == 0);
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("expose: a client whose local service is down is closed, expose goes on",
         "[cli][expose]") {
  token_relay r;
  auto& relay = *r.relay;
  refusing_port nothing_there;
  auto expose = run_tlsrelay({"expose", "127.0.0.1:" + std::to_string(nothing_there.port()), "--relay",
                              relay_of(relay.port()), "--ca", relay.keys_dir() / "ca.crt.pem",
                              "--token", "tok"});
  const auto address = wait_exposed(*expose);
  // Paired with a warm connection at once, the client may be reset before
  // this side's connect has even completed: then the reset is the connect's
  // error. Either way the client is closed.
  bool closed = false;
  std::string connect_error;
  try {
    auto c = test_client::connect(address);
    closed = c.closed_within();
  } catch (const io_error& e) {
    connect_error = e.what();
    closed = connect_error.find("reset") != std::string::npos;
  }
  INFO("connect: " << connect_error);
  CHECK(closed);
  CHECK(expose->running());
  CHECK(terminate(*expose) == 0);
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("expose --warm: clients are paired with warm connections, --warm 0 turns them off",
         "[cli][expose][warm]") {
  token_relay r;
  auto& relay = *r.relay;
  io_thread io;
  echo_service echo(io.io());
  auto expose_with = [&](const std::string& warm) {
    return run_tlsrelay({"expose", local_of(echo), "--relay", relay_of(relay.port()), "--ca",
                         relay.keys_dir() / "ca.crt.pem", "--token", "tok", "--warm", warm,
                         "--log-level", "debug"});
  };

  WHEN("expose keeps up to 3 (the relay allows 16)") {
    auto expose = expose_with("3");
    const auto address = wait_exposed(*expose);
    INFO("expose stderr: " << expose->stderr_text());
    THEN("it says so, opens the first two, and a client is paired with one of them") {
      CHECK(wait_stderr_count(*expose, "warm connections: up to 3", 1, default_timeout));
      REQUIRE(wait_stderr_count(*expose, "open (pool", 2, default_timeout));
      // The relay takes reverse connections in in arrival order: once one
      // opened after the two warm ones, with an id nobody was given, is
      // refused, the warm ones are in its pool.
      auto probe = test_client::connect("127.0.0.1", relay.reverse_port(0));
      probe.send_all("accept " + std::string(32, '0') + "\r\n");
      REQUIRE(probe.closed_within());
      auto c = test_client::connect(address);
      CHECK(c.exchange("warm through expose") == "warm through expose");
      CHECK(wait_stderr_count(*expose, "paired with warm connection", 1, default_timeout));
    }
    CHECK(terminate(*expose) == 0);
    CHECK_NO_SANITIZER_REPORT(*expose);
  }
  WHEN("expose keeps none (--warm 0)") {
    auto expose = expose_with("0");
    const auto address = wait_exposed(*expose);
    auto c = test_client::connect(address);
    CHECK(c.exchange("cold through expose") == "cold through expose");
    CHECK(terminate(*expose) == 0);
    THEN("clients still come, through new_connection, and no warm connection was opened") {
      const std::string err = expose->stderr_text();
      INFO("expose stderr: " << err);
      CHECK_THAT(err, Catch::Contains("warm connections: off"));
      CHECK_THAT(err, !Catch::Contains("warm connections: up to"));
      CHECK_THAT(err, !Catch::Contains("paired with warm connection"));
    }
    CHECK_NO_SANITIZER_REPORT(*expose);
  }
  WHEN("--warm is not a count the protocol allows") {
    const auto value = GENERATE(as<std::string>{}, "-1", "1025", "many");
    auto expose = expose_with(value);
    THEN("it is a usage error (exit code 2)") {
      INFO("--warm " << value);
      CHECK(exit_code_within(*expose) == 2);
      CHECK_THAT(expose->stderr_text(), Catch::StartsWith("tlsrelay: error:"));
    }
  }
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("expose: the first connection fails: one line on stderr and a distinct exit code",
         "[cli][expose][errors]") {
  io_thread io;
  echo_service echo(io.io());
  const std::string local = local_of(echo);

  GIVEN("nothing listening where the relay should be") {
    pki keys;
    refusing_port nothing;
    auto expose = run_tlsrelay({"expose", local, "--relay", relay_of(nothing.port()), "--ca", keys.ca(),
                                "--token", "tok"});
    THEN("exit code 3") {
      CHECK(exit_code_within(*expose) == 3);
      CHECK_THAT(expose->stderr_text(), Catch::StartsWith("tlsrelay: error: relay unreachable"));
      CHECK(expose->stdout_text().empty());
    }
  }
  GIVEN("a relay and a CA that did not sign its certificate") {
    token_relay r;
    pki foreign;
    auto expose = run_tlsrelay({"expose", local, "--relay", relay_of(r.relay->port()), "--ca",
                                foreign.ca(), "--token", "tok"});
    THEN("exit code 4") {
      CHECK(exit_code_within(*expose) == 4);
      CHECK_THAT(expose->stderr_text(), Catch::Contains("certificate verification failed"));
    }
    CHECK_STOPS_CLEANLY(*r.relay);
  }
  GIVEN("a relay and a token it does not know") {
    token_relay r;
    auto expose = run_tlsrelay({"expose", local, "--relay", relay_of(r.relay->port()), "--ca",
                                r.relay->keys_dir() / "ca.crt.pem", "--token", "not-the-token"});
    THEN("exit code 5") {
      CHECK(exit_code_within(*expose, 10000ms) == 5);
      CHECK_THAT(expose->stderr_text(), Catch::Contains("auth_failed"));
    }
    CHECK_STOPS_CLEANLY(*r.relay);
  }
  GIVEN("a v1 relay and no client certificate") {
    relay_process relay;
    auto expose = run_tlsrelay({"expose", local, "--relay", relay_of(relay.port()), "--protocol",
                                "1", "--ca", relay.keys_dir() / "ca.crt.pem"});
    THEN("exit code 5") { CHECK(exit_code_within(*expose) == 5); }
    CHECK_STOPS_CLEANLY(relay);
  }
  GIVEN("a relay whose only pair is taken") {
    token_relay r({}, 2);
    auto first = run_tlsrelay({"expose", local, "--relay", relay_of(r.relay->port()), "--ca",
                               r.relay->keys_dir() / "ca.crt.pem", "--token", "tok"});
    wait_exposed(*first);
    auto second = run_tlsrelay({"expose", local, "--relay", relay_of(r.relay->port()), "--ca",
                                r.relay->keys_dir() / "ca.crt.pem", "--token", "tok"});
    THEN("the second gets exit code 6") {
      CHECK(exit_code_within(*second) == 6);
      CHECK_THAT(second->stderr_text(), Catch::Contains("no free port pair"));
    }
    CHECK(terminate(*first) == 0);
    CHECK_STOPS_CLEANLY(*r.relay);
  }
  GIVEN("a relay and a public port outside its pool") {
    token_relay r;
    auto expose = run_tlsrelay({"expose", local, "--relay", relay_of(r.relay->port()), "--ca",
                                r.relay->keys_dir() / "ca.crt.pem", "--token", "tok", "--port",
                                std::to_string(r.relay->port())});
    THEN("exit code 6") { CHECK(exit_code_within(*expose) == 6); }
    CHECK_STOPS_CLEANLY(*r.relay);
  }
}

SCENARIO("expose and connect: bad flag values are usage errors (exit code 2)",
         "[cli][errors]") {
  // Neither CA path below is ever read: the flags are refused first.
  const auto args = GENERATE(values<std::vector<std::string>>({
    {"expose", "127.0.0.1:1", "--relay", "no-port-here"},
    {"expose", "127.0.0.1:1", "--relay", "127.0.0.1:12000", "--relay", "no-port-here"},
    {"expose", "localhost", "--relay", "127.0.0.1:12000"},
    {"expose", "127.0.0.1:1", "--relay", "127.0.0.1:12000", "--protocol", "3"},
    {"expose", "127.0.0.1:1", "--relay", "127.0.0.1:12000", "--tls-cert", "x.pem"},
    {"expose", "127.0.0.1:1", "--relay", "127.0.0.1:12000", "--ca", "/nonexistent/ca.pem"},
    {"expose", "127.0.0.1:1", "--relay", "127.0.0.1:12000", "--name", "Not_A_Name"},
    {"expose", "127.0.0.1:1", "--relay", "127.0.0.1:12000", "--protocol", "1", "--token", "t"},
    {"expose", "127.0.0.1:1", "--relay", "127.0.0.1:12000", "--insecure", "--ca", "ca.pem"},
    {"connect", "no-port-here"},
    {"connect", "127.0.0.1:1", "--ca", "ca.pem"},
  }));
  auto child = run_tlsrelay(args);
  std::string command;
  for (const auto& a : args) command += a + " ";
  INFO("tlsrelay " << command);
  CHECK(exit_code_within(*child) == 2);
  CHECK_THAT(child->stderr_text(), Catch::StartsWith("tlsrelay: error:"));
}

SCENARIO("connect: exit code 3 when nothing listens, 4 when TLS fails", "[cli][connect][errors]") {
  io_thread io;
  echo_service echo(io.io());
  WHEN("nothing listens") {
    refusing_port nothing;
    auto connect = run_tlsrelay({"connect", "127.0.0.1:" + std::to_string(nothing.port())});
    THEN("exit 3") {
      CHECK(exit_code_within(*connect) == 3);
      CHECK_THAT(connect->stderr_text(), Catch::StartsWith("tlsrelay: error: cannot connect"));
    }
  }
  WHEN("the peer does not speak TLS") {
    pki keys;
    auto connect = run_tlsrelay({"connect", "--tls", "--ca", keys.ca(), "--timeout", "3",
                                 local_of(echo)});
    THEN("exit 4") { CHECK(exit_code_within(*connect) == 4); }
  }
}
