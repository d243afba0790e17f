// Bytes as lowercase hex digits (ids, secrets, fingerprints on the wire and in files).
#pragma once

#include <string>
#include <string_view>

namespace tlsrelay {

inline std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * bytes.size());
  for (unsigned char b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 0xf];
  }
  return out;
}

}  // namespace tlsrelay
