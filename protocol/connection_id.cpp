#include "protocol/connection_id.hpp"

#include "protocol/errc.hpp"

namespace tlsrelay {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string to_hex(const connection_id& id) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * connection_id::size);
  for (auto b : id.bytes) {
    out += digits[b >> 4];
    out += digits[b & 0xf];
  }
  return out;
}

std::error_code parse_connection_id(std::string_view text, connection_id& out) {
  if (text.size() != 2 * connection_id::size) return protocol_errc::bad_connection_id;
  connection_id id;
  for (std::size_t i = 0; i < connection_id::size; ++i) {
    const int hi = hex_value(text[2 * i]);
    const int lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return protocol_errc::bad_connection_id;
    id.bytes[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  out = id;
  return {};
}

}  // namespace tlsrelay
