#include "actors/messages.hpp"

#include <caf/make_message.hpp>
#include <caf/message.hpp>

namespace tlsrelay {

std::string to_string(relay_errc x) {
  switch (x) {
    case relay_errc::pool_exhausted: return "pool_exhausted";
    case relay_errc::port_unavailable: return "port_unavailable";
    case relay_errc::name_unavailable: return "name_unavailable";
    case relay_errc::too_many_sessions: return "too_many_sessions";
    case relay_errc::auth_failed: return "auth_failed";
    case relay_errc::bad_request: return "bad_request";
    case relay_errc::unsupported_version: return "unsupported_version";
    case relay_errc::draining: return "draining";
    case relay_errc::redirected: return "redirected";
  }
  return "unknown";
}

caf::error make_error(relay_errc x) {
  return {static_cast<std::uint8_t>(x), relay_error_category};
}

caf::error make_error(relay_errc x, std::string reason) {
  return {static_cast<std::uint8_t>(x), relay_error_category, caf::make_message(std::move(reason))};
}

std::string reason_of(const caf::error& err) {
  const auto& ctx = err.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0)) return ctx.get_as<std::string>(0);
  return {};
}

bool is(const caf::error& err, relay_errc x) {
  return err.category() == relay_error_category && err.code() == static_cast<std::uint8_t>(x);
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

std::string to_string(reverse_framing f) {
  return f == reverse_framing::raw ? "raw" : "accept_line";
}

std::string to_string(pair_end e) {
  switch (e) {
    case pair_end::closed: return "closed";
    case pair_end::reset: return "reset";
    case pair_end::idle_timeout: return "idle_timeout";
    case pair_end::half_close_timeout: return "half_close_timeout";
    case pair_end::cut: return "cut";
  }
  return "unknown";
}

}  // namespace tlsrelay
