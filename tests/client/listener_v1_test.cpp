// The client library against the real relay, protocol v1 (the original's):
// serving clients, reconnecting after a relay restart, and each way the
// first connection can fail, as the user of the library sees it.
#include <future>

#include <catch2/catch.hpp>

#include "client/errc.hpp"
#include "client/relay_listener.hpp"
#include "tests/client/client_test_support.hpp"
#include "tests/support/test_data.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;
using client::client_errc;
using kind = client::listener_event::kind;

SCENARIO("v1: clients of the public port are echoed by a server that uses the library",
         "[client][v1]") {
  GIVEN("a relay and a listener with the server's certificate") {
    relay_process relay;
    io_thread io;
    client::relay_listener listener(io.io(), v1_options(relay.keys_dir(), relay.port()));
    event_log events;
    listener.set_event_handler(events.handler());

    WHEN("it listens") {
      client::session_info session;
      REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});

      THEN("it learns the public and reverse address of the first pair") {
        CHECK(session.protocol == client::protocol_version::v1);
        CHECK(session.public_endpoint == host_port{"127.0.0.1", relay.public_port(0)});
        CHECK(session.reverse_endpoint == host_port{"127.0.0.1", relay.reverse_port(0)});
        CHECK(session.session_secret.empty());
        CHECK(events.count(kind::listening) == 1);
        REQUIRE(listener.session().has_value());
        CHECK(listener.session()->public_endpoint == session.public_endpoint);
      }

      AND_THEN("three clients at once get their bytes back, and EOF for EOF") {
        relayed_echo echo(listener);
        std::vector<test_client> clients;
        for (int i = 0; i < 3; ++i) clients.push_back(test_client::connect(session.public_endpoint));
        for (std::size_t i = 0; i < clients.size(); ++i) {
          const auto payload = random_bytes(200 * 1024, i + 1);
          CHECK(bytes_diff(payload, clients[i].exchange(payload)) == "");
        }
        for (auto& c : clients) {
          c.shutdown_write();
          CHECK(c.recv_until_eof() == "");
        }
        REQUIRE(echo.wait_served(3));
        for (const auto& info : echo.accepted()) {
          CHECK_FALSE(info.client.has_value());  // v1 does not say who the client is
          CHECK(info.id.empty());
          CHECK_FALSE(info.tls);
        }
      }
    }
    listener.close();
    CHECK_STOPS_CLEANLY(relay);
  }
}

SCENARIO("v1: after the relay restarts, the listener reconnects and reports the address again",
         "[client][v1][reconnect]") {
  pki keys;
  relay_runner relay(relay_runner::config{keys.dir()});
  io_thread io;
  auto options = v1_options(keys.dir(), relay.port());
  options.backoff = fast_backoff();
  client::relay_listener listener(io.io(), options);
  event_log events;
  listener.set_event_handler(events.handler());
  client::session_info first;
  REQUIRE(listener.listen(default_timeout, &first) == std::error_code{});
  relayed_echo echo(listener);
  {
    auto c = test_client::connect(first.public_endpoint);
    CHECK(c.exchange("before the restart") == "before the restart");
  }

  WHEN("the relay is stopped and started again on the same ports") {
    relay.restart();

    THEN("the listener is listening again, on the same public port, and serves clients") {
      INFO("events: " << events.describe());
      REQUIRE(events.wait_count(kind::listening, 2, 15000ms));
      CHECK(events.count(kind::session_lost) >= 1);
      CHECK(events.count(kind::reconnecting) >= 1);
      CHECK(events.count(kind::stopped) == 0);
      const auto now = listener.session();
      REQUIRE(now.has_value());
      CHECK(now->public_endpoint == first.public_endpoint);
      auto c = test_client::connect(now->public_endpoint);
      CHECK(c.exchange("after the restart") == "after the restart");
      // The session lost carries the reason.
      for (const auto& ev : events.events())
        if (ev.what == kind::session_lost) CHECK(ev.error == client_errc::session_lost);
    }
  }
  listener.close();
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v1: nothing listens on the relay's port: relay_unreachable", "[client][v1][errors]") {
  refusing_port nothing;
  io_thread io;
  pki keys;
  client::relay_listener listener(io.io(), v1_options(keys.dir(), nothing.port()));
  event_log events;
  listener.set_event_handler(events.handler());
  const auto ec = listener.listen(default_timeout);
  CHECK(ec == client_errc::relay_unreachable);
  CHECK_THAT(listener.last_error_detail(), Catch::Contains("refused"));
  THEN("the listener stops (no retry of a first attempt) and accept says why") {
    CHECK(events.wait_count(kind::stopped, 1));
    CHECK(events.count(kind::reconnecting) == 0);
    std::error_code accept_ec;
    CHECK_FALSE(listener.accept(1000ms, accept_ec).has_value());
    CHECK(accept_ec == client_errc::relay_unreachable);
  }
}

SCENARIO("v1: the relay's certificate is from another CA: tls_failed", "[client][v1][errors]") {
  relay_process relay;
  pki foreign;
  io_thread io;
  auto options = v1_options(relay.keys_dir(), relay.port());
  options.tls.ca_file = foreign.ca();
  client::relay_listener listener(io.io(), options);
  CHECK(listener.listen(default_timeout) == client_errc::tls_failed);
  CHECK_THAT(listener.last_error_detail(), Catch::Contains("certificate verification failed"));
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v1: the relay's certificate does not carry the expected name: tls_failed",
         "[client][v1][errors]") {
  relay_process relay;
  io_thread io;
  auto options = v1_options(relay.keys_dir(), relay.port());
  options.tls.server_name = "relay.example.invalid";
  client::relay_listener listener(io.io(), options);
  CHECK(listener.listen(default_timeout) == client_errc::tls_failed);
  CHECK_THAT(listener.last_error_detail(), Catch::Contains("does not name"));
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v1: the server has no client certificate: auth_failed", "[client][v1][errors]") {
  relay_process relay;
  io_thread io;
  auto options = v1_options(relay.keys_dir(), relay.port());
  options.tls.cert_file.reset();
  options.tls.key_file.reset();
  client::relay_listener listener(io.io(), options);
  CHECK(listener.listen(default_timeout) == client_errc::auth_failed);
  CHECK_THAT(listener.last_error_detail(), Catch::Contains("certificate"));
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v1: the pool is empty: pool_exhausted", "[client][v1][errors]") {
  relay_options one_pair;
  one_pair.port_count = 2;
  relay_process relay(one_pair);
  io_thread io;
  client::relay_listener first(io.io(), v1_options(relay.keys_dir(), relay.port()));
  REQUIRE(first.listen(default_timeout) == std::error_code{});
  client::relay_listener second(io.io(), v1_options(relay.keys_dir(), relay.port()));
  CHECK(second.listen(default_timeout) == client_errc::pool_exhausted);
  first.close();
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v1: a server that does not accept: the queue is bounded, extra clients are closed",
         "[client][v1][limits]") {
  relay_process relay;
  io_thread io;
  auto options = v1_options(relay.keys_dir(), relay.port());
  options.max_queued_connections = 1;
  client::relay_listener listener(io.io(), options);
  event_log events;
  listener.set_event_handler(events.handler());
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});

  WHEN("three clients arrive and nobody accepts") {
    std::vector<test_client> clients;
    for (int i = 0; i < 3; ++i) {
      clients.push_back(test_client::connect(session.public_endpoint));
      try {
        clients.back().send_all("client-" + std::to_string(i) + "\n");
      } catch (const io_error&) {
        // Already dropped and closed: fine, it cannot be the one kept.
      }
    }
    THEN("two are dropped, one waits in the queue and is served when accepted") {
      INFO("events: " << events.describe());
      REQUIRE(events.wait_count(kind::connection_dropped, 2));
      CHECK(listener.queued() == 1);
      std::error_code ec;
      auto conn = listener.accept(default_timeout, ec);
      REQUIRE(conn.has_value());
      auto server_side = as_tcp_conn(std::move(*conn));
      const std::string tag = server_side.read_line();
      REQUIRE(tag.rfind("client-", 0) == 0);
      const auto kept = static_cast<std::size_t>(tag[7] - '0');
      REQUIRE(kept < clients.size());
      for (std::size_t i = 0; i < clients.size(); ++i) {
        if (i == kept) continue;
        CHECK(clients[i].closed_within(default_timeout));
      }
      server_side.send_all("served\n");
      CHECK(clients[kept].recv_exact(7) == "served\n");
    }
  }
  listener.close();
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("v1: accept waits with a deadline, and close() ends every wait", "[client][v1]") {
  relay_process relay;
  io_thread io;
  client::relay_listener listener(io.io(), v1_options(relay.keys_dir(), relay.port()));
  REQUIRE(listener.listen(default_timeout) == std::error_code{});

  std::error_code ec;
  CHECK_FALSE(listener.accept(200ms, ec).has_value());
  CHECK(ec == std::errc::timed_out);

  std::promise<std::error_code> pending;
  listener.async_accept([&pending](std::error_code ec, client::relayed_connection conn) {
    CHECK_FALSE(conn.valid());
    pending.set_value(ec);
  });
  listener.close();
  auto result = pending.get_future();
  REQUIRE(result.wait_for(default_timeout) == std::future_status::ready);
  CHECK(result.get() == client_errc::listener_closed);
  CHECK_FALSE(listener.accept(200ms, ec).has_value());
  CHECK(ec == client_errc::listener_closed);
  CHECK_FALSE(listener.session().has_value());
  CHECK_STOPS_CLEANLY(relay);
}
