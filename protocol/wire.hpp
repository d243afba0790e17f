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

// Protocol v2, chosen per control connection by TLS ALPN.
inline constexpr std::string_view alpn_v2 = "tlsrelay/2";

// Server → relay, the first line of a v2 control connection; its keys.
inline constexpr std::string_view hello = "hello";
inline constexpr std::string_view key_token = "token";
inline constexpr std::string_view key_name = "name";
inline constexpr std::string_view key_port = "port";
// Relay → server: hello accepted; carries the session secret.
inline constexpr std::string_view welcome = "welcome";
inline constexpr std::string_view key_session = "session";
inline constexpr std::string_view key_warm = "warm";  // warm connections the relay keeps
// Present (proxy=2) when every reverse connection starts with a PROXY v2
// header: a server parses one only then, so a client cannot forge its address.
inline constexpr std::string_view key_proxy = "proxy";
inline constexpr std::string_view proxy_version_2 = "2";
// Either direction: liveness.
inline constexpr std::string_view ping = "ping";
inline constexpr std::string_view pong = "pong";
// Relay → server: refusal, then close.
inline constexpr std::string_view error = "error";
inline constexpr std::string_view redirect = "redirect";
// The first line of a v2 reverse connection: for a waiting client, or warm.
inline constexpr std::string_view accept = "accept";
inline constexpr std::string_view ready = "ready";
// Keyed-hash label of a warm connection's ticket (warm_ticket.hpp).
inline constexpr std::string_view warm_ticket_label = "tlsrelay warm ticket ";

// Codes of `error <code> <text>`.
inline constexpr std::string_view err_auth_failed = "auth_failed";
inline constexpr std::string_view err_bad_request = "bad_request";
inline constexpr std::string_view err_port_unavailable = "port_unavailable";
inline constexpr std::string_view err_name_unavailable = "name_unavailable";
inline constexpr std::string_view err_too_many_sessions = "too_many_sessions";
inline constexpr std::string_view err_unsupported_version = "unsupported_version";
// The text of `error auth_failed ...` to a session whose token a reload removed.
inline constexpr std::string_view token_revoked = "token revoked";
// The relay is shutting down (or restarting): reconnect later, or to another
// node, with the same hello.
inline constexpr std::string_view err_draining = "draining";
inline constexpr std::string_view draining_text = "the relay is shutting down; reconnect later";

}  // namespace tlsrelay::wire
