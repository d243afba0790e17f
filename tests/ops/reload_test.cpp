// Reload (SIGHUP): the tokens file, the keys directory and the config file
// are read again without dropping a session or a joined pair; a removed token
// ends its sessions with `error auth_failed token revoked`; a file that does
// not load is refused and the running configuration stays; settings that
// need a restart are named in the log and not applied.
#include <fstream>
#include <sstream>

#include "tests/e2e_v2/e2e_v2.hpp"
#include "tests/ops/ops.hpp"

using namespace tlsrelay::test;
using Catch::Matchers::Contains;

TEST_CASE("reload: a token added to the tokens file is admitted while a session's 5 MB "
          "transfer goes on", "[ops][reload]") {
  const temp_file tokens("tokens", "token-one name=web\n");
  relay_process relay(v2_relay(4, {"--tokens", tokens.str()}));
  auto server = v2_server_without_certificate(relay);
  server->greet(hello_with("token-one", "web"));
  server->serve_echo();
  auto client = tcp_conn::connect(server->public_listener().port);

  const auto data = random_bytes(5 * MiB, 10);
  const auto half = data.size() / 2;
  const auto first = client.exchange(std::string_view(data).substr(0, half), half);
  CHECK(bytes_diff(data.substr(0, half), first) == "");

  // Before the reload the new token is refused...
  {
    auto early = v2_server_without_certificate(relay);
    CHECK(error_code_of(early->say_hello(hello_with("token-two"))) == "auth_failed");
  }
  replace_file(tokens.path(), "token-one name=web\ntoken-two\n");
  const auto outcome = reload(relay);
  CHECK_THAT(outcome, Contains("reloaded"));
  CHECK_THAT(outcome, Contains("2 token(s)"));
  // ...after it, it is admitted,
  auto newcomer = v2_server_without_certificate(relay);
  newcomer->greet(hello_with("token-two"));
  // and the pair joined before the reload carries the rest, byte for byte.
  const auto second = client.exchange(std::string_view(data).substr(half), data.size() - half);
  CHECK(bytes_diff(data.substr(half), second) == "");
  CHECK_FALSE(server->control_ended());
  CHECK(server->errors().empty());

  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("reload: a token removed from the tokens file ends its session with error "
          "auth_failed token revoked", "[ops][reload]") {
  const temp_file tokens("tokens", "token-one\ntoken-two\n");
  relay_process relay(v2_relay(6, {"--tokens", tokens.str()}));
  auto revoked = v2_server_without_certificate(relay);
  revoked->greet(hello_with("token-one"));
  auto kept = v2_server_without_certificate(relay);
  kept->greet(hello_with("token-two"));
  // A session by certificate does not depend on the token table.
  auto by_certificate = v2_server_with_certificate(relay);
  by_certificate->greet(hello_with("token-two"));

  replace_file(tokens.path(), "# token-one is gone\ntoken-two\n");
  const auto outcome = reload(relay);
  CHECK_THAT(outcome, Contains("reloaded"));
  CHECK_THAT(outcome, Contains("1 session(s) with a removed token ended"));

  CHECK(revoked->read_line() == std::optional<std::string>("error auth_failed token revoked"));
  CHECK(revoked->read_line() == std::nullopt);  // and the relay closed it
  wait_for_no_controller_linked(revoked->public_listener().port);
  // The other sessions go on.
  CHECK(kept->ping_pong().empty());
  CHECK(by_certificate->ping_pong().empty());
  // The removed token no longer opens a session.
  auto again = v2_server_without_certificate(relay);
  CHECK(error_code_of(again->say_hello(hello_with("token-one"))) == "auth_failed");

  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("reload: a broken config, tokens or key file is refused and the running "
          "configuration stays", "[ops][reload]") {
  const temp_file tokens("tokens", "token-one\n");
  const temp_file config("relay.toml", "tokens = \"" + tokens.str() + "\"\n");
  relay_process relay(v2_relay(4, {"--config", config.str()}));
  const auto certificate = fingerprint_sha256_hex(relay.keys_dir() / "server.crt.pem");
  {
    auto before = v2_server_without_certificate(relay);
    before->greet(hello_with("token-one"));
  }

  SECTION("a config file with a wrong type") {
    replace_file(config.path(), "# now broken\ntokens = 5\n");
    const auto outcome = reload(relay);
    CHECK_THAT(outcome, Contains("reload refused"));
    CHECK_THAT(outcome, Contains(config.str() + ":2:"));
    CHECK_THAT(outcome, Contains("\"tokens\""));
  }
  SECTION("a tokens file that does not parse (and would add a token)") {
    replace_file(tokens.path(), "token-one\ntoken-two bogus-field\n");
    const auto outcome = reload(relay);
    CHECK_THAT(outcome, Contains("reload refused"));
    CHECK_THAT(outcome, Contains(tokens.str()));
    CHECK_THAT(outcome, Contains("line 2"));
    auto refused = v2_server_without_certificate(relay);
    CHECK(error_code_of(refused->say_hello(hello_with("token-two"))) == "auth_failed");
  }
  SECTION("a key file that is not a key") {
    replace_file(relay.keys_dir() / "server.key.pem", "not a key\n");
    const auto outcome = reload(relay);
    CHECK_THAT(outcome, Contains("reload refused"));
    CHECK_THAT(outcome, Contains("server.key.pem"));
  }
  // Whatever was refused, the relay goes on as before: same certificate, same token.
  CHECK(occurrences(relay.stderr_text(), "reload refused") == 1);
  CHECK(presented_certificate_sha256(relay.port()) == certificate);
  auto after = v2_server_without_certificate(relay);
  after->greet(hello_with("token-one"));

  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("reload: new certificates and CA are used by the next handshake, a session from "
          "before goes on", "[ops][reload]") {
  relay_process relay(relay_with(4));
  const auto old_certificate = fingerprint_sha256_hex(relay.keys_dir() / "server.crt.pem");
  CHECK(presented_certificate_sha256(relay.port()) == old_certificate);
  auto server = connect_server(relay);  // TLS with the old certificates
  server->serve_echo();

  const pki fresh;  // another CA, relay certificate and server certificate
  for (const char* file : {"ca.crt.pem", "server.crt.pem", "server.key.pem"})
    replace_file(relay.keys_dir() / file, read_text(fresh.file(file)));
  CHECK_THAT(reload(relay), Contains("reloaded"));

  const auto new_certificate = fingerprint_sha256_hex(fresh.file("server.crt.pem"));
  REQUIRE(new_certificate != old_certificate);
  CHECK(presented_certificate_sha256(relay.port()) == new_certificate);
  // The session from before still relays.
  auto client = tcp_conn::connect(relay.public_port(0));
  CHECK(client.exchange("still relayed", 13) == "still relayed");
  // The new CA decides who may connect: a server certificate it signed is
  // accepted, the one the old CA signed is not.
  v1_test_server newcomer(relay.port(), fresh.dir());
  newcomer.greet();
  CHECK(newcomer.public_listener().port == relay.public_port(1));
  const tls_identity old_identity{fresh.ca(), relay.keys_dir() / "client.crt.pem",
                                  relay.keys_dir() / "client.key.pem"};
  CHECK_THROWS_AS(
    [&] {
      v1_test_server stale(relay.port(), old_identity);
      stale.greet();
    }(),
    io_error);

  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("reload: the log level changes at once, a setting that needs a restart is named "
          "and not applied", "[ops][reload]") {
  const temp_file config("relay.toml", "log-level = \"info\"\nmyhost = \"one.example\"\n");
  relay_options options = relay_with(4);
  options.log_level = "";  // from the file
  options.extra_args = {"--config", config.str()};
  relay_process relay(options);
  auto server = connect_server(relay);  // holds pair 0; pair 1 has no session
  const std::string debug_line = "no controller linked";  // logged at debug only
  CHECK(answer_of(relay.public_port(1)) == "no controller linked");
  CHECK(occurrences(relay.stderr_text(), debug_line) == 0);

  replace_file(config.path(), "log-level = \"debug\"\nmyhost = \"two.example\"\n");
  const auto outcome = reload(relay);
  CHECK_THAT(outcome, Contains("reloaded"));
  CHECK_THAT(outcome, Contains("log level debug"));
  CHECK_THAT(relay.stderr_text(),
             Contains("changed in " + config.str() + " but ignored until restart: --myhost"));

  CHECK(answer_of(relay.public_port(1)) == "no controller linked");
  // Logged before the answer was sent; the test reads stderr through a pipe.
  CHECK(relay.wait_for_log(debug_line));
  // The pool was not rebuilt and servers are still told the host of the start.
  server->disconnect();
  wait_for_no_controller_linked(relay.public_port(0));
  auto next = connect_server(relay);
  CHECK(next->public_listener().host == "one.example");

  CHECK_RELAY_STOPS_CLEANLY(relay);
}
