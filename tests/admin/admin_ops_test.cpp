// The admin endpoint wired to the rest of serve: POST /reload runs the same
// reload as SIGHUP (and the reload counters move), /readyz turns 503 the
// moment a drain starts while joined pairs still finish.
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/admin/admin.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;
using Catch::Matchers::Contains;

namespace {

double scraped(std::uint16_t admin_port, const std::string& sample) {
  const auto reply = http_get(admin_port, "/metrics");
  REQUIRE(reply.status == 200);
  const auto value = sample_value(reply.body, sample);
  REQUIRE(value.has_value());
  return *value;
}

}  // namespace

TEST_CASE("admin: POST /reload applies a new tokens file, refuses a missing one with 500, and "
          "the reload counters say so",
          "[admin][e2e]") {
  temp_file tokens("tokens", "first-token name=web\n");
  relay_process relay(v2_relay(2, with_admin({"--tokens", tokens.str()})));
  const auto admin = admin_port_of(relay);
  CHECK(scraped(admin, "tlsrelay_reloads_total") == 0);

  // A token added to the file works after POST /reload, not before.
  const auto admitted = [&](const std::string& token) {
    auto server = v2_server_without_certificate(relay);
    const auto answer = server->say_hello(hello_with(token));
    return error_code_of(answer) == "none";
  };
  CHECK_FALSE(admitted("second-token"));
  { std::ofstream(tokens.path()) << "first-token name=web\nsecond-token\n"; }
  const auto ok = http_request(admin, "POST", "/reload");
  CHECK(ok.status == 200);
  CHECK(admitted("second-token"));
  CHECK(scraped(admin, "tlsrelay_reloads_total") == 1);
  CHECK(scraped(admin, "tlsrelay_reload_failures_total") == 0);

  // A tokens file that cannot be read: 500 with the reason, and the running
  // table stays in force.
  std::filesystem::remove(tokens.path());
  const auto refused = http_request(admin, "POST", "/reload");
  CHECK(refused.status == 500);
  CHECK_THAT(refused.body, Contains(tokens.str()));
  CHECK(admitted("second-token"));
  CHECK(scraped(admin, "tlsrelay_reloads_total") == 2);
  CHECK(scraped(admin, "tlsrelay_reload_failures_total") == 1);
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("admin: /readyz answers 503 as soon as the relay drains, /healthz stays 200, and the "
          "relay exits 0 once its joined pair ends",
          "[admin][e2e]") {
  auto options = v2_relay(2, with_admin());
  options.drain_timeout = "20";
  relay_process relay(options);
  const auto admin = admin_port_of(relay);
  CHECK(http_get(admin, "/readyz").status == 200);

  auto server = v2_server_with_certificate(relay);
  server->greet();
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  tcp_conn reverse = server->accept_client();
  client.send_all("before");
  REQUIRE(reverse.recv_exact(6) == "before");

  relay.signal(SIGTERM);
  bool not_ready = false;
  const auto deadline = steady::now() + 3s;
  while (!not_ready && steady::now() < deadline) {
    not_ready = http_get(admin, "/readyz").status == 503;
    if (!not_ready) std::this_thread::sleep_for(20ms);
  }
  CHECK(not_ready);
  CHECK(http_get(admin, "/healthz").status == 200);  // alive, just not taking new work
  // The joined pair still relays, both ways.
  client.send_all("during");
  CHECK(reverse.recv_exact(6) == "during");
  reverse.send_all("reply");
  CHECK(client.recv_exact(5) == "reply");

  client.close();
  reverse.close();
  const auto code = relay.wait_exit(10000ms);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(relay.sanitizer_output().empty());
}
