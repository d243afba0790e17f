#include "protocol/connection_id.hpp"

#include <openssl/crypto.h>

#include "protocol/errc.hpp"
#include "protocol/hex.hpp"

namespace tlsrelay {

bool constant_time_equal(const connection_id& a, const connection_id& b) {
  return CRYPTO_memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size()) == 0;
}

std::string to_hex(const connection_id& id) {
  return to_hex(std::string_view(reinterpret_cast<const char*>(id.bytes.data()), id.bytes.size()));
}

std::error_code parse_connection_id(std::string_view text, connection_id& out) {
  if (text.size() != 2 * connection_id::size) return protocol_errc::bad_connection_id;
  connection_id id;
  for (std::size_t i = 0; i < connection_id::size; ++i) {
    const int hi = hex_digit_value(text[2 * i]);
    const int lo = hex_digit_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return protocol_errc::bad_connection_id;
    id.bytes[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  out = id;
  return {};
}

}  // namespace tlsrelay
