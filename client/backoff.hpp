// Reconnect delays: exponential growth with "full jitter" (each delay is
// uniform in [0, min(cap, base * 2^attempt)]), so that many servers cut off
// by one relay restart do not all come back in the same instant.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace tlsrelay::client {

struct backoff_policy {
  std::chrono::milliseconds base{500};   // ceiling of the first delay
  std::chrono::milliseconds cap{30000};  // no delay is ever longer
};

class backoff {
 public:
  explicit backoff(backoff_policy policy, std::uint64_t seed = std::random_device{}());

  // The delay before the next attempt; each call raises the ceiling.
  std::chrono::milliseconds next();
  // After a successful session: the next delay is short again.
  void reset() { attempt_ = 0; }
  unsigned attempts() const { return attempt_; }
  // The ceiling of the delay next() would return now.
  std::chrono::milliseconds ceiling() const;

 private:
  backoff_policy policy_;
  unsigned attempt_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace tlsrelay::client
