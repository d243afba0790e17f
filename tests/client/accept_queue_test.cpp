// The accept queue: relayed connections wait there, in order and bounded,
// until the user accepts them; waiting accepts are served first come first
// served; stop and close say why to whoever waits.
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "client/accept_queue.hpp"
#include "client/errc.hpp"
#include "tests/client/part_test_support.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;
using client::client_errc;
using client::detail::accept_queue;

namespace {

struct accept_result {
  std::error_code ec;
  std::string id;
};

// An async_accept whose outcome the test can wait for.
std::future<accept_result> accept_later(accept_queue& queue) {
  auto result = std::make_shared<std::promise<accept_result>>();
  auto future = result->get_future();
  queue.async_accept([result](std::error_code ec, client::relayed_connection conn) {
    result->set_value({ec, conn.id()});
  });
  return future;
}

accept_result wait(std::future<accept_result>& f) {
  REQUIRE(f.wait_for(default_timeout) == std::future_status::ready);
  return f.get();
}

}  // namespace

SCENARIO("accept queue: connections are accepted in the order they were delivered",
         "[client][accept_queue]") {
  io_thread io;
  auto queue = std::make_shared<accept_queue>(io.io().get_executor(), 8);
  std::vector<tcp_conn> peers;
  for (const std::string id : {"a", "b", "c"}) {
    auto pair = make_connected_pair(io.io(), id);
    CHECK(queue->deliver(std::move(pair.ours)) == "");
    peers.push_back(std::move(pair.peer));
  }
  CHECK(queue->size() == 3);

  std::error_code ec;
  for (const std::string id : {"a", "b", "c"}) {
    auto conn = queue->accept(default_timeout, ec);
    REQUIRE(conn.has_value());
    CHECK(ec == std::error_code{});
    CHECK(conn->id() == id);
  }
  CHECK(queue->size() == 0);
  THEN("an empty queue makes accept wait, then time out") {
    CHECK_FALSE(queue->accept(std::chrono::milliseconds(50), ec).has_value());
    CHECK(ec == std::errc::timed_out);
  }
}

SCENARIO("accept queue: accepts that wait are served first come first served",
         "[client][accept_queue]") {
  io_thread io;
  auto queue = std::make_shared<accept_queue>(io.io().get_executor(), 8);
  auto first = accept_later(*queue);
  auto second = accept_later(*queue);
  auto x = make_connected_pair(io.io(), "x");
  auto y = make_connected_pair(io.io(), "y");
  CHECK(queue->deliver(std::move(x.ours)) == "");
  CHECK(queue->deliver(std::move(y.ours)) == "");
  const auto one = wait(first);
  const auto two = wait(second);
  CHECK(one.ec == std::error_code{});
  CHECK(one.id == "x");
  CHECK(two.ec == std::error_code{});
  CHECK(two.id == "y");
  CHECK(queue->size() == 0);
}

SCENARIO("accept queue: a connection beyond the bound is closed and the reason names it",
         "[client][accept_queue]") {
  io_thread io;
  auto queue = std::make_shared<accept_queue>(io.io().get_executor(), 2);
  auto a = make_connected_pair(io.io(), "a");
  auto b = make_connected_pair(io.io(), "b");
  auto c = make_connected_pair(io.io(), "c");
  CHECK(queue->deliver(std::move(a.ours)) == "");
  CHECK(queue->deliver(std::move(b.ours)) == "");
  CHECK(queue->deliver(std::move(c.ours)) ==
        "relayed connection c closed: 2 are already waiting to be accepted");
  CHECK(queue->size() == 2);
  c.peer.expect_closed();
  THEN("the two within the bound are still there, open") {
    std::error_code ec;
    auto first = queue->accept(default_timeout, ec);
    REQUIRE(first.has_value());
    CHECK(first->id() == "a");
    auto reader = as_tcp_conn(std::move(*first));
    a.peer.send_all("still open");
    CHECK(reader.recv_exact(10) == "still open");
  }
}

SCENARIO("accept queue: a stop tells waiting accepts why and keeps what is queued",
         "[client][accept_queue]") {
  io_thread io;
  auto queue = std::make_shared<accept_queue>(io.io().get_executor(), 8);
  auto waiting = accept_later(*queue);
  queue->stop(client_errc::session_lost, false);
  CHECK(wait(waiting).ec == client_errc::session_lost);

  WHEN("a connection was queued before the stop") {
    auto queue2 = std::make_shared<accept_queue>(io.io().get_executor(), 8);
    auto a = make_connected_pair(io.io(), "a");
    CHECK(queue2->deliver(std::move(a.ours)) == "");
    queue2->stop(client_errc::session_lost, false);
    THEN("it is still accepted, and the next accept gets the reason at once") {
      std::error_code ec;
      auto conn = queue2->accept(default_timeout, ec);
      REQUIRE(conn.has_value());
      CHECK(conn->id() == "a");
      CHECK_FALSE(queue2->accept(default_timeout, ec).has_value());
      CHECK(ec == client_errc::session_lost);
      auto later = accept_later(*queue2);
      CHECK(wait(later).ec == client_errc::session_lost);
    }
  }
}

SCENARIO("accept queue: close closes what is queued and what comes later",
         "[client][accept_queue]") {
  io_thread io;
  auto queue = std::make_shared<accept_queue>(io.io().get_executor(), 8);
  auto a = make_connected_pair(io.io(), "a");
  CHECK(queue->deliver(std::move(a.ours)) == "");
  queue->close();
  a.peer.expect_closed();
  CHECK(queue->size() == 0);

  std::error_code ec;
  CHECK_FALSE(queue->accept(default_timeout, ec).has_value());
  CHECK(ec == client_errc::listener_closed);
  auto later = accept_later(*queue);
  CHECK(wait(later).ec == client_errc::listener_closed);

  auto b = make_connected_pair(io.io(), "b");
  CHECK(queue->deliver(std::move(b.ours)) == "");
  b.peer.expect_closed();
}

SCENARIO("accept queue: close wakes an accept that blocks", "[client][accept_queue]") {
  io_thread io;
  auto queue = std::make_shared<accept_queue>(io.io().get_executor(), 8);
  auto blocked = std::async(std::launch::async, [&] {
    std::error_code ec;
    const bool got = queue->accept(std::chrono::seconds(30), ec).has_value();
    return std::make_pair(got, ec);
  });
  queue->close();
  REQUIRE(blocked.wait_for(default_timeout) == std::future_status::ready);
  const auto [got, ec] = blocked.get();
  CHECK_FALSE(got);
  CHECK(ec == client_errc::listener_closed);
}
