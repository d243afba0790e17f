// End-to-end TLS: the library runs the TLS server handshake on each relayed
// connection; a client verifies the server's certificate through the relay,
// and the relay carries only ciphertext.
#include <catch2/catch.hpp>

#include "client/relay_listener.hpp"
#include "protocol/proxy_header.hpp"
#include "tests/client/client_test_support.hpp"
#include "tests/support/test_data.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

namespace {

// The service's own identity, from a PKI unrelated to the relay's.
client::end_to_end_tls_options service_identity(const pki& service) {
  return {service.file("server.crt.pem"), service.file("server.key.pem")};
}

}  // namespace

SCENARIO("end-to-end TLS through a v1 relay: the relay sees only ciphertext",
         "[client][tls][v1]") {
  relay_process relay;
  pki service;
  io_thread io;
  auto options = v1_options(relay.keys_dir(), relay.port());
  options.end_to_end_tls = service_identity(service);
  client::relay_listener listener(io.io(), options);
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  relayed_echo echo(listener);
  // Every byte between the client and the public port passes through here:
  // the same bytes the relay handles.
  capture_proxy tap(io.io(), session.public_endpoint.port);

  WHEN("a client verifies the service's certificate and sends a recognisable text") {
    auto c = test_client::connect("127.0.0.1", tap.port());
    c.start_tls(service.ca(), "127.0.0.1");
    std::string secret = "PLAINTEXT-MARKER ";
    while (secret.size() < 64 * 1024) secret += "the relay must never see this sentence. ";
    const std::string back = c.exchange(secret);
    c.shutdown_write();
    const std::string rest = c.recv_until_eof();

    THEN("it gets it back, and nothing of it crossed the relay in clear") {
      CHECK(back == secret);
      CHECK(rest.empty());
      REQUIRE(echo.wait_served(1));
      CHECK(echo.accepted().at(0).tls);
      const std::string seen = tap.captured();
      CHECK(seen.size() > secret.size());  // the bytes did go through
      CHECK(seen.find("PLAINTEXT-MARKER") == std::string::npos);
      CHECK(seen.find("the relay must never see") == std::string::npos);
    }
  }
  WHEN("a client trusts another CA") {
    pki other;
    auto c = test_client::connect(session.public_endpoint);
    const std::string error = c.try_start_tls(other.ca(), "127.0.0.1");
    THEN("its handshake fails, and the listener goes on serving others") {
      CHECK_THAT(error, Catch::Contains("certificate verification failed"));
      auto good = test_client::connect(session.public_endpoint);
      good.start_tls(service.ca(), "127.0.0.1");
      CHECK(good.exchange("still here") == "still here");
    }
  }
  listener.close();
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("end-to-end TLS behind a v2 relay with --proxy-protocol: the header is read first",
         "[client][tls][v2][proxy]") {
  temp_dir dir;
  relay_options ro;
  ro.extra_args = {"--tokens", write_file(dir.path(), "tokens", "tok\n").string(),
                   "--proxy-protocol"};
  relay_process relay(ro);
  pki service;
  io_thread io;
  auto options = v2_options(relay.keys_dir(), relay.port(), "tok");
  options.end_to_end_tls = service_identity(service);
  client::relay_listener listener(io.io(), options);
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  relayed_echo echo(listener);

  auto c = test_client::connect(session.public_endpoint);
  c.start_tls(service.ca(), "127.0.0.1");
  const auto payload = random_bytes(100 * 1024, 11);
  CHECK(bytes_diff(payload, c.exchange(payload)) == "");
  REQUIRE(echo.wait_served(1));
  const auto info = echo.accepted().at(0);
  CHECK(info.tls);
  const auto header = proxy_v2::decode(info.proxy_header);
  REQUIRE(header.status == proxy_v2::decode_status::complete);
  CHECK(header.header_bytes == info.proxy_header.size());
  CHECK(header.addr.source_port == c.local_port());
  CHECK(header.addr.destination_port == session.public_endpoint.port);
  listener.close();
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("a client cannot forge its address with a PROXY header the relay did not announce",
         "[client][tls][v2][proxy][hostile]") {
  temp_dir dir;
  relay_options ro;
  ro.extra_args = {"--tokens", write_file(dir.path(), "tokens", "tok\n").string()};
  relay_process relay(ro);  // without --proxy-protocol: its welcome has no proxy=2
  pki service;
  io_thread io;
  auto options = v2_options(relay.keys_dir(), relay.port(), "tok");
  options.end_to_end_tls = service_identity(service);
  client::relay_listener listener(io.io(), options);
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  relayed_echo echo(listener);

  WHEN("a client sends a PROXY v2 header naming another address, then its ClientHello") {
    auto forger = test_client::connect(session.public_endpoint);
    forger.send_all(proxy_v2::encode({"203.0.113.7", 4444, "198.51.100.1", 443}));
    const std::string error = forger.try_start_tls(service.ca(), "127.0.0.1");
    auto honest = test_client::connect(session.public_endpoint);
    honest.start_tls(service.ca(), "127.0.0.1");
    CHECK(honest.exchange("honest") == "honest");

    THEN("the header is taken for TLS bytes: the handshake fails and no forged address is seen") {
      CHECK_FALSE(error.empty());
      REQUIRE(echo.wait_served(1));
      for (const auto& accepted : echo.accepted()) CHECK(accepted.proxy_header.empty());
      CHECK(echo.accepted().size() == 1);
    }
  }
  listener.close();
  CHECK_STOPS_CLEANLY(relay);
}
