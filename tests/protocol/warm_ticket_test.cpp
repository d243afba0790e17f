// Tickets of v2 warm reverse connections: the tag a server must present in
// `ready <SERIAL> <TAG>`, checked against values computed outside this code
// base, and the replay window that lets each serial be used once.
#include <catch2/catch.hpp>

#include <cstdint>
#include <set>
#include <string>

#include "protocol/connection_id.hpp"
#include "protocol/warm_ticket.hpp"

using tlsrelay::connection_id;
namespace warm_ticket = tlsrelay::warm_ticket;

namespace {

connection_id id_of(const char* hex) {
  connection_id id;
  REQUIRE_FALSE(tlsrelay::parse_connection_id(hex, id));
  return id;
}

std::string tag_hex(const char* secret_hex, std::uint64_t serial) {
  return tlsrelay::to_hex(warm_ticket::tag(id_of(secret_hex), serial));
}

constexpr std::uint64_t max_serial = UINT64_MAX;  // 18446744073709551615

}  // namespace

// -- tag --------------------------------------------------------------------------------

TEST_CASE("warm ticket tags match HMAC-SHA256 computed independently", "[protocol][warm]") {
  // Each expected value was computed with the OpenSSL command line, e.g.
  //   printf 'tlsrelay warm ticket 1' |
  //     openssl dgst -sha256 -mac HMAC -macopt hexkey:000102030405060708090a0b0c0d0e0f
  // keeping the first 32 hex digits (128 bits) of the digest; the same values
  // come out of Python's hmac.new(key, msg, hashlib.sha256).
  const char* key = "000102030405060708090a0b0c0d0e0f";
  CHECK(tag_hex(key, 1) == "53f948a1c66e221ffcc2af0c8aa11438");
  CHECK(tag_hex(key, 2) == "0c15bbb1dc570c9341353fda2c8d2924");
  CHECK(tag_hex(key, 42) == "9af71804194062619b12544d59c2acac");
  //   printf 'tlsrelay warm ticket 18446744073709551615' | openssl dgst ... (same key)
  CHECK(tag_hex(key, max_serial) == "ac1a01c63c5a5979fe839978f3f1ee84");
  //   printf 'tlsrelay warm ticket 1' |
  //     openssl dgst -sha256 -mac HMAC -macopt hexkey:0123456789abcdef0123456789abcdef
  CHECK(tag_hex("0123456789abcdef0123456789abcdef", 1) == "ff2477ca7e09117ba54e65f318c3580a");
}

TEST_CASE("a warm ticket tag depends on the serial and on the secret", "[protocol][warm]") {
  const auto secret = id_of("000102030405060708090a0b0c0d0e0f");
  auto other_secret = secret;
  other_secret.bytes[15] ^= 0x01;  // one bit apart

  std::set<connection_id> seen;
  for (std::uint64_t serial = 1; serial <= 200; ++serial) {
    CAPTURE(serial);
    const auto t = warm_ticket::tag(secret, serial);
    CHECK(seen.insert(t).second);  // no two serials share a tag
    CHECK(t != warm_ticket::tag(other_secret, serial));
    CHECK(t == warm_ticket::tag(secret, serial));  // deterministic
    CHECK(t != secret);                            // the secret itself never travels
  }
  CHECK(warm_ticket::tag(secret, max_serial) != warm_ticket::tag(secret, max_serial - 1));
}

TEST_CASE("constant_time_equal is equality of all 16 bytes", "[protocol][warm]") {
  const auto a = id_of("53f948a1c66e221ffcc2af0c8aa11438");
  CHECK(constant_time_equal(a, a));
  CHECK(constant_time_equal(a, id_of("53F948A1C66E221FFCC2AF0C8AA11438")));
  for (std::size_t i = 0; i < connection_id::size; ++i) {
    for (std::uint8_t bit : {0x01, 0x80}) {
      CAPTURE(i, int(bit));
      auto b = a;
      b.bytes[i] ^= bit;
      CHECK_FALSE(constant_time_equal(a, b));
      CHECK_FALSE(constant_time_equal(b, a));
    }
  }
  CHECK(constant_time_equal(connection_id{}, connection_id{}));
  CHECK_FALSE(constant_time_equal(connection_id{}, a));
}

// -- replay window -------------------------------------------------------------------------

SCENARIO("each warm ticket serial is admitted once", "[protocol][warm][replay]") {
  warm_ticket::replay_window w;

  GIVEN("serials in order") {
    THEN("each is admitted the first time and refused after") {
      for (std::uint64_t s = 1; s <= 200; ++s) {
        CAPTURE(s);
        CHECK(w.admit(s));
        CHECK_FALSE(w.admit(s));
      }
      // Everything admitted so far stays refused, in or out of the window.
      for (std::uint64_t s = 1; s <= 200; ++s) {
        CAPTURE(s);
        CHECK_FALSE(w.admit(s));
      }
    }
  }

  GIVEN("serial 0") {
    THEN("it is never admitted, before or after others") {
      CHECK_FALSE(w.admit(0));
      CHECK(w.admit(1));
      CHECK_FALSE(w.admit(0));
    }
  }

  GIVEN("serials out of order within the window") {
    THEN("each is admitted once, whatever the order") {
      CHECK(w.admit(10));
      CHECK(w.admit(3));
      CHECK(w.admit(7));
      CHECK(w.admit(1));
      CHECK_FALSE(w.admit(3));
      CHECK_FALSE(w.admit(10));
      CHECK(w.admit(2));
      CHECK(w.admit(9));
      CHECK(w.admit(11));
      CHECK_FALSE(w.admit(7));
      CHECK_FALSE(w.admit(9));
      for (std::uint64_t s : {4u, 5u, 6u, 8u}) {
        CAPTURE(s);
        CHECK(w.admit(s));
        CHECK_FALSE(w.admit(s));
      }
    }
  }

  GIVEN("a highest serial of 100") {
    REQUIRE(w.admit(100));
    THEN("63 behind is still admitted, 64 and more behind are refused") {
      CHECK(w.admit(100 - 63));
      CHECK_FALSE(w.admit(100 - 63));
      CHECK_FALSE(w.admit(100 - 64));
      CHECK_FALSE(w.admit(100 - 65));
      CHECK_FALSE(w.admit(1));
      for (std::uint64_t s = 100 - 62; s < 100; ++s) {
        CAPTURE(s);
        CHECK(w.admit(s));
      }
      CHECK_FALSE(w.admit(100));
    }
    WHEN("the highest moves on by 10") {
      REQUIRE(w.admit(110));
      THEN("the window moves with it, and what was admitted stays refused") {
        CHECK_FALSE(w.admit(100));  // 10 behind, already used
        CHECK(w.admit(110 - 63));
        CHECK_FALSE(w.admit(110 - 64));
        CHECK(w.admit(105));
      }
    }
  }

  GIVEN("serials 1..10 used, then a jump far ahead") {
    for (std::uint64_t s = 1; s <= 10; ++s) REQUIRE(w.admit(s));
    REQUIRE(w.admit(1'000'000));
    THEN("only the 63 serials below the new highest are still admitted once") {
      CHECK_FALSE(w.admit(10));
      CHECK_FALSE(w.admit(11));
      CHECK_FALSE(w.admit(1'000'000 - 64));
      CHECK(w.admit(1'000'000 - 63));
      CHECK(w.admit(999'999));
      CHECK_FALSE(w.admit(999'999));
      CHECK_FALSE(w.admit(1'000'000));
      CHECK(w.admit(1'000'001));
    }
  }

  GIVEN("a jump of exactly 63 and of exactly 64") {
    REQUIRE(w.admit(1));
    REQUIRE(w.admit(64));  // 1 is now 63 behind: still remembered
    THEN("the old serial is remembered as used at 63 behind") { CHECK_FALSE(w.admit(1)); }
    AND_WHEN("the highest moves one more") {
      REQUIRE(w.admit(65));  // 1 is 64 behind: too old
      THEN("it is refused as too old, and 2 (63 behind, never used) is admitted") {
        CHECK_FALSE(w.admit(1));
        CHECK(w.admit(2));
        CHECK_FALSE(w.admit(2));
      }
    }
  }

  GIVEN("the largest serial") {
    THEN("it is admitted once, and the window below it works") {
      CHECK(w.admit(max_serial));
      CHECK_FALSE(w.admit(max_serial));
      CHECK(w.admit(max_serial - 1));
      CHECK_FALSE(w.admit(max_serial - 1));
      CHECK(w.admit(max_serial - 63));
      CHECK_FALSE(w.admit(max_serial - 64));
      CHECK_FALSE(w.admit(1));
      CHECK_FALSE(w.admit(0));
    }
  }

  GIVEN("the largest serial reached one step at a time from below") {
    REQUIRE(w.admit(max_serial - 70));
    for (std::uint64_t s = max_serial - 69;; ++s) {
      CAPTURE(s);
      REQUIRE(w.admit(s));
      if (s == max_serial) break;
    }
    THEN("nothing in the window is admitted twice") {
      for (std::uint64_t age = 0; age < 64; ++age) {
        CAPTURE(age);
        CHECK_FALSE(w.admit(max_serial - age));
      }
    }
  }
}

TEST_CASE("a warm_ticket::signer gives the same tags as tag() for its secret", "[protocol][warm]") {
  tlsrelay::connection_id a, b;
  for (std::size_t i = 0; i < a.bytes.size(); ++i) {
    a.bytes[i] = static_cast<std::uint8_t>(i * 7 + 1);
    b.bytes[i] = static_cast<std::uint8_t>(0xff - i);
  }
  const tlsrelay::warm_ticket::signer sign_a(a);
  tlsrelay::warm_ticket::signer sign_b;
  sign_b.set_secret(b);
  for (std::uint64_t serial : {std::uint64_t{1}, std::uint64_t{2}, std::uint64_t{63},
                               std::uint64_t{1} << 40, UINT64_MAX}) {
    CHECK(sign_a.tag(serial) == tlsrelay::warm_ticket::tag(a, serial));
    CHECK(sign_b.tag(serial) == tlsrelay::warm_ticket::tag(b, serial));
    CHECK(sign_a.tag(serial) != sign_b.tag(serial));
  }
  // Moved, it still signs with its key.
  tlsrelay::warm_ticket::signer moved(std::move(sign_b));
  CHECK(moved.tag(7) == tlsrelay::warm_ticket::tag(b, 7));
}
