// Only a server holding a certificate of the relay's CA is served: anyone
// else learns nothing (no line at all) and takes no port.
#include "tests/e2e/e2e.hpp"

using namespace tlsrelay::test;

namespace {

// Connects with `identity`, tries the handshake and returns what the relay
// sent before it closed the connection. With TLS 1.3 the client side of the
// handshake completes before the relay has checked the certificate, so the
// outcome of handshake() itself says nothing; what arrives afterwards does.
std::string bytes_before_close(const relay_process& relay, const tls_identity& identity,
                               std::string& close_reason) {
  tls_line_conn conn(relay.port(), identity);
  conn.handshake();
  std::string received = conn.read_until_closed(5s);
  close_reason = conn.close_reason();
  return received;
}

}  // namespace

TEST_CASE("a control connection without a client certificate gets no lines and is closed",
          "[e2e][auth]") {
  relay_process relay(relay_with(2));
  tls_identity anonymous;
  anonymous.ca_file = relay.keys_dir() / "ca.crt.pem";

  std::string reason, received;
  REQUIRE_NOTHROW(received = bytes_before_close(relay, anonymous, reason));
  INFO("how the relay ended it: " << reason);
  CHECK(received == "");

  // The refused connection took no pair: a legitimate server gets pair 0.
  auto server = connect_server(relay);
  CHECK(server->greeting() == listener_lines(relay, 0));
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("a control connection with a certificate from a foreign CA gets no lines and is "
          "closed",
          "[e2e][auth]") {
  relay_process relay(relay_with(2));
  const pki foreign;
  tls_identity intruder;
  intruder.ca_file = relay.keys_dir() / "ca.crt.pem";  // it does trust the real relay
  intruder.cert_file = foreign.client_cert();
  intruder.key_file = foreign.client_key();

  std::string reason, received;
  REQUIRE_NOTHROW(received = bytes_before_close(relay, intruder, reason));
  INFO("how the relay ended it: " << reason);
  CHECK(received == "");

  auto server = connect_server(relay);
  CHECK(server->greeting() == listener_lines(relay, 0));
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
