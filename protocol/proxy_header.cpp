#include "protocol/proxy_header.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>

namespace tlsrelay::proxy_v2 {
namespace {

using ipv6_bytes = std::array<unsigned char, 16>;

// ::ffff:0:0/96, the IPv4-mapped IPv6 prefix.
constexpr std::array<unsigned char, 12> mapped_prefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// One address as 16 bytes; an IPv4 one (written as IPv4 or IPv4-mapped) is
// stored mapped, so that both kinds compare and convert the same way.
struct parsed_ip {
  ipv6_bytes bytes{};
  bool v4 = false;
};

bool parse_ip(const std::string& text, parsed_ip& out) {
  // inet_pton reads a C string: a NUL inside would hide what follows it.
  if (text.find('\0') != std::string::npos) return false;
  unsigned char v4[4];
  if (inet_pton(AF_INET, text.c_str(), v4) == 1) {
    std::copy(mapped_prefix.begin(), mapped_prefix.end(), out.bytes.begin());
    std::copy(v4, v4 + 4, out.bytes.begin() + 12);
    out.v4 = true;
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), out.bytes.data()) != 1) return false;
  out.v4 = std::equal(mapped_prefix.begin(), mapped_prefix.end(), out.bytes.begin());
  return true;
}

std::string ip_text(int family, const unsigned char* bytes) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (!inet_ntop(family, bytes, buf, sizeof buf)) return {};
  return buf;
}

// An IPv6 address from the wire; a mapped IPv4 one is written as IPv4.
std::string ip6_text(const unsigned char* bytes) {
  if (std::equal(mapped_prefix.begin(), mapped_prefix.end(), bytes))
    return ip_text(AF_INET, bytes + 12);
  return ip_text(AF_INET6, bytes);
}

void put_u16(std::string& out, std::uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xff);
}

std::uint16_t get_u16(const unsigned char* p) {
  return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

}  // namespace

std::string encode(const addresses& a) {
  parsed_ip src, dst;
  if (!parse_ip(a.source_ip, src) || !parse_ip(a.destination_ip, dst)) return {};
  const bool v4 = src.v4 && dst.v4;
  const std::size_t address_bytes = v4 ? tcp4_address_bytes : tcp6_address_bytes;

  std::string out(signature.begin(), signature.end());
  out += static_cast<char>(cmd_proxy);
  out += static_cast<char>(v4 ? family_tcp4 : family_tcp6);
  put_u16(out, static_cast<std::uint16_t>(address_bytes));
  for (const auto* ip : {&src, &dst}) {
    const auto first = v4 ? ip->bytes.begin() + 12 : ip->bytes.begin();
    out.append(first, ip->bytes.end());
  }
  put_u16(out, a.source_port);
  put_u16(out, a.destination_port);
  return out;
}

decoded decode(std::string_view bytes) {
  decoded d;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();

  // Reject a wrong signature as early as its first wrong byte.
  const std::size_t sig_seen = std::min(n, signature.size());
  if (!std::equal(signature.begin(), signature.begin() + sig_seen, p)) return d;
  if (n <= signature.size()) {
    d.status = decode_status::need_more;
    return d;
  }

  const unsigned char ver_cmd = p[12];
  if (ver_cmd != cmd_local && ver_cmd != cmd_proxy) return d;
  const bool local = ver_cmd == cmd_local;

  if (n < 14) {
    d.status = decode_status::need_more;
    return d;
  }
  // A LOCAL header's family is ignored (spec 2.2); a PROXY header must name
  // TCP over IPv4 or IPv6, or UNSPEC (the sender knows no addresses).
  const unsigned char family = p[13];
  if (!local && family != family_unspec && family != family_tcp4 && family != family_tcp6)
    return d;

  if (n < fixed_bytes) {
    d.status = decode_status::need_more;
    return d;
  }
  const std::size_t length = get_u16(p + 14);
  const bool without_addresses = local || family == family_unspec;
  const std::size_t address_bytes = without_addresses ? 0
                                    : family == family_tcp4 ? tcp4_address_bytes
                                                            : tcp6_address_bytes;
  if (length < address_bytes) return d;  // too short for its own addresses

  const std::size_t total = fixed_bytes + length;
  if (n < total) {
    d.status = decode_status::need_more;
    return d;
  }

  d.status = decode_status::complete;
  d.header_bytes = total;
  if (without_addresses) {
    d.local = true;
    return d;
  }
  const unsigned char* a = p + fixed_bytes;
  if (family == family_tcp4) {
    d.addr.source_ip = ip_text(AF_INET, a);
    d.addr.destination_ip = ip_text(AF_INET, a + 4);
    d.addr.source_port = get_u16(a + 8);
    d.addr.destination_port = get_u16(a + 10);
  } else {
    d.addr.source_ip = ip6_text(a);
    d.addr.destination_ip = ip6_text(a + 16);
    d.addr.source_port = get_u16(a + 32);
    d.addr.destination_port = get_u16(a + 34);
  }
  return d;
}

}  // namespace tlsrelay::proxy_v2
