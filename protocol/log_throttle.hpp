// At most one log line per second for one kind of event: the first event is
// reported at once, later ones are counted and reported together, with the
// next event a second or more later, or by take_due() from a timer. Pure (the
// time is passed in); not thread-safe on its own.
#pragma once

#include <chrono>
#include <cstdint>

namespace tlsrelay {

class log_throttle {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr auto interval = std::chrono::seconds(1);

  // How many events one line should report now (this one and those kept
  // back); 0: stay quiet, it was counted.
  std::uint64_t note(clock::time_point now) {
    ++pending_;
    return take_due(now);
  }
  // Events kept back whose second is over (0 if none): report them now.
  std::uint64_t take_due(clock::time_point now) {
    if (pending_ == 0 || (reported_once_ && now - last_report_ < interval)) return 0;
    const auto n = pending_;
    pending_ = 0;
    last_report_ = now;
    reported_once_ = true;
    return n;
  }
  bool has_pending() const { return pending_ > 0; }

 private:
  clock::time_point last_report_{};
  std::uint64_t pending_ = 0;
  bool reported_once_ = false;
};

}  // namespace tlsrelay
