#include "protocol/errc.hpp"

#include <string>

namespace tlsrelay {
namespace {

class protocol_category_impl final : public std::error_category {
public:
  const char* name() const noexcept override { return "tlsrelay.protocol"; }
  std::string message(int ev) const override {
    switch (static_cast<protocol_errc>(ev)) {
      case protocol_errc::line_too_long: return "line too long";
      case protocol_errc::empty_line: return "empty line";
      case protocol_errc::unknown_command: return "unknown command";
      case protocol_errc::missing_argument: return "missing argument";
      case protocol_errc::unexpected_argument: return "unexpected argument";
      case protocol_errc::bad_endpoint: return "not a HOST:PORT endpoint";
      case protocol_errc::bad_port: return "port is not a number in 1..65535";
      case protocol_errc::bad_port_count: return "port count must be even and at least 2";
      case protocol_errc::port_range_overflow: return "port range goes past 65535";
      case protocol_errc::bad_connection_id: return "connection id is not 32 hex digits";
      case protocol_errc::bad_version: return "unsupported protocol version";
      case protocol_errc::unknown_key: return "unknown key";
      case protocol_errc::duplicate_key: return "key given twice";
      case protocol_errc::bad_value: return "value not allowed for its key";
      case protocol_errc::bad_error_code: return "unknown error code";
    }
    return "unknown protocol error";
  }
};

}  // namespace

const std::error_category& protocol_category() noexcept {
  static const protocol_category_impl instance;
  return instance;
}

std::error_code make_error_code(protocol_errc e) noexcept {
  return {static_cast<int>(e), protocol_category()};
}

}  // namespace tlsrelay
