#include "protocol/state_file.hpp"

#include <limits>
#include <unordered_map>

#include "protocol/endpoint.hpp"
#include "protocol/v2.hpp"

namespace tlsrelay {
namespace {

constexpr std::string_view header_name = "tlsrelay-state ";  // the header before its version
constexpr std::string_view record_reservation = "reservation";
constexpr std::string_view no_owner = "-";

std::string at_line(std::size_t line, std::string_view what) {
  std::string out = "line " + std::to_string(line) + ": ";
  out += what;
  return out;
}

// Fields separated by single spaces; false on an empty field (two spaces, a
// leading or a trailing space).
bool split_spaces(std::string_view line, std::vector<std::string_view>& out) {
  out.clear();
  for (;;) {
    const auto space = line.find(' ');
    const auto field = line.substr(0, space);
    if (field.empty()) return false;
    out.push_back(field);
    if (space == std::string_view::npos) return true;
    line.remove_prefix(space + 1);
  }
}

// -?[0-9]+ within the range of int64_t.
bool parse_int64(std::string_view text, std::int64_t& out) {
  const bool negative = !text.empty() && text.front() == '-';
  if (negative) text.remove_prefix(1);
  if (text.empty()) return false;
  const std::uint64_t limit =
    static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) + (negative ? 1 : 0);
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (limit - digit) / 10) return false;
    value = value * 10 + digit;
  }
  // Two's complement: -limit for limit = 2^63 is int64 min, reached without overflow.
  out = negative ? static_cast<std::int64_t>(0 - value) : static_cast<std::int64_t>(value);
  return true;
}

}  // namespace

bool is_owner_fingerprint(std::string_view text) {
  if (text.size() != owner_fingerprint_hex_digits) return false;
  for (char c : text) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return false;
  }
  return true;
}

std::string format_state(const std::vector<reservation_record>& records) {
  std::string out(state_file_header);
  out += '\n';
  for (const auto& r : records) {
    out += record_reservation;
    out += ' ';
    out += r.name;
    out += ' ';
    out += std::to_string(r.public_port);
    out += ' ';
    out += std::to_string(r.expires_unix_ms);
    out += ' ';
    out += r.owner.empty() ? no_owner : std::string_view(r.owner);
    out += '\n';
  }
  return out;
}

std::string parse_state(std::string_view text, std::vector<reservation_record>& out) {
  if (text.empty()) return at_line(1, "empty file; expected \"tlsrelay-state 1\"");

  std::vector<reservation_record> records;
  std::unordered_map<std::string, std::size_t> line_of_name;
  std::unordered_map<std::uint16_t, std::size_t> line_of_port;
  std::vector<std::string_view> f;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const auto nl = text.find('\n');
    const auto line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);

    if (line_no == 1) {
      if (line == state_file_header) continue;
      if (line.substr(0, header_name.size()) == header_name)
        return at_line(1, "unsupported state file version; expected \"tlsrelay-state 1\"");
      return at_line(1, "not a tlsrelay state file; expected \"tlsrelay-state 1\"");
    }

    if (line.empty()) return at_line(line_no, "empty line");
    if (!split_spaces(line, f)) return at_line(line_no, "fields must be separated by one space");
    if (f[0] != record_reservation) return at_line(line_no, "unknown record");
    if (f.size() < 5)
      return at_line(line_no, "reservation wants <name> <public-port> <expires-unix-ms> <owner>");
    if (f.size() > 5) return at_line(line_no, "trailing garbage after the owner");

    reservation_record r;
    if (!v2::valid_name(f[1])) return at_line(line_no, "bad name");
    r.name.assign(f[1]);
    if (parse_port(f[2], r.public_port)) return at_line(line_no, "bad public port");
    if (!parse_int64(f[3], r.expires_unix_ms)) return at_line(line_no, "bad expiry time");
    if (f[4] != no_owner) {
      if (!is_owner_fingerprint(f[4])) return at_line(line_no, "owner is neither - nor 64 hex digits");
      r.owner.assign(f[4]);
    }

    const auto [by_name, fresh_name] = line_of_name.emplace(r.name, line_no);
    if (!fresh_name)
      return at_line(line_no, "name " + r.name + " already reserved on line " +
                                std::to_string(by_name->second));
    const auto [by_port, fresh_port] = line_of_port.emplace(r.public_port, line_no);
    if (!fresh_port)
      return at_line(line_no, "public port " + std::to_string(r.public_port) +
                                " already reserved on line " + std::to_string(by_port->second));
    records.push_back(std::move(r));
  }
  out = std::move(records);
  return {};
}

}  // namespace tlsrelay
