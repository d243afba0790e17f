// HOST:PORT as written in listener lines; IPv6 hosts in brackets ([::1]:12101).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace tlsrelay {

struct host_port {
  std::string host;        // name, IPv4 or IPv6 address (without brackets)
  std::uint16_t port = 0;  // 1..65535

  friend bool operator==(const host_port& a, const host_port& b) {
    return a.port == b.port && a.host == b.host;
  }
};

// "host:port", or "[v6]:port" when the host contains a colon.
std::string format_host_port(std::string_view host, std::uint16_t port);
inline std::string format_host_port(const host_port& ep) {
  return format_host_port(ep.host, ep.port);
}

// Parses a decimal port in 1..65535; protocol_errc::bad_port otherwise.
std::error_code parse_port(std::string_view text, std::uint16_t& out);

// Parses "host:port" or "[v6]:port"; protocol_errc::bad_endpoint or bad_port.
std::error_code parse_host_port(std::string_view text, host_port& out);

}  // namespace tlsrelay
