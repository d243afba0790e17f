#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <variant>
#include <vector>

#include "protocol/connection_id.hpp"
#include "protocol/defaults.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/errc.hpp"
#include "protocol/line_splitter.hpp"
#include "protocol/v1.hpp"
#include "protocol/v2.hpp"

namespace v1 = tlsrelay::v1;
namespace v2 = tlsrelay::v2;
using tlsrelay::connection_id;
using tlsrelay::host_port;
using tlsrelay::protocol_errc;

namespace {

std::error_code errc(protocol_errc e) { return tlsrelay::make_error_code(e); }

// The v1 alternatives of relay_message have no operator==.
bool same(const v2::relay_message& a, const v2::relay_message& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
    [&](const auto& x) {
      using T = std::decay_t<decltype(x)>;
      const auto& y = std::get<T>(b);
      if constexpr (std::is_same_v<T, v1::public_listener> ||
                    std::is_same_v<T, v1::reverse_listener>)
        return x.endpoint == y.endpoint;
      else if constexpr (std::is_same_v<T, v1::no_available_listeners>)
        return true;
      else
        return x == y;
    },
    a);
}

std::string without_crlf(std::string line) {
  REQUIRE(line.size() >= 2);
  REQUIRE(line.compare(line.size() - 2, 2, "\r\n") == 0);
  line.resize(line.size() - 2);
  return line;
}

// Also used to build the static goldens, so it must not use Catch macros.
connection_id id_from(const char* hex) {
  connection_id id;
  if (tlsrelay::parse_connection_id(hex, id)) id.bytes.fill(0xee);  // a test would fail
  return id;
}

constexpr const char* id_hex = "00112233445566778899aabbccddeeff";
constexpr const char* secret_hex = "0123456789abcdef0123456789abcdef";

v2::hello make_hello(std::string token, std::string name, std::uint16_t port) {
  v2::hello h;
  h.token = std::move(token);
  h.name = std::move(name);
  h.port = port;
  return h;
}

struct server_golden {
  v2::server_message message;
  const char* bytes;
};

struct relay_golden {
  v2::relay_message message;
  const char* bytes;
};

const server_golden server_goldens[] = {
  {make_hello("", "", 0), "hello 2\r\n"},
  {make_hello("s3cr3t", "", 0), "hello 2 token=s3cr3t\r\n"},
  {make_hello("", "web", 0), "hello 2 name=web\r\n"},
  {make_hello("", "", 12101), "hello 2 port=12101\r\n"},
  {make_hello("Ab.9_~+/=-", "my-app-1", 65535), "hello 2 token=Ab.9_~+/=- name=my-app-1 port=65535\r\n"},
  {v2::ping{}, "ping\r\n"},
  {v2::pong{}, "pong\r\n"},
};

const relay_golden relay_goldens[] = {
  {v2::welcome{secret_hex, 0}, "welcome session=0123456789abcdef0123456789abcdef warm=0\r\n"},
  {v2::welcome{secret_hex, 16}, "welcome session=0123456789abcdef0123456789abcdef warm=16\r\n"},
  {v2::welcome{secret_hex, 4, true},
   "welcome session=0123456789abcdef0123456789abcdef warm=4 proxy=2\r\n"},
  {v1::public_listener{{"relay.example.com", 12101}}, "public_listener relay.example.com:12101\r\n"},
  {v1::reverse_listener{{"::1", 12001}}, "reverse_listener [::1]:12001\r\n"},
  {v2::new_connection{id_from(id_hex), {"192.0.2.7", 5555}},
   "new_connection 00112233445566778899aabbccddeeff 192.0.2.7:5555\r\n"},
  {v2::new_connection{id_from(id_hex), {"::1", 5555}},
   "new_connection 00112233445566778899aabbccddeeff [::1]:5555\r\n"},
  {v2::error{v2::error_code::auth_failed, "bad token"}, "error auth_failed bad token\r\n"},
  {v2::error{v2::error_code::port_unavailable, "port 12101 is taken by another session"},
   "error port_unavailable port 12101 is taken by another session\r\n"},
  {v2::error{v2::error_code::bad_request, ""}, "error bad_request\r\n"},
  {v2::error{v2::error_code::name_unavailable, "x"}, "error name_unavailable x\r\n"},
  {v2::error{v2::error_code::too_many_sessions, "limit 4"}, "error too_many_sessions limit 4\r\n"},
  {v2::error{v2::error_code::unsupported_version, ""}, "error unsupported_version\r\n"},
  {v2::error{v2::error_code::draining, "the relay is shutting down"},
   "error draining the relay is shutting down\r\n"},
  {v1::no_available_listeners{}, "no_available_listeners\r\n"},
  {v2::redirect{{"relay-1.relay.svc", 12000}}, "redirect relay-1.relay.svc:12000\r\n"},
  {v2::redirect{{"2001:db8::5", 12000}}, "redirect [2001:db8::5]:12000\r\n"},
  {v2::ping{}, "ping\r\n"},
  {v2::pong{}, "pong\r\n"},
};

}  // namespace

// -- golden bytes ------------------------------------------------------------------

TEST_CASE("v2 server lines are formatted byte for byte", "[protocol][v2]") {
  for (const auto& g : server_goldens) {
    CAPTURE(g.bytes);
    CHECK(v2::format_line(g.message) == g.bytes);
  }
}

TEST_CASE("v2 golden server lines parse to the expected message", "[protocol][v2]") {
  for (const auto& g : server_goldens) {
    CAPTURE(g.bytes);
    v2::server_message parsed = v2::pong{};
    REQUIRE(v2::parse_server_line(without_crlf(g.bytes), parsed) == std::error_code());
    CHECK(parsed == g.message);
  }
}

TEST_CASE("v2 relay lines are formatted byte for byte", "[protocol][v2]") {
  for (const auto& g : relay_goldens) {
    CAPTURE(g.bytes);
    CHECK(v2::format_line(g.message) == g.bytes);
  }
}

TEST_CASE("v2 golden relay lines parse to the expected message", "[protocol][v2]") {
  for (const auto& g : relay_goldens) {
    CAPTURE(g.bytes);
    v2::relay_message parsed = v2::pong{};
    REQUIRE(v2::parse_relay_line(without_crlf(g.bytes), parsed) == std::error_code());
    CHECK(same(parsed, g.message));
  }
}

TEST_CASE("the accept line is formatted byte for byte and at its maximum length",
          "[protocol][v2]") {
  const v2::accept a{id_from(id_hex)};
  const auto line = v2::format_line(a);
  CHECK(line == "accept 00112233445566778899aabbccddeeff\r\n");
  CHECK(line.size() == v2::max_accept_line_bytes);
  v2::accept back;
  REQUIRE(v2::parse_accept_line(without_crlf(line), back) == std::error_code());
  CHECK(back == a);
}

// -- round trips ---------------------------------------------------------------------

TEST_CASE("v2 messages round-trip through format and parse", "[protocol][v2]") {
  const std::string long_token(v2::max_token_bytes, 'T');
  const std::string long_name(v2::max_name_bytes, 'n');
  const std::vector<v2::server_message> server{
    make_hello("", "", 0),         make_hello(long_token, long_name, 65535),
    make_hello("a", "0", 1),       make_hello("tok=en==", "a-b", 80),
    v2::ping{},                    v2::pong{},
  };
  for (const auto& m : server) {
    const auto line = v2::format_line(m);
    CAPTURE(line);
    v2::server_message back;
    REQUIRE(v2::parse_server_line(without_crlf(line), back) == std::error_code());
    CHECK(back == m);
    CHECK(v2::format_line(back) == line);
  }

  connection_id all_ones;
  all_ones.bytes.fill(0xff);
  const std::vector<v2::relay_message> relay{
    v2::welcome{secret_hex},
    v1::public_listener{{"10.0.0.1", 1}},
    v1::reverse_listener{{"fd00::1", 65535}},
    v2::new_connection{connection_id{}, {"::ffff:192.0.2.1", 1}},
    v2::new_connection{all_ones, {"client.example", 65535}},
    v2::error{v2::error_code::bad_request, " leading and trailing spaces "},
    v2::error{v2::error_code::auth_failed, std::string(v2::max_error_text_bytes, 'e')},
    v1::no_available_listeners{},
    v2::redirect{{"10.0.0.2", 12000}},
    v2::ping{},
    v2::pong{},
  };
  for (const auto& m : relay) {
    const auto line = v2::format_line(m);
    CAPTURE(line);
    v2::relay_message back;
    REQUIRE(v2::parse_relay_line(without_crlf(line), back) == std::error_code());
    CHECK(same(back, m));
    CHECK(v2::format_line(back) == line);
  }

  for (const auto& id : {connection_id{}, all_ones, id_from(id_hex)}) {
    const auto line = v2::format_line(v2::accept{id});
    v2::accept back;
    REQUIRE(v2::parse_accept_line(without_crlf(line), back) == std::error_code());
    CHECK(back.id == id);
  }
}

TEST_CASE("the longest hello fits a control line and survives the splitter", "[protocol][v2]") {
  const auto h = make_hello(std::string(v2::max_token_bytes, 'x'),
                            std::string(v2::max_name_bytes, 'y'), 65535);
  const auto line = v2::format_line(h);
  CHECK(line.size() <= tlsrelay::defaults::max_control_line_bytes);
  tlsrelay::line_splitter splitter(tlsrelay::defaults::max_control_line_bytes);
  splitter.append(line);
  const auto r = splitter.next();
  REQUIRE(r.state == tlsrelay::line_splitter::status::line);
  v2::server_message back;
  REQUIRE(v2::parse_server_line(r.line, back) == std::error_code());
  CHECK(back == v2::server_message{h});
}

// -- hello -------------------------------------------------------------------------

SCENARIO("hello keys may come in any order", "[protocol][v2][hello]") {
  const auto expected = v2::server_message{make_hello("tok", "web", 8080)};
  const char* lines[] = {
    "hello 2 token=tok name=web port=8080", "hello 2 token=tok port=8080 name=web",
    "hello 2 name=web token=tok port=8080", "hello 2 name=web port=8080 token=tok",
    "hello 2 port=8080 token=tok name=web", "hello 2 port=8080 name=web token=tok",
  };
  for (const char* line : lines) {
    CAPTURE(line);
    v2::server_message m;
    REQUIRE(v2::parse_server_line(line, m) == std::error_code());
    CHECK(m == expected);
    // Formatting puts them back in the canonical order.
    CHECK(v2::format_line(m) == "hello 2 token=tok name=web port=8080\r\n");
  }
}

SCENARIO("malformed v2 server lines are rejected with a specific error",
         "[protocol][v2][hello]") {
  struct bad_case {
    std::string line;
    protocol_errc expected;
  };
  auto check_all = [](const std::vector<bad_case>& cases) {
    for (const auto& c : cases) {
      CAPTURE(c.line);
      v2::server_message out = make_hello("sentinel", "sentinel", 4242);
      CHECK(v2::parse_server_line(c.line, out) == errc(c.expected));
      CHECK(out == v2::server_message{make_hello("sentinel", "sentinel", 4242)});
    }
  };

  GIVEN("a key named twice, even with the same value") {
    check_all({
      {"hello 2 token=a token=a", protocol_errc::duplicate_key},
      {"hello 2 token=a name=web token=b", protocol_errc::duplicate_key},
      {"hello 2 name=a name=b", protocol_errc::duplicate_key},
      {"hello 2 port=1 port=1", protocol_errc::duplicate_key},
      {"hello 2 port=80 token=t port=81", protocol_errc::duplicate_key},
    });
  }
  GIVEN("a key hello does not define") {
    check_all({
      {"hello 2 color=red", protocol_errc::unknown_key},
      {"hello 2 TOKEN=abc", protocol_errc::unknown_key},  // keys are lower case
      {"hello 2 token", protocol_errc::unknown_key},      // no '='
      {"hello 2 =abc", protocol_errc::unknown_key},
      {"hello 2 session=0123456789abcdef0123456789abcdef", protocol_errc::unknown_key},
      {"hello 2 token=a b", protocol_errc::unknown_key},  // a space inside a value
    });
  }
  GIVEN("a version other than 2") {
    check_all({
      {"hello 3", protocol_errc::bad_version},
      {"hello 3 token=abc", protocol_errc::bad_version},
      {"hello 1", protocol_errc::bad_version},
      {"hello 02", protocol_errc::bad_version},
      {"hello two", protocol_errc::bad_version},
      {"hello token=abc", protocol_errc::bad_version},
      {"hello", protocol_errc::missing_argument},
    });
  }
  GIVEN("values outside their alphabet or length") {
    check_all({
      {"hello 2 token=", protocol_errc::bad_value},
      {"hello 2 token=a!b", protocol_errc::bad_value},
      {"hello 2 token=caf\xc3\xa9", protocol_errc::bad_value},
      {"hello 2 token=a\tb", protocol_errc::bad_value},
      {"hello 2 token=" + std::string(v2::max_token_bytes + 1, 'a'), protocol_errc::bad_value},
      {"hello 2 name=", protocol_errc::bad_value},
      {"hello 2 name=Web", protocol_errc::bad_value},
      {"hello 2 name=-web", protocol_errc::bad_value},
      {"hello 2 name=my_app", protocol_errc::bad_value},
      {"hello 2 name=a.b", protocol_errc::bad_value},
      {"hello 2 name=" + std::string(v2::max_name_bytes + 1, 'a'), protocol_errc::bad_value},
      {"hello 2 port=", protocol_errc::bad_value},
      {"hello 2 port=0", protocol_errc::bad_value},
      {"hello 2 port=65536", protocol_errc::bad_value},
      {"hello 2 port=http", protocol_errc::bad_value},
      {"hello 2 port=-1", protocol_errc::bad_value},
    });
  }
  GIVEN("fields not separated by exactly one space") {
    check_all({
      {"hello 2 ", protocol_errc::unexpected_argument},
      {"hello  2", protocol_errc::unexpected_argument},
      {" hello 2", protocol_errc::unexpected_argument},
      {"hello 2  token=a", protocol_errc::unexpected_argument},
    });
  }
  GIVEN("other commands and arguments") {
    check_all({
      {"", protocol_errc::empty_line},
      {"HELLO 2", protocol_errc::unknown_command},
      {"hello\t2", protocol_errc::unknown_command},
      {"accept 00112233445566778899aabbccddeeff", protocol_errc::unknown_command},
      {"new_connection", protocol_errc::unknown_command},
      {"ping 1", protocol_errc::unexpected_argument},
      {"pong x", protocol_errc::unexpected_argument},
    });
  }
}

TEST_CASE("hello values at their limits are accepted", "[protocol][v2][hello]") {
  v2::server_message m;
  const std::string token(v2::max_token_bytes, 'a');
  REQUIRE(v2::parse_server_line("hello 2 token=" + token, m) == std::error_code());
  CHECK(std::get<v2::hello>(m).token == token);
  const std::string name(v2::max_name_bytes, 'z');
  REQUIRE(v2::parse_server_line("hello 2 name=" + name, m) == std::error_code());
  CHECK(std::get<v2::hello>(m).name == name);
  REQUIRE(v2::parse_server_line("hello 2 port=1", m) == std::error_code());
  CHECK(std::get<v2::hello>(m).port == 1);
  REQUIRE(v2::parse_server_line("hello 2 port=65535", m) == std::error_code());
  CHECK(std::get<v2::hello>(m).port == 65535);
  REQUIRE(v2::parse_server_line("hello 2 name=9-", m) == std::error_code());
  CHECK(std::get<v2::hello>(m).name == "9-");
}

TEST_CASE("valid_token and valid_name define the hello alphabets", "[protocol][v2][hello]") {
  CHECK(v2::valid_token("A"));
  CHECK(v2::valid_token("azAZ09._~+/=-"));
  CHECK(v2::valid_token(std::string(256, 'x')));
  CHECK_FALSE(v2::valid_token(""));
  CHECK_FALSE(v2::valid_token(std::string(257, 'x')));
  static constexpr char forbidden[] = " \t\r\n!\"#$%&'()*,:;<>?@[\\]^`{|}\0\x7f";
  for (char c : std::string_view(forbidden, sizeof forbidden - 1)) {
    CAPTURE(static_cast<int>(c));
    CHECK_FALSE(v2::valid_token(std::string("ab") + c));
  }
  CHECK(v2::valid_name("a"));
  CHECK(v2::valid_name("0"));
  CHECK(v2::valid_name("web-1"));
  CHECK(v2::valid_name(std::string(63, 'a')));
  CHECK_FALSE(v2::valid_name(""));
  CHECK_FALSE(v2::valid_name("-a"));
  CHECK_FALSE(v2::valid_name(std::string(64, 'a')));
  CHECK_FALSE(v2::valid_name("A"));
  CHECK_FALSE(v2::valid_name("a_b"));
  CHECK_FALSE(v2::valid_name("a.b"));
  CHECK_FALSE(v2::valid_name("a b"));
}

// -- error ------------------------------------------------------------------------------

SCENARIO("error lines keep their free text whole", "[protocol][v2][error]") {
  v2::relay_message m;
  GIVEN("text with several spaces") {
    REQUIRE(v2::parse_relay_line("error name_unavailable name web is reserved  until 12:00", m) ==
            std::error_code());
    CHECK(same(m, v2::error{v2::error_code::name_unavailable,
                            "name web is reserved  until 12:00"}));
  }
  GIVEN("no text") {
    REQUIRE(v2::parse_relay_line("error auth_failed", m) == std::error_code());
    CHECK(same(m, v2::error{v2::error_code::auth_failed, ""}));
  }
  GIVEN("a code followed by one space and nothing else") {
    REQUIRE(v2::parse_relay_line("error auth_failed ", m) == std::error_code());
    CHECK(same(m, v2::error{v2::error_code::auth_failed, ""}));
  }
  GIVEN("text that looks like another command") {
    REQUIRE(v2::parse_relay_line("error bad_request new_connection [::1]:1", m) ==
            std::error_code());
    CHECK(same(m, v2::error{v2::error_code::bad_request, "new_connection [::1]:1"}));
  }
  GIVEN("text at the limit, and one byte more") {
    const std::string text(v2::max_error_text_bytes, 't');
    REQUIRE(v2::parse_relay_line("error bad_request " + text, m) == std::error_code());
    CHECK(same(m, v2::error{v2::error_code::bad_request, text}));
    v2::relay_message untouched = v2::ping{};
    CHECK(v2::parse_relay_line("error bad_request " + text + "t", untouched) ==
          errc(protocol_errc::bad_value));
    CHECK(same(untouched, v2::ping{}));
  }
  GIVEN("text with a carriage return") {
    CHECK(v2::parse_relay_line("error bad_request a\rb", m) == errc(protocol_errc::bad_value));
  }
}

TEST_CASE("error formatting bounds the text and keeps it on one line", "[protocol][v2][error]") {
  const std::string long_text(v2::max_error_text_bytes + 50, 'L');
  CHECK(v2::format_line(v2::error{v2::error_code::bad_request, long_text}) ==
        "error bad_request " + std::string(v2::max_error_text_bytes, 'L') + "\r\n");
  CHECK(v2::format_line(v2::error{v2::error_code::auth_failed, "a\r\nb\nc"}) ==
        "error auth_failed a  b c\r\n");
}

TEST_CASE("malformed error lines are rejected", "[protocol][v2][error]") {
  struct bad_case {
    const char* line;
    protocol_errc expected;
  };
  const bad_case cases[] = {
    {"error", protocol_errc::missing_argument},
    {"error ", protocol_errc::missing_argument},
    {"error teapot I am a teapot", protocol_errc::bad_error_code},
    {"error teapot", protocol_errc::bad_error_code},
    {"error AUTH_FAILED", protocol_errc::bad_error_code},
    {"error  auth_failed", protocol_errc::bad_error_code},
    {"error auth_failedx", protocol_errc::bad_error_code},
    {"errors auth_failed", protocol_errc::unknown_command},
  };
  for (const auto& c : cases) {
    CAPTURE(c.line);
    v2::relay_message out = v2::pong{};
    CHECK(v2::parse_relay_line(c.line, out) == errc(c.expected));
    CHECK(same(out, v2::pong{}));
  }
}

TEST_CASE("every error code has its wire name", "[protocol][v2][error]") {
  CHECK(v2::to_string(v2::error_code::auth_failed) == "auth_failed");
  CHECK(v2::to_string(v2::error_code::bad_request) == "bad_request");
  CHECK(v2::to_string(v2::error_code::port_unavailable) == "port_unavailable");
  CHECK(v2::to_string(v2::error_code::name_unavailable) == "name_unavailable");
  CHECK(v2::to_string(v2::error_code::too_many_sessions) == "too_many_sessions");
  CHECK(v2::to_string(v2::error_code::unsupported_version) == "unsupported_version");
  // An out-of-range value is written as the most general refusal.
  CHECK(v2::to_string(static_cast<v2::error_code>(99)) == "bad_request");
}

// -- new_connection, welcome, redirect, the rest ---------------------------------------

SCENARIO("new_connection carries the id and the client's address", "[protocol][v2]") {
  v2::relay_message m;
  GIVEN("an IPv6 client") {
    REQUIRE(v2::parse_relay_line("new_connection 00112233445566778899AABBCCDDEEFF [::1]:5555",
                                 m) == std::error_code());
    const auto* nc = std::get_if<v2::new_connection>(&m);
    REQUIRE(nc != nullptr);
    CHECK(to_hex(nc->id) == id_hex);
    CHECK(nc->client == host_port{"::1", 5555});
    THEN("it is written back bracketed, the id in lower case") {
      CHECK(v2::format_line(m) == std::string("new_connection ") + id_hex + " [::1]:5555\r\n");
    }
  }
  GIVEN("an IPv4 client") {
    REQUIRE(v2::parse_relay_line(std::string("new_connection ") + id_hex + " 203.0.113.9:40000",
                                 m) == std::error_code());
    const auto* nc = std::get_if<v2::new_connection>(&m);
    REQUIRE(nc != nullptr);
    CHECK(nc->client == host_port{"203.0.113.9", 40000});
  }
}

TEST_CASE("malformed v2 relay lines are rejected with a specific error", "[protocol][v2]") {
  struct bad_case {
    std::string line;
    protocol_errc expected;
  };
  const std::string id = id_hex;
  const std::vector<bad_case> cases{
    {"", protocol_errc::empty_line},
    // A v1 bare new_connection means nothing under v2: the id is missing.
    {"new_connection", protocol_errc::missing_argument},
    {"new_connection " + id, protocol_errc::missing_argument},
    {"new_connection " + id + " [::1]:5555 x", protocol_errc::unexpected_argument},
    {"new_connection " + id + " ::1:5555", protocol_errc::bad_endpoint},
    {"new_connection " + id + " [::1]:0", protocol_errc::bad_port},
    {"new_connection " + id.substr(1) + " [::1]:5555", protocol_errc::bad_connection_id},
    {"new_connection [::1]:5555 " + id, protocol_errc::bad_connection_id},
    {"new_connection  " + id + " [::1]:5555", protocol_errc::unexpected_argument},
    {"welcome", protocol_errc::missing_argument},
    {"welcome session=" + std::string(secret_hex) + " x", protocol_errc::unknown_key},
    {"welcome session=" + std::string(secret_hex) + " warm=1 x", protocol_errc::unknown_key},
    {"welcome session=" + std::string(secret_hex) + " warm=1 proxy=2 x", protocol_errc::unexpected_argument},
    {"welcome session=" + std::string(secret_hex) + " warm=1 proxy=2 x y", protocol_errc::unexpected_argument},
    {"welcome session=" + std::string(secret_hex) + " warm=1 proxy=1", protocol_errc::bad_value},
    {"welcome session=" + std::string(secret_hex) + " proxy=2 warm=1", protocol_errc::unknown_key},
    {"welcome session=" + std::string(secret_hex) + " proxy=2 proxy=2", protocol_errc::unknown_key},
    {"welcome session=" + std::string(secret_hex) + " cold=1", protocol_errc::unknown_key},
    {"welcome session=" + std::string(secret_hex) + " warm=", protocol_errc::bad_value},
    {"welcome session=" + std::string(secret_hex) + " warm=-1", protocol_errc::bad_value},
    {"welcome session=" + std::string(secret_hex) + " warm=01", protocol_errc::bad_value},
    {"welcome session=" + std::string(secret_hex) + " warm=1025", protocol_errc::bad_value},
    {"welcome warm=1 session=" + std::string(secret_hex), protocol_errc::unknown_key},
    {"welcome " + std::string(secret_hex), protocol_errc::unknown_key},
    {"welcome secret=" + std::string(secret_hex), protocol_errc::unknown_key},
    {"welcome session=", protocol_errc::bad_value},
    {"welcome session=" + std::string(secret_hex).substr(1), protocol_errc::bad_value},
    {"welcome session=" + std::string(secret_hex) + "0", protocol_errc::bad_value},
    {"welcome session=0123456789abcdef0123456789abcdeg", protocol_errc::bad_value},
    {"redirect", protocol_errc::missing_argument},
    {"redirect a:1 b:2", protocol_errc::unexpected_argument},
    {"redirect relay", protocol_errc::bad_endpoint},
    {"redirect relay:99999", protocol_errc::bad_port},
    {"ping now", protocol_errc::unexpected_argument},
    {"pong ", protocol_errc::unexpected_argument},
    {"no_available_listeners x", protocol_errc::unexpected_argument},
    {"public_listener", protocol_errc::missing_argument},
    {"hello 2", protocol_errc::unknown_command},
    {"accept " + id, protocol_errc::unknown_command},
  };
  for (const auto& c : cases) {
    CAPTURE(c.line);
    v2::relay_message out = v2::pong{};
    CHECK(v2::parse_relay_line(c.line, out) == errc(c.expected));
    CHECK(same(out, v2::pong{}));
  }
}

TEST_CASE("welcome accepts exactly 32 hex digits as the session secret", "[protocol][v2]") {
  v2::relay_message m;
  REQUIRE(v2::parse_relay_line("welcome session=0123456789ABCDEF0123456789abcdef", m) ==
          std::error_code());
  const auto* w = std::get_if<v2::welcome>(&m);
  REQUIRE(w != nullptr);
  // The secret is kept as sent: it is compared as text by whoever checks `ready`.
  CHECK(w->session_secret == "0123456789ABCDEF0123456789abcdef");
  for (const auto& bad : {std::string(31, 'a'), std::string(33, 'a'), std::string(32, 'g'),
                                std::string(30, 'a') + " a", std::string(32, '-')}) {
    CAPTURE(bad);
    CHECK(v2::parse_relay_line("welcome session=" + bad, m) != std::error_code());
  }
}

// -- accept ---------------------------------------------------------------------------------

TEST_CASE("accept lines take 32 hex digits of either case", "[protocol][v2][accept]") {
  v2::accept a;
  REQUIRE(v2::parse_accept_line("accept 00112233445566778899AABBCCDDEEFF", a) ==
          std::error_code());
  CHECK(to_hex(a.id) == id_hex);
  REQUIRE(v2::parse_accept_line("accept 00112233445566778899aAbBcCdDeEfF", a) ==
          std::error_code());
  CHECK(a.id == id_from(id_hex));
  CHECK(v2::format_line(a) == std::string("accept ") + id_hex + "\r\n");
}

TEST_CASE("malformed accept lines are rejected", "[protocol][v2][accept]") {
  struct bad_case {
    std::string line;
    protocol_errc expected;
  };
  const std::string id = id_hex;
  const std::vector<bad_case> cases{
    {"", protocol_errc::empty_line},
    {"accept " + id.substr(0, 31), protocol_errc::bad_connection_id},
    {"accept " + id + "0", protocol_errc::bad_connection_id},
    {"accept 0x112233445566778899aabbccddeeff", protocol_errc::bad_connection_id},
    {"accept 00112233445566778899aabbccddeefg", protocol_errc::bad_connection_id},
    {"accept", protocol_errc::missing_argument},
    {"accept " + id + " extra", protocol_errc::unexpected_argument},
    {"accept  " + id, protocol_errc::unexpected_argument},
    {"accept " + id + " ", protocol_errc::unexpected_argument},
    {"ACCEPT " + id, protocol_errc::unknown_command},
    {"ready " + id, protocol_errc::unknown_command},
    {"GET / HTTP/1.1", protocol_errc::unknown_command},
  };
  const connection_id sentinel = id_from("ffffffffffffffffffffffffffffffff");
  for (const auto& c : cases) {
    CAPTURE(c.line);
    v2::accept out{sentinel};
    CHECK(v2::parse_accept_line(c.line, out) == errc(c.expected));
    CHECK(out.id == sentinel);
  }
}
