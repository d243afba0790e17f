// The content of the relay's `--state FILE`: name reservations that survive a
// restart. Written by the relay, so the format is strict:
//
//   tlsrelay-state 1
//   reservation <name> <public-port> <expires-unix-ms> <owner>
//   ...
//
// Fields are separated by one space, every line ends in "\n" (a missing final
// newline is tolerated). <name> as v2::valid_name, <public-port> 1..65535,
// <expires-unix-ms> a decimal 64-bit signed integer (milliseconds since the
// Unix epoch), <owner> "-" for none or the 64-hex-digit fingerprint of the
// owner. No two reservations share a name or a public port.
//
// Pure: the caller reads and writes the file (atomically, by rename).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tlsrelay {

inline constexpr std::string_view state_file_header = "tlsrelay-state 1";
inline constexpr std::size_t owner_fingerprint_hex_digits = 64;

// An owner as reservations carry it: 64 hex digits (either case).
bool is_owner_fingerprint(std::string_view text);

struct reservation_record {
  std::string name;
  std::uint16_t public_port = 0;
  std::int64_t expires_unix_ms = 0;
  std::string owner;  // "" when none, else 64 hex digits (as read, case kept)

  friend bool operator==(const reservation_record& a, const reservation_record& b) {
    return a.name == b.name && a.public_port == b.public_port &&
           a.expires_unix_ms == b.expires_unix_ms && a.owner == b.owner;
  }
  friend bool operator!=(const reservation_record& a, const reservation_record& b) {
    return !(a == b);
  }
};

// The whole file, header included. Records are written in the given order and
// must be valid as parse_state accepts them (valid names, ports 1..65535,
// owners "" or 64 hex digits, no duplicate name or port); then
// parse_state(format_state(r)) gives back r.
std::string format_state(const std::vector<reservation_record>& records);

// Returns "" and the records in file order, or one message "line N: ..." for a
// corrupt file (bad header, unknown record, bad name/port/number/owner,
// duplicate name or port, trailing garbage), and `out` untouched.
std::string parse_state(std::string_view text, std::vector<reservation_record>& out);

}  // namespace tlsrelay
