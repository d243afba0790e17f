#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <system_error>

#include "protocol/errc.hpp"

using tlsrelay::protocol_errc;

namespace {

constexpr protocol_errc all_errcs[] = {
  protocol_errc::line_too_long,   protocol_errc::empty_line,   protocol_errc::unknown_command,
  protocol_errc::missing_argument, protocol_errc::unexpected_argument, protocol_errc::bad_endpoint,
  protocol_errc::bad_port,        protocol_errc::bad_port_count, protocol_errc::port_range_overflow,
  protocol_errc::bad_connection_id, protocol_errc::bad_version, protocol_errc::unknown_key,
  protocol_errc::duplicate_key,   protocol_errc::bad_value,    protocol_errc::bad_error_code,
};

}  // namespace

TEST_CASE("protocol_errc category has a name", "[protocol][errc]") {
  const std::string name = tlsrelay::protocol_category().name();
  CHECK(name == "tlsrelay.protocol");
}

TEST_CASE("every protocol_errc has its own non-empty message", "[protocol][errc]") {
  std::set<std::string> seen;
  for (auto e : all_errcs) {
    const std::error_code ec = e;  // through is_error_code_enum
    CAPTURE(static_cast<int>(e));
    CHECK(ec);  // no errc is "success"
    CHECK(&ec.category() == &tlsrelay::protocol_category());
    CHECK(ec.value() == static_cast<int>(e));
    CHECK_FALSE(ec.message().empty());
    CHECK(ec.message() != "unknown protocol error");
    seen.insert(ec.message());
  }
  // Distinct messages: a log line tells which error happened.
  CHECK(seen.size() == std::size(all_errcs));
}

TEST_CASE("make_error_code and implicit conversion agree", "[protocol][errc]") {
  const std::error_code implicit = protocol_errc::bad_port;
  CHECK(implicit == tlsrelay::make_error_code(protocol_errc::bad_port));
  CHECK(implicit != tlsrelay::make_error_code(protocol_errc::bad_endpoint));
  // Same value, other category: not equal.
  CHECK(implicit != std::error_code(static_cast<int>(protocol_errc::bad_port), std::generic_category()));
}

TEST_CASE("an out-of-range protocol error value still has a message", "[protocol][errc]") {
  const std::error_code ec(999, tlsrelay::protocol_category());
  CHECK_FALSE(ec.message().empty());
}
