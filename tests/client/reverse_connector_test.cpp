// The reverse connector: for each client the relay announces, one reverse
// connection whose first bytes are what the protocol says (v2 `accept <ID>`,
// v1 nothing), handed over ready; at most max_pending at once; end-to-end
// TLS within its deadline. The relay's reverse port is played by the test.
#include <memory>
#include <string>

#include <boost/asio/strand.hpp>
#include <catch2/catch.hpp>

#include "client/reverse_connector.hpp"
#include "client/tls.hpp"
#include "protocol/connection_id.hpp"
#include "tests/client/part_test_support.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;
using client::detail::reverse_address;
using client::detail::reverse_connector;

namespace {

const std::string id_hex = "00112233445566778899aabbccddeeff";

connection_id test_id() {
  connection_id id;
  REQUIRE_FALSE(parse_connection_id(id_hex, id));
  return id;
}

}  // namespace

SCENARIO("reverse connector: a v2 reverse connection starts with accept and its id",
         "[client][reverse_connector]") {
  connector_fixture f;
  run_on(f.strand, [&] {
    f.connector->open(f.to, false, test_id(), host_port{"127.0.0.1", 5555});
  });
  tcp_conn relay_side = f.relay_reverse.accept();
  CHECK(relay_side.read_line() == "accept " + id_hex + "\r\n");
  auto conn = f.owner.next_ready();
  REQUIRE(conn.has_value());
  CHECK(conn->id() == id_hex);
  REQUIRE(conn->client().has_value());
  CHECK(*conn->client() == host_port{"127.0.0.1", 5555});
  CHECK_FALSE(conn->warm());
  CHECK_FALSE(conn->is_tls());
  THEN("the bytes after the accept line are the client's, both ways") {
    auto server_side = as_tcp_conn(std::move(*conn));
    relay_side.send_all("from the client");
    CHECK(server_side.recv_exact(15) == "from the client");
    server_side.send_all("from the server");
    CHECK(relay_side.recv_exact(15) == "from the server");
  }
}

SCENARIO("reverse connector: a v1 reverse connection writes nothing before the server's bytes",
         "[client][reverse_connector]") {
  connector_fixture f;
  run_on(f.strand, [&] { f.connector->open(f.to, false, std::nullopt, std::nullopt); });
  tcp_conn relay_side = f.relay_reverse.accept();
  auto conn = f.owner.next_ready();
  REQUIRE(conn.has_value());
  CHECK(conn->id() == "");
  CHECK_FALSE(conn->client().has_value());
  auto server_side = as_tcp_conn(std::move(*conn));
  server_side.send_all("first");
  CHECK(relay_side.recv_exact(5) == "first");
}

SCENARIO("reverse connector: beyond max_pending an announced client is not answered",
         "[client][reverse_connector]") {
  pki keys;
  auto s = end_to_end_settings(keys);
  s.max_pending = 1;
  // End-to-end TLS keeps the first one pending: the relay side never starts
  // the handshake.
  connector_fixture f(s);
  run_on(f.strand, [&] { f.connector->open(f.to, false, test_id(), std::nullopt); });
  tcp_conn first = f.relay_reverse.accept();
  CHECK(first.read_line() == "accept " + id_hex + "\r\n");
  run_on(f.strand, [&] {
    f.connector->open(f.to, false, test_id(), host_port{"127.0.0.1", 6666});
  });
  CHECK(f.owner.first_refusal() ==
        "relayed connection " + id_hex +
          " (client 127.0.0.1:6666): not answered, 1 reverse connections are already being opened");
  std::size_t pending = 0;
  run_on(f.strand, [&] { pending = f.connector->pending(); });
  CHECK(pending == 1);
}

SCENARIO("reverse connector: the end-to-end TLS handshake has a deadline",
         "[client][reverse_connector]") {
  pki keys;
  auto s = end_to_end_settings(keys);
  s.handshake_timeout = std::chrono::milliseconds(200);
  connector_fixture f(s);
  run_on(f.strand, [&] { f.connector->open(f.to, false, test_id(), std::nullopt); });
  tcp_conn relay_side = f.relay_reverse.accept();
  CHECK(relay_side.read_line() == "accept " + id_hex + "\r\n");
  // No ClientHello comes: the connection is closed once the deadline passes.
  relay_side.expect_closed();
  std::size_t pending = 1;
  run_on(f.strand, [&] { pending = f.connector->pending(); });
  CHECK(pending == 0);
  CHECK_FALSE(f.owner.next_ready(std::chrono::milliseconds(0)).has_value());
}

SCENARIO("reverse connector: close_all closes what is still being opened",
         "[client][reverse_connector]") {
  pki keys;
  auto s = end_to_end_settings(keys);
  connector_fixture f(s);
  run_on(f.strand, [&] { f.connector->open(f.to, false, test_id(), std::nullopt); });
  tcp_conn relay_side = f.relay_reverse.accept();
  CHECK(relay_side.read_line() == "accept " + id_hex + "\r\n");
  run_on(f.strand, [&] { f.connector->close_all(); });
  relay_side.expect_closed();
}
