// Counters net/ keeps of what it does, for the admin endpoint: atomics
// bumped on the io thread (relaxed: each is a tally, not a synchronisation)
// and read by the admin thread at scrape time.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "net/admission.hpp"

namespace tlsrelay::net {

struct net_counters {
  // Bytes delivered by the pumps, per write: pairs still open are counted.
  std::atomic<std::uint64_t> bytes_client_to_server{0};
  std::atomic<std::uint64_t> bytes_server_to_client{0};
  // Control connections whose TLS handshake failed or timed out.
  std::atomic<std::uint64_t> tls_handshake_failures{0};
  // Connections refused at accept, by refusal (index: the enum's value).
  std::array<std::atomic<std::uint64_t>, refusal_kinds> refused{};

  static void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) {
    counter.fetch_add(n, std::memory_order_relaxed);
  }
};

}  // namespace tlsrelay::net
