// The client library against the real relay, protocol v2: tokens, connection
// ids and client addresses, names that keep their port across a relay
// restart, requested ports, IPv6, the PROXY header, heartbeats.
#include <catch2/catch.hpp>

#include "client/errc.hpp"
#include "client/relay_listener.hpp"
#include "protocol/connection_id.hpp"
#include "protocol/proxy_header.hpp"
#include "tests/client/client_test_support.hpp"
#include "tests/support/test_data.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;
using client::client_errc;
using kind = client::listener_event::kind;

namespace {

bool is_hex32(const std::string& text) {
  connection_id ignored;
  return !parse_connection_id(text, ignored);
}

// A relay (relay_process) whose v2 servers need one of `tokens` (file lines).
struct v2_relay {
  explicit v2_relay(const std::string& token_lines, std::vector<std::string> more_args = {},
                    unsigned port_count = 4)
      : tokens(write_file(dir.path(), "tokens", token_lines)) {
    relay_options o;
    o.port_count = port_count;
    o.extra_args = {"--tokens", tokens.string()};
    o.extra_args.insert(o.extra_args.end(), more_args.begin(), more_args.end());
    relay = std::make_unique<relay_process>(o);
  }
  temp_dir dir;
  std::filesystem::path tokens;
  std::unique_ptr<relay_process> relay;
};

// Reads a whole PROXY v2 header from the server side of a relayed connection.
proxy_v2::decoded read_proxy_header(tcp_conn& conn, std::string& raw) {
  raw = conn.recv_exact(proxy_v2::fixed_bytes);
  const auto rest = (static_cast<unsigned char>(raw[14]) << 8) | static_cast<unsigned char>(raw[15]);
  if (rest > 0) raw += conn.recv_exact(static_cast<std::size_t>(rest));
  return proxy_v2::decode(raw);
}

}  // namespace

SCENARIO("v2: a server with a token is welcomed, and each client comes with its id and address",
         "[client][v2]") {
  v2_relay r("tok-a\n");
  auto& relay = *r.relay;
  io_thread io;
  client::relay_listener listener(io.io(), v2_options(relay.keys_dir(), relay.port(), "tok-a"));
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  CHECK(session.protocol == client::protocol_version::v2);
  CHECK(is_hex32(session.session_secret));
  CHECK(session.public_endpoint == host_port{"127.0.0.1", relay.public_port(0)});
  CHECK(session.reverse_endpoint == host_port{"127.0.0.1", relay.reverse_port(0)});

  relayed_echo echo(listener);
  auto first = test_client::connect(session.public_endpoint);
  auto second = test_client::connect(session.public_endpoint);
  const auto payload = random_bytes(300 * 1024, 3);
  CHECK(bytes_diff(payload, first.exchange(payload)) == "");
  CHECK(second.exchange("second") == "second");
  first.shutdown_write();
  CHECK(first.recv_until_eof() == "");

  REQUIRE(echo.wait_served(2));
  const auto accepted = echo.accepted();
  REQUIRE(accepted.size() == 2);
  CHECK(is_hex32(accepted[0].id));
  CHECK(is_hex32(accepted[1].id));
  CHECK(accepted[0].id != accepted[1].id);
  std::vector<std::uint16_t> ports;
  for (const auto& a : accepted) {
    REQUIRE(a.client.has_value());
    CHECK(a.client->host == "127.0.0.1");
    ports.push_back(a.client->port);
  }
  CHECK_THAT(ports, Catch::UnorderedEquals(std::vector<std::uint16_t>{first.local_port(),
                                                                      second.local_port()}));
  listener.close();
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v2: a wrong or missing token is refused: auth_failed", "[client][v2][errors]") {
  v2_relay r("tok-a\n");
  auto& relay = *r.relay;
  io_thread io;
  WHEN("the token is wrong") {
    client::relay_listener listener(io.io(), v2_options(relay.keys_dir(), relay.port(), "tok-b"));
    CHECK(listener.listen(10000ms) == client_errc::auth_failed);
    CHECK_THAT(listener.last_error_detail(), Catch::Contains("auth_failed"));
  }
  WHEN("there is no token") {
    client::relay_listener listener(io.io(), v2_options(relay.keys_dir(), relay.port(), ""));
    CHECK(listener.listen(10000ms) == client_errc::auth_failed);
  }
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v2: a client certificate instead of a token", "[client][v2]") {
  relay_process relay;
  io_thread io;
  auto options = v2_options(relay.keys_dir(), relay.port(), "");
  options.tls.cert_file = relay.keys_dir() / "client.crt.pem";
  options.tls.key_file = relay.keys_dir() / "client.key.pem";
  client::relay_listener listener(io.io(), options);
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  relayed_echo echo(listener);
  auto c = test_client::connect(session.public_endpoint);
  CHECK(c.exchange("certified") == "certified");
  listener.close();
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v2: a named server gets its public port back after the relay restarts",
         "[client][v2][reconnect]") {
  pki keys;
  temp_dir dir;
  const auto tokens = write_file(dir.path(), "tokens", "tok\n");
  relay_runner::config config(keys.dir());
  config.extra = {"--tokens", tokens.string(), "--state", (dir.path() / "state").string()};
  relay_runner relay(config);
  io_thread io;

  GIVEN("an unnamed server on the first pair and a server named `web` on the second") {
    auto unnamed = std::make_unique<client::relay_listener>(
      io.io(), v2_options(keys.dir(), relay.port(), "tok"));
    REQUIRE(unnamed->listen(default_timeout) == std::error_code{});
    auto options = v2_options(keys.dir(), relay.port(), "tok");
    options.name = "web";
    options.backoff = fast_backoff();
    client::relay_listener named(io.io(), options);
    event_log events;
    named.set_event_handler(events.handler());
    client::session_info before;
    REQUIRE(named.listen(default_timeout, &before) == std::error_code{});
    CHECK(before.public_endpoint.port == relay.public_port(1));
    relayed_echo echo(named);

    WHEN("the unnamed server leaves and the relay restarts (the first pair is free again)") {
      unnamed.reset();
      relay.restart();

      THEN("the named server reconnects to the same public port, and serves there") {
        INFO("events: " << events.describe());
        REQUIRE(events.wait_count(kind::listening, 2, 15000ms));
        const auto after = named.session();
        REQUIRE(after.has_value());
        CHECK(after->public_endpoint == before.public_endpoint);
        CHECK(after->session_secret != before.session_secret);
        auto c = test_client::connect(after->public_endpoint);
        CHECK(c.exchange("same port") == "same port");
      }
    }
    named.close();
  }
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v2: a named server whose control connection breaks gets its port back at once",
         "[client][v2][reconnect]") {
  v2_relay r("tok\n");  // two pairs
  auto& relay = *r.relay;
  io_thread io;
  // The listener reaches the relay through a path the test can break.
  capture_proxy path(io.io(), relay.port());
  auto options = v2_options(relay.keys_dir(), path.port(), "tok");
  options.name = "web";
  options.backoff = fast_backoff();
  client::relay_listener listener(io.io(), options);
  event_log events;
  listener.set_event_handler(events.handler());
  client::session_info before;
  REQUIRE(listener.listen(default_timeout, &before) == std::error_code{});
  REQUIRE(before.public_endpoint.port == relay.public_port(0));
  relayed_echo echo(listener);

  WHEN("the path breaks (the relay sees the session end, the pair goes back to the pool)") {
    path.cut();
    THEN("the listener reconnects and the name holds the first pair, not the next free one") {
      INFO("events: " << events.describe());
      REQUIRE(events.wait_count(kind::listening, 2, 10000ms));
      CHECK(events.count(kind::session_lost) == 1);
      const auto after = listener.session();
      REQUIRE(after.has_value());
      CHECK(after->public_endpoint == before.public_endpoint);
      CHECK(path.connections() >= 2);
      auto c = test_client::connect(after->public_endpoint);
      CHECK(c.exchange("reserved") == "reserved");
    }
  }
  listener.close();
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v2: a server asks for a public port", "[client][v2]") {
  v2_relay r("tok\n", {}, 6);
  auto& relay = *r.relay;
  io_thread io;
  auto options = v2_options(relay.keys_dir(), relay.port(), "tok");
  options.port = relay.public_port(2);
  client::relay_listener first(io.io(), options);
  client::session_info session;
  REQUIRE(first.listen(default_timeout, &session) == std::error_code{});
  CHECK(session.public_endpoint.port == relay.public_port(2));
  CHECK(session.reverse_endpoint.port == relay.reverse_port(2));

  WHEN("another server asks for the same port") {
    client::relay_listener second(io.io(), options);
    THEN("it is refused: port_unavailable") {
      CHECK(second.listen(default_timeout) == client_errc::port_unavailable);
    }
  }
  WHEN("a server asks for a port outside the pool") {
    auto outside = options;
    outside.port = relay.port();  // the control port itself
    client::relay_listener third(io.io(), outside);
    THEN("it is refused: port_unavailable") {
      CHECK(third.listen(default_timeout) == client_errc::port_unavailable);
    }
  }
  first.close();
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v2: a name reserved for another token is refused: name_unavailable",
         "[client][v2][errors]") {
  v2_relay r("tok-a name=web\ntok-b\n");
  auto& relay = *r.relay;
  io_thread io;
  auto owner = v2_options(relay.keys_dir(), relay.port(), "tok-a");
  owner.name = "web";
  client::relay_listener first(io.io(), owner);
  REQUIRE(first.listen(default_timeout) == std::error_code{});
  auto other = v2_options(relay.keys_dir(), relay.port(), "tok-b");
  other.name = "web";
  client::relay_listener second(io.io(), other);
  const auto ec = second.listen(10000ms);
  INFO(second.last_error_detail());
  CHECK(ec == client_errc::name_unavailable);
  first.close();
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v2: relay, listener and clients on IPv6 (::1)", "[client][v2][ipv6]") {
  pki keys;  // its relay certificate names ::1
  temp_dir dir;
  relay_runner::config config(keys.dir());
  config.listen = "::1";
  config.myhost = "::1";
  config.extra = {"--tokens", write_file(dir.path(), "tokens", "tok6\n").string()};
  relay_runner relay(config);
  io_thread io;
  auto options = v2_options(keys.dir(), relay.port(), "tok6");
  options.relay.host = "::1";  // the certificate is checked for the address ::1
  client::relay_listener listener(io.io(), options);
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  CHECK(session.public_endpoint == host_port{"::1", relay.public_port(0)});
  CHECK(format_host_port(session.public_endpoint) ==
        "[::1]:" + std::to_string(relay.public_port(0)));
  relayed_echo echo(listener);
  auto c = test_client::connect(session.public_endpoint);
  CHECK(c.exchange("over IPv6") == "over IPv6");
  REQUIRE(echo.wait_served(1));
  const auto info = echo.accepted().at(0);
  REQUIRE(info.client.has_value());
  CHECK(info.client->host == "::1");
  CHECK(info.client->port == c.local_port());
  listener.close();
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v2: with --proxy-protocol the server reads a PROXY v2 header, then the client's bytes",
         "[client][v2][proxy]") {
  v2_relay r("tok\n", {"--proxy-protocol"});
  auto& relay = *r.relay;
  io_thread io;
  client::relay_listener listener(io.io(), v2_options(relay.keys_dir(), relay.port(), "tok"));
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  auto c = test_client::connect(session.public_endpoint);
  c.send_all("client bytes");

  std::error_code ec;
  auto conn = listener.accept(default_timeout, ec);
  REQUIRE(conn.has_value());
  REQUIRE(conn->client().has_value());
  CHECK(conn->proxy_header().empty());  // plain: passed through untouched, not taken
  auto server_side = as_tcp_conn(std::move(*conn));
  std::string raw;
  const auto header = read_proxy_header(server_side, raw);
  REQUIRE(header.status == proxy_v2::decode_status::complete);
  CHECK_FALSE(header.local);
  CHECK(header.addr.source_ip == "127.0.0.1");
  CHECK(header.addr.source_port == c.local_port());
  CHECK(header.addr.destination_port == session.public_endpoint.port);
  CHECK(server_side.recv_exact(12) == "client bytes");
  server_side.send_all("reply");
  CHECK(c.recv_exact(5) == "reply");
  listener.close();
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v2: heartbeats keep a quiet session alive", "[client][v2][heartbeat]") {
  v2_relay r("tok\n", {"--heartbeat", "0.2"});
  auto& relay = *r.relay;
  io_thread io;
  auto options = v2_options(relay.keys_dir(), relay.port(), "tok");
  options.heartbeat_interval = 200ms;
  client::relay_listener listener(io.io(), options);
  event_log events;
  listener.set_event_handler(events.handler());
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  THEN("nothing is lost over many heartbeat intervals, and the session still serves") {
    // Ten relay intervals of silence but for pings: both sides stay convinced.
    CHECK_FALSE(events.wait_count(kind::session_lost, 1, 2000ms));
    INFO("events: " << events.describe());
    CHECK(events.count(kind::listening) == 1);
    relayed_echo echo(listener);
    auto c = test_client::connect(session.public_endpoint);
    CHECK(c.exchange("alive") == "alive");
  }
  listener.close();
  CHECK_STOPS_CLEANLY(relay);
}
