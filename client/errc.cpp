#include "client/errc.hpp"

#include <string>

namespace tlsrelay::client {
namespace {

class client_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "tlsrelay.client"; }
  std::string message(int ev) const override {
    switch (static_cast<client_errc>(ev)) {
      case client_errc::relay_unreachable:
        return "relay unreachable (name not resolved, connection refused or timed out)";
      case client_errc::tls_failed:
        return "TLS handshake with the relay failed (certificate not trusted or protocol error)";
      case client_errc::auth_failed:
        return "the relay refused our credentials (token or client certificate)";
      case client_errc::pool_exhausted:
        return "the relay has no free port pair (no_available_listeners)";
      case client_errc::port_unavailable:
        return "the requested public port is not available on the relay";
      case client_errc::name_unavailable:
        return "the requested name is reserved by someone else on the relay";
      case client_errc::too_many_sessions:
        return "too many sessions for this token on the relay";
      case client_errc::protocol_error:
        return "the relay broke the control protocol";
      case client_errc::heartbeat_lost:
        return "the control connection went silent (heartbeat lost)";
      case client_errc::session_lost:
        return "the relay closed the control connection";
      case client_errc::listener_closed:
        return "the listener was closed";
      case client_errc::relay_draining:
        return "the relay is shutting down (draining); reconnecting";
    }
    return "unknown client error";
  }
};

}  // namespace

const std::error_category& client_category() noexcept {
  static const client_category_impl instance;
  return instance;
}

std::error_code make_error_code(client_errc e) noexcept {
  return {static_cast<int>(e), client_category()};
}

}  // namespace tlsrelay::client
