// /status, /healthz, /readyz and the HTTP edges of the admin endpoint; the
// bearer token; `tlsrelay status` (table, --json, an unreachable relay); and
// the refusal of a non-loopback endpoint without a token.
#include <algorithm>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/admin/admin.hpp"

using namespace tlsrelay::test;
using nlohmann::json;

namespace {

// The session of `status` with this protocol version and public port
// (exactly one; port 0: not given a pair yet).
json session_with(const json& status, int protocol, std::uint16_t public_port) {
  const auto& sessions = status.at("sessions");
  const auto is_it = [&](const json& s) {
    return s.at("protocol") == protocol && s.at("public_port") == public_port;
  };
  REQUIRE(std::count_if(sessions.begin(), sessions.end(), is_it) == 1);
  return *std::find_if(sessions.begin(), sessions.end(), is_it);
}

// The parts of a /status document that do not move with the clock.
json without_clock(json status) {
  status["relay"].erase("uptime_seconds");
  for (auto& s : status["sessions"]) s.erase("connected_seconds");
  return status;
}

// /status, fetched until `done` holds for it or `timeout` passes.
template <class Pred>
json status_until(std::uint16_t admin_port, Pred done, millis timeout = 5000ms) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    const auto reply = http_get(admin_port, "/status");
    REQUIRE(reply.status == 200);
    auto status = json::parse(reply.body);
    if (done(status) || steady::now() >= deadline) return status;
    std::this_thread::sleep_for(50ms);  // between tries of a poll with a deadline
  }
}

std::size_t lines_in(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

TEST_CASE("admin: /status and `tlsrelay status` show a live v1 and a live v2 session with "
          "their ports, and /healthz and /readyz answer 200",
          "[admin][e2e]") {
  relay_process relay(v2_relay(6, with_admin()));
  const auto admin = admin_port_of(relay);
  auto v1 = connect_server(relay);
  v1->serve_echo();
  auto v2 = v2_server_with_certificate(relay);
  v2->greet(hello_with("", "web"));
  // A pair of the v1 session, open while /status is asked: its bytes count.
  const auto payload = random_bytes(10000, 3);
  tcp_conn client = tcp_conn::connect(v1->public_listener().port);
  REQUIRE(client.exchange(payload, payload.size()) == payload);
  const auto v1_bytes_counted = [](const json& st) {
    for (const auto& s : st.at("sessions"))
      if (s.at("protocol") == 1)
        return s.at("bytes_in") == 10000 && s.at("bytes_out") == 10000;
    return false;
  };
  status_until(admin, v1_bytes_counted);
  // A v2 server that has not said hello yet: its session answers all the same.
  auto silent = v2_server_with_certificate(relay);
  // (TLS 1.3: our side of the handshake ends before the relay has checked it.)
  status_until(admin, [](const json& st) { return st.at("sessions").size() == 3; });

  const auto reply = http_get(admin, "/status");
  REQUIRE(reply.status == 200);
  CHECK(reply.headers.find("Content-Type: application/json") != std::string::npos);
  const auto status = json::parse(reply.body);
  INFO("/status: " << reply.body);
  CHECK(status.at("relay").at("version").get<std::string>() != "");
  CHECK(status.at("relay").at("control_port") == relay.port());
  CHECK(status.at("relay").at("pool").at("pairs") == 3);
  CHECK(status.at("relay").at("pool").at("in_use") == 2);
  CHECK(status.at("relay").at("pool").at("free") == 1);
  CHECK(status.at("relay").at("limits").at("max-pending") == 64);
  REQUIRE(status.at("sessions").size() == 3);
  const auto waiting_for_hello = session_with(status, 2, 0);
  CHECK(waiting_for_hello.at("reverse_port") == 0);
  CHECK(waiting_for_hello.at("name") == "");

  const auto s1 = session_with(status, 1, v1->public_listener().port);
  CHECK(s1.at("public_port") == v1->public_listener().port);
  CHECK(s1.at("reverse_port") == v1->reverse_listener().port);
  CHECK(s1.at("name") == "");
  CHECK(s1.at("open_pairs") == 1);
  CHECK(s1.at("bytes_in") == 10000);
  CHECK(s1.at("bytes_out") == 10000);
  const auto fingerprint = fingerprint_sha256_hex(relay.keys_dir() / "client.crt.pem");
  CHECK(s1.at("identity") == "certificate:" + fingerprint);
  const auto s2 = session_with(status, 2, v2->public_listener().port);
  CHECK(s2.at("public_port") == v2->public_listener().port);
  CHECK(s2.at("reverse_port") == v2->reverse_listener().port);
  CHECK(s2.at("name") == "web");
  CHECK(s2.at("identity") == "certificate:" + fingerprint);
  CHECK(s2.at("server").get<std::string>().rfind("127.0.0.1:", 0) == 0);
  CHECK(s2.at("open_pairs") == 0);
  CHECK(s2.at("waiting_clients") == 0);

  // The table names both sessions with their ports.
  const auto table = run_tlsrelay({"status", "--admin", admin_url_of(relay)});
  INFO("tlsrelay status: " << table.stdout_text << table.stderr_text);
  CHECK(table.exit_code == 0);
  CHECK(table.stdout_text.find("3 sessions") != std::string::npos);
  CHECK(table.stdout_text.find("pool: 3 pairs, 2 in use, 1 free") != std::string::npos);
  CHECK(table.stdout_text.find("web") != std::string::npos);
  CHECK(table.stdout_text.find("9.8 KiB") != std::string::npos);
  for (auto port : {v1->public_listener().port, v1->reverse_listener().port,
                    v2->public_listener().port, v2->reverse_listener().port})
    CHECK(table.stdout_text.find(" " + std::to_string(port) + " ") != std::string::npos);

  // --json is /status as it is (only the clock has moved).
  const auto as_json = run_tlsrelay({"status", "--json", "--admin", admin_url_of(relay)});
  CHECK(as_json.exit_code == 0);
  CHECK(without_clock(json::parse(as_json.stdout_text)) == without_clock(status));

  const auto health = http_get(admin, "/healthz");
  CHECK(health.status == 200);
  CHECK(health.body == "ok\n");
  const auto ready = http_get(admin, "/readyz");
  CHECK(ready.status == 200);
  CHECK(ready.body == "ready\n");
  CHECK(http_get(admin, "/nothing-here").status == 404);
  const auto wrong_method = http_request(admin, "POST", "/metrics");
  CHECK(wrong_method.status == 405);
  CHECK(wrong_method.headers.find("Allow: GET") != std::string::npos);
  CHECK(http_get(admin, "/reload").status == 405);

  // The pair ends: its bytes are the session's own now, counted once.
  client.shutdown_write();
  CHECK(client.recv_until_eof() == "");
  const auto after = status_until(admin, [&](const json& st) {
    return session_with(st, 1, v1->public_listener().port).at("open_pairs") == 0;
  });
  const auto s1_after = session_with(after, 1, v1->public_listener().port);
  CHECK(s1_after.at("open_pairs") == 0);
  CHECK(s1_after.at("bytes_in") == 10000);
  CHECK(s1_after.at("bytes_out") == 10000);
  CHECK(s1_after.at("pairings").at("matched") == 1);

  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("admin: with --admin-token every request needs `Authorization: Bearer` with it",
          "[admin][e2e][hostile]") {
  relay_process relay(v2_relay(2, with_admin({"--admin-token", "s3cret-admin"})));
  const auto admin = admin_port_of(relay);
  for (const auto& path : {"/metrics", "/status", "/healthz", "/readyz"}) {
    INFO(path);
    const auto none = http_get(admin, path);
    CHECK(none.status == 401);
    CHECK(none.headers.find("WWW-Authenticate: Bearer") != std::string::npos);
    CHECK(none.body.find("s3cret") == std::string::npos);
    CHECK(http_get(admin, path, {"Authorization: Bearer s3cret-admiN"}).status == 401);
    CHECK(http_get(admin, path, {"Authorization: Bearer s3cret-admin-and-more"}).status == 401);
    CHECK(http_get(admin, path, {"Authorization: s3cret-admin"}).status == 401);
    CHECK(http_get(admin, path, {"Authorization: Bearer s3cret-admin"}).status == 200);
  }
  CHECK(http_request(admin, "POST", "/reload").status == 401);

  const auto refused = run_tlsrelay({"status", "--admin", admin_url_of(relay)});
  CHECK(refused.exit_code == 1);
  CHECK(lines_in(refused.stderr_text) == 1);
  CHECK(refused.stderr_text.find("answered 401") != std::string::npos);
  const auto shown =
    run_tlsrelay({"status", "--admin", admin_url_of(relay), "--token", "s3cret-admin"});
  CHECK(shown.exit_code == 0);
  CHECK(shown.stdout_text.find("no sessions") != std::string::npos);

  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("admin: an --admin address other than loopback without --admin-token refuses to "
          "start, naming --admin",
          "[admin][e2e]") {
  for (const auto& address : {"0.0.0.0:9100", "[::]:9100"}) {
    INFO(address);
    const auto run = run_serve_expecting_refusal({"--admin", address});
    CHECK(run.exit_code == 2);
    CHECK(lines_in(run.stderr_text) == 1);
    CHECK(run.stderr_text.find(std::string("--admin ") + address) != std::string::npos);
    CHECK(run.stderr_text.find("--admin-token") != std::string::npos);
    CHECK(run.stdout_text.find("listening") == std::string::npos);
    CHECK_NO_SANITIZER_OUTPUT(run.stderr_text);
  }
  const auto malformed = run_serve_expecting_refusal({"--admin", "localhost"});
  CHECK(malformed.exit_code == 2);
  CHECK(malformed.stderr_text.find("--admin localhost") != std::string::npos);
}

TEST_CASE("admin: `tlsrelay status` against a port where nothing listens exits 1 with one line",
          "[admin][e2e]") {
  const auto port = pick_free_port_range(1);
  const auto start = steady::now();
  const auto run =
    run_tlsrelay({"status", "--admin", "http://127.0.0.1:" + std::to_string(port)});
  CHECK(steady::now() - start < 10s);
  CHECK(run.exit_code == 1);
  CHECK(run.stdout_text == "");
  CHECK(lines_in(run.stderr_text) == 1);
  CHECK(run.stderr_text.find("unreachable") != std::string::npos);
  CHECK(run.stderr_text.find(std::to_string(port)) != std::string::npos);

  const auto bad_url = run_tlsrelay({"status", "--admin", "https://127.0.0.1:9100"});
  CHECK(bad_url.exit_code == 2);
  CHECK(bad_url.stderr_text.find("--admin") != std::string::npos);
}

TEST_CASE("admin: the endpoint bounds what one client may cost: 16 connections at once, 8 KiB "
          "of request headers",
          "[admin][e2e][hostile]") {
  relay_process relay(v2_relay(2, with_admin()));
  const auto admin = admin_port_of(relay);
  std::vector<tcp_conn> idle;
  for (int i = 0; i < 16; ++i) idle.push_back(tcp_conn::connect(admin));
  // Accepted in order: the 17th comes after the 16 that fill every place.
  tcp_conn one_more = tcp_conn::connect(admin);
  one_more.expect_closed(3000ms);

  // A place given back is a place to use again.
  idle.front().close();
  const auto deadline = steady::now() + 5000ms;
  int status = 0;
  while (status != 200 && steady::now() < deadline) {
    try {
      status = http_get(admin, "/healthz", {}, 1000ms).status;
    } catch (const io_error&) {
      // Closed at accept: the relay has not seen the place given back yet.
    }
  }
  CHECK(status == 200);
  idle.clear();

  tcp_conn big = tcp_conn::connect(admin);
  big.send_all("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: " + std::string(9000, 'a') +
               "\r\n\r\n");
  const auto answer = big.recv_until_eof();
  CHECK(answer.rfind("HTTP/1.1 413 ", 0) == 0);

  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("admin: a client that sends half a request and stalls is closed at the I/O deadline, "
          "so stalled clients cannot hold the endpoint's places",
          "[admin][e2e][hostile]") {
  relay_process relay(v2_relay(2, with_admin()));
  const auto admin = admin_port_of(relay);
  tcp_conn slow = tcp_conn::connect(admin);
  slow.send_all("GET /metr");  // and then nothing
  const auto from = steady::now();
  // The deadline is 5 s (defaults::admin_io_timeout); a margin for a loaded machine.
  slow.expect_closed(9000ms);
  CHECK(steady::now() - from >= 4000ms);  // the deadline, not an early refusal
  CHECK(http_get(admin, "/healthz").status == 200);
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
