// The id of one waiting client in protocol v2: 128 random bits, written as 32
// lowercase hex digits. Whoever makes one supplies the randomness (a CSPRNG);
// this file only formats and parses.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace tlsrelay {

struct connection_id {
  static constexpr std::size_t size = 16;  // bytes
  std::array<std::uint8_t, size> bytes{};

  friend bool operator==(const connection_id& a, const connection_id& b) {
    return a.bytes == b.bytes;
  }
  friend bool operator!=(const connection_id& a, const connection_id& b) { return !(a == b); }
  friend bool operator<(const connection_id& a, const connection_id& b) {
    return a.bytes < b.bytes;
  }
};

std::string to_hex(const connection_id& id);

// Equality in time independent of where the two differ: ids and warm tickets
// are secrets that a peer guesses at, and must not learn them byte by byte.
bool constant_time_equal(const connection_id& a, const connection_id& b);

// Exactly 32 hex digits (either case); protocol_errc::bad_connection_id otherwise.
std::error_code parse_connection_id(std::string_view text, connection_id& out);

}  // namespace tlsrelay

template <>
struct std::hash<tlsrelay::connection_id> {
  std::size_t operator()(const tlsrelay::connection_id& id) const noexcept {
    // The bytes are random: any eight of them are a good hash.
    std::size_t h = 0;
    for (std::size_t i = 0; i < sizeof h; ++i) h = (h << 8) | id.bytes[i];
    return h;
  }
};
