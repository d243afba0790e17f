#include "client/backoff.hpp"

#include <algorithm>

namespace tlsrelay::client {

backoff::backoff(backoff_policy policy, std::uint64_t seed) : policy_(policy), rng_(seed) {
  if (policy_.base.count() < 1) policy_.base = std::chrono::milliseconds(1);
  if (policy_.cap < policy_.base) policy_.cap = policy_.base;
}

std::chrono::milliseconds backoff::ceiling() const {
  // base * 2^attempt without overflow: stop doubling once past the cap.
  auto ceiling = policy_.base;
  for (unsigned i = 0; i < attempt_ && ceiling < policy_.cap; ++i) ceiling *= 2;
  return std::min(ceiling, policy_.cap);
}

std::chrono::milliseconds backoff::next() {
  const auto high = ceiling();
  if (attempt_ < 64) ++attempt_;
  std::uniform_int_distribution<std::chrono::milliseconds::rep> pick(0, high.count());
  return std::chrono::milliseconds(pick(rng_));
}

}  // namespace tlsrelay::client
