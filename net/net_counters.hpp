// Counters net/ keeps of what it does, for the admin endpoint: atomics
// bumped on the io threads (relaxed: each is a tally, not a synchronisation)
// and read by the admin thread at scrape time.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "net/admission.hpp"

namespace tlsrelay::net {

struct net_counters {
  explicit net_counters(std::size_t pairs = 0)
    : pair_count(pairs), open_pair_bytes(std::make_unique<pair_bytes[]>(pairs)) {}

  // Bytes delivered by the pumps, per write: pairs still open are counted.
  std::atomic<std::uint64_t> bytes_client_to_server{0};
  std::atomic<std::uint64_t> bytes_server_to_client{0};
  // Control connections whose TLS handshake failed or timed out.
  std::atomic<std::uint64_t> tls_handshake_failures{0};
  // Joined pairs handed to another io thread than the one that accepted
  // them, to be pumped there (--io-threads above 1).
  std::atomic<std::uint64_t> pairs_moved{0};
  // Connections refused at accept, by refusal (index: the enum's value).
  std::array<std::atomic<std::uint64_t>, refusal_kinds> refused{};

  // Bytes delivered by the joined pairs open now on each pool pair (by pair
  // index). A pump's bytes leave this tally when it ends, just before its
  // totals go to its session with pump_finished: a session's bytes so far are
  // its ended pairs' (which it counts) plus these.
  struct pair_bytes {
    std::atomic<std::uint64_t> client_to_server{0};
    std::atomic<std::uint64_t> server_to_client{0};
  };
  const std::size_t pair_count;
  const std::unique_ptr<pair_bytes[]> open_pair_bytes;

  static void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) {
    counter.fetch_add(n, std::memory_order_relaxed);
  }
};

}  // namespace tlsrelay::net
