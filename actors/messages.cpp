#include "actors/messages.hpp"

namespace tlsrelay {

std::string to_string(relay_errc x) {
  switch (x) {
    case relay_errc::pool_exhausted: return "pool_exhausted";
  }
  return "unknown";
}

caf::error make_error(relay_errc x) {
  return {static_cast<std::uint8_t>(x), relay_error_category};
}

std::string to_string(port_kind k) {
  return k == port_kind::public_port ? "public" : "reverse";
}

std::string to_string(close_reason r) {
  switch (r) {
    case close_reason::peer_closed: return "peer closed";
    case close_reason::peer_error: return "peer error";
    case close_reason::line_too_long: return "control line too long";
    case close_reason::write_backlog: return "peer does not read its control connection";
  }
  return "unknown";
}

}  // namespace tlsrelay
