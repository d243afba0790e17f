// How many warm reverse connections (protocol v2) a session keeps open ahead
// of demand: the sizing rule alone, without sockets or clocks, so that it can
// be tested as a table.
//
//   start                          target = min(2, max)
//   a warm connection is used      target unchanged (the caller opens a replacement)
//   new_connection (pool was dry)  target = min(max, 2 * target)
//   the relay closed one unused    after >= refusal_window: an expiry, target = max(1, target - 1)
//                                  sooner: a refusal (over its limit, bad ticket): stopped
//
// The caller keeps (open + being opened) == target: to_open() says how many
// more to start. Once stopped, none: the session goes on with new_connection.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>

namespace tlsrelay::client {

class warm_pool_size {
 public:
  // A warm connection the relay closes sooner than this after its ready line,
  // without pairing it, was refused rather than left to expire: the relay's
  // --warm-idle is whole seconds in practice (default 60).
  static constexpr std::chrono::milliseconds refusal_window{1000};

  enum class close_kind { expired, refused };

  // `max`: the most this session may keep (0: warm connections are off).
  explicit warm_pool_size(std::size_t max) : max_(max), target_(std::min<std::size_t>(2, max)) {}

  std::size_t max() const { return max_; }
  std::size_t target() const { return stopped() ? 0 : target_; }
  // Off from the start (max 0), or after a refusal.
  bool stopped() const { return stopped_ || max_ == 0; }

  // How many more to open when `current` are open or being opened.
  std::size_t to_open(std::size_t current) const {
    return stopped() || current >= target_ ? 0 : target_ - current;
  }

  // A client came through new_connection: the pool was too small for the demand.
  void fell_back() {
    if (!stopped()) target_ = std::min(max_, std::max<std::size_t>(1, target_ * 2));
  }

  // The relay closed an unused warm connection `open_for` after its ready line.
  close_kind closed_unused(std::chrono::steady_clock::duration open_for) {
    if (open_for >= refusal_window) {
      target_ = std::max<std::size_t>(1, target_ - 1);
      return close_kind::expired;
    }
    stopped_ = true;
    return close_kind::refused;
  }

  // No more for this session (the relay did something unusable).
  void stop() { stopped_ = true; }

 private:
  std::size_t max_;
  std::size_t target_;
  bool stopped_ = false;
};

}  // namespace tlsrelay::client
