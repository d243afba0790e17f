// Faults on the control connection between the server and the relay: the
// server's control connection goes through a fault_proxy, which cuts or
// resets it in the middle of a line (inside the TLS record carrying the
// line), or trickles it byte by byte. The relay must end the session (the
// public port answers `no controller linked`), give the pair back to the pool
// (the next server gets it and serves through it), and hold no more
// descriptors than before the scenario.
#include "tests/faults/faults.hpp"
#include "tests/e2e_v2/e2e_v2.hpp"
#include "tests/support/fault_proxy.hpp"

using namespace tlsrelay::test;

namespace {

// A TLS record is a 5-byte header and then at least the line, its type byte
// and a 16-byte tag: the first 7 bytes of the record carrying a line end
// inside the line.
constexpr std::size_t record_bytes_before_cut = 7;

// One relay pair: the next server can only get the pair the last one had.
relay_options one_pair() { return v2_relay(2); }

// The server's end of a relayed connection echoes: a client's bytes come back.
void check_client_echoed(std::uint16_t public_port, const std::string& text) {
  tcp_conn client = tcp_conn::connect(public_port);
  client.send_all(text);
  CHECK(client.recv_exact(text.size()) == text);
}

// The pair of `public_port` is free again and works: a new v2 server,
// connected directly, is given that port and serves a client through it.
void check_pair_back_in_pool_v2(const relay_process& relay, std::uint16_t public_port) {
  auto next = v2_server_with_certificate(relay);
  next->greet();
  CHECK(next->public_listener().port == public_port);
  next->serve_echo();
  check_client_echoed(public_port, "served by the next server");
  CHECK(next->errors().empty());
}

void check_pair_back_in_pool_v1(const relay_process& relay, std::uint16_t public_port) {
  auto next = connect_server(relay);
  CHECK(next->public_listener().port == public_port);
  next->serve_echo();
  check_client_echoed(public_port, "served by the next server");
  CHECK(next->errors().empty());
}

// v2: the server's `ping` line is cut off after a few bytes of its record.
void v2_control_line_broken(truncate_end how) {
  relay_process relay(one_pair());
  const fd_census baseline = census_of(relay.pid());
  std::uint16_t public_port = 0;
  {
    fault_proxy proxy(relay.port());
    v2_test_server server(proxy.port(), v2_test_server::with_certificate(relay.keys_dir()));
    server.greet();
    public_port = server.public_listener().port;

    proxy.truncate(direction::upstream, record_bytes_before_cut, how);
    server.send_line("ping");
    // The relay ends the session: its end of the control connection closes
    // (the server sees EOF or a reset) and no pong comes.
    std::string after_cut;
    REQUIRE_NOTHROW(after_cut = server.read_until_closed(3s));
    CHECK(after_cut.find("pong") == std::string::npos);
    CHECK(proxy.forwarded(direction::upstream) > 0);
    CHECK(proxy.errors().empty());
  }
  wait_for_no_controller_linked(public_port);
  check_pair_back_in_pool_v2(relay, public_port);
  CHECK(wait_for_descriptors(relay.pid(), baseline, splice_spare_pipe_fds) == "");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

// v1: the relay's `new_connection` line to the server is cut off after a few
// bytes of its record; the waiting client must not be left hanging.
void v1_new_connection_line_broken(truncate_end how) {
  relay_process relay(one_pair());
  const fd_census baseline = census_of(relay.pid());
  std::uint16_t public_port = 0;
  {
    fault_proxy proxy(relay.port());
    v1_test_server server(proxy.port(), relay.keys_dir());
    server.greet();
    public_port = server.public_listener().port;

    proxy.truncate(direction::downstream, record_bytes_before_cut, how);
    tcp_conn client = tcp_conn::connect(public_port);
    // The server never gets the line: its control connection ends mid-record.
    CHECK_FALSE(server.read_line(3s).has_value());
    INFO("the server's control connection ended: " << server.control().close_reason());
    // A server that finds its control connection broken goes away (after a
    // reset the relay has already seen the end; after a cut it sees it now).
    server.disconnect();
    // The session ends and takes the waiting client with it.
    CHECK_NOTHROW(client.expect_closed(3s));
    CHECK(proxy.errors().empty());
  }
  wait_for_no_controller_linked(public_port);
  check_pair_back_in_pool_v1(relay, public_port);
  CHECK(wait_for_descriptors(relay.pid(), baseline, splice_spare_pipe_fds) == "");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

}  // namespace

TEST_CASE("faults: a v2 control connection cut (FIN) in the middle of a line ends the session "
          "and the pair goes back to the pool",
          "[e2e][faults][control]") {
  v2_control_line_broken(truncate_end::cut);
}

TEST_CASE("faults: a v2 control connection reset in the middle of a line ends the session and "
          "the pair goes back to the pool",
          "[e2e][faults][control]") {
  v2_control_line_broken(truncate_end::reset);
}

TEST_CASE("faults: a v1 control connection cut (FIN) in the middle of new_connection ends the "
          "session, closes the waiting client and the pair goes back to the pool",
          "[e2e][faults][control]") {
  v1_new_connection_line_broken(truncate_end::cut);
}

TEST_CASE("faults: a v1 control connection reset in the middle of new_connection ends the "
          "session, closes the waiting client and the pair goes back to the pool",
          "[e2e][faults][control]") {
  v1_new_connection_line_broken(truncate_end::reset);
}

TEST_CASE("faults: a v2 hello trickled byte by byte and later lines delayed 100 ms each way "
          "still make a working session",
          "[e2e][faults][control]") {
  relay_process relay(one_pair());
  const fd_census baseline = census_of(relay.pid());
  {
    fault_proxy proxy(relay.port());
    v2_test_server server(proxy.port(), v2_test_server::with_certificate(relay.keys_dir()));
    // One byte every 3 ms: the relay gets the hello's record in dozens of pieces.
    proxy.delay(direction::upstream, 3ms, 1);
    server.greet();
    CHECK(server.public_listener().port == relay.public_port(0));

    proxy.delay(direction::upstream, 100ms);
    proxy.delay(direction::downstream, 100ms);
    tcp_conn client = tcp_conn::connect(server.public_listener().port);
    tcp_conn reverse = server.accept_client();
    client.send_all("through a slow control connection");
    CHECK(reverse.recv_exact(33) == "through a slow control connection");
    reverse.send_all("and back");
    CHECK(client.recv_exact(8) == "and back");
    CHECK(proxy.errors().empty());
  }
  wait_for_no_controller_linked(relay.public_port(0));
  CHECK(wait_for_descriptors(relay.pid(), baseline, splice_spare_pipe_fds) == "");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
