// The pure parts of the client library: backoff, error messages, option checks.
#include <catch2/catch.hpp>

#include "client/backoff.hpp"
#include "client/errc.hpp"
#include "client/options.hpp"

using namespace tlsrelay;
using namespace tlsrelay::client;
using namespace std::chrono_literals;

SCENARIO("backoff grows exponentially from 0.5 s to 30 s, every delay jittered below its ceiling",
         "[client][unit]") {
  backoff b({500ms, 30000ms}, 42);
  std::chrono::milliseconds expected_ceiling = 500ms;
  for (int attempt = 0; attempt < 12; ++attempt) {
    CHECK(b.ceiling() == expected_ceiling);
    const auto d = b.next();
    CHECK(d >= 0ms);
    CHECK(d <= expected_ceiling);
    expected_ceiling = std::min(expected_ceiling * 2, std::chrono::milliseconds(30000));
  }
  CHECK(b.ceiling() == 30000ms);
  WHEN("a session succeeded") {
    b.reset();
    THEN("the next delay is short again") { CHECK(b.next() <= 500ms); }
  }
}

SCENARIO("backoff delays are spread (full jitter), not all at the ceiling", "[client][unit]") {
  backoff b({500ms, 30000ms}, 7);
  for (int i = 0; i < 8; ++i) b.next();  // ceiling now 30 s
  std::chrono::milliseconds low = 30000ms, high = 0ms;
  for (int i = 0; i < 200; ++i) {
    const auto d = b.next();
    low = std::min(low, d);
    high = std::max(high, d);
  }
  CHECK(low < 10000ms);
  CHECK(high > 20000ms);
}

SCENARIO("every client error has a message for humans", "[client][unit]") {
  for (int e = 1; e <= static_cast<int>(client_errc::listener_closed); ++e) {
    const std::error_code ec = static_cast<client_errc>(e);
    CHECK(ec.category().name() == std::string("tlsrelay.client"));
    CHECK(ec.message().find("unknown") == std::string::npos);
  }
  CHECK(std::error_code(client_errc::heartbeat_lost).message().find("heartbeat") !=
        std::string::npos);
}

SCENARIO("option checks name what is wrong", "[client][unit]") {
  listener_options o;
  o.relay = {"relay.example", 12000};
  CHECK(validate(o) == "");
  auto with = [&](auto change) {
    auto copy = o;
    change(copy);
    return validate(copy);
  };
  CHECK_THAT(with([](auto& x) { x.relay.host.clear(); }), Catch::Contains("host"));
  // Every seed is checked, and the bad one is named by its place.
  CHECK(with([](auto& x) { x.relays = {{"127.0.0.1", 2}, {"relay.example", 3}}; }) == "");
  CHECK_THAT(with([](auto& x) { x.relays = {{"127.0.0.1", 2}, {"relay.example", 0}}; }),
             Catch::Contains("relay address 3") && Catch::Contains("port"));
  CHECK_THAT(with([](auto& x) { x.relays = {{"", 2}}; }), Catch::Contains("relay address 2"));
  CHECK_THAT(with([](auto& x) {
               x.protocol = protocol_version::v1;
               x.token = "t";
             }),
             Catch::Contains("protocol 2"));
  CHECK_THAT(with([](auto& x) { x.token = "has space"; }), Catch::Contains("token"));
  CHECK_THAT(with([](auto& x) { x.name = "Upper"; }), Catch::Contains("name"));
  CHECK_THAT(with([](auto& x) { x.name = std::string(64, 'a'); }), Catch::Contains("name"));
  CHECK(with([](auto& x) { x.name = std::string(63, 'a'); }) == "");
  CHECK_THAT(with([](auto& x) { x.tls.cert_file = "c.pem"; }), Catch::Contains("key"));
  CHECK_THAT(with([](auto& x) {
               x.tls.insecure = true;
               x.tls.ca_file = "ca.pem";
             }),
             Catch::Contains("insecure"));
  CHECK_THAT(with([](auto& x) { x.heartbeat_interval = 0ms; }), Catch::Contains("heartbeat"));
  CHECK_THAT(with([](auto& x) { x.max_queued_connections = 0; }), Catch::Contains("queue"));
}
