// Where the port pool lies, as in the original: with control port P and
// port count N, reverse ports are P+1 … P+N/2 and public ports P+N/2+1 … P+N;
// pair i is (reverse P+1+i, public P+N/2+1+i).
#pragma once

#include <cstdint>
#include <optional>
#include <system_error>

namespace tlsrelay {

using pair_index = std::uint32_t;

class pool_layout {
public:
  // protocol_errc::bad_port_count when N is odd or zero,
  // protocol_errc::port_range_overflow when P+N > 65535, bad_port when P is 0.
  static std::error_code make(unsigned control_port, unsigned port_count, pool_layout& out);

  std::uint16_t control_port() const { return control_port_; }
  pair_index pair_count() const { return pair_count_; }
  std::uint16_t reverse_port(pair_index i) const {
    return static_cast<std::uint16_t>(control_port_ + 1 + i);
  }
  std::uint16_t public_port(pair_index i) const {
    return static_cast<std::uint16_t>(control_port_ + pair_count_ + 1 + i);
  }
  std::uint16_t last_port() const {
    return static_cast<std::uint16_t>(control_port_ + 2 * pair_count_);
  }

private:
  std::uint16_t control_port_ = 0;
  pair_index pair_count_ = 0;
};

}  // namespace tlsrelay
