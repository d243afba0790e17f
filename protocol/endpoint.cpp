#include "protocol/endpoint.hpp"

#include "protocol/errc.hpp"

namespace tlsrelay {

std::string format_host_port(std::string_view host, std::uint16_t port) {
  std::string out;
  out.reserve(host.size() + 8);
  const bool ipv6 = host.find(':') != std::string_view::npos;
  if (ipv6) out += '[';
  out += host;
  if (ipv6) out += ']';
  out += ':';
  out += std::to_string(port);
  return out;
}

std::error_code parse_port(std::string_view text, std::uint16_t& out) {
  if (text.empty() || text.size() > 5) return protocol_errc::bad_port;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return protocol_errc::bad_port;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) return protocol_errc::bad_port;
  out = static_cast<std::uint16_t>(value);
  return {};
}

std::error_code parse_host_port(std::string_view text, host_port& out) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return protocol_errc::bad_endpoint;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    if (host.find(':') == std::string_view::npos) return protocol_errc::bad_endpoint;
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return protocol_errc::bad_endpoint;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    // An unbracketed host with a colon is an IPv6 address missing its brackets.
    if (host.find(':') != std::string_view::npos) return protocol_errc::bad_endpoint;
  }
  if (host.empty()) return protocol_errc::bad_endpoint;
  for (char c : host)
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '[' || c == ']')
      return protocol_errc::bad_endpoint;
  std::uint16_t p = 0;
  if (auto ec = parse_port(port, p)) return ec;
  out.host.assign(host);
  out.port = p;
  return {};
}

}  // namespace tlsrelay
