// Bytes between a client and the server behind the relay: what goes in
// comes out, whole, in order, in both directions, for both data paths.
#include <future>
#include <thread>
#include <vector>

#include "tests/e2e/e2e.hpp"

using namespace tlsrelay::test;

namespace {

void hello_world_is_echoed(const std::string& data_path) {
  relay_process relay(relay_with(2, data_path));
  auto server = connect_server(relay);
  server->serve_echo();

  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  client.send_all("hello world");
  CHECK(client.recv_exact(11) == "hello world");
  CHECK(server->connections_served() == 1);
  CHECK(server->errors().empty());
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

void pause_loses_nothing(const std::string& data_path) {
  relay_process relay(relay_with(2, data_path));
  auto server = connect_server(relay);
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  tcp_conn reverse = server->accept_client();

  const std::string payload = random_bytes(2 * MiB, 2024);
  auto sending = std::async(std::launch::async, [&] { client.send_all(payload, 20s); });
  // The scenario: the server stops reading for a second while the client
  // keeps sending; every queue on the way fills up and must hold.
  std::this_thread::sleep_for(1s);
  const std::string received = reverse.recv_exact(payload.size(), 20s);
  REQUIRE_NOTHROW(sending.get());
  CHECK(bytes_diff(payload, received) == "");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

void half_close_is_forwarded(const std::string& data_path) {
  relay_process relay(relay_with(2, data_path));
  auto server = connect_server(relay);
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  tcp_conn reverse = server->accept_client();

  client.send_all("ping");
  client.shutdown_write();
  // The server sees the client's EOF but its own direction stays open.
  CHECK(reverse.recv_until_eof() == "ping");
  reverse.send_all("pong");
  reverse.close();
  CHECK(client.recv_until_eof() == "pong");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

void five_megabytes_each_way(const std::string& data_path) {
  relay_process relay(relay_with(2, data_path));
  auto server = connect_server(relay);
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  tcp_conn reverse = server->accept_client();

  const std::string upstream = random_bytes(5 * MiB, 1);    // client → server
  const std::string downstream = random_bytes(5 * MiB, 2);  // server → client
  auto server_side = std::async(std::launch::async, [&] {
    return reverse.exchange(downstream, upstream.size(), 30s);
  });
  const std::string client_received = client.exchange(upstream, downstream.size(), 30s);
  const std::string server_received = server_side.get();
  CHECK(bytes_diff(upstream, server_received) == "");
  CHECK(bytes_diff(downstream, client_received) == "");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

void fifty_clients_get_their_own_bytes(const std::string& data_path) {
  relay_process relay(relay_with(2, data_path));
  auto server = connect_server(relay);
  server->serve_echo();
  const std::uint16_t public_port = server->public_listener().port;

  constexpr int clients = 50;
  std::vector<std::future<std::string>> outcomes;
  for (int i = 0; i < clients; ++i) {
    outcomes.push_back(std::async(std::launch::async, [public_port, i] {
      tcp_conn client = tcp_conn::connect(public_port);
      const std::string mine = random_bytes(64 * KiB, 1000 + static_cast<std::uint64_t>(i));
      return bytes_diff(mine, client.exchange(mine, mine.size(), 30s));
    }));
  }
  for (int i = 0; i < clients; ++i) {
    std::string outcome;
    try {
      outcome = outcomes[static_cast<std::size_t>(i)].get();
    } catch (const std::exception& e) {
      outcome = e.what();
    }
    INFO("client " << i);
    CHECK(outcome == "");
  }
  CHECK(server->connections_served() == clients);
  CHECK(server->errors().empty());
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

}  // namespace

TEST_CASE("a client's hello world is echoed by the server behind the relay (splice data path)",
          "[e2e][data]") {
  hello_world_is_echoed("splice");
}

TEST_CASE("a client's hello world is echoed by the server behind the relay (copy data path)",
          "[e2e][data]") {
  hello_world_is_echoed("copy");
}

TEST_CASE("a server that stops reading for a second then resumes loses none of 2 MB "
          "(splice data path)",
          "[e2e][data]") {
  pause_loses_nothing("splice");
}

TEST_CASE("a server that stops reading for a second then resumes loses none of 2 MB "
          "(copy data path)",
          "[e2e][data]") {
  pause_loses_nothing("copy");
}

TEST_CASE("three lines sent with pauses between them reach the server intact and in order",
          "[e2e][data]") {
  relay_process relay(relay_with(2));
  auto server = connect_server(relay);
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  tcp_conn reverse = server->accept_client();

  const std::vector<std::string> lines = {"first line\r\n", "second line\r\n",
                                          "third line\r\n"};
  for (std::size_t i = 0; i < lines.size(); ++i) {
    client.send_all(lines[i]);
    // The scenario: a client that types, not one that sends in one burst.
    if (i + 1 < lines.size()) std::this_thread::sleep_for(100ms);
  }
  for (const auto& line : lines) CHECK(reverse.read_line() == line);
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("a client's half-close reaches the server and the server's reply still reaches the "
          "client (splice data path)",
          "[e2e][data]") {
  half_close_is_forwarded("splice");
}

TEST_CASE("a client's half-close reaches the server and the server's reply still reaches the "
          "client (copy data path)",
          "[e2e][data]") {
  half_close_is_forwarded("copy");
}

TEST_CASE("5 MB each way at the same time arrive byte-exact (splice data path)", "[e2e][data]") {
  five_megabytes_each_way("splice");
}

TEST_CASE("5 MB each way at the same time arrive byte-exact (copy data path)", "[e2e][data]") {
  five_megabytes_each_way("copy");
}

TEST_CASE("50 concurrent clients each get their own bytes back (splice data path)",
          "[e2e][data]") {
  fifty_clients_get_their_own_bytes("splice");
}

TEST_CASE("50 concurrent clients each get their own bytes back (copy data path)",
          "[e2e][data]") {
  fifty_clients_get_their_own_bytes("copy");
}
