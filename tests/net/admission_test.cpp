// What net/ admits before any actor hears of a connection: the counts go up
// with each admission, down when its ticket goes, and each limit refuses
// exactly the one connection past it.
#include <catch2/catch.hpp>

#include "net/admission.hpp"

using namespace tlsrelay::net;
using namespace std::chrono_literals;

namespace {

const auto t0 = std::chrono::steady_clock::time_point{} + 1000s;

}  // namespace

SCENARIO("admission counts connections and gives them back with their tickets",
         "[net][admission]") {
  admission_limits limits;
  limits.max_connections = 3;
  auto a = admission::make(limits);
  admission::ticket c1, c2, c3, c4, h1, u;
  CHECK(a->admit_client("192.0.2.1", t0, c1) == refusal::none);
  CHECK(a->admit_reverse("192.0.2.2", false, c2, u) == refusal::none);
  CHECK(a->admit_control("192.0.2.3", t0, c3, h1) == refusal::none);
  CHECK(a->connections() == 3);
  CHECK(a->admit_client("192.0.2.4", t0, c4) == refusal::connections);
  CHECK_FALSE(c4);
  c2.release();
  CHECK(a->connections() == 2);
  CHECK(a->admit_client("192.0.2.4", t0, c4) == refusal::none);
  {
    admission::ticket moved = std::move(c4);
    CHECK(a->connections() == 3);
  }
  CHECK(a->connections() == 2);  // the moved-to ticket gave it back
  c1 = admission::ticket{};
  c3.release();
  h1.release();
  CHECK(a->connections() == 0);
  CHECK(a->handshakes() == 0);
  CHECK(a->tracked_sources() == 0);
}

SCENARIO("handshakes are bounded in all and per address", "[net][admission]") {
  admission_limits limits;
  limits.max_handshakes = 3;
  limits.max_handshakes_per_source = 2;
  auto a = admission::make(limits);
  admission::ticket c[4], h[4];
  CHECK(a->admit_control("198.51.100.1", t0, c[0], h[0]) == refusal::none);
  CHECK(a->admit_control("198.51.100.1", t0, c[1], h[1]) == refusal::none);
  THEN("a third from the same address is refused, one from another is not") {
    CHECK(a->admit_control("198.51.100.1", t0, c[2], h[2]) == refusal::handshakes_per_source);
    CHECK(a->admit_control("198.51.100.2", t0, c[2], h[2]) == refusal::none);
    AND_THEN("the global limit holds for everyone") {
      CHECK(a->admit_control("198.51.100.3", t0, c[3], h[3]) == refusal::handshakes);
    }
    AND_THEN("a finished handshake frees its place while the connection stays") {
      h[0].release();
      CHECK(a->handshakes() == 2);
      CHECK(a->connections() == 3);
      CHECK(a->admit_control("198.51.100.1", t0, c[3], h[3]) == refusal::none);
    }
  }
}

SCENARIO("unchecked reverse connections are bounded per address", "[net][admission]") {
  admission_limits limits;
  limits.max_unchecked_per_source = 2;
  auto a = admission::make(limits);
  admission::ticket c[5], u[5];
  CHECK(a->admit_reverse("203.0.113.9", true, c[0], u[0]) == refusal::none);
  CHECK(a->admit_reverse("203.0.113.9", true, c[1], u[1]) == refusal::none);
  CHECK(a->admit_reverse("203.0.113.9", true, c[2], u[2]) == refusal::unchecked_per_source);
  CHECK(a->admit_reverse("203.0.113.8", true, c[2], u[2]) == refusal::none);
  // Reverse connections that need no check (v1) are not counted.
  CHECK(a->admit_reverse("203.0.113.9", false, c[3], u[3]) == refusal::none);
  CHECK_FALSE(u[3]);
  u[0].release();  // its first line was read
  CHECK(a->admit_reverse("203.0.113.9", true, c[4], u[4]) == refusal::none);
}

SCENARIO("the client rate is a token bucket per address: it bites and recovers",
         "[net][admission]") {
  admission_limits limits;
  limits.client_rate = 5;  // bursts of 10
  auto a = admission::make(limits);
  std::vector<admission::ticket> held(40);
  int admitted = 0;
  for (int i = 0; i < 15; ++i)
    if (a->admit_client("192.0.2.50", t0, held[i]) == refusal::none) ++admitted;
  CHECK(admitted == 10);
  admission::ticket other;
  CHECK(a->admit_client("192.0.2.51", t0, other) == refusal::none);
  THEN("after 1 s five more are admitted, not six") {
    int later = 0;
    for (int i = 15; i < 25; ++i)
      if (a->admit_client("192.0.2.50", t0 + 1s, held[i]) == refusal::none) ++later;
    CHECK(later == 5);
  }
  THEN("after a long pause the bucket is full again, no fuller") {
    int later = 0;
    for (int i = 15; i < 40; ++i)
      if (a->admit_client("192.0.2.50", t0 + 1h, held[i]) == refusal::none) ++later;
    CHECK(later == 10);
  }
}

SCENARIO("refusals are logged at most once a second per kind, the rest summed up",
         "[net][admission]") {
  refusal_log log;
  CHECK(log.note(refusal::client_rate, t0) == 1);
  CHECK(log.note(refusal::client_rate, t0 + 100ms) == 0);
  CHECK(log.note(refusal::client_rate, t0 + 200ms) == 0);
  CHECK(log.note(refusal::connections, t0 + 200ms) == 1);  // another kind speaks for itself
  CHECK(log.has_pending());
  CHECK(log.take_due(refusal::client_rate, t0 + 500ms) == 0);  // its second is not over
  CHECK(log.take_due(refusal::client_rate, t0 + 1000ms) == 2);
  CHECK_FALSE(log.has_pending());
  CHECK(log.note(refusal::client_rate, t0 + 1500ms) == 0);  // within a second of the summary
  CHECK(log.take_due(refusal::client_rate, t0 + 2000ms) == 1);
  CHECK(log.note(refusal::client_rate, t0 + 3100ms) == 1);
}
