// A name belongs to one identity: the token that took it, or without tokens
// the client certificate (its SHA-256 fingerprint). Another holder of a
// certificate of the same CA, or of another token, cannot take a live or
// lingering session of that name; an anonymous server (--client-auth none,
// no token) gets no name at all.
#include "tests/e2e_v2/e2e_v2.hpp"

using namespace tlsrelay::test;

namespace {

// A server presenting the client certificate `cert` / `key` of the relay's CA.
std::unique_ptr<v2_test_server> server_with(const relay_process& relay,
                                            const std::pair<fs::path, fs::path>& identity) {
  tls_identity id;
  id.ca_file = relay.keys_dir() / "ca.crt.pem";
  id.cert_file = identity.first;
  id.key_file = identity.second;
  return std::make_unique<v2_test_server>(relay.port(), id);
}

// The name's owner still serves a client through its public port.
void still_serves(v2_test_server& owner, const std::string& text) {
  tcp_conn client = tcp_conn::connect(owner.public_listener().port);
  tcp_conn reverse = owner.accept_client();
  client.send_all(text);
  CHECK(reverse.recv_exact(text.size()) == text);
}

}  // namespace

TEST_CASE("v2 identity: a second certificate of the same CA cannot take over a name, live or "
          "lingering, the first certificate can",
          "[e2e][v2][identity][hostile]") {
  pki keys;
  const auto alice = keys.issue_client("alice");
  const auto mallory = keys.issue_client("mallory");
  CHECK(fingerprint_sha256_hex(alice.first) != fingerprint_sha256_hex(mallory.first));
  relay_process relay(keys.dir(), v2_relay(4));

  auto owner = server_with(relay, alice);
  owner->greet(hello_with({}, "web"));
  const auto port = owner->public_listener().port;

  auto thief = server_with(relay, mallory);
  const auto live = thief->say_hello(hello_with({}, "web"));
  CHECK(error_code_of(live) == "name_unavailable");
  still_serves(*owner, "owner still serves");

  // The owner's session ends; the name lingers with its port.
  owner->disconnect();
  wait_for_no_controller_linked(port);
  auto thief_again = server_with(relay, mallory);
  CHECK(error_code_of(thief_again->say_hello(hello_with({}, "web"))) == "name_unavailable");

  auto back = server_with(relay, alice);
  back->greet(hello_with({}, "web"));
  CHECK(back->public_listener().port == port);
  still_serves(*back, "the owner is back");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2 identity: a server of another token cannot take over a live session's name",
          "[e2e][v2][identity][hostile]") {
  temp_file tokens("tokens", "token-of-alice-1234\ntoken-of-mallory-5678\n");
  relay_process relay(v2_relay(4, {"--tokens", tokens.str()}));
  auto owner = v2_server_without_certificate(relay);
  owner->greet(hello_with("token-of-alice-1234", "web"));

  auto thief = v2_server_without_certificate(relay);
  CHECK(error_code_of(thief->say_hello(hello_with("token-of-mallory-5678", "web"))) ==
        "name_unavailable");
  still_serves(*owner, "alice's session was not disturbed");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2 identity: with --client-auth none an anonymous server gets no name, only a port",
          "[e2e][v2][identity][hostile]") {
  relay_process relay(v2_relay(4, {"--client-auth", "none"}));
  auto anonymous = v2_server_without_certificate(relay);
  const auto answer = anonymous->say_hello(hello_with({}, "web"));
  CHECK(error_code_of(answer) == "name_unavailable");
  REQUIRE(answer.error);
  CHECK_THAT(answer.error->text, Catch::Contains("identity"));

  auto nameless = v2_server_without_certificate(relay);
  nameless->greet(hello_with());
  still_serves(*nameless, "served without a name");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
