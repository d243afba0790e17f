#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <system_error>

#include "protocol/endpoint.hpp"
#include "protocol/errc.hpp"

using tlsrelay::format_host_port;
using tlsrelay::host_port;
using tlsrelay::parse_host_port;
using tlsrelay::parse_port;
using tlsrelay::protocol_errc;

namespace {

std::error_code errc(protocol_errc e) { return tlsrelay::make_error_code(e); }

}  // namespace

TEST_CASE("format_host_port writes names and IPv4 as host:port", "[protocol][endpoint]") {
  CHECK(format_host_port("localhost", 12101) == "localhost:12101");
  CHECK(format_host_port("relay.example.com", 443) == "relay.example.com:443");
  CHECK(format_host_port("127.0.0.1", 12001) == "127.0.0.1:12001");
  CHECK(format_host_port("10.0.0.1", 1) == "10.0.0.1:1");
  CHECK(format_host_port("0.0.0.0", 65535) == "0.0.0.0:65535");
}

TEST_CASE("format_host_port brackets IPv6 hosts", "[protocol][endpoint]") {
  CHECK(format_host_port("::1", 12101) == "[::1]:12101");
  CHECK(format_host_port("::", 80) == "[::]:80");
  CHECK(format_host_port("2001:db8::8a2e:370:7334", 12001) == "[2001:db8::8a2e:370:7334]:12001");
  CHECK(format_host_port("::ffff:192.0.2.1", 8080) == "[::ffff:192.0.2.1]:8080");
  CHECK(format_host_port("fe80::1%eth0", 5) == "[fe80::1%eth0]:5");
}

TEST_CASE("format_host_port of a host_port equals the two-argument form", "[protocol][endpoint]") {
  CHECK(format_host_port(host_port{"::1", 12101}) == "[::1]:12101");
  CHECK(format_host_port(host_port{"example.org", 7}) == "example.org:7");
}

TEST_CASE("parse_port accepts decimal 1..65535", "[protocol][endpoint]") {
  std::uint16_t port = 0;
  CHECK(parse_port("1", port) == std::error_code());
  CHECK(port == 1);
  CHECK(parse_port("12101", port) == std::error_code());
  CHECK(port == 12101);
  CHECK(parse_port("65535", port) == std::error_code());
  CHECK(port == 65535);
  CHECK(parse_port("00080", port) == std::error_code());
  CHECK(port == 80);
}

TEST_CASE("parse_port rejects everything else with bad_port", "[protocol][endpoint]") {
  const char* bad[] = {"",      "0",     "00000", "65536",  "65540",  "99999", "100000",
                       "123456", "8o",    "a",     " 80",    "80 ",    "+80",   "-1",
                       "0x50",   "1.5",   "80\r",  "4294967297"};
  for (const char* text : bad) {
    CAPTURE(text);
    std::uint16_t port = 4242;
    CHECK(parse_port(text, port) == errc(protocol_errc::bad_port));
    CHECK(port == 4242);  // untouched on error
  }
}

SCENARIO("parsing HOST:PORT endpoints", "[protocol][endpoint]") {
  host_port ep;

  GIVEN("a host name") {
    THEN("name and port are split at the colon") {
      REQUIRE(parse_host_port("relay.example.com:12101", ep) == std::error_code());
      CHECK(ep.host == "relay.example.com");
      CHECK(ep.port == 12101);
    }
  }
  GIVEN("an IPv4 address") {
    THEN("address and port are split at the colon") {
      REQUIRE(parse_host_port("127.0.0.1:12001", ep) == std::error_code());
      CHECK(ep.host == "127.0.0.1");
      CHECK(ep.port == 12001);
    }
  }
  GIVEN("a bracketed IPv6 address") {
    THEN("the brackets are removed from the host") {
      REQUIRE(parse_host_port("[::1]:12101", ep) == std::error_code());
      CHECK(ep.host == "::1");
      CHECK(ep.port == 12101);

      REQUIRE(parse_host_port("[2001:db8::8a2e:370:7334]:65535", ep) == std::error_code());
      CHECK(ep.host == "2001:db8::8a2e:370:7334");
      CHECK(ep.port == 65535);

      REQUIRE(parse_host_port("[::ffff:192.0.2.1]:1", ep) == std::error_code());
      CHECK(ep.host == "::ffff:192.0.2.1");
      CHECK(ep.port == 1);
    }
  }
  GIVEN("an IPv6 address without brackets") {
    THEN("it is a bad endpoint, not host \"::\" and port 1") {
      CHECK(parse_host_port("::1:12101", ep) == errc(protocol_errc::bad_endpoint));
      CHECK(parse_host_port("2001:db8::1:80", ep) == errc(protocol_errc::bad_endpoint));
    }
  }
  GIVEN("malformed endpoints") {
    THEN("the specific error is returned and the output is untouched") {
      struct bad_case {
        const char* text;
        protocol_errc expected;
      };
      const bad_case cases[] = {
        {"", protocol_errc::bad_endpoint},
        {"localhost", protocol_errc::bad_endpoint},          // no port at all
        {":12101", protocol_errc::bad_endpoint},             // empty host
        {"[]:12101", protocol_errc::bad_endpoint},           // empty bracketed host
        {"[127.0.0.1]:80", protocol_errc::bad_endpoint},     // brackets only for IPv6
        {"[localhost]:80", protocol_errc::bad_endpoint},
        {"[::1]", protocol_errc::bad_endpoint},              // no port
        {"[::1]80", protocol_errc::bad_endpoint},            // no colon after ]
        {"[::1:80", protocol_errc::bad_endpoint},            // unclosed bracket
        {"[::1]]:80", protocol_errc::bad_endpoint},
        {"[[::1]:80", protocol_errc::bad_endpoint},
        {"::1]:80", protocol_errc::bad_endpoint},
        {"a]b:80", protocol_errc::bad_endpoint},
        {"a[b:80", protocol_errc::bad_endpoint},
        {"local host:80", protocol_errc::bad_endpoint},      // space in host
        {" localhost:80", protocol_errc::bad_endpoint},
        {"local\thost:80", protocol_errc::bad_endpoint},
        {"localhost\r:80", protocol_errc::bad_endpoint},
        {"localhost:0", protocol_errc::bad_port},
        {"localhost:65536", protocol_errc::bad_port},
        {"localhost:", protocol_errc::bad_port},
        {"localhost:12a", protocol_errc::bad_port},
        {"localhost:80 ", protocol_errc::bad_port},          // trailing space
        {"localhost:80\r", protocol_errc::bad_port},
        {"127.0.0.1:-1", protocol_errc::bad_port},
        {"[::1]:", protocol_errc::bad_port},
        {"[::1]:0", protocol_errc::bad_port},
        {"[::1]:65536", protocol_errc::bad_port},
        {"[::1]:8]0", protocol_errc::bad_port},
      };
      for (const auto& c : cases) {
        CAPTURE(c.text);
        host_port out{"unchanged", 4242};
        CHECK(parse_host_port(c.text, out) == errc(c.expected));
        CHECK(out == host_port{"unchanged", 4242});
      }
    }
  }
}

TEST_CASE("endpoints round-trip through format and parse", "[protocol][endpoint]") {
  const host_port endpoints[] = {
    {"localhost", 1},
    {"relay.example.com", 12101},
    {"127.0.0.1", 12001},
    {"255.255.255.255", 65535},
    {"::1", 12101},
    {"::", 2},
    {"2001:db8:85a3::8a2e:370:7334", 443},
    {"fe80::1%eth0", 12345},
  };
  for (const auto& ep : endpoints) {
    CAPTURE(ep.host, ep.port);
    const auto text = format_host_port(ep);
    CAPTURE(text);
    host_port back;
    REQUIRE(parse_host_port(text, back) == std::error_code());
    CHECK(back == ep);
    CHECK(format_host_port(back) == text);
  }
}

TEST_CASE("host_port equality compares host and port", "[protocol][endpoint]") {
  CHECK(host_port{"a", 1} == host_port{"a", 1});
  CHECK_FALSE(host_port{"a", 1} == host_port{"a", 2});
  CHECK_FALSE(host_port{"a", 1} == host_port{"b", 1});
}
