#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "protocol/connection_id.hpp"
#include "protocol/errc.hpp"
#include "protocol/first_line.hpp"
#include "protocol/proxy_header.hpp"
#include "protocol/v2.hpp"

using tlsrelay::find_first_line;
using tlsrelay::find_paired_line;
using tlsrelay::find_reverse_line;
using tlsrelay::first_line;
using tlsrelay::proxy_header_bytes;
using status = first_line::status;
namespace proxy_v2 = tlsrelay::proxy_v2;
namespace v2 = tlsrelay::v2;

namespace {

const std::string id_hex = "00112233445566778899aabbccddeeff";
const std::string accept_line = "accept " + id_hex + "\r\n";  // 41 bytes
// The client's first bytes, right behind the line (a TLS ClientHello starts 16 03).
const std::string client_bytes("\x16\x03\x01\x02\x00", 5);

std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out += static_cast<char>(v);
  return out;
}

const std::string signature(proxy_v2::signature.begin(), proxy_v2::signature.end());

void check_complete(const first_line& r, std::string_view line, std::size_t take) {
  REQUIRE(r.state == status::complete);
  CHECK(r.line == line);
  CHECK(r.take == take);
}

void check_not_complete(const first_line& r, status expected) {
  CHECK(r.state == expected);
  CHECK(r.take == 0);
  CHECK(r.line.empty());
}

}  // namespace

SCENARIO("the first line of a reverse connection is found by peeking",
         "[protocol][first_line]") {
  GIVEN("an accept line followed by the client's bytes") {
    const auto seen = accept_line + client_bytes;
    THEN("exactly the line and its ending are to be taken") {
      const auto r = find_reverse_line(seen);
      check_complete(r, "accept " + id_hex, 41);
      CHECK(seen.substr(r.take) == client_bytes);
      v2::reverse_line parsed;
      REQUIRE_FALSE(v2::parse_reverse_line(r.line, parsed));
      CHECK(v2::format_line(std::get<v2::accept>(parsed)) == accept_line);
    }
  }
  GIVEN("the longest ready line (serial 2^64-1, 61 bytes)") {
    tlsrelay::connection_id tag;
    tag.bytes.fill(0xab);
    const auto line = v2::format_line(v2::ready{UINT64_MAX, tag});
    REQUIRE(line.size() == 61);
    THEN("it fits the relay's maximum") {
      check_complete(find_reverse_line(line + client_bytes), line.substr(0, 59), 61);
    }
  }
  GIVEN("the line arriving a byte at a time") {
    const auto stream = accept_line + client_bytes;
    THEN("every prefix without the '\\n' needs more, every longer one gives the same line") {
      for (std::size_t n = 0; n < accept_line.size(); ++n)
        check_not_complete(find_reverse_line(stream.substr(0, n)), status::need_more);
      for (std::size_t n = accept_line.size(); n <= stream.size(); ++n)
        check_complete(find_reverse_line(stream.substr(0, n)), "accept " + id_hex, 41);
    }
  }
  GIVEN("a peer that says nothing yet") {
    THEN("nothing seen needs more") {
      check_not_complete(find_reverse_line({}), status::need_more);
    }
  }
}

SCENARIO("a reader that takes partial lines out of the kernel", "[protocol][first_line]") {
  GIVEN("a paired line that arrives in two pieces, the first taken out already") {
    const std::string line = id_hex + " 192.0.2.1:56324\r\n";
    const std::string taken = line.substr(0, 20);
    WHEN("the reader asks about what was taken plus what the next peek shows") {
      const std::string seen = taken + line.substr(20) + client_bytes;
      const auto r = find_paired_line(seen);
      THEN("only the rest of the line is left to take") {
        check_complete(r, id_hex + " 192.0.2.1:56324", line.size());
        CHECK(r.take - taken.size() == line.size() - 20);
      }
    }
  }
}

SCENARIO("a warm connection's paired line stops before the PROXY header behind it",
         "[protocol][first_line]") {
  GIVEN("`<ID> <CLIENT>` and then a PROXY v2 header, which itself starts \\r\\n") {
    const std::string line = id_hex + " 192.0.2.1:56324\r\n";
    const auto header = proxy_v2::encode({"192.0.2.1", 56324, "198.51.100.7", 443});
    REQUIRE(header.substr(0, 2) == "\r\n");
    const auto seen = line + header;
    THEN("only the line is taken; the header is left whole") {
      const auto r = find_paired_line(seen);
      check_complete(r, id_hex + " 192.0.2.1:56324", line.size());
      CHECK(seen.substr(r.take) == header);
      v2::paired parsed;
      REQUIRE_FALSE(v2::parse_paired_line(r.line, parsed));
      CHECK(v2::format_line(parsed) == line);
    }
  }
  GIVEN("a client address of the longest IPv6 text (45 characters), port 65535") {
    const std::string line =
      id_hex + " [ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535\r\n";
    THEN("it fits the warm connection's maximum") {
      CHECK(line.size() <= v2::max_paired_line_bytes);
      check_complete(find_paired_line(line), line.substr(0, line.size() - 2), line.size());
    }
  }
}

SCENARIO("the maximum counts the line's ending", "[protocol][first_line]") {
  constexpr std::size_t max = v2::max_reverse_line_bytes;

  GIVEN("a line of exactly the maximum, ending in \\r\\n") {
    const std::string seen = std::string(max - 2, 'a') + "\r\n" + client_bytes;
    THEN("it is complete") {
      check_complete(find_reverse_line(seen), std::string(max - 2, 'a'), max);
    }
  }
  GIVEN("a line of exactly the maximum, ending in a bare \\n") {
    const std::string seen = std::string(max - 1, 'a') + "\n";
    THEN("it is complete") {
      check_complete(find_reverse_line(seen), std::string(max - 1, 'a'), max);
    }
  }
  GIVEN("a line one byte over the maximum") {
    const std::string line = std::string(max - 1, 'a') + "\r\n";
    THEN("it is too long as soon as the maximum is seen, and stays so") {
      check_not_complete(find_reverse_line(line.substr(0, max - 1)), status::need_more);
      check_not_complete(find_reverse_line(line.substr(0, max)), status::too_long);
      check_not_complete(find_reverse_line(line), status::too_long);
      check_not_complete(find_reverse_line(line + client_bytes), status::too_long);
    }
  }
  GIVEN("the maximum of bytes without any line ending") {
    THEN("it is too long; one byte fewer needs more") {
      check_not_complete(find_reverse_line(std::string(max, 'a')), status::too_long);
      check_not_complete(find_reverse_line(std::string(max - 1, 'a')), status::need_more);
    }
  }
  GIVEN("a '\\n' past the maximum in a large peek") {
    const std::string seen = std::string(max, 'a') + "\n";
    THEN("it is too long, as it would be with a peek of the maximum") {
      check_not_complete(find_reverse_line(seen), status::too_long);
    }
  }
  GIVEN("the paired line's own maximum") {
    constexpr std::size_t paired_max = v2::max_paired_line_bytes;
    THEN("it is used by find_paired_line") {
      check_complete(find_paired_line(std::string(paired_max - 1, 'a') + "\n"),
                     std::string(paired_max - 1, 'a'), paired_max);
      check_not_complete(find_paired_line(std::string(paired_max, 'a') + "\n"), status::too_long);
    }
  }
  GIVEN("a maximum of 0") {
    THEN("no line fits, not even an empty one") {
      check_not_complete(find_first_line({}, 0), status::too_long);
      check_not_complete(find_first_line("\n", 0), status::too_long);
    }
  }
  GIVEN("a maximum of 1") {
    THEN("only an empty line ending in a bare \\n fits") {
      check_complete(find_first_line("\nx", 1), "", 1);
      check_not_complete(find_first_line("\r\n", 1), status::too_long);
      check_not_complete(find_first_line({}, 1), status::need_more);
    }
  }
}

SCENARIO("carriage returns", "[protocol][first_line]") {
  GIVEN("a '\\r' seen without its '\\n'") {
    THEN("the line is not complete yet") {
      check_not_complete(find_reverse_line("accept " + id_hex + "\r"), status::need_more);
    }
  }
  GIVEN("a '\\r' that is not right before the '\\n'") {
    THEN("it stays in the line, and the parser refuses it") {
      const std::string seen = "acc\rept " + id_hex + "\r\n";
      const auto r = find_reverse_line(seen);
      check_complete(r, "acc\rept " + id_hex, 42);
      v2::reverse_line parsed;
      CHECK(v2::parse_reverse_line(r.line, parsed));
    }
  }
  GIVEN("two '\\r' before the '\\n'") {
    THEN("only one is part of the ending") {
      check_complete(find_reverse_line("a\r\r\n"), "a\r", 4);
    }
  }
  GIVEN("a '\\r' after the '\\n'") {
    THEN("it is the client's byte, not the line's") {
      const auto r = find_reverse_line("a\n\r");
      check_complete(r, "a", 2);
    }
  }
}

SCENARIO("odd lines", "[protocol][first_line]") {
  GIVEN("an empty line") {
    THEN("it is complete and empty, and the parsers call it empty") {
      const auto crlf = find_reverse_line("\r\nrest");
      check_complete(crlf, "", 2);
      check_complete(find_reverse_line("\nrest"), "", 1);
      v2::reverse_line parsed;
      CHECK(v2::parse_reverse_line(crlf.line, parsed) ==
            make_error_code(tlsrelay::protocol_errc::empty_line));
      v2::paired paired;
      CHECK(v2::parse_paired_line(crlf.line, paired) ==
            make_error_code(tlsrelay::protocol_errc::empty_line));
    }
  }
  GIVEN("a NUL inside the line") {
    const std::string seen = std::string("accept") + '\0' + id_hex + "\r\n";
    THEN("it does not end the line; the line keeps it and the parser refuses it") {
      const auto r = find_reverse_line(seen);
      check_complete(r, std::string_view(seen.data(), 39), 41);
      CHECK(r.line.size() == 39);
      CHECK(r.line[6] == '\0');
      v2::reverse_line parsed;
      CHECK(v2::parse_reverse_line(r.line, parsed));
    }
  }
  GIVEN("nothing but NULs up to the maximum") {
    THEN("it is too long") {
      check_not_complete(find_reverse_line(std::string(v2::max_reverse_line_bytes, '\0')),
                         status::too_long);
    }
  }
  GIVEN("a v1-style line from a peer that does not speak v2") {
    THEN("it is a complete line, for the parser to refuse") {
      const auto r = find_reverse_line("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      check_complete(r, "GET / HTTP/1.1", 16);
      v2::reverse_line parsed;
      CHECK(v2::parse_reverse_line(r.line, parsed) ==
            make_error_code(tlsrelay::protocol_errc::unknown_command));
    }
  }
}

TEST_CASE("the length of a PROXY v2 header is known from its fixed part",
          "[protocol][first_line][proxy]") {
  const auto v4 = proxy_v2::encode({"192.0.2.1", 56324, "198.51.100.7", 443});
  const auto v6 = proxy_v2::encode({"2001:db8::1", 12345, "2001:db8::2:ff", 8080});
  REQUIRE(v4.size() == 28);
  REQUIRE(v6.size() == 52);

  SECTION("TCP over IPv4 and IPv6, from the first 16 bytes alone") {
    CHECK(proxy_header_bytes(v4.substr(0, 16)) == 28);
    CHECK(proxy_header_bytes(v6.substr(0, 16)) == 52);
    CHECK(proxy_header_bytes(v4 + client_bytes) == 28);
  }
  SECTION("TLVs after the addresses are counted") {
    // 12 address bytes + one TLV (type 0x04 NOOP, length 2, two bytes).
    const auto with_tlv = signature + bytes({0x21, 0x11, 0x00, 0x11}) + v4.substr(16) +
                          bytes({0x04, 0x00, 0x02, 0xAA, 0xBB});
    CHECK(proxy_header_bytes(with_tlv) == 16 + 17);
    const auto d = proxy_v2::decode(with_tlv);
    REQUIRE(d.status == proxy_v2::decode_status::complete);
    CHECK(d.header_bytes == 16 + 17);
  }
  SECTION("a LOCAL header without addresses is the fixed part alone") {
    CHECK(proxy_header_bytes(signature + bytes({0x20, 0x00, 0x00, 0x00})) == 16);
  }
  SECTION("fewer than 16 bytes say nothing") {
    for (std::size_t n = 0; n < 16; ++n) CHECK(proxy_header_bytes(v4.substr(0, n)) == 0);
  }
  SECTION("what decode() refuses is 0") {
    auto wrong_signature = v4;
    wrong_signature[7] = 'q';
    CHECK(proxy_header_bytes(wrong_signature) == 0);
    // Version 1 in the high nibble.
    CHECK(proxy_header_bytes(signature + bytes({0x11, 0x11, 0x00, 0x0C})) == 0);
    // UDP over IPv4: the relay carries TCP only.
    CHECK(proxy_header_bytes(signature + bytes({0x21, 0x12, 0x00, 0x0C})) == 0);
    // TCP over IPv6 with only 12 bytes for its 36 address bytes.
    CHECK(proxy_header_bytes(signature + bytes({0x21, 0x21, 0x00, 0x0C})) == 0);
    // A TLS ClientHello where a header was expected.
    CHECK(proxy_header_bytes(std::string(16, '\x16')) == 0);
  }
  SECTION("the longest header the length field allows") {
    CHECK(proxy_header_bytes(signature + bytes({0x21, 0x21, 0xFF, 0xFF})) ==
          proxy_v2::max_header_bytes);
  }
}
