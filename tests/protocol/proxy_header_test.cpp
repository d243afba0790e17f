#include <catch2/catch.hpp>

#include <initializer_list>
#include <string>
#include <string_view>

#include "protocol/proxy_header.hpp"

namespace proxy_v2 = tlsrelay::proxy_v2;
using proxy_v2::addresses;
using proxy_v2::decode_status;

namespace {

std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out += static_cast<char>(v);
  return out;
}

const std::string sig = bytes({0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A});

// Computed by hand from the spec: 192.0.2.1:56324 → 198.51.100.7:443.
//   21          version 2, PROXY
//   11          AF_INET, STREAM
//   00 0C       12 address bytes
//   C0 00 02 01 192.0.2.1      C6 33 64 07 198.51.100.7
//   DC 04       56324          01 BB       443
const std::string ipv4_golden =
  sig + bytes({0x21, 0x11, 0x00, 0x0C, 0xC0, 0x00, 0x02, 0x01, 0xC6, 0x33, 0x64, 0x07, 0xDC, 0x04,
               0x01, 0xBB});
const addresses ipv4_addr{"192.0.2.1", 56324, "198.51.100.7", 443};

// 2001:db8::1 port 12345 → 2001:db8::2:ff port 8080.
//   21 21 00 24   version 2 PROXY, AF_INET6 STREAM, 36 address bytes
//   20 01 0D B8 00 00 00 00 00 00 00 00 00 00 00 01   2001:db8::1
//   20 01 0D B8 00 00 00 00 00 00 00 00 00 02 00 FF   2001:db8::2:ff
//   30 39  12345      1F 90  8080
const std::string ipv6_golden =
  sig + bytes({0x21, 0x21, 0x00, 0x24,                                                  //
               0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x01,        //
               0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00, 0xFF,     //
               0x30, 0x39, 0x1F, 0x90});
const addresses ipv6_addr{"2001:db8::1", 12345, "2001:db8::2:ff", 8080};

void check_complete(const proxy_v2::decoded& d, std::size_t header_bytes, const addresses& a) {
  REQUIRE(d.status == decode_status::complete);
  CHECK(d.header_bytes == header_bytes);
  CHECK_FALSE(d.local);
  CHECK(d.addr.source_ip == a.source_ip);
  CHECK(d.addr.source_port == a.source_port);
  CHECK(d.addr.destination_ip == a.destination_ip);
  CHECK(d.addr.destination_port == a.destination_port);
}

}  // namespace

TEST_CASE("the PROXY v2 signature and sizes are those of the spec", "[protocol][proxy]") {
  CHECK(std::string(proxy_v2::signature.begin(), proxy_v2::signature.end()) == sig);
  CHECK(sig == std::string_view("\r\n\r\n\0\r\nQUIT\n", 12));
  CHECK(proxy_v2::fixed_bytes == 16);
  CHECK(ipv4_golden.size() == 16 + 12);
  CHECK(ipv6_golden.size() == 16 + 36);
}

TEST_CASE("an IPv4 connection is encoded byte for byte", "[protocol][proxy]") {
  CHECK(proxy_v2::encode(ipv4_addr) == ipv4_golden);
  check_complete(proxy_v2::decode(ipv4_golden), ipv4_golden.size(), ipv4_addr);
}

TEST_CASE("an IPv6 connection is encoded byte for byte", "[protocol][proxy]") {
  CHECK(proxy_v2::encode(ipv6_addr) == ipv6_golden);
  check_complete(proxy_v2::decode(ipv6_golden), ipv6_golden.size(), ipv6_addr);
  // Any spelling of the same address gives the same bytes.
  CHECK(proxy_v2::encode({"2001:0DB8:0:0:0:0:0:1", 12345, "2001:db8:0::2:00ff", 8080}) ==
        ipv6_golden);
}

SCENARIO("encode and decode round-trip", "[protocol][proxy]") {
  const addresses cases[] = {
    ipv4_addr,
    ipv6_addr,
    {"0.0.0.0", 0, "255.255.255.255", 65535},
    {"127.0.0.1", 1, "127.0.0.1", 2},
    {"::", 0, "::1", 65535},
    {"fe80::1", 5, "ff02::1:ff00:1", 6},
  };
  for (const auto& a : cases) {
    CAPTURE(a.source_ip, a.destination_ip);
    const auto header = proxy_v2::encode(a);
    REQUIRE_FALSE(header.empty());
    const auto d = proxy_v2::decode(header);
    check_complete(d, header.size(), a);
    CHECK(proxy_v2::encode(d.addr) == header);
  }
}

TEST_CASE("decode stops at the end of the header: payload bytes are not its business",
          "[protocol][proxy]") {
  const auto d = proxy_v2::decode(ipv4_golden + "GET / HTTP/1.1\r\n");
  check_complete(d, ipv4_golden.size(), ipv4_addr);
}

TEST_CASE("every truncation of a valid header needs more bytes", "[protocol][proxy]") {
  const std::string headers[] = {ipv4_golden, ipv6_golden,
                                 proxy_v2::encode({"10.0.0.1", 1, "::1", 2})};
  for (const auto& h : headers) {
    for (std::size_t n = 0; n < h.size(); ++n) {
      CAPTURE(h.size(), n);
      const auto d = proxy_v2::decode(std::string_view(h).substr(0, n));
      CHECK(d.status == decode_status::need_more);
      CHECK(d.header_bytes == 0);
    }
  }
}

SCENARIO("IPv4-mapped IPv6 addresses count as IPv4", "[protocol][proxy]") {
  GIVEN("both addresses mapped") {
    const auto h = proxy_v2::encode({"::ffff:192.0.2.1", 56324, "::FFFF:198.51.100.7", 443});
    THEN("the header is the plain IPv4 one") { CHECK(h == ipv4_golden); }
  }
  GIVEN("one mapped, one plain IPv4") {
    CHECK(proxy_v2::encode({"192.0.2.1", 56324, "::ffff:c633:6407", 443}) == ipv4_golden);
  }
  GIVEN("a TCP6 header carrying mapped addresses") {
    std::string h = sig + bytes({0x21, 0x21, 0x00, 0x24});
    for (int i = 0; i < 2; ++i) {
      h += std::string(10, '\0');
      h += bytes({0xff, 0xff, 10, 0, 0, i + 1});
    }
    h += bytes({0x00, 0x50, 0x01, 0xBB});
    THEN("decode writes them as IPv4") {
      check_complete(proxy_v2::decode(h), h.size(), {"10.0.0.1", 80, "10.0.0.2", 443});
    }
  }
}

SCENARIO("addresses of different families are both written as IPv6", "[protocol][proxy]") {
  GIVEN("an IPv4 source and an IPv6 destination") {
    const addresses a{"192.0.2.1", 1000, "::1", 443};
    const auto h = proxy_v2::encode(a);
    // 21 21 00 24, then ::ffff:192.0.2.1, ::1, ports.
    const std::string expected =
      sig + bytes({0x21, 0x21, 0x00, 0x24,                                               //
                   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xC0, 0x00, 0x02, 0x01,     //
                   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,                       //
                   0x03, 0xE8, 0x01, 0xBB});
    CHECK(h == expected);
    THEN("decode gives the IPv4 address back as IPv4") {
      check_complete(proxy_v2::decode(h), h.size(), a);
    }
  }
  GIVEN("an IPv6 source and a mapped IPv4 destination") {
    const auto h = proxy_v2::encode({"2001:db8::1", 5, "::ffff:10.1.2.3", 6});
    REQUIRE(h.size() == 16 + 36);
    CHECK(static_cast<unsigned char>(h[13]) == 0x21);
    check_complete(proxy_v2::decode(h), h.size(), {"2001:db8::1", 5, "10.1.2.3", 6});
  }
}

TEST_CASE("encode refuses what is not an IP address", "[protocol][proxy]") {
  const char* bad[] = {"",          "localhost", "1.2.3",        "1.2.3.4.5", "256.0.0.1",
                       "01.2.3.4",  " 1.2.3.4",  "1.2.3.4 ",     "[::1]",     "fe80::1%eth0",
                       "::1::2",    "1.2.3.4:80", "gggg::1"};
  for (const char* ip : bad) {
    CAPTURE(ip);
    CHECK(proxy_v2::encode({ip, 1, "127.0.0.1", 2}).empty());
    CHECK(proxy_v2::encode({"::1", 1, ip, 2}).empty());
  }
  // A NUL would hide the rest of the text from inet_pton.
  CHECK(proxy_v2::encode({std::string("1.2.3.4\0garbage", 15), 1, "1.2.3.4", 2}).empty());
}

SCENARIO("headers that are not PROXY v2 for TCP are invalid", "[protocol][proxy]") {
  auto with = [](std::size_t index, int value) {
    std::string h = ipv4_golden;
    h[index] = static_cast<char>(value);
    return h;
  };
  GIVEN("a wrong signature byte anywhere, even before the header is complete") {
    for (std::size_t i = 0; i < 12; ++i) {
      CAPTURE(i);
      const auto h = with(i, ipv4_golden[i] ^ 0x40);
      CHECK(proxy_v2::decode(h).status == decode_status::invalid);
      CHECK(proxy_v2::decode(std::string_view(h).substr(0, i + 1)).status ==
            decode_status::invalid);
    }
  }
  GIVEN("a PROXY v1 text header or another protocol") {
    CHECK(proxy_v2::decode("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n").status ==
          decode_status::invalid);
    CHECK(proxy_v2::decode("GET / HTTP/1.1\r\n").status == decode_status::invalid);
    CHECK(proxy_v2::decode("\r\n\r\n\r\n").status == decode_status::invalid);
  }
  GIVEN("a version other than 2 or an unknown command") {
    for (int v : {0x11, 0x31, 0x01, 0x22, 0x2F, 0x12, 0xFF, 0x00}) {
      CAPTURE(v);
      CHECK(proxy_v2::decode(with(12, v)).status == decode_status::invalid);
      CHECK(proxy_v2::decode(with(12, v).substr(0, 13)).status == decode_status::invalid);
    }
  }
  GIVEN("a family other than TCP over IPv4 or IPv6 under PROXY") {
    for (int f : {0x12, 0x22, 0x31, 0x32, 0x01, 0x10, 0x20, 0x13, 0x41, 0xFF}) {
      CAPTURE(f);
      CHECK(proxy_v2::decode(with(13, f)).status == decode_status::invalid);
      CHECK(proxy_v2::decode(with(13, f).substr(0, 14)).status == decode_status::invalid);
    }
  }
  GIVEN("a length too short for the family's addresses") {
    CHECK(proxy_v2::decode(with(15, 11)).status == decode_status::invalid);
    CHECK(proxy_v2::decode(with(15, 0)).status == decode_status::invalid);
    std::string v6 = ipv6_golden;
    v6[15] = 35;
    CHECK(proxy_v2::decode(v6).status == decode_status::invalid);
    CHECK(proxy_v2::decode(v6.substr(0, 16)).status == decode_status::invalid);
  }
}

SCENARIO("TLVs after the addresses are skipped", "[protocol][proxy]") {
  // PP2_TYPE_AUTHORITY (0x02) "relay", PP2_TYPE_NOOP (0x04) of 3 bytes.
  const std::string tlvs = bytes({0x02, 0x00, 0x05}) + "relay" + bytes({0x04, 0x00, 0x03, 1, 2, 3});
  std::string h = ipv4_golden + tlvs;
  h[15] = static_cast<char>(12 + tlvs.size());
  WHEN("the whole header is there") {
    check_complete(proxy_v2::decode(h + "payload"), h.size(), ipv4_addr);
  }
  WHEN("a TLV is cut short") {
    for (std::size_t n = ipv4_golden.size(); n < h.size(); ++n) {
      CAPTURE(n);
      CHECK(proxy_v2::decode(h.substr(0, n)).status == decode_status::need_more);
    }
  }
  WHEN("the length is as long as it goes") {
    std::string big = ipv6_golden + std::string(0xffff - 36, 'x');
    big[14] = static_cast<char>(0xff);
    big[15] = static_cast<char>(0xff);
    REQUIRE(big.size() == proxy_v2::max_header_bytes);
    check_complete(proxy_v2::decode(big), proxy_v2::max_header_bytes, ipv6_addr);
    CHECK(proxy_v2::decode(std::string_view(big).substr(0, big.size() - 1)).status ==
          decode_status::need_more);
  }
}

SCENARIO("LOCAL headers and the UNSPEC family carry no addresses", "[protocol][proxy]") {
  GIVEN("a LOCAL health check with no address block") {
    const std::string h = sig + bytes({0x20, 0x00, 0x00, 0x00});
    const auto d = proxy_v2::decode(h + "x");
    REQUIRE(d.status == decode_status::complete);
    CHECK(d.header_bytes == 16);
    CHECK(d.local);
    CHECK(d.addr == addresses{});
  }
  GIVEN("a LOCAL header with a family and addresses, which are ignored") {
    std::string h = ipv4_golden;
    h[12] = 0x20;
    const auto d = proxy_v2::decode(h);
    REQUIRE(d.status == decode_status::complete);
    CHECK(d.header_bytes == h.size());
    CHECK(d.local);
    CHECK(d.addr == addresses{});
  }
  GIVEN("a LOCAL header whose family byte is unusual") {
    const auto d = proxy_v2::decode(sig + bytes({0x20, 0x31, 0x00, 0x02, 'a', 'b'}));
    REQUIRE(d.status == decode_status::complete);
    CHECK(d.header_bytes == 18);
    CHECK(d.local);
  }
  GIVEN("a PROXY header with the UNSPEC family and some bytes") {
    const std::string h = sig + bytes({0x21, 0x00, 0x00, 0x03, 1, 2, 3});
    const auto d = proxy_v2::decode(h);
    REQUIRE(d.status == decode_status::complete);
    CHECK(d.header_bytes == h.size());
    CHECK(d.local);
    CHECK(d.addr == addresses{});
    CHECK(proxy_v2::decode(h.substr(0, h.size() - 1)).status == decode_status::need_more);
  }
}
