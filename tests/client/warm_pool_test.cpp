// The warm pool: reverse connections opened ahead of demand, each starting
// `ready <SERIAL> <TAG>` signed with the session secret; one the relay pairs
// is handed over (the client's bytes after the relay's line untouched) and
// replaced at once; new_connection grows the pool; a refusal or an unusable
// line stops it for the session; closing it closes them all. The relay's
// reverse port is played by the test.
#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/strand.hpp>
#include <catch2/catch.hpp>

#include "client/warm_pool.hpp"
#include "protocol/connection_id.hpp"
#include "protocol/v2.hpp"
#include "protocol/warm_ticket.hpp"
#include "tests/client/part_test_support.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;
using client::warm_pool_stats;
using client::detail::reverse_address;
using client::detail::reverse_connector;
using client::detail::warm_offer;
using client::detail::warm_pool;

namespace {

const std::string secret_hex = "0123456789abcdef0123456789abcdef";

// The ready line a warm connection with `serial` must start with.
std::string expected_ready(std::uint64_t serial) {
  connection_id secret;
  REQUIRE_FALSE(parse_connection_id(secret_hex, secret));
  return v2::format_line(v2::ready{serial, warm_ticket::tag(secret, serial)});
}

struct pool_fixture : connector_fixture {
  explicit pool_fixture(std::size_t warm_max = 8, std::size_t relay_max = 16) {
    warm_pool::settings s;
    s.warm_max = warm_max;
    run_on(strand, [&] {
      pool = warm_pool::start(io.io(), strand, s, warm_offer{relay_max, secret_hex, false}, to,
                              connector, totals, owner);
    });
  }
  ~pool_fixture() {
    run_on(strand, [p = pool] {
      if (p) p->close();
    });
  }
  // The next warm connection the pool opens, with its ready line read.
  std::pair<tcp_conn, std::string> next_warm() {
    tcp_conn conn = relay_reverse.accept();
    std::string line = conn.read_line();
    return {std::move(conn), std::move(line)};
  }
  warm_pool_stats stats() {
    warm_pool_stats now;
    run_on(strand, [&] { now = pool->stats(); });
    return now;
  }

  std::shared_ptr<warm_pool_stats> totals = std::make_shared<warm_pool_stats>();
  std::shared_ptr<warm_pool> pool;
};

}  // namespace

SCENARIO("warm pool: a session starts with two warm connections, each with its signed ready line",
         "[client][warm_pool]") {
  pool_fixture f;
  REQUIRE(f.pool);
  auto [a, line_a] = f.next_warm();
  auto [b, line_b] = f.next_warm();
  const std::set<std::string> lines{line_a, line_b};
  CHECK(lines == std::set<std::string>{expected_ready(1), expected_ready(2)});
  CHECK(f.owner.wait_warm([](const warm_pool_stats& s) { return s.waiting == 2; }));
  const auto now = f.owner.warm();
  CHECK(now.target == 2);
  CHECK(now.opened == 2);
  CHECK_FALSE(now.stopped);

  WHEN("the relay pairs a client with one") {
    tcp_conn& paired = line_a == expected_ready(1) ? a : b;
    paired.send_all("00112233445566778899aabbccddeeff 127.0.0.1:5555\r\nclient bytes");
    THEN("it is handed over as warm, the client's bytes untouched, and replaced at once") {
      auto conn = f.owner.next_ready();
      REQUIRE(conn.has_value());
      CHECK(conn->warm());
      CHECK(conn->id() == "00112233445566778899aabbccddeeff");
      REQUIRE(conn->client().has_value());
      CHECK(*conn->client() == host_port{"127.0.0.1", 5555});
      auto server_side = as_tcp_conn(std::move(*conn));
      CHECK(server_side.recv_exact(12) == "client bytes");
      auto [c, line_c] = f.next_warm();
      CHECK(line_c == expected_ready(3));
      CHECK(f.owner.wait_warm(
        [](const warm_pool_stats& s) { return s.paired == 1 && s.waiting == 2; }));
    }
  }
  WHEN("clients come through new_connection") {
    run_on(f.strand, [&] { f.pool->client_fell_back(); });
    THEN("the pool doubles: two more are opened") {
      auto [c, line_c] = f.next_warm();
      auto [d, line_d] = f.next_warm();
      CHECK(std::set<std::string>{line_c, line_d} ==
            std::set<std::string>{expected_ready(3), expected_ready(4)});
      CHECK(f.stats().target == 4);
    }
  }
  WHEN("the relay closes one at once, unused (a refusal)") {
    a.close();
    THEN("the pool stops for this session") {
      CHECK(f.owner.wait_warm([](const warm_pool_stats& s) { return s.stopped; }));
      CHECK(f.stats().target == 0);
      CHECK(f.stats().expired == 0);
    }
  }
  WHEN("the relay's first line on one is not `ID HOST:PORT`") {
    a.send_all("nonsense\r\n");
    THEN("the pool stops for this session and that connection is closed") {
      CHECK(f.owner.wait_warm([](const warm_pool_stats& s) { return s.stopped; }));
      a.expect_closed();
    }
  }
  WHEN("the session ends") {
    run_on(f.strand, [&] { f.pool->close(); });
    THEN("every warm connection is closed with it") {
      a.expect_closed();
      b.expect_closed();
      CHECK(f.stats().target == 0);
    }
  }
}

SCENARIO("warm pool: its size is bounded by warm_max and by what the relay offers",
         "[client][warm_pool]") {
  GIVEN("warm_max 0") {
    pool_fixture f(0, 16);
    CHECK_FALSE(f.pool);
  }
  GIVEN("a relay that keeps none (warm=0)") {
    pool_fixture f(8, 0);
    CHECK_FALSE(f.pool);
  }
  GIVEN("warm_max 1") {
    pool_fixture f(1, 16);
    REQUIRE(f.pool);
    auto [a, line] = f.next_warm();
    CHECK(line == expected_ready(1));
    run_on(f.strand, [&] { f.pool->client_fell_back(); });
    CHECK(f.stats().target == 1);
  }
}
