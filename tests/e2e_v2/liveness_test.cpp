// Every connection has a liveness bound. A server lost behind a NAT (no FIN,
// no reset: its packets simply stop) is noticed through TCP keepalive on its
// control connection; a joined pair that moves no byte is reset after
// --idle-timeout; a pair left half-closed is reset after --half-close-timeout.
#include <linux/filter.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "tests/e2e_v2/e2e_v2.hpp"

using namespace tlsrelay::test;

namespace {

// Makes our end of a connection a black hole, as when a host behind a NAT
// disappears: a socket filter drops every packet that arrives for it before
// TCP sees it, so nothing is acknowledged or answered (not even with a
// reset), and nothing is sent. The socket stays open.
void vanish(int fd) {
  sock_filter drop_all[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
  sock_fprog program{1, drop_all};
  if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof program) != 0)
    throw io_error(std::string("SO_ATTACH_FILTER: ") + std::strerror(errno));
}

// A relay started with `flag value`, a v1 server, and one client joined with
// the server's reverse connection.
struct joined_pair {
  joined_pair(const std::string& flag, const std::string& value)
      : relay([&] {
          relay_options options = relay_with(2);
          options.extra_args = {flag, value};
          return options;
        }()),
        server(connect_server(relay)),
        client(tcp_conn::connect(server->public_listener().port)),
        reverse(server->accept_client()) {}
  relay_process relay;
  std::unique_ptr<v1_test_server> server;
  tcp_conn client;
  tcp_conn reverse;
};

}  // namespace

TEST_CASE("liveness: a v1 server that vanishes without a FIN loses its pair through TCP keepalive",
          "[e2e][v1][liveness][hostile]") {
  relay_options options = relay_with(2);
  options.extra_args = {"--keepalive", "1"};
  relay_process relay(options);
  auto server = connect_server(relay);
  const auto port = server->public_listener().port;

  vanish(server->control().fd());
  const auto vanished_at = steady::now();

  // Probes start after 1 s of silence, one a second; three unanswered ones
  // (and TCP_USER_TIMEOUT, 4 s) end the session, and its port says so.
  wait_for_no_controller_linked(port, 9000ms);
  const auto noticed_after = std::chrono::duration_cast<millis>(steady::now() - vanished_at);
  INFO("noticed after " << noticed_after.count() << " ms");
  CHECK(noticed_after >= 2500ms);
  CHECK(noticed_after <= 7000ms);
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("liveness: without keepalive a vanished v1 server keeps its pair (what --keepalive fixes)",
          "[e2e][v1][liveness]") {
  relay_options options = relay_with(2);
  options.extra_args = {"--keepalive", "0"};
  relay_process relay(options);
  auto server = connect_server(relay);
  const auto port = server->public_listener().port;
  vanish(server->control().fd());
  // Longer than the test above needs to notice.
  CHECK_THROWS_AS(wait_for_no_controller_linked(port, 7500ms), io_error);
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("liveness: a joined pair that moves no byte for --idle-timeout is reset, traffic keeps "
          "it alive",
          "[e2e][v1][liveness]") {
  joined_pair pair("--idle-timeout", "0.6");
  auto& relay = pair.relay;
  tcp_conn& client = pair.client;
  tcp_conn& reverse = pair.reverse;

  // Active for twice the timeout: a byte every 200 ms each way.
  auto last_byte_at = steady::now();
  for (int i = 0; i < 6; ++i) {
    std::this_thread::sleep_for(200ms);  // the scenario: a slow but live conversation
    client.send_all("u");
    CHECK(reverse.recv_exact(1) == "u");
    reverse.send_all("d");
    CHECK(client.recv_exact(1) == "d");
    last_byte_at = steady::now();
  }
  // Then silence: both ends are cut once the timeout has passed.
  CHECK(closed_within(client, 3000ms));
  CHECK(closed_within(reverse, 3000ms));
  CHECK(steady::now() - last_byte_at >= 550ms);
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("liveness: a pair left half-closed is reset after --half-close-timeout",
          "[e2e][v1][liveness]") {
  joined_pair pair("--half-close-timeout", "0.5");
  auto& relay = pair.relay;
  tcp_conn& client = pair.client;
  tcp_conn& reverse = pair.reverse;

  client.send_all("request");
  client.shutdown_write();
  CHECK(reverse.recv_until_eof() == "request");  // the half-close was passed on
  const auto half_closed_at = steady::now();
  // The server never answers nor closes: the relay cuts both.
  CHECK(closed_within(client, 3000ms));
  CHECK(closed_within(reverse, 3000ms));
  CHECK(steady::now() - half_closed_at >= 400ms);
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("liveness: a half-closed pair whose other side answers in time ends normally",
          "[e2e][v1][liveness]") {
  joined_pair pair("--half-close-timeout", "2");
  auto& relay = pair.relay;
  tcp_conn& client = pair.client;
  tcp_conn& reverse = pair.reverse;

  client.send_all("request");
  client.shutdown_write();
  CHECK(reverse.recv_until_eof() == "request");
  reverse.send_all("response");
  reverse.close();
  CHECK(client.recv_until_eof() == "response");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("liveness: a half-closed pair still moving bytes is not cut by --half-close-timeout",
          "[e2e][v1][liveness]") {
  joined_pair pair("--half-close-timeout", "0.5");
  auto& relay = pair.relay;
  tcp_conn& client = pair.client;
  tcp_conn& reverse = pair.reverse;

  client.send_all("request");
  client.shutdown_write();
  CHECK(reverse.recv_until_eof() == "request");
  // The answer trickles for three times the timeout: the pair is half-closed
  // but not quiet, so it must not be cut.
  std::string expected;
  for (int i = 0; i < 8; ++i) {
    std::this_thread::sleep_for(200ms);  // the scenario: a slow answer
    const std::string part = "part " + std::to_string(i) + ";";
    reverse.send_all(part);
    expected += part;
    CHECK(client.recv_exact(part.size()) == part);
  }
  reverse.close();
  CHECK(client.recv_until_eof() == "");
  CHECK(expected.size() > 0);
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
