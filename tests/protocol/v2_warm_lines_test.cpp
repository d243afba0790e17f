// The lines of v2 warm reverse connections: `ready <SERIAL> <TAG>` (server →
// relay, the first line of a warm connection) and `<ID> <CLIENT>` (relay →
// server, the first line on a warm connection once a client is joined with
// it). Golden bytes, round trips, every malformed shape, and the bounds the
// relay's reader relies on.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

#include "protocol/connection_id.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/errc.hpp"
#include "protocol/v2.hpp"
#include "protocol/warm_ticket.hpp"

namespace v2 = tlsrelay::v2;
using tlsrelay::connection_id;
using tlsrelay::host_port;
using tlsrelay::protocol_errc;

namespace {

std::error_code errc(protocol_errc e) { return tlsrelay::make_error_code(e); }

connection_id id_from(const std::string& hex) {
  connection_id id;
  REQUIRE_FALSE(tlsrelay::parse_connection_id(hex, id));
  return id;
}

std::string without_crlf(std::string line) {
  REQUIRE(line.size() >= 2);
  REQUIRE(line.compare(line.size() - 2, 2, "\r\n") == 0);
  line.resize(line.size() - 2);
  return line;
}

const std::string id_hex = "00112233445566778899aabbccddeeff";
const std::string tag_hex = "53f948a1c66e221ffcc2af0c8aa11438";
const std::string max_serial_text = "18446744073709551615";

v2::ready make_ready(std::uint64_t serial, const std::string& tag) {
  return v2::ready{serial, id_from(tag)};
}

}  // namespace

// -- ready ---------------------------------------------------------------------------------

TEST_CASE("ready lines are formatted byte for byte and parse back", "[protocol][v2][warm]") {
  struct golden {
    v2::ready msg;
    std::string bytes;
  };
  const std::vector<golden> goldens{
    {make_ready(1, tag_hex), "ready 1 " + tag_hex + "\r\n"},
    {make_ready(42, id_hex), "ready 42 " + id_hex + "\r\n"},
    {make_ready(UINT64_MAX, "ffffffffffffffffffffffffffffffff"),
     "ready " + max_serial_text + " ffffffffffffffffffffffffffffffff\r\n"},
    {v2::ready{10, connection_id{}}, "ready 10 00000000000000000000000000000000\r\n"},
  };
  for (const auto& g : goldens) {
    CAPTURE(g.bytes);
    CHECK(v2::format_line(g.msg) == g.bytes);
    v2::reverse_line parsed = v2::accept{};
    REQUIRE(v2::parse_reverse_line(without_crlf(g.bytes), parsed) == std::error_code());
    REQUIRE(std::holds_alternative<v2::ready>(parsed));
    CHECK(std::get<v2::ready>(parsed) == g.msg);
  }
}

TEST_CASE("ready round-trips through format and parse for serials across the range",
          "[protocol][v2][warm]") {
  const auto secret = id_from("000102030405060708090a0b0c0d0e0f");
  for (std::uint64_t serial : {std::uint64_t{1}, std::uint64_t{9}, std::uint64_t{10},
                               std::uint64_t{65}, std::uint64_t{4294967296},
                               std::uint64_t{9999999999999999999u}, UINT64_MAX - 1, UINT64_MAX}) {
    const v2::ready r{serial, tlsrelay::warm_ticket::tag(secret, serial)};
    const auto line = v2::format_line(r);
    CAPTURE(line);
    v2::reverse_line back;
    REQUIRE(v2::parse_reverse_line(without_crlf(line), back) == std::error_code());
    REQUIRE(std::holds_alternative<v2::ready>(back));
    CHECK(std::get<v2::ready>(back) == r);
    CHECK(v2::format_line(std::get<v2::ready>(back)) == line);
  }
}

TEST_CASE("a ready tag in upper case parses and is written back in lower case",
          "[protocol][v2][warm]") {
  v2::reverse_line parsed;
  REQUIRE(v2::parse_reverse_line("ready 7 53F948A1C66E221FFCC2AF0C8AA11438", parsed) ==
          std::error_code());
  REQUIRE(std::holds_alternative<v2::ready>(parsed));
  CHECK(std::get<v2::ready>(parsed) == make_ready(7, tag_hex));
  CHECK(v2::format_line(std::get<v2::ready>(parsed)) == "ready 7 " + tag_hex + "\r\n");
}

TEST_CASE("parse_reverse_line tells accept from ready", "[protocol][v2][warm]") {
  v2::reverse_line parsed = make_ready(5, tag_hex);
  REQUIRE(v2::parse_reverse_line("accept " + id_hex, parsed) == std::error_code());
  REQUIRE(std::holds_alternative<v2::accept>(parsed));
  CHECK(std::get<v2::accept>(parsed).id == id_from(id_hex));

  REQUIRE(v2::parse_reverse_line("ready 5 " + tag_hex, parsed) == std::error_code());
  REQUIRE(std::holds_alternative<v2::ready>(parsed));
  CHECK(std::get<v2::ready>(parsed) == make_ready(5, tag_hex));
}

TEST_CASE("malformed ready lines are rejected with a specific error and leave the output alone",
          "[protocol][v2][warm]") {
  struct bad_case {
    std::string line;
    protocol_errc expected;
  };
  const std::vector<bad_case> cases{
    // Fields missing or extra.
    {"ready", protocol_errc::missing_argument},
    {"ready 1", protocol_errc::missing_argument},
    {"ready " + tag_hex, protocol_errc::missing_argument},
    {"ready 1 " + tag_hex + " x", protocol_errc::unexpected_argument},
    {"ready 1 " + tag_hex + " " + tag_hex, protocol_errc::unexpected_argument},
    // Not separated by exactly one space.
    {"ready  1 " + tag_hex, protocol_errc::unexpected_argument},
    {"ready 1  " + tag_hex, protocol_errc::unexpected_argument},
    {"ready 1 " + tag_hex + " ", protocol_errc::unexpected_argument},
    {" ready 1 " + tag_hex, protocol_errc::unexpected_argument},
    {"ready\t1 " + tag_hex, protocol_errc::unknown_command},
    // The serial.
    {"ready 0 " + tag_hex, protocol_errc::bad_value},
    {"ready 00 " + tag_hex, protocol_errc::bad_value},
    {"ready 01 " + tag_hex, protocol_errc::bad_value},
    {"ready 007 " + tag_hex, protocol_errc::bad_value},
    {"ready 18446744073709551616 " + tag_hex, protocol_errc::bad_value},  // UINT64_MAX + 1
    {"ready 99999999999999999999 " + tag_hex, protocol_errc::bad_value},  // 20 digits, overflow
    {"ready 100000000000000000000 " + tag_hex, protocol_errc::bad_value}, // 21 digits
    {"ready 018446744073709551615 " + tag_hex, protocol_errc::bad_value}, // 21 with a zero
    {"ready -1 " + tag_hex, protocol_errc::bad_value},
    {"ready +1 " + tag_hex, protocol_errc::bad_value},
    {"ready 1a " + tag_hex, protocol_errc::bad_value},
    {"ready 0x1 " + tag_hex, protocol_errc::bad_value},
    {"ready 1.0 " + tag_hex, protocol_errc::bad_value},
    {"ready one " + tag_hex, protocol_errc::bad_value},
    {"ready " + tag_hex + " 1", protocol_errc::bad_value},  // swapped
    // The tag.
    {"ready 1 " + tag_hex.substr(1), protocol_errc::bad_connection_id},           // 31 hex
    {"ready 1 " + tag_hex + "0", protocol_errc::bad_connection_id},               // 33 hex
    {"ready 1 " + tag_hex.substr(0, 31) + "g", protocol_errc::bad_connection_id}, // non-hex
    {"ready 1 " + tag_hex.substr(0, 30) + "-1", protocol_errc::bad_connection_id},
    {"ready 1 0x" + tag_hex.substr(2), protocol_errc::bad_connection_id},
    {"ready 1 x", protocol_errc::bad_connection_id},
    // Other commands.
    {"", protocol_errc::empty_line},
    {"READY 1 " + tag_hex, protocol_errc::unknown_command},
    {"Ready 1 " + tag_hex, protocol_errc::unknown_command},
    {"readyy 1 " + tag_hex, protocol_errc::unknown_command},
    {"warm 1 " + tag_hex, protocol_errc::unknown_command},
  };
  const v2::ready sentinel = make_ready(4242, "ffffffffffffffffffffffffffffffff");
  for (const auto& c : cases) {
    CAPTURE(c.line);
    v2::reverse_line out = sentinel;
    CHECK(v2::parse_reverse_line(c.line, out) == errc(c.expected));
    REQUIRE(std::holds_alternative<v2::ready>(out));
    CHECK(std::get<v2::ready>(out) == sentinel);
  }
}

TEST_CASE("the longest ready line fits the relay's first-line bound, and so does accept",
          "[protocol][v2][warm]") {
  const auto longest = v2::format_line(make_ready(UINT64_MAX, tag_hex));
  CHECK(longest.size() == 6 + 20 + 1 + 32 + 2);
  CHECK(longest.size() <= v2::max_reverse_line_bytes);
  CHECK(v2::format_line(v2::accept{id_from(id_hex)}).size() <= v2::max_reverse_line_bytes);
  CHECK(v2::max_accept_line_bytes <= v2::max_reverse_line_bytes);

  // The reader of the relay peeks max_reverse_line_bytes and needs the line
  // end within them: it is there for the longest line, CR and LF included.
  const std::string peeked = longest.substr(0, v2::max_reverse_line_bytes);
  CHECK(peeked.find('\n') == longest.size() - 1);
}

TEST_CASE("parse_accept_line refuses a ready line, valid or not", "[protocol][v2][warm]") {
  const connection_id sentinel = id_from("ffffffffffffffffffffffffffffffff");
  for (const std::string& line : std::vector<std::string>{
         "ready 1 " + tag_hex, "ready " + max_serial_text + " " + tag_hex, "ready 0 " + tag_hex,
         "ready 1", "ready"}) {
    CAPTURE(line);
    v2::accept out{sentinel};
    CHECK(v2::parse_accept_line(line, out) == errc(protocol_errc::unknown_command));
    CHECK(out.id == sentinel);
  }
}

// -- paired ---------------------------------------------------------------------------------

TEST_CASE("paired lines are formatted byte for byte and parse back", "[protocol][v2][warm]") {
  struct golden {
    v2::paired msg;
    std::string bytes;
  };
  const std::vector<golden> goldens{
    {v2::paired{id_from(id_hex), {"198.51.100.20", 51000}}, id_hex + " 198.51.100.20:51000\r\n"},
    {v2::paired{id_from(id_hex), {"::1", 5}}, id_hex + " [::1]:5\r\n"},
    {v2::paired{id_from(id_hex), {"2001:db8::7", 65535}}, id_hex + " [2001:db8::7]:65535\r\n"},
    {v2::paired{id_from(id_hex), {"127.0.0.1", 1}}, id_hex + " 127.0.0.1:1\r\n"},
  };
  for (const auto& g : goldens) {
    CAPTURE(g.bytes);
    CHECK(v2::format_line(g.msg) == g.bytes);
    v2::paired back;
    REQUIRE(v2::parse_paired_line(without_crlf(g.bytes), back) == std::error_code());
    CHECK(back == g.msg);
    CHECK(v2::format_line(back) == g.bytes);
  }
}

TEST_CASE("a paired line takes the id in either case and the client bracketed if IPv6",
          "[protocol][v2][warm]") {
  v2::paired p;
  REQUIRE(v2::parse_paired_line("00112233445566778899AABBCCDDEEFF [::1]:5", p) ==
          std::error_code());
  CHECK(p.id == id_from(id_hex));
  CHECK(p.client == host_port{"::1", 5});
  CHECK(v2::format_line(p) == id_hex + " [::1]:5\r\n");
  REQUIRE(v2::parse_paired_line(id_hex + " [::ffff:192.0.2.1]:40000", p) == std::error_code());
  CHECK(p.client == host_port{"::ffff:192.0.2.1", 40000});
}

TEST_CASE("malformed paired lines are rejected with a specific error and leave the output alone",
          "[protocol][v2][warm]") {
  struct bad_case {
    std::string line;
    protocol_errc expected;
  };
  const std::vector<bad_case> cases{
    {"", protocol_errc::empty_line},
    {id_hex, protocol_errc::missing_argument},
    {id_hex + " [::1]:5 x", protocol_errc::unexpected_argument},
    {id_hex + "  [::1]:5", protocol_errc::unexpected_argument},
    {id_hex + " [::1]:5 ", protocol_errc::unexpected_argument},
    {" " + id_hex + " [::1]:5", protocol_errc::unexpected_argument},
    {"new_connection " + id_hex + " [::1]:5", protocol_errc::unexpected_argument},
    {id_hex.substr(1) + " [::1]:5", protocol_errc::bad_connection_id},
    {id_hex + "0 [::1]:5", protocol_errc::bad_connection_id},
    {id_hex.substr(0, 31) + "g [::1]:5", protocol_errc::bad_connection_id},
    {"[::1]:5 " + id_hex, protocol_errc::bad_connection_id},
    {"accept " + id_hex, protocol_errc::bad_connection_id},
    {"ready 1", protocol_errc::bad_connection_id},
    {id_hex + " ::1:5", protocol_errc::bad_endpoint},
    {id_hex + " [::1]5", protocol_errc::bad_endpoint},
    {id_hex + " [127.0.0.1]:5", protocol_errc::bad_endpoint},
    {id_hex + " 127.0.0.1", protocol_errc::bad_endpoint},
    {id_hex + " :5", protocol_errc::bad_endpoint},
    {id_hex + " 127.0.0.1:0", protocol_errc::bad_port},
    {id_hex + " 127.0.0.1:65536", protocol_errc::bad_port},
    {id_hex + " 127.0.0.1:", protocol_errc::bad_port},
    {id_hex + " 127.0.0.1:x", protocol_errc::bad_port},
  };
  const v2::paired sentinel{id_from("ffffffffffffffffffffffffffffffff"), {"sentinel", 4242}};
  for (const auto& c : cases) {
    CAPTURE(c.line);
    v2::paired out = sentinel;
    CHECK(v2::parse_paired_line(c.line, out) == errc(c.expected));
    CHECK(out == sentinel);
  }
}

TEST_CASE("the longest paired line for an IP client fits max_paired_line_bytes",
          "[protocol][v2][warm]") {
  const v2::paired longest{id_from("ffffffffffffffffffffffffffffffff"),
                           {"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 65535}};
  const auto line = v2::format_line(longest);
  CHECK(line.size() == 32 + 1 + 1 + 45 + 1 + 6 + 2);
  CHECK(line.size() <= v2::max_paired_line_bytes);
  v2::paired back;
  REQUIRE(v2::parse_paired_line(without_crlf(line), back) == std::error_code());
  CHECK(back == longest);
}

// -- welcome with warm= ------------------------------------------------------------------------

TEST_CASE("welcome announces how many warm connections the relay keeps", "[protocol][v2][warm]") {
  const std::string secret = "0123456789abcdef0123456789abcdef";
  for (unsigned n : {0u, 1u, 16u, v2::max_warm}) {
    CAPTURE(n);
    const auto line = v2::format_line(v2::relay_message{v2::welcome{secret, n}});
    CHECK(line == "welcome session=" + secret + " warm=" + std::to_string(n) + "\r\n");
    v2::relay_message back;
    REQUIRE(v2::parse_relay_line(without_crlf(line), back) == std::error_code());
    REQUIRE(std::holds_alternative<v2::welcome>(back));
    CHECK(std::get<v2::welcome>(back) == v2::welcome{secret, n});
  }
  // A relay from before warm connections: none kept.
  v2::relay_message old;
  REQUIRE(v2::parse_relay_line("welcome session=" + secret, old) == std::error_code());
  CHECK(std::get<v2::welcome>(old).warm_max == 0);
  v2::relay_message too_many = v2::pong{};
  CHECK(v2::parse_relay_line("welcome session=" + secret + " warm=" +
                               std::to_string(v2::max_warm + 1),
                             too_many) == errc(protocol_errc::bad_value));
  CHECK(v2::parse_relay_line("welcome session=" + secret + " warm=99999999999999999999999",
                             too_many) == errc(protocol_errc::bad_value));
  CHECK(std::holds_alternative<v2::pong>(too_many));
}
