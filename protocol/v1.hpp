// Protocol v1: the control lines of the original tx_tlsrelay, relay → server.
//
//   public_listener <HOST>:<PORT>   the address clients use
//   reverse_listener <HOST>:<PORT>  the address the server connects back to
//   new_connection                  a client waits: open one reverse connection
//   no_available_listeners          pool exhausted; the relay then closes
//
// A v1 server sends nothing; the relay ignores (and logs) whatever it sends.
#pragma once

#include <string>
#include <string_view>
#include <system_error>
#include <variant>

#include "protocol/endpoint.hpp"

namespace tlsrelay::v1 {

struct public_listener {
  host_port endpoint;
};
struct reverse_listener {
  host_port endpoint;
};
struct new_connection {};
struct no_available_listeners {};

using relay_message =
  std::variant<public_listener, reverse_listener, new_connection, no_available_listeners>;

// The complete line, "\r\n" included.
std::string format_line(const relay_message& msg);

// Parses one line without its ending (as line_splitter returns it).
std::error_code parse_line(std::string_view line, relay_message& out);

}  // namespace tlsrelay::v1
