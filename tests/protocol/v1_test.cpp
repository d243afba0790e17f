#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

#include "protocol/defaults.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/errc.hpp"
#include "protocol/line_splitter.hpp"
#include "protocol/v1.hpp"

namespace v1 = tlsrelay::v1;
using tlsrelay::host_port;
using tlsrelay::protocol_errc;

namespace {

std::error_code errc(protocol_errc e) { return tlsrelay::make_error_code(e); }

bool same_message(const v1::relay_message& a, const v1::relay_message& b) {
  if (a.index() != b.index()) return false;
  if (const auto* p = std::get_if<v1::public_listener>(&a))
    return p->endpoint == std::get<v1::public_listener>(b).endpoint;
  if (const auto* r = std::get_if<v1::reverse_listener>(&a))
    return r->endpoint == std::get<v1::reverse_listener>(b).endpoint;
  return true;  // new_connection, no_available_listeners: no fields
}

std::string without_crlf(std::string line) {
  REQUIRE(line.size() >= 2);
  REQUIRE(line.compare(line.size() - 2, 2, "\r\n") == 0);
  line.resize(line.size() - 2);
  return line;
}

struct golden {
  v1::relay_message message;
  const char* bytes;
};

const golden goldens[] = {
  {v1::public_listener{{"127.0.0.1", 12101}}, "public_listener 127.0.0.1:12101\r\n"},
  {v1::reverse_listener{{"127.0.0.1", 12001}}, "reverse_listener 127.0.0.1:12001\r\n"},
  {v1::public_listener{{"relay.example.com", 12200}}, "public_listener relay.example.com:12200\r\n"},
  {v1::reverse_listener{{"relay.example.com", 12100}},
   "reverse_listener relay.example.com:12100\r\n"},
  {v1::public_listener{{"::1", 12101}}, "public_listener [::1]:12101\r\n"},
  {v1::reverse_listener{{"::1", 12001}}, "reverse_listener [::1]:12001\r\n"},
  {v1::public_listener{{"2001:db8::8a2e:370:7334", 65535}},
   "public_listener [2001:db8::8a2e:370:7334]:65535\r\n"},
  {v1::reverse_listener{{"localhost", 1}}, "reverse_listener localhost:1\r\n"},
  {v1::new_connection{}, "new_connection\r\n"},
  {v1::no_available_listeners{}, "no_available_listeners\r\n"},
};

}  // namespace

TEST_CASE("v1 lines are formatted byte for byte as tx_tlsrelay does", "[protocol][v1]") {
  for (const auto& g : goldens) {
    CAPTURE(g.bytes);
    CHECK(v1::format_line(g.message) == g.bytes);
  }
}

TEST_CASE("v1 golden lines parse to the expected message", "[protocol][v1]") {
  for (const auto& g : goldens) {
    CAPTURE(g.bytes);
    v1::relay_message parsed = v1::no_available_listeners{};
    REQUIRE(v1::parse_line(without_crlf(g.bytes), parsed) == std::error_code());
    CHECK(same_message(parsed, g.message));
  }
}

SCENARIO("each v1 message parses into its own alternative", "[protocol][v1]") {
  v1::relay_message msg;
  GIVEN("public_listener with an IPv4 endpoint") {
    REQUIRE(v1::parse_line("public_listener 127.0.0.1:12101", msg) == std::error_code());
    const auto* m = std::get_if<v1::public_listener>(&msg);
    REQUIRE(m != nullptr);
    CHECK(m->endpoint.host == "127.0.0.1");
    CHECK(m->endpoint.port == 12101);
  }
  GIVEN("reverse_listener with a name") {
    REQUIRE(v1::parse_line("reverse_listener relay.example.com:12001", msg) == std::error_code());
    const auto* m = std::get_if<v1::reverse_listener>(&msg);
    REQUIRE(m != nullptr);
    CHECK(m->endpoint.host == "relay.example.com");
    CHECK(m->endpoint.port == 12001);
  }
  GIVEN("public_listener with a bracketed IPv6 endpoint") {
    REQUIRE(v1::parse_line("public_listener [::1]:12101", msg) == std::error_code());
    const auto* m = std::get_if<v1::public_listener>(&msg);
    REQUIRE(m != nullptr);
    CHECK(m->endpoint.host == "::1");
    CHECK(m->endpoint.port == 12101);
  }
  GIVEN("reverse_listener with a bracketed IPv6 endpoint") {
    REQUIRE(v1::parse_line("reverse_listener [fd00::2]:12001", msg) == std::error_code());
    const auto* m = std::get_if<v1::reverse_listener>(&msg);
    REQUIRE(m != nullptr);
    CHECK(m->endpoint.host == "fd00::2");
    CHECK(m->endpoint.port == 12001);
  }
  GIVEN("new_connection") {
    REQUIRE(v1::parse_line("new_connection", msg) == std::error_code());
    CHECK(std::holds_alternative<v1::new_connection>(msg));
  }
  GIVEN("no_available_listeners") {
    REQUIRE(v1::parse_line("no_available_listeners", msg) == std::error_code());
    CHECK(std::holds_alternative<v1::no_available_listeners>(msg));
  }
}

TEST_CASE("v1 messages round-trip through format and parse", "[protocol][v1]") {
  const host_port endpoints[] = {
    {"127.0.0.1", 12101}, {"0.0.0.0", 1},     {"relay.example.com", 65535}, {"localhost", 12001},
    {"::1", 12101},       {"::", 2},          {"2001:db8:85a3::8a2e:370:7334", 443},
    {"::ffff:192.0.2.1", 8080},
  };
  std::vector<v1::relay_message> messages{v1::new_connection{}, v1::no_available_listeners{}};
  for (const auto& ep : endpoints) {
    messages.emplace_back(v1::public_listener{ep});
    messages.emplace_back(v1::reverse_listener{ep});
  }
  for (const auto& msg : messages) {
    const auto line = v1::format_line(msg);
    CAPTURE(line);
    v1::relay_message back;
    REQUIRE(v1::parse_line(without_crlf(line), back) == std::error_code());
    CHECK(same_message(back, msg));
    CHECK(v1::format_line(back) == line);
  }
}

TEST_CASE("formatted v1 lines survive the line splitter", "[protocol][v1][line_splitter]") {
  const std::vector<v1::relay_message> messages{
    v1::public_listener{{"::1", 12101}}, v1::reverse_listener{{"10.1.2.3", 12001}},
    v1::new_connection{}, v1::new_connection{}, v1::no_available_listeners{}};
  std::string stream;
  for (const auto& m : messages) stream += v1::format_line(m);

  tlsrelay::line_splitter splitter(tlsrelay::defaults::max_control_line_bytes);
  std::vector<v1::relay_message> parsed;
  for (char c : stream) {  // byte by byte: the worst case for the splitter
    splitter.append(std::string_view(&c, 1));
    for (auto r = splitter.next(); r.state == tlsrelay::line_splitter::status::line;
         r = splitter.next()) {
      v1::relay_message m;
      REQUIRE(v1::parse_line(r.line, m) == std::error_code());
      parsed.push_back(m);
    }
  }
  REQUIRE(parsed.size() == messages.size());
  for (std::size_t i = 0; i < messages.size(); ++i) {
    CAPTURE(i);
    CHECK(same_message(parsed[i], messages[i]));
  }
}

TEST_CASE("a peer's bare LF lines parse like CRLF lines", "[protocol][v1][line_splitter]") {
  tlsrelay::line_splitter splitter(tlsrelay::defaults::max_control_line_bytes);
  splitter.append("public_listener [::1]:12101\nnew_connection\n");
  auto r = splitter.next();
  REQUIRE(r.state == tlsrelay::line_splitter::status::line);
  v1::relay_message m;
  REQUIRE(v1::parse_line(r.line, m) == std::error_code());
  CHECK(same_message(m, v1::public_listener{{"::1", 12101}}));
  r = splitter.next();
  REQUIRE(r.state == tlsrelay::line_splitter::status::line);
  REQUIRE(v1::parse_line(r.line, m) == std::error_code());
  CHECK(std::holds_alternative<v1::new_connection>(m));
}

SCENARIO("malformed v1 lines are rejected with a specific error", "[protocol][v1]") {
  struct bad_case {
    const char* line;
    protocol_errc expected;
  };
  auto check_all = [](std::initializer_list<bad_case> cases) {
    for (const auto& c : cases) {
      CAPTURE(c.line);
      // The output must not be touched by a failed parse.
      v1::relay_message out = v1::reverse_listener{{"sentinel", 4242}};
      CHECK(v1::parse_line(c.line, out) == errc(c.expected));
      CHECK(same_message(out, v1::reverse_listener{{"sentinel", 4242}}));
    }
  };

  GIVEN("an empty line") { check_all({{"", protocol_errc::empty_line}}); }
  GIVEN("an unknown command") {
    check_all({
      {"hello", protocol_errc::unknown_command},
      {"PUBLIC_LISTENER 127.0.0.1:12101", protocol_errc::unknown_command},  // case matters
      {"public_listener:127.0.0.1:12101", protocol_errc::unknown_command},
      {"public_listener\t127.0.0.1:12101", protocol_errc::unknown_command},
      {"new_connections", protocol_errc::unknown_command},
      {"new_connection\r", protocol_errc::unknown_command},  // stray CR is not stripped here
      {" new_connection", protocol_errc::unknown_command},   // leading space
      {" ", protocol_errc::unknown_command},
      {"listener 127.0.0.1:12101", protocol_errc::unknown_command},
    });
  }
  GIVEN("a listener line without its argument") {
    check_all({
      {"public_listener", protocol_errc::missing_argument},
      {"reverse_listener", protocol_errc::missing_argument},
      {"public_listener ", protocol_errc::missing_argument},
      {"reverse_listener ", protocol_errc::missing_argument},
    });
  }
  GIVEN("an argument to a message that takes none") {
    check_all({
      {"new_connection 1", protocol_errc::unexpected_argument},
      {"no_available_listeners 127.0.0.1:12101", protocol_errc::unexpected_argument},
      {"new_connection ", protocol_errc::unexpected_argument},          // trailing space
      {"no_available_listeners ", protocol_errc::unexpected_argument},  // trailing space
    });
  }
  GIVEN("a listener line whose endpoint is not HOST:PORT") {
    check_all({
      {"public_listener 127.0.0.1", protocol_errc::bad_endpoint},
      {"public_listener :12101", protocol_errc::bad_endpoint},                 // empty host
      {"reverse_listener []:12001", protocol_errc::bad_endpoint},              // empty v6 host
      {"public_listener ::1:12101", protocol_errc::bad_endpoint},              // unbracketed v6
      {"reverse_listener 2001:db8::1:12001", protocol_errc::bad_endpoint},     // unbracketed v6
      {"public_listener [::1:12101", protocol_errc::bad_endpoint},
      {"public_listener [127.0.0.1]:12101", protocol_errc::bad_endpoint},
      {"public_listener  127.0.0.1:12101", protocol_errc::bad_endpoint},       // two spaces
      {"public_listener a:1 b:2", protocol_errc::bad_endpoint},                // extra argument
      {"public_listener [::1]:1 [::2]:2", protocol_errc::bad_port},            // extra argument
    });
  }
  GIVEN("a listener line whose port is out of range or not a number") {
    check_all({
      {"public_listener 127.0.0.1:0", protocol_errc::bad_port},
      {"public_listener 127.0.0.1:65536", protocol_errc::bad_port},
      {"reverse_listener [::1]:0", protocol_errc::bad_port},
      {"reverse_listener [::1]:65536", protocol_errc::bad_port},
      {"public_listener localhost:12a01", protocol_errc::bad_port},
      {"public_listener localhost:", protocol_errc::bad_port},
      {"public_listener localhost:-1", protocol_errc::bad_port},
      {"public_listener localhost:123456", protocol_errc::bad_port},
      {"public_listener 127.0.0.1:12101 ", protocol_errc::bad_port},   // trailing space
      {"reverse_listener [::1]:12001 ", protocol_errc::bad_port},      // trailing space
      {"public_listener 127.0.0.1:12101 extra", protocol_errc::bad_port},
    });
  }
}
