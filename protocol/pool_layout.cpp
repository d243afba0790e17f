#include "protocol/pool_layout.hpp"

#include "protocol/errc.hpp"

namespace tlsrelay {

std::error_code pool_layout::make(unsigned control_port, unsigned port_count, pool_layout& out) {
  if (control_port == 0 || control_port > 65535) return protocol_errc::bad_port;
  if (port_count == 0 || port_count % 2 != 0) return protocol_errc::bad_port_count;
  // Not `control_port + port_count > 65535`: that sum wraps in `unsigned` for a
  // huge port_count and would let it through.
  if (port_count > 65535u - control_port) return protocol_errc::port_range_overflow;
  out.control_port_ = static_cast<std::uint16_t>(control_port);
  out.pair_count_ = port_count / 2;
  return {};
}

}  // namespace tlsrelay
