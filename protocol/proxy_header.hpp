// The binary PROXY protocol header, version 2 (HAProxy's "PROXY protocol"
// specification, section 2.2): written first on a connection the relay opens
// to a backend, so the backend learns the real client address.
//
//   bytes  0..11  signature  0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
//   byte   12     version (high nibble, 2) | command (low nibble: 0 LOCAL, 1 PROXY)
//   byte   13     family (high nibble: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX)
//                 | transport (low nibble: 0 UNSPEC, 1 STREAM, 2 DGRAM)
//   bytes 14..15  length of what follows, big-endian
//   then          TCP/IPv4 (0x11): src addr 4, dst addr 4, src port 2, dst port 2
//                 TCP/IPv6 (0x21): src addr 16, dst addr 16, src port 2, dst port 2
//                 then TLVs up to the length (skipped by decode)
//
// Pure: addresses are converted with inet_pton/inet_ntop, nothing else of the
// system is touched.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tlsrelay::proxy_v2 {

inline constexpr std::array<unsigned char, 12> signature{
  0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

inline constexpr unsigned char cmd_local = 0x20;  // version 2, LOCAL
inline constexpr unsigned char cmd_proxy = 0x21;  // version 2, PROXY
inline constexpr unsigned char family_unspec = 0x00;
inline constexpr unsigned char family_tcp4 = 0x11;
inline constexpr unsigned char family_tcp6 = 0x21;

// Signature, version/command, family, length: the part every header has.
inline constexpr std::size_t fixed_bytes = 16;
// Address block sizes of TCP over IPv4 and over IPv6.
inline constexpr std::size_t tcp4_address_bytes = 4 + 4 + 2 + 2;
inline constexpr std::size_t tcp6_address_bytes = 16 + 16 + 2 + 2;
// The length field is 16 bits: no header is longer than this.
inline constexpr std::size_t max_header_bytes = fixed_bytes + 0xffff;

struct addresses {
  std::string source_ip;  // textual IPv4 or IPv6 address, no brackets, no zone
  std::uint16_t source_port = 0;
  std::string destination_ip;
  std::uint16_t destination_port = 0;

  friend bool operator==(const addresses& a, const addresses& b) {
    return a.source_ip == b.source_ip && a.source_port == b.source_port &&
           a.destination_ip == b.destination_ip && a.destination_port == b.destination_port;
  }
  friend bool operator!=(const addresses& a, const addresses& b) { return !(a == b); }
};

// The header (PROXY command, TCP) for a connection from source to destination.
// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) counts as IPv4; if the two
// families still differ, both are written as IPv6 (the IPv4 one mapped).
// Returns "" if an address does not parse.
std::string encode(const addresses& a);

enum class decode_status {
  complete,   // a whole header starts `bytes`; header_bytes says how long it is
  need_more,  // what is there is a valid beginning; read more and decode again
  invalid,    // not a PROXY v2 header, or one for something other than TCP
};

struct decoded {
  decode_status status = decode_status::invalid;
  std::size_t header_bytes = 0;  // when complete: the header, TLVs included
  bool local = false;            // LOCAL command or UNSPEC family: no addresses
  addresses addr;                // when complete and not local. IPv4-mapped
                                 // IPv6 addresses come out as IPv4 (a.b.c.d).
};

// Decodes a header at the start of `bytes` (for backends and tests). TLVs after
// the addresses are skipped (counted in header_bytes). A LOCAL command (whatever
// its family) or the UNSPEC family is complete with local=true and empty
// addresses. UDP and UNIX families are invalid: the relay carries TCP only.
decoded decode(std::string_view bytes);

}  // namespace tlsrelay::proxy_v2
