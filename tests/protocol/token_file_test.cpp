#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "protocol/token_file.hpp"

using tlsrelay::parse_token_file;
using tlsrelay::token_entry;

namespace {

// Parses text that must be good.
std::vector<token_entry> parse_ok(const std::string& text) {
  std::vector<token_entry> out;
  const auto err = parse_token_file(text, out);
  INFO("text: " << text);
  REQUIRE(err == "");
  return out;
}

// Parses text that must be bad; the list given must stay as it was.
std::string parse_bad(const std::string& text) {
  std::vector<token_entry> out{token_entry{"sentinel", {}, {}, 99}};
  const auto err = parse_token_file(text, out);
  INFO("text: " << text);
  REQUIRE(err != "");
  REQUIRE(out.size() == 1);
  CHECK(out[0].token == "sentinel");
  return err;
}

}  // namespace

SCENARIO("a token file lists who may connect, with which names and ports",
         "[protocol][token_file]") {
  GIVEN("a file with comments, blank lines and three entries") {
    const auto entries = parse_ok(
      "# tokens of the relay\n"
      "\n"
      "alice-token-1 name=web name=api port=12101\n"
      "   # an indented comment\n"
      "\t \n"
      "b0b+/=.~_- port=12102 port=12103\n"
      "carol\n");
    REQUIRE(entries.size() == 3);
    THEN("each entry has its names, ports and line") {
      CHECK(entries[0].token == "alice-token-1");
      CHECK(entries[0].names == std::vector<std::string>{"web", "api"});
      CHECK(entries[0].ports == std::vector<std::uint16_t>{12101});
      CHECK(entries[0].line == 3);
      CHECK(entries[1].token == "b0b+/=.~_-");
      CHECK(entries[1].names.empty());  // any name
      CHECK(entries[1].ports == std::vector<std::uint16_t>{12102, 12103});
      CHECK(entries[1].line == 6);
      CHECK(entries[2].token == "carol");
      CHECK(entries[2].names.empty());
      CHECK(entries[2].ports.empty());  // any port
      CHECK(entries[2].line == 7);
    }
  }
  GIVEN("fields separated by runs of spaces and tabs, around them too") {
    const auto entries = parse_ok("  \ttok \t name=a\t\tport=1   \n");
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].token == "tok");
    CHECK(entries[0].names == std::vector<std::string>{"a"});
    CHECK(entries[0].ports == std::vector<std::uint16_t>{1});
  }
  GIVEN("CRLF line ends and no final newline") {
    const auto entries = parse_ok("# c\r\ntok1 name=x\r\ntok2 port=65535");
    REQUIRE(entries.size() == 2);
    CHECK(entries[0].names == std::vector<std::string>{"x"});
    CHECK(entries[1].ports == std::vector<std::uint16_t>{65535});
    CHECK(entries[1].line == 3);
  }
  GIVEN("names and ports in any order") {
    const auto entries = parse_ok("t port=2 name=b port=1 name=a\n");
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].names == std::vector<std::string>{"b", "a"});
    CHECK(entries[0].ports == std::vector<std::uint16_t>{2, 1});
  }
  GIVEN("a token containing '=' that looks like a key") {
    const auto entries = parse_ok("name=web port=1\n");
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].token == "name=web");
    CHECK(entries[0].ports == std::vector<std::uint16_t>{1});
  }
  GIVEN("values at their limits") {
    const std::string token(256, 'T');
    const std::string name(63, 'n');
    const auto entries = parse_ok(token + " name=" + name + " port=1 port=65535\n");
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].token == token);
    CHECK(entries[0].names == std::vector<std::string>{name});
  }
  GIVEN("two tokens that share a name and a port") {
    CHECK(parse_ok("a name=web port=80\nb name=web port=80\n").size() == 2);
  }
}

TEST_CASE("an empty token file, or one of only comments, has no entries",
          "[protocol][token_file]") {
  CHECK(parse_ok("").empty());
  CHECK(parse_ok("\n\n").empty());
  CHECK(parse_ok("# nobody\n#tok name=x\n  # indented\n").empty());
  // A successful parse replaces what the list held.
  std::vector<token_entry> out{token_entry{"old", {}, {}, 1}};
  CHECK(parse_token_file("", out) == "");
  CHECK(out.empty());
}

SCENARIO("a bad token file is refused with the line and the reason", "[protocol][token_file]") {
  GIVEN("a token outside the alphabet") {
    CHECK(parse_bad("good\nb@d-secret name=x\n") ==
          "line 2: the token is not 1..256 of A-Z a-z 0-9 . _ ~ + / = -");
    parse_bad("tok\xc3\xa9n\n");
    parse_bad(std::string(257, 'T') + "\n");
    parse_bad("to\rken\n");  // a CR that does not end the line
  }
  GIVEN("the same token twice") {
    CHECK(parse_bad("s3cret name=a\n# x\ns3cret name=b\n") ==
          "line 3: repeats the token of line 1");
  }
  GIVEN("a bad name") {
    const std::string msg = "line 1: field 2: name= wants 1..63 of a-z 0-9 -, not starting with -";
    CHECK(parse_bad("tok name=Web\n") == msg);
    CHECK(parse_bad("tok name=\n") == msg);
    CHECK(parse_bad("tok name=-web\n") == msg);
    CHECK(parse_bad("tok name=" + std::string(64, 'a') + "\n") == msg);
    CHECK(parse_bad("tok name=a_b\n") == msg);
  }
  GIVEN("a bad port") {
    const std::string msg = "line 1: field 3: port= wants a number in 1..65535";
    CHECK(parse_bad("tok name=a port=0\n") == msg);
    CHECK(parse_bad("tok name=a port=65536\n") == msg);
    CHECK(parse_bad("tok name=a port=\n") == msg);
    CHECK(parse_bad("tok name=a port=http\n") == msg);
    CHECK(parse_bad("tok name=a port=-1\n") == msg);
  }
  GIVEN("the same name or port twice in one entry") {
    CHECK(parse_bad("tok name=a name=a\n") == "line 1: field 3: the same name= twice");
    CHECK(parse_bad("tok port=80 port=080\n") == "line 1: field 3: the same port= twice");
  }
  GIVEN("a field that is neither name= nor port=") {
    const std::string msg = "line 1: field 2: neither name=NAME nor port=PORT";
    CHECK(parse_bad("tok other-secret\n") == msg);
    CHECK(parse_bad("tok Name=a\n") == msg);
    CHECK(parse_bad("tok name\n") == msg);
    CHECK(parse_bad("tok names=a\n") == msg);
    CHECK(parse_bad("tok # trailing comments are not comments\n") == msg);
    CHECK(parse_bad("tok\vname=a\n") == "line 1: the token is not 1..256 of A-Z a-z 0-9 . _ ~ + / = -");
  }
  GIVEN("a bad line after good ones") {
    CHECK(parse_bad("a\nb\n\n# c\nd port=99999\n").rfind("line 5: ", 0) == 0);
  }
}

TEST_CASE("token file messages never quote the secret", "[protocol][token_file]") {
  const std::string secret = "Sup3rS3cretTokenValue";
  const std::string texts[] = {
    secret + " name=BAD\n",
    secret + " port=0\n",
    secret + " " + secret + "\n",
    secret + "\n" + secret + "\n",
    secret + "! name=a\n",
    "x " + secret + "\n",
    secret + " name=a name=a\n",
  };
  for (const auto& text : texts) {
    const auto err = parse_bad(text);
    CAPTURE(err);
    CHECK(err.rfind("line ", 0) == 0);
    CHECK(err.find("Sup3r") == std::string::npos);
  }
}
