// v2 next to v1 on one relay, over IPv6, with a PROXY protocol header, and
// the hello lines the relay must refuse.
#include "protocol/proxy_header.hpp"
#include "tests/e2e_v2/e2e_v2.hpp"

using namespace tlsrelay::test;
using Catch::Matchers::Contains;

TEST_CASE("v2: v1 and v2 servers on one relay both serve their clients at the same time",
          "[e2e][v2][interop]") {
  relay_process relay(v2_relay(4));
  auto v1 = connect_server(relay);
  auto v2 = v2_server_with_certificate(relay);
  v2->greet(hello_with());
  CHECK(v1->public_listener().port == relay.public_port(0));
  CHECK(v2->public_listener().port == relay.public_port(1));
  v1->serve_echo();
  v2->serve_echo();

  tcp_conn to_v1 = tcp_conn::connect(v1->public_listener().port);
  tcp_conn to_v2 = tcp_conn::connect(v2->public_listener().port);
  const std::string for_v1 = random_bytes(64 * KiB, 1), for_v2 = random_bytes(64 * KiB, 2);
  CHECK(bytes_diff(for_v2, to_v2.exchange(for_v2, for_v2.size())) == "");
  CHECK(bytes_diff(for_v1, to_v1.exchange(for_v1, for_v1.size())) == "");
  CHECK(v1->connections_served() == 1);
  CHECK(v2->connections_served() == 1);
  CHECK(v1->errors() == std::vector<std::string>{});
  CHECK(v2->errors() == std::vector<std::string>{});
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: over IPv6 the listener lines, the relayed client and its new_connection address "
          "are written [::1]:port",
          "[e2e][v2][interop][ipv6]") {
  if (!can_bind("::1")) {
    WARN("SKIPPED: ::1 cannot be bound on this machine, the IPv6 scenario did not run");
    return;
  }
  // relay_process always passes --listen 127.0.0.1 and the CLI refuses a
  // second --listen, so this relay is run by hand.
  const pki keys;
  std::unique_ptr<hand_run_relay> relay;
  std::uint16_t port = 0;
  std::string failures;
  for (int attempt = 0; attempt < 5 && !relay; ++attempt) {
    port = pick_free_port_range(2);
    try {
      relay = std::make_unique<hand_run_relay>(std::vector<std::string>{
          "--listen", "::1", "--myhost", "::1", "--port", std::to_string(port), "--port-count",
          "2", "--keys", keys.dir().string()});
    } catch (const io_error& e) {
      failures += std::string("\n") + e.what();  // a port of the range taken on ::1
    }
  }
  INFO("failed starts:" << failures);
  REQUIRE(relay);
  const auto reverse_port = static_cast<std::uint16_t>(port + 1);
  const auto public_port = static_cast<std::uint16_t>(port + 2);
  {
    v2_test_server::options over_ipv6;
    over_ipv6.host = "::1";
    v2_test_server server(port, v2_test_server::with_certificate(keys.dir()), over_ipv6);
    server.greet(hello_with());
    REQUIRE(server.greeting().size() == 3);
    CHECK(server.greeting()[1] == "public_listener [::1]:" + std::to_string(public_port));
    CHECK(server.greeting()[2] == "reverse_listener [::1]:" + std::to_string(reverse_port));

    tcp_conn client = tcp_connect_to("::1", public_port);
    const auto line = server.read_line();
    REQUIRE(line);
    const std::string client_text = "[::1]:" + std::to_string(local_port_of(client));
    CHECK_THAT(*line, Contains(" " + client_text));
    tlsrelay::v2::relay_message msg;
    REQUIRE_FALSE(tlsrelay::v2::parse_relay_line(*line, msg));
    REQUIRE(std::holds_alternative<tlsrelay::v2::new_connection>(msg));
    const auto& announced = std::get<tlsrelay::v2::new_connection>(msg);
    CHECK(announced.client.host == "::1");
    CHECK(announced.client.port == local_port_of(client));

    tcp_conn reverse = server.accept(announced.id);
    client.send_all("over ipv6");
    CHECK(reverse.recv_exact(9) == "over ipv6");
    reverse.send_all("back over ipv6");
    CHECK(client.recv_exact(14) == "back over ipv6");
  }
  const std::string stop_problems = relay->stop();
  CHECK(stop_problems == "");
}

TEST_CASE("v2: with --proxy-protocol the reverse connection starts with a PROXY v2 header naming "
          "the client, then carries the client's bytes exactly",
          "[e2e][v2][interop][proxy]") {
  relay_process relay(v2_relay(2, {"--proxy-protocol"}));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  const auto public_port = server->public_listener().port;

  tcp_conn client = tcp_conn::connect(public_port);
  const std::string request = "GET / HTTP/1.0\r\nHost: behind.nat\r\n\r\n";
  client.send_all(request);
  tcp_conn reverse = server->accept_client();

  // Read until the header is complete; whatever follows it is the client's.
  std::string received;
  tlsrelay::proxy_v2::decoded header;
  const auto deadline = steady::now() + 5s;
  for (;;) {
    header = tlsrelay::proxy_v2::decode(received);
    if (header.status != tlsrelay::proxy_v2::decode_status::need_more) break;
    REQUIRE(steady::now() < deadline);
    const auto more = reverse.recv_some(5s);
    REQUIRE(more);
    received += *more;
  }
  INFO("first bytes of the reverse connection: " << printable(received, 120));
  REQUIRE(header.status == tlsrelay::proxy_v2::decode_status::complete);
  CHECK_FALSE(header.local);
  CHECK(header.addr.source_ip == "127.0.0.1");
  CHECK(header.addr.source_port == local_port_of(client));
  CHECK(header.addr.destination_ip == "127.0.0.1");
  CHECK(header.addr.destination_port == public_port);

  std::string payload = received.substr(header.header_bytes);
  REQUIRE(payload.size() <= request.size());
  payload += reverse.recv_exact(request.size() - payload.size());
  CHECK(payload == request);

  // No header the other way: the client gets the server's bytes as written.
  reverse.send_all("HTTP/1.0 204 No Content\r\n\r\n");
  CHECK(client.recv_exact(27) == "HTTP/1.0 204 No Content\r\n\r\n");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: a hello with an unknown key is answered with error bad_request",
          "[e2e][v2][hello]") {
  relay_process relay(v2_relay(2));
  auto server = v2_server_with_certificate(relay);
  server->send_line("hello 2 colour=blue");
  const auto line = server->read_line();
  REQUIRE(line);
  tlsrelay::v2::relay_message msg;
  REQUIRE_FALSE(tlsrelay::v2::parse_relay_line(*line, msg));
  INFO("answer: " << printable(*line));
  REQUIRE(std::holds_alternative<tlsrelay::v2::error>(msg));
  CHECK(std::get<tlsrelay::v2::error>(msg).code == tlsrelay::v2::error_code::bad_request);
  CHECK(server->read_until_closed() == "");

  // Anything but a hello first is a bad request too.
  auto pinger = v2_server_with_certificate(relay);
  pinger->send_line("ping");
  const auto answer = pinger->read_line();
  REQUIRE(answer);
  CHECK_THAT(*answer, Catch::Matchers::StartsWith("error bad_request"));
  CHECK(pinger->read_until_closed() == "");

  // Nothing was handed out: a proper hello gets pair 0.
  auto proper = v2_server_with_certificate(relay);
  proper->greet();
  CHECK(proper->public_listener().port == relay.public_port(0));
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2: hello 3 is answered with error unsupported_version", "[e2e][v2][hello]") {
  relay_process relay(v2_relay(2));
  auto server = v2_server_with_certificate(relay);
  server->send_line("hello 3");
  const auto line = server->read_line();
  REQUIRE(line);
  tlsrelay::v2::relay_message msg;
  REQUIRE_FALSE(tlsrelay::v2::parse_relay_line(*line, msg));
  INFO("answer: " << printable(*line));
  REQUIRE(std::holds_alternative<tlsrelay::v2::error>(msg));
  CHECK(std::get<tlsrelay::v2::error>(msg).code == tlsrelay::v2::error_code::unsupported_version);
  CHECK(server->read_until_closed() == "");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
