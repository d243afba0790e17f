// The listener against a scripted relay (a TLS server played by the test):
// the exact lines it sends, and what it does with what a real relay would
// rarely or never say (silence, refusals of every kind, a redirect, a line
// too long, no ALPN); and several of them as the seeds of one cluster.
#include <openssl/ssl.h>

#include <algorithm>

#include <boost/asio/ssl.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include "client/errc.hpp"
#include "client/relay_listener.hpp"
#include "client/tls.hpp"
#include "protocol/defaults.hpp"
#include "tests/client/client_test_support.hpp"
#include "tests/client/scripted_relay.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;
using client::client_errc;
using kind = client::listener_event::kind;
using boost_ec = boost::system::error_code;

namespace {

const std::string greeting_public = "public_listener 127.0.0.1:40001";

client::listener_options scripted_options(const pki& keys, std::uint16_t port) {
  client::listener_options o = v2_options(keys.dir(), port, "sekrit");
  return o;
}

}  // namespace

SCENARIO("v2: hello carries token, name and port as the protocol spells them",
         "[client][v2][scripted]") {
  pki keys;
  io_thread io;
  scripted_relay relay(io.io(), keys,
                       {true, {"welcome session=0123456789abcdef0123456789abcdef", greeting_public,
                               "reverse_listener {reverse}"}});
  auto options = scripted_options(keys, relay.port());
  options.name = "web";
  options.port = 40001;
  client::relay_listener listener(io.io(), options);
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  CHECK(relay.lines().at(0) == "hello 2 token=sekrit name=web port=40001");
  CHECK(session.session_secret == "0123456789abcdef0123456789abcdef");
  CHECK(session.public_endpoint == host_port{"127.0.0.1", 40001});

  WHEN("the relay announces a client") {
    relay.send("new_connection 00112233445566778899aabbccddeeff 127.0.0.1:5555");
    THEN("the server's reverse connection starts with `accept <ID>` and the user learns the client") {
      const auto first = relay.wait_reverse_line();
      REQUIRE(first.has_value());
      CHECK(*first == "accept 00112233445566778899aabbccddeeff\r\n");
      std::error_code ec;
      auto conn = listener.accept(default_timeout, ec);
      REQUIRE(conn.has_value());
      CHECK(conn->id() == "00112233445566778899aabbccddeeff");
      REQUIRE(conn->client().has_value());
      CHECK(*conn->client() == host_port{"127.0.0.1", 5555});
    }
  }
  WHEN("the relay pings") {
    relay.send("ping");
    THEN("the server answers pong") { CHECK(relay.wait_line("pong")); }
  }
  listener.close();
}

SCENARIO("v2: a relay gone silent is declared dead after 3 heartbeat intervals, then reconnected",
         "[client][v2][scripted][heartbeat]") {
  pki keys;
  io_thread io;
  scripted_relay relay(io.io(), keys,
                       {true, {"welcome session=0123456789abcdef0123456789abcdef", greeting_public,
                               "reverse_listener {reverse}"}});
  auto options = scripted_options(keys, relay.port());
  options.heartbeat_interval = 100ms;
  options.backoff = fast_backoff();
  client::relay_listener listener(io.io(), options);
  event_log events;
  listener.set_event_handler(events.handler());
  REQUIRE(listener.listen(default_timeout) == std::error_code{});
  THEN("the server pinged, lost the session with heartbeat_lost, and came back") {
    INFO("events: " << events.describe());
    CHECK(relay.wait_line("ping"));
    REQUIRE(events.wait_count(kind::session_lost, 1));
    for (const auto& ev : events.events())
      if (ev.what == kind::session_lost) CHECK(ev.error == client_errc::heartbeat_lost);
    CHECK(events.wait_count(kind::listening, 2));
  }
  listener.close();
}

SCENARIO("v2: every refusal of the relay maps to its error code", "[client][v2][scripted]") {
  const auto [line, expected] = GENERATE(table<std::string, client_errc>({
    {"error auth_failed unknown token", client_errc::auth_failed},
    {"error port_unavailable port 40001 is taken", client_errc::port_unavailable},
    {"error name_unavailable web belongs to someone else", client_errc::name_unavailable},
    {"error too_many_sessions limit of 1 reached", client_errc::too_many_sessions},
    {"error bad_request what", client_errc::protocol_error},
    {"error unsupported_version this relay speaks protocol 2", client_errc::protocol_error},
    {"no_available_listeners", client_errc::pool_exhausted},
    {"public_listener nonsense", client_errc::protocol_error},
    {"something_new", client_errc::protocol_error},
  }));
  pki keys;
  io_thread io;
  scripted_relay relay(io.io(), keys, {true, {line}, true});
  client::relay_listener listener(io.io(), scripted_options(keys, relay.port()));
  INFO("relay says: " << line);
  CHECK(listener.listen(default_timeout) == expected);
  if (line.rfind("error", 0) == 0) {
    // The relay's text reaches the user.
    CHECK_THAT(listener.last_error_detail(), Catch::Contains(line.substr(line.find(' ', 6) + 1)));
  }
}

SCENARIO("v2: a relay that does not select ALPN tlsrelay/2 does not speak v2: protocol_error",
         "[client][v2][scripted]") {
  pki keys;
  io_thread io;
  scripted_relay relay(io.io(), keys, {false, {greeting_public}});
  client::relay_listener listener(io.io(), scripted_options(keys, relay.port()));
  CHECK(listener.listen(default_timeout) == client_errc::protocol_error);
  CHECK_THAT(listener.last_error_detail(), Catch::Contains("protocol 1"));
}

SCENARIO("v2: a relay that never answers hello: protocol_error after the greeting timeout",
         "[client][v2][scripted]") {
  pki keys;
  io_thread io;
  scripted_relay relay(io.io(), keys, {true, {}});
  auto options = scripted_options(keys, relay.port());
  options.greeting_timeout = 300ms;
  client::relay_listener listener(io.io(), options);
  CHECK(listener.listen(default_timeout) == client_errc::protocol_error);
  CHECK_THAT(listener.last_error_detail(), Catch::Contains("within"));
}

SCENARIO("v2: a control line one byte over the limit ends the session: protocol_error",
         "[client][v2][scripted][limits]") {
  pki keys;
  io_thread io;
  // The limit counts the line without its "\r\n": one byte more.
  const std::string too_long(defaults::max_control_line_bytes + 1, 'x');
  scripted_relay relay(io.io(), keys, {true, {too_long}});
  client::relay_listener listener(io.io(), scripted_options(keys, relay.port()));
  CHECK(listener.listen(default_timeout) == client_errc::protocol_error);
  CHECK_THAT(listener.last_error_detail(), Catch::Contains("over"));
}

SCENARIO("v2: a redirect is followed to the relay it names", "[client][v2][scripted]") {
  pki keys;
  io_thread io;
  scripted_relay target(io.io(), keys,
                        {true, {"welcome session=0123456789abcdef0123456789abcdef",
                                greeting_public, "reverse_listener {reverse}"}});
  scripted_relay first(io.io(), keys,
                       {true, {"redirect 127.0.0.1:" + std::to_string(target.port())}, true});
  client::relay_listener listener(io.io(), scripted_options(keys, first.port()));
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  CHECK(session.relay == host_port{"127.0.0.1", target.port()});
  CHECK(target.lines().at(0) == "hello 2 token=sekrit");
}

SCENARIO("v2: a relay answering `error draining` is not a failure, even on the first attempt: "
         "the listener tries again with the same hello",
         "[client][v2][scripted][drain]") {
  pki keys;
  io_thread io;
  scripted_relay relay(io.io(), keys,
                       {true, {"error draining the relay is shutting down; reconnect later"}, true});
  auto options = scripted_options(keys, relay.port());
  options.name = "web";
  options.backoff = fast_backoff();
  client::relay_listener listener(io.io(), options);
  event_log events;
  listener.set_event_handler(events.handler());
  auto answered = std::make_shared<std::atomic<bool>>(false);
  listener.async_listen(
    [answered](std::error_code, const client::session_info&) { *answered = true; });
  INFO("events: " << events.describe());
  REQUIRE(events.wait_count(kind::attempt_failed, 2));
  for (const auto& ev : events.events()) {
    CHECK(ev.what != kind::stopped);
    if (ev.what == kind::attempt_failed) CHECK(ev.error == client_errc::relay_draining);
  }
  CHECK_FALSE(*answered);  // no verdict yet: the listener keeps trying
  const auto lines = relay.lines();
  REQUIRE(lines.size() >= 2);
  for (const auto& line : lines) CHECK(line == "hello 2 token=sekrit name=web");
  listener.close();
}

SCENARIO("v2: an established session told `error draining` reconnects with the same hello",
         "[client][v2][scripted][drain]") {
  pki keys;
  io_thread io;
  scripted_relay relay(io.io(), keys,
                       {true, {"welcome session=0123456789abcdef0123456789abcdef", greeting_public,
                               "reverse_listener {reverse}"}});
  auto options = scripted_options(keys, relay.port());
  options.name = "web";
  options.backoff = fast_backoff();
  client::relay_listener listener(io.io(), options);
  event_log events;
  listener.set_event_handler(events.handler());
  REQUIRE(listener.listen(default_timeout) == std::error_code{});
  relay.send("error draining the relay is shutting down; reconnect later");
  INFO("events: " << events.describe());
  REQUIRE(events.wait_count(kind::listening, 2));
  for (const auto& ev : events.events())
    if (ev.what == kind::session_lost) CHECK(ev.error == client_errc::relay_draining);
  const auto lines = relay.lines();
  CHECK(std::count(lines.begin(), lines.end(), "hello 2 token=sekrit name=web") == 2);
  listener.close();
}

// -- several relays: the seeds of a cluster -----------------------------------------

namespace {

const scripted_relay::script greets{
  true, {"welcome session=0123456789abcdef0123456789abcdef", greeting_public,
         "reverse_listener {reverse}"}};

std::string redirect_to(const scripted_relay& relay) {
  return "redirect " + format_host_port(relay.address());
}

// The attempt_failed events whose detail contains `text`.
std::vector<client::listener_event> failures_saying(const event_log& events,
                                                    const std::string& text) {
  std::vector<client::listener_event> out;
  for (const auto& ev : events.events())
    if (ev.what == kind::attempt_failed && ev.detail.find(text) != std::string::npos)
      out.push_back(ev);
  return out;
}

}  // namespace

SCENARIO("seeds: the first seed is down (nothing listening), the listener reaches the second",
         "[client][v2][scripted][seeds]") {
  pki keys;
  io_thread io;
  refusing_port down;
  scripted_relay second(io.io(), keys, greets);
  auto options = scripted_options(keys, down.port());
  options.relays = {second.address()};
  client::relay_listener listener(io.io(), options);
  event_log events;
  listener.set_event_handler(events.handler());
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  INFO("events: " << events.describe());
  CHECK(session.relay == second.address());
  CHECK(second.lines().at(0) == "hello 2 token=sekrit");
  const auto failed = failures_saying(events, std::to_string(down.port()));
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].error == client_errc::relay_unreachable);
  CHECK(events.count(kind::reconnecting) == 0);  // the next seed at once, no backoff
  listener.close();
}

SCENARIO("seeds: a first seed without a free port pair (no_available_listeners) sends the "
         "listener on to the second",
         "[client][v2][scripted][seeds]") {
  pki keys;
  io_thread io;
  scripted_relay full(io.io(), keys, {true, {"no_available_listeners"}, true});
  scripted_relay second(io.io(), keys, greets);
  auto options = scripted_options(keys, full.port());
  options.relays = {second.address()};
  client::relay_listener listener(io.io(), options);
  event_log events;
  listener.set_event_handler(events.handler());
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  INFO("events: " << events.describe());
  CHECK(session.relay == second.address());
  CHECK(full.lines() == std::vector<std::string>{"hello 2 token=sekrit"});
  CHECK(second.lines().at(0) == "hello 2 token=sekrit");
  const auto failed = failures_saying(events, "no_available_listeners");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].error == client_errc::pool_exhausted);
  listener.close();
}

SCENARIO("seeds: a refusal of the set-up on the first seed stops the first listen as with "
         "one relay",
         "[client][v2][scripted][seeds]") {
  pki keys;
  io_thread io;
  scripted_relay refuses(io.io(), keys, {true, {"error auth_failed unknown token"}, true});
  scripted_relay second(io.io(), keys, greets);
  auto options = scripted_options(keys, refuses.port());
  options.relays = {second.address()};
  client::relay_listener listener(io.io(), options);
  CHECK(listener.listen(default_timeout) == client_errc::auth_failed);
  CHECK(second.lines().empty());
}

SCENARIO("seeds: when every seed fails, the first listen fails and the detail names each",
         "[client][v2][scripted][seeds]") {
  pki keys;
  io_thread io;
  refusing_port down;
  scripted_relay full(io.io(), keys, {true, {"no_available_listeners"}, true});
  auto options = scripted_options(keys, down.port());
  options.relays = {full.address()};
  client::relay_listener listener(io.io(), options);
  CHECK(listener.listen(default_timeout) == client_errc::pool_exhausted);
  CHECK_THAT(listener.last_error_detail(),
             Catch::Contains(std::to_string(down.port())) &&
               Catch::Contains(std::to_string(full.port())) && Catch::Contains("2 seeds"));
}

SCENARIO("seeds: a redirect loop A -> B -> A ends the chain and the next seed is used",
         "[client][v2][scripted][seeds][redirect]") {
  pki keys;
  io_thread io;
  scripted_relay a(io.io(), keys, {true, {}, true});
  scripted_relay b(io.io(), keys, {true, {}, true});
  scripted_relay c(io.io(), keys, greets);
  a.set_on_hello({redirect_to(b)});
  b.set_on_hello({redirect_to(a)});
  auto options = scripted_options(keys, a.port());
  options.relays = {c.address()};
  client::relay_listener listener(io.io(), options);
  event_log events;
  listener.set_event_handler(events.handler());
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  INFO("events: " << events.describe());
  CHECK(session.relay == c.address());
  // A was not visited a second time.
  CHECK(a.lines() == std::vector<std::string>{"hello 2 token=sekrit"});
  CHECK(b.lines() == std::vector<std::string>{"hello 2 token=sekrit"});
  const auto failed = failures_saying(events, "redirect loop");
  REQUIRE(failed.size() == 1);
  CHECK_THAT(failed[0].detail, Catch::Contains("already tried") &&
                                 Catch::Contains(format_host_port(a.address())));
}

SCENARIO("seeds: a fourth redirect in a row ends the chain and the next seed is used",
         "[client][v2][scripted][seeds][redirect]") {
  pki keys;
  io_thread io;
  // r[0] -> r[1] -> r[2] -> r[3] -> r[4]: three hops followed, the fourth not.
  std::vector<std::unique_ptr<scripted_relay>> r;
  for (int i = 0; i < 5; ++i)
    r.push_back(std::make_unique<scripted_relay>(io.io(), keys, scripted_relay::script{true, {}, true}));
  for (int i = 0; i < 4; ++i) r[i]->set_on_hello({redirect_to(*r[i + 1])});
  scripted_relay next(io.io(), keys, greets);
  auto options = scripted_options(keys, r[0]->port());
  options.relays = {next.address()};
  client::relay_listener listener(io.io(), options);
  event_log events;
  listener.set_event_handler(events.handler());
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  INFO("events: " << events.describe());
  CHECK(session.relay == next.address());
  for (int i = 0; i < 4; ++i) CHECK(r[i]->lines().size() == 1);
  CHECK(r[4]->lines().empty());
  const auto failed = failures_saying(events, "more than 3 redirects");
  REQUIRE(failed.size() == 1);
  CHECK_THAT(failed[0].detail, Catch::Contains(format_host_port(r[4]->address())));
}

SCENARIO("seeds: after the session on the second seed is lost, the reconnect starts again at "
         "the first and uses it once it is back",
         "[client][v2][scripted][seeds]") {
  pki keys;
  io_thread io;
  auto down_script = greets;
  down_script.listening = false;
  scripted_relay first(io.io(), keys, down_script);
  scripted_relay second(io.io(), keys, greets);
  auto options = scripted_options(keys, first.port());
  options.relays = {second.address()};
  options.backoff = fast_backoff();
  client::relay_listener listener(io.io(), options);
  event_log events;
  listener.set_event_handler(events.handler());
  client::session_info session;
  REQUIRE(listener.listen(default_timeout, &session) == std::error_code{});
  CHECK(session.relay == second.address());
  CHECK(first.lines().empty());

  WHEN("the first seed comes up and the second drops the session") {
    first.start_listening();
    second.drop_sessions();
    THEN("the listener is back, on the first seed") {
      INFO("events: " << events.describe());
      REQUIRE(events.wait_count(kind::listening, 2));
      std::vector<host_port> relays;
      for (const auto& ev : events.events())
        if (ev.what == kind::listening) relays.push_back(ev.session.relay);
      CHECK(relays == std::vector<host_port>{second.address(), first.address()});
      CHECK(first.lines().at(0) == "hello 2 token=sekrit");
      CHECK(second.lines().size() == 1);  // not asked again
    }
  }
  listener.close();
}
