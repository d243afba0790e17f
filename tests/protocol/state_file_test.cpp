#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "protocol/state_file.hpp"

using tlsrelay::format_state;
using tlsrelay::parse_state;
using tlsrelay::reservation_record;

namespace {

const std::string fp(64, 'a');  // a fingerprint
const std::string fp2 = "0123456789ABCDEFabcdef01234567890123456789012345678901234567890a";

std::vector<reservation_record> parse_ok(const std::string& text) {
  std::vector<reservation_record> out;
  const auto err = parse_state(text, out);
  INFO("text: " << text);
  REQUIRE(err == "");
  return out;
}

std::string parse_bad(const std::string& text) {
  const reservation_record sentinel{"sentinel", 1, 2, ""};
  std::vector<reservation_record> out{sentinel};
  const auto err = parse_state(text, out);
  INFO("text: " << text);
  REQUIRE(err != "");
  CHECK(err.rfind("line ", 0) == 0);
  REQUIRE(out.size() == 1);
  CHECK(out[0] == sentinel);  // untouched
  return err;
}

}  // namespace

TEST_CASE("the state file is formatted byte for byte", "[protocol][state_file]") {
  CHECK(format_state({}) == "tlsrelay-state 1\n");
  CHECK(format_state({{"web", 12101, 1700000000000, ""}, {"api-2", 65535, 0, fp2}}) ==
        "tlsrelay-state 1\n"
        "reservation web 12101 1700000000000 -\n"
        "reservation api-2 65535 0 " +
          fp2 + "\n");
}

TEST_CASE("state records round-trip through format and parse", "[protocol][state_file]") {
  const std::vector<reservation_record> records{
    {"web", 12101, 1700000000000, ""},
    {"a", 1, std::numeric_limits<std::int64_t>::max(), fp},
    {std::string(63, 'z'), 65535, std::numeric_limits<std::int64_t>::min(), fp2},
    {"0-9", 80, -1, ""},
  };
  const auto text = format_state(records);
  CAPTURE(text);
  const auto back = parse_ok(text);
  CHECK(back == records);
  CHECK(format_state(back) == text);
  CHECK(parse_ok(format_state({})).empty());
}

SCENARIO("a state file the relay wrote is read back", "[protocol][state_file]") {
  GIVEN("the header alone, with or without its newline") {
    CHECK(parse_ok("tlsrelay-state 1\n").empty());
    CHECK(parse_ok("tlsrelay-state 1").empty());
  }
  GIVEN("a last record without its newline") {
    const auto r = parse_ok("tlsrelay-state 1\nreservation web 12101 5 -");
    REQUIRE(r.size() == 1);
    CHECK(r[0] == reservation_record{"web", 12101, 5, ""});
  }
  GIVEN("numbers with leading zeros") {
    const auto r = parse_ok("tlsrelay-state 1\nreservation web 00080 007 -\n");
    REQUIRE(r.size() == 1);
    CHECK(r[0].public_port == 80);
    CHECK(r[0].expires_unix_ms == 7);
  }
  GIVEN("an owner in upper-case hex") {
    const auto r = parse_ok("tlsrelay-state 1\nreservation web 1 1 " + fp2 + "\n");
    REQUIRE(r.size() == 1);
    CHECK(r[0].owner == fp2);  // kept as written
  }
  GIVEN("a successful parse into a list that held something") {
    std::vector<reservation_record> out{{"old", 1, 1, ""}};
    CHECK(parse_state("tlsrelay-state 1\n", out) == "");
    CHECK(out.empty());
  }
}

SCENARIO("a corrupt state file is refused with the line and the reason",
         "[protocol][state_file]") {
  const std::string head = "tlsrelay-state 1\n";
  GIVEN("a bad header") {
    CHECK(parse_bad("") == "line 1: empty file; expected \"tlsrelay-state 1\"");
    CHECK(parse_bad("\n") == "line 1: not a tlsrelay state file; expected \"tlsrelay-state 1\"");
    CHECK(parse_bad("tlsrelay-state 2\n") ==
          "line 1: unsupported state file version; expected \"tlsrelay-state 1\"");
    parse_bad("tlsrelay-state 1\r\n");
    parse_bad("tlsrelay-state 1 \n");
    parse_bad("tlsrelay-state  1\n");
    parse_bad("TLSRELAY-STATE 1\n");
    parse_bad("reservation web 1 1 -\n");
  }
  GIVEN("an unknown record") {
    CHECK(parse_bad(head + "lease web 1 1 -\n") == "line 2: unknown record");
    CHECK(parse_bad(head + "Reservation web 1 1 -\n") == "line 2: unknown record");
    CHECK(parse_bad(head + "reservation\tweb 1 1 -\n") == "line 2: unknown record");
  }
  GIVEN("empty lines or bad spacing") {
    CHECK(parse_bad(head + "\n") == "line 2: empty line");
    CHECK(parse_bad(head + "reservation web 1 1 -\n\n") == "line 3: empty line");
    CHECK(parse_bad(head + "reservation  web 1 1 -\n") ==
          "line 2: fields must be separated by one space");
    CHECK(parse_bad(head + "reservation web 1 1 - \n") ==
          "line 2: fields must be separated by one space");
    CHECK(parse_bad(head + " reservation web 1 1 -\n") ==
          "line 2: fields must be separated by one space");
  }
  GIVEN("missing fields or trailing garbage") {
    CHECK(parse_bad(head + "reservation web 1 1\n") ==
          "line 2: reservation wants <name> <public-port> <expires-unix-ms> <owner>");
    CHECK(parse_bad(head + "reservation\n") ==
          "line 2: reservation wants <name> <public-port> <expires-unix-ms> <owner>");
    CHECK(parse_bad(head + "reservation web 1 1 - x\n") ==
          "line 2: trailing garbage after the owner");
    CHECK(parse_bad(head + "reservation web 1 1 -\r\n") ==
          "line 2: owner is neither - nor 64 hex digits");
    CHECK(parse_bad(head + "reservation web 1 1 -\nxyz") == "line 3: unknown record");
    CHECK(parse_bad(head + "reservation web 1 1 -\n" + std::string(1, '\0')) ==
          "line 3: unknown record");
  }
  GIVEN("a bad name") {
    for (const auto& name : {std::string("Web"), std::string("-web"), std::string("a_b"),
                             std::string(64, 'a')}) {
      CAPTURE(name);
      CHECK(parse_bad(head + "reservation " + name + " 1 1 -\n") == "line 2: bad name");
    }
  }
  GIVEN("a bad port") {
    for (const char* port : {"0", "65536", "x", "-1", "+1", "1.0"}) {
      CAPTURE(port);
      CHECK(parse_bad(head + "reservation web " + port + " 1 -\n") == "line 2: bad public port");
    }
  }
  GIVEN("a bad expiry time") {
    for (const char* t : {"x", "-", "+1", "1e3", "1.5", "--1", "9223372036854775808",
                          "-9223372036854775809", "99999999999999999999", "0x10"}) {
      CAPTURE(t);
      CHECK(parse_bad(head + "reservation web 1 " + t + " -\n") == "line 2: bad expiry time");
    }
    THEN("the extremes of int64 are fine") {
      auto r = parse_ok(head + "reservation web 1 9223372036854775807 -\n");
      CHECK(r[0].expires_unix_ms == std::numeric_limits<std::int64_t>::max());
      r = parse_ok(head + "reservation web 1 -9223372036854775808 -\n");
      CHECK(r[0].expires_unix_ms == std::numeric_limits<std::int64_t>::min());
    }
  }
  GIVEN("a bad owner") {
    for (const auto& owner :
         {std::string(63, 'a'), std::string(65, 'a'), std::string(64, 'g'), std::string("--"),
          std::string("none"), std::string(63, 'a') + ":"}) {
      CAPTURE(owner);
      CHECK(parse_bad(head + "reservation web 1 1 " + owner + "\n") ==
            "line 2: owner is neither - nor 64 hex digits");
    }
  }
  GIVEN("a name or a port reserved twice") {
    CHECK(parse_bad(head + "reservation web 1 1 -\nreservation api 2 1 -\nreservation web 3 1 -\n") ==
          "line 4: name web already reserved on line 2");
    CHECK(parse_bad(head + "reservation web 80 1 -\nreservation api 80 1 " + fp + "\n") ==
          "line 3: public port 80 already reserved on line 2");
  }
}
