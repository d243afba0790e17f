// Every string the relay puts on or reads from the wire.
#pragma once

#include <string_view>

namespace tlsrelay::wire {

inline constexpr std::string_view line_end = "\r\n";

// Relay → server control lines (protocol v1, identical to tx_tlsrelay).
inline constexpr std::string_view public_listener = "public_listener";
inline constexpr std::string_view reverse_listener = "reverse_listener";
inline constexpr std::string_view new_connection = "new_connection";
inline constexpr std::string_view no_available_listeners = "no_available_listeners";

// Written, without a line ending, to a connection on a public or reverse port
// whose pair has no control session; the connection is then closed.
inline constexpr std::string_view no_controller_linked = "no controller linked";

}  // namespace tlsrelay::wire
