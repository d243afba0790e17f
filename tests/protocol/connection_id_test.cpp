#include <catch2/catch.hpp>

#include <functional>
#include <set>
#include <string>
#include <system_error>
#include <unordered_set>

#include "protocol/connection_id.hpp"
#include "protocol/errc.hpp"

using tlsrelay::connection_id;
using tlsrelay::parse_connection_id;
using tlsrelay::protocol_errc;
using tlsrelay::to_hex;

namespace {

std::error_code errc(protocol_errc e) { return tlsrelay::make_error_code(e); }

connection_id counting_id() {
  connection_id id;
  for (std::size_t i = 0; i < connection_id::size; ++i)
    id.bytes[i] = static_cast<std::uint8_t>(i * 0x11);  // 00 11 22 ... ff
  return id;
}

}  // namespace

TEST_CASE("a connection id is 16 bytes written as 32 lowercase hex digits",
          "[protocol][connection_id]") {
  CHECK(connection_id::size == 16);
  CHECK(to_hex(connection_id{}) == "00000000000000000000000000000000");
  CHECK(to_hex(counting_id()) == "00112233445566778899aabbccddeeff");
  connection_id ones;
  ones.bytes.fill(0xff);
  CHECK(to_hex(ones) == "ffffffffffffffffffffffffffffffff");
  connection_id nibbles;
  nibbles.bytes[0] = 0x0f;
  nibbles.bytes[15] = 0xf0;
  CHECK(to_hex(nibbles) == "0f0000000000000000000000000000f0");
}

TEST_CASE("parse_connection_id reads 32 hex digits of either case", "[protocol][connection_id]") {
  connection_id id;
  REQUIRE(parse_connection_id("00112233445566778899aabbccddeeff", id) == std::error_code());
  CHECK(id == counting_id());
  REQUIRE(parse_connection_id("00112233445566778899AABBCCDDEEFF", id) == std::error_code());
  CHECK(id == counting_id());
  REQUIRE(parse_connection_id("00112233445566778899aAbBcCdDeEfF", id) == std::error_code());
  CHECK(id == counting_id());
}

TEST_CASE("to_hex and parse_connection_id round-trip", "[protocol][connection_id]") {
  for (unsigned seed = 0; seed < 64; ++seed) {
    connection_id id;
    for (std::size_t i = 0; i < connection_id::size; ++i)
      id.bytes[i] = static_cast<std::uint8_t>((seed * 37 + i * 101) ^ (seed << 3));
    const auto hex = to_hex(id);
    CAPTURE(hex);
    connection_id back;
    REQUIRE(parse_connection_id(hex, back) == std::error_code());
    CHECK(back == id);
    CHECK(to_hex(back) == hex);
  }
}

TEST_CASE("parse_connection_id rejects anything but 32 hex digits", "[protocol][connection_id]") {
  const std::string good = "00112233445566778899aabbccddeeff";
  const std::string bad[] = {
    "",
    good.substr(0, 31),
    good + "0",
    std::string(64, '0'),
    "0x112233445566778899aabbccddeeff",
    "00112233445566778899aabbccddeefg",
    "g0112233445566778899aabbccddeeff",
    " 0112233445566778899aabbccddeeff",
    "0112233445566778899aabbccddeeff ",
    "00112233-4455-6677-8899-aabbccdd",
    std::string("00112233445566778899aabbccddee\0f", 32),
    "00112233445566778899aabbccddee:f",
    "00112233445566778899aabbccddee@f",  // '@' is 'A' - 1
    "00112233445566778899aabbccddee`f",  // '`' is 'a' - 1
    "00112233445566778899aabbccddee/f",  // '/' is '0' - 1
  };
  const connection_id sentinel = counting_id();
  for (const auto& text : bad) {
    CAPTURE(text);
    connection_id out = sentinel;
    CHECK(parse_connection_id(text, out) == errc(protocol_errc::bad_connection_id));
    CHECK(out == sentinel);  // untouched on failure
  }
}

TEST_CASE("connection ids compare, order and hash by their bytes", "[protocol][connection_id]") {
  const connection_id zero{};
  connection_id one;
  one.bytes[15] = 1;
  connection_id high;
  high.bytes[0] = 1;
  CHECK(zero == connection_id{});
  CHECK(zero != one);
  CHECK(zero < one);
  CHECK(one < high);  // the first byte is the most significant
  CHECK_FALSE(high < one);
  CHECK_FALSE(zero < zero);

  const std::set<connection_id> ordered{high, one, zero, one};
  CHECK(ordered.size() == 3);

  const std::hash<connection_id> hash;
  CHECK(hash(counting_id()) == hash(counting_id()));
  CHECK(hash(zero) != hash(high));
  std::unordered_set<connection_id> set{zero, one, high, counting_id(), zero};
  CHECK(set.size() == 4);
  CHECK(set.count(counting_id()) == 1);
}
