// Why a relay listener failed, as a std::error_code category ("tlsrelay.client").
//
// Every failure of the client library is translated once, at the boundary
// where it happens (TCP connect, TLS handshake, a relay line, a silent
// control connection), into one of these codes; the human detail (the
// OpenSSL reason, the relay's error text) travels next to it as a string.
#pragma once

#include <system_error>

namespace tlsrelay::client {

enum class client_errc {
  relay_unreachable = 1,  // name not resolved, connection refused or timed out
  tls_failed,             // TLS handshake failed, incl. the relay's certificate not verifying
  auth_failed,            // the relay refused our token or client certificate
  pool_exhausted,         // no_available_listeners: the relay has no free port pair
  port_unavailable,       // the requested public port is not in the pool or is taken
  name_unavailable,       // the requested name is reserved for another token
  too_many_sessions,      // the token's session limit is reached
  protocol_error,         // the relay said something outside the protocol (or no v2)
  heartbeat_lost,         // the control connection was silent for 3 heartbeat intervals
  session_lost,           // the relay closed the control connection of a running session
  listener_closed,        // close() was called
  relay_draining,         // the relay is shutting down (`error draining`): retried, never fatal
};

const std::error_category& client_category() noexcept;
std::error_code make_error_code(client_errc e) noexcept;

}  // namespace tlsrelay::client

template <>
struct std::is_error_code_enum<tlsrelay::client::client_errc> : std::true_type {};
