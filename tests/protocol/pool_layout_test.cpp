#include <catch2/catch.hpp>

#include <climits>
#include <set>
#include <system_error>

#include "protocol/defaults.hpp"
#include "protocol/errc.hpp"
#include "protocol/pool_layout.hpp"

using tlsrelay::pool_layout;
using tlsrelay::protocol_errc;

namespace {

std::error_code errc(protocol_errc e) { return tlsrelay::make_error_code(e); }

}  // namespace

SCENARIO("the default pool layout matches tx_tlsrelay", "[protocol][pool]") {
  GIVEN("control port 12000 and 200 ports") {
    pool_layout pool;
    REQUIRE(pool_layout::make(tlsrelay::defaults::control_port, tlsrelay::defaults::port_count,
                              pool) == std::error_code());
    THEN("there are 100 pairs") {
      CHECK(pool.control_port() == 12000);
      CHECK(pool.pair_count() == 100);
      CHECK(pool.last_port() == 12200);
    }
    THEN("reverse ports are 12001..12100 and public ports 12101..12200") {
      for (tlsrelay::pair_index i = 0; i < pool.pair_count(); ++i) {
        CAPTURE(i);
        CHECK(pool.reverse_port(i) == 12001 + i);
        CHECK(pool.public_port(i) == 12101 + i);
      }
    }
    THEN("pair 0 is (12001, 12101) and pair 99 is (12100, 12200)") {
      CHECK(pool.reverse_port(0) == 12001);
      CHECK(pool.public_port(0) == 12101);
      CHECK(pool.reverse_port(99) == 12100);
      CHECK(pool.public_port(99) == 12200);
    }
  }
}

TEST_CASE("pool ports are distinct and exactly fill P+1..P+N", "[protocol][pool]") {
  const unsigned control = 40000;
  const unsigned count = 10;
  pool_layout pool;
  REQUIRE(pool_layout::make(control, count, pool) == std::error_code());
  REQUIRE(pool.pair_count() == count / 2);
  std::set<unsigned> ports;
  for (tlsrelay::pair_index i = 0; i < pool.pair_count(); ++i) {
    ports.insert(pool.reverse_port(i));
    ports.insert(pool.public_port(i));
  }
  CHECK(ports.size() == count);
  CHECK(*ports.begin() == control + 1);
  CHECK(*ports.rbegin() == control + count);
  CHECK(ports.count(control) == 0);
}

TEST_CASE("the smallest pool has one pair", "[protocol][pool]") {
  pool_layout pool;
  REQUIRE(pool_layout::make(5000, 2, pool) == std::error_code());
  CHECK(pool.pair_count() == 1);
  CHECK(pool.reverse_port(0) == 5001);
  CHECK(pool.public_port(0) == 5002);
  CHECK(pool.last_port() == 5002);
}

SCENARIO("pool layouts are validated", "[protocol][pool]") {
  pool_layout pool;

  WHEN("the port count is odd") {
    THEN("it is bad_port_count") {
      CHECK(pool_layout::make(12000, 199, pool) == errc(protocol_errc::bad_port_count));
      CHECK(pool_layout::make(12000, 1, pool) == errc(protocol_errc::bad_port_count));
      CHECK(pool_layout::make(12000, UINT_MAX, pool) == errc(protocol_errc::bad_port_count));
    }
  }
  WHEN("the port count is zero") {
    THEN("it is bad_port_count") {
      CHECK(pool_layout::make(12000, 0, pool) == errc(protocol_errc::bad_port_count));
    }
  }
  WHEN("P+N is 65536") {
    THEN("it is port_range_overflow") {
      CHECK(pool_layout::make(65336, 200, pool) == errc(protocol_errc::port_range_overflow));
      CHECK(pool_layout::make(65534, 2, pool) == errc(protocol_errc::port_range_overflow));
      CHECK(pool_layout::make(65535, 2, pool) == errc(protocol_errc::port_range_overflow));
      CHECK(pool_layout::make(12000, 53536, pool) == errc(protocol_errc::port_range_overflow));
    }
  }
  WHEN("P+N is exactly 65535") {
    THEN("it is accepted and the last public port is 65535") {
      REQUIRE(pool_layout::make(65335, 200, pool) == std::error_code());
      CHECK(pool.pair_count() == 100);
      CHECK(pool.reverse_port(0) == 65336);
      CHECK(pool.public_port(0) == 65436);
      CHECK(pool.reverse_port(99) == 65435);
      CHECK(pool.public_port(99) == 65535);
      CHECK(pool.last_port() == 65535);

      REQUIRE(pool_layout::make(1, 65534, pool) == std::error_code());
      CHECK(pool.pair_count() == 32767);
      CHECK(pool.reverse_port(0) == 2);
      CHECK(pool.public_port(0) == 32769);
      CHECK(pool.public_port(32766) == 65535);
    }
  }
  WHEN("the control port is 0 or above 65535") {
    THEN("it is bad_port") {
      CHECK(pool_layout::make(0, 200, pool) == errc(protocol_errc::bad_port));
      CHECK(pool_layout::make(65536, 2, pool) == errc(protocol_errc::bad_port));
      CHECK(pool_layout::make(UINT_MAX, 2, pool) == errc(protocol_errc::bad_port));
    }
  }
  WHEN("a huge even port count would wrap P+N around in unsigned arithmetic") {
    // Regression: P+N was computed in `unsigned` and wrapped past UINT_MAX,
    // so e.g. 2 + 4294967294 == 0 was accepted as a pool of 2^31-1 pairs.
    THEN("it is port_range_overflow, not a giant pool") {
      CHECK(pool_layout::make(2, UINT_MAX - 1, pool) == errc(protocol_errc::port_range_overflow));
      CHECK(pool_layout::make(12000, UINT_MAX - 1, pool) ==
            errc(protocol_errc::port_range_overflow));
      CHECK(pool_layout::make(12000, UINT_MAX - 11999, pool) ==
            errc(protocol_errc::port_range_overflow));
      CHECK(pool_layout::make(1, 65536, pool) == errc(protocol_errc::port_range_overflow));
    }
  }
  WHEN("make fails") {
    THEN("a previously valid layout is left as it was") {
      REQUIRE(pool_layout::make(12000, 200, pool) == std::error_code());
      REQUIRE(pool_layout::make(12000, 201, pool));
      REQUIRE(pool_layout::make(65535, 2, pool));
      CHECK(pool.control_port() == 12000);
      CHECK(pool.pair_count() == 100);
    }
  }
}
