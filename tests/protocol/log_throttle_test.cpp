// One log line a second per kind of event, the rest summed up.
#include <catch2/catch.hpp>

#include "protocol/log_throttle.hpp"

using tlsrelay::log_throttle;
using namespace std::chrono_literals;

TEST_CASE("log_throttle reports the first event at once and sums up the rest once a second",
          "[protocol][log]") {
  log_throttle t;
  const auto t0 = log_throttle::clock::time_point{} + 100s;
  CHECK(t.note(t0) == 1);
  CHECK(t.note(t0 + 10ms) == 0);
  CHECK(t.note(t0 + 999ms) == 0);
  CHECK(t.has_pending());
  CHECK(t.take_due(t0 + 999ms) == 0);
  // A second after the last line, the next event reports itself and the two kept back.
  CHECK(t.note(t0 + 1000ms) == 3);
  CHECK_FALSE(t.has_pending());
  CHECK(t.note(t0 + 1200ms) == 0);
  CHECK(t.take_due(t0 + 2000ms) == 1);  // from a timer
  CHECK(t.take_due(t0 + 5000ms) == 0);  // nothing kept back
  CHECK(t.note(t0 + 5000ms) == 1);
}

TEST_CASE("log_throttle: a flood of a million events makes one line per second",
          "[protocol][log]") {
  log_throttle t;
  const auto t0 = log_throttle::clock::time_point{} + 100s;
  std::uint64_t lines = 0, reported = 0;
  for (int i = 0; i < 1000000; ++i) {  // one every 10 µs: 10 s of flood
    if (const auto n = t.note(t0 + i * 10us)) {
      ++lines;
      reported += n;
    }
  }
  reported += t.take_due(t0 + 20s);
  CHECK(lines == 10);
  CHECK(reported == 1000000);
}
