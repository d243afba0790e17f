// Errors of the pure protocol layer, as a std::error_code category.
#pragma once

#include <system_error>

namespace tlsrelay {

enum class protocol_errc {
  line_too_long = 1,   // a line exceeded max_control_line_bytes
  empty_line,          // nothing but a line ending
  unknown_command,     // first word is not a known message
  missing_argument,    // a message that needs an argument had none
  unexpected_argument, // a message that takes no argument had one
  bad_endpoint,        // HOST:PORT that does not parse
  bad_port,            // port not a number in 1..65535
  bad_port_count,      // pool size odd, zero or too large
  port_range_overflow, // pool would go past 65535
  bad_connection_id,   // not 32 hex digits
  bad_version,         // hello with a version other than 2
  unknown_key,         // hello with a key it does not define
  duplicate_key,       // hello naming a key twice
  bad_value,           // a key's value outside its alphabet or length
  bad_error_code,      // error line with an unknown code
};

const std::error_category& protocol_category() noexcept;
std::error_code make_error_code(protocol_errc e) noexcept;

}  // namespace tlsrelay

template <>
struct std::is_error_code_enum<tlsrelay::protocol_errc> : std::true_type {};
