// The listener against a scripted relay (a TLS server played by the test):
// the exact lines it sends, and what it does with what a real relay would
// rarely or never say (silence, refusals of every kind, a redirect, a line
// too long, no ALPN).
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

using namespace tlsrelay;
using namespace tlsrelay::test;
using client::client_errc;
using kind = client::listener_event::kind;
using boost_ec = boost::system::error_code;

namespace {

int select_v2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
              unsigned inlen, void*) {
  static const unsigned char ours[] = "\x0atlsrelay/2";
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, ours, sizeof ours - 1, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// A relay that follows a script: after the server's first line it sends
// `on_hello` (with {reverse} replaced by its reverse address), then reads and
// records every line, answering nothing more unless told.
class scripted_relay {
 public:
  struct script {
    bool alpn = true;
    std::vector<std::string> on_hello;
    bool close_after = false;
  };

  scripted_relay(asio::io_context& io, const pki& keys, script s)
      : st_(std::make_shared<state>(io, std::move(s))) {
    std::string err;
    st_->ctx = client::make_server_context(
      {keys.file("server.crt.pem"), keys.file("server.key.pem")}, err);
    if (!st_->ctx) throw io_error(err);
    if (st_->plan.alpn) SSL_CTX_set_alpn_select_cb(st_->ctx->native_handle(), select_v2, nullptr);
    for (auto* acceptor : {&st_->control, &st_->reverse}) {
      const asio_tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
      acceptor->open(ep.protocol());
      acceptor->bind(ep);
      acceptor->listen();
    }
    asio::post(io, [st = st_] {
      accept_control(st);
      accept_reverse(st);
    });
  }
  ~scripted_relay() {
    asio::post(st_->io, [st = st_] {
      boost_ec ignored;
      st->control.close(ignored);
      st->reverse.close(ignored);
      for (auto& s : st->streams) s->next_layer().close(ignored);
      for (auto& s : st->reverse_sockets) s->close(ignored);
    });
  }

  std::uint16_t port() const { return st_->control.local_endpoint().port(); }
  std::uint16_t reverse_port() const { return st_->reverse.local_endpoint().port(); }

  // Waits for a line (control connection, any session) equal to `line`.
  bool wait_line(const std::string& line, millis timeout = default_timeout) const {
    std::unique_lock lock(st_->mutex);
    return st_->changed.wait_for(lock, timeout, [&] {
      return std::find(st_->lines.begin(), st_->lines.end(), line) != st_->lines.end();
    });
  }
  std::vector<std::string> lines() const {
    std::lock_guard lock(st_->mutex);
    return st_->lines;
  }
  // The first line of the next reverse connection.
  std::optional<std::string> wait_reverse_line(millis timeout = default_timeout) const {
    std::unique_lock lock(st_->mutex);
    if (!st_->changed.wait_for(lock, timeout, [&] { return !st_->reverse_lines.empty(); }))
      return std::nullopt;
    return st_->reverse_lines.front();
  }
  // Sends `line` (\r\n added) on the newest control connection.
  void send(const std::string& line) {
    asio::post(st_->io, [st = st_, line] {
      if (st->streams.empty()) return;
      auto stream = st->streams.back();
      auto text = std::make_shared<std::string>(line + "\r\n");
      asio::async_write(*stream, asio::buffer(*text), [stream, text](const boost_ec&, std::size_t) {});
    });
  }

 private:
  struct state {
    state(asio::io_context& io, script s)
        : io(io), control(io), reverse(io), plan(std::move(s)) {}
    asio::io_context& io;
    asio_tcp::acceptor control, reverse;
    scripted_relay::script plan;
    std::shared_ptr<asio::ssl::context> ctx;
    std::vector<std::shared_ptr<client::tls_stream>> streams;
    std::vector<std::shared_ptr<asio_tcp::socket>> reverse_sockets;
    mutable std::mutex mutex;
    mutable std::condition_variable changed;
    std::vector<std::string> lines, reverse_lines;
  };

  static void record(const std::shared_ptr<state>& st, std::vector<std::string> state::*list,
                     std::string line) {
    {
      std::lock_guard lock(st->mutex);
      (st.get()->*list).push_back(std::move(line));
    }
    st->changed.notify_all();
  }

  static void accept_control(std::shared_ptr<state> st) {
    st->control.async_accept([st](const boost_ec& ec, asio_tcp::socket s) {
      if (ec) return;
      auto stream = std::make_shared<client::tls_stream>(std::move(s), *st->ctx);
      st->streams.push_back(stream);
      stream->async_handshake(asio::ssl::stream_base::server, [st, stream](const boost_ec& ec) {
        if (ec) return;
        read_lines(st, stream, std::make_shared<asio::streambuf>(), true);
      });
      accept_control(st);
    });
  }

  static void read_lines(std::shared_ptr<state> st, std::shared_ptr<client::tls_stream> stream,
                         std::shared_ptr<asio::streambuf> buf, bool first) {
    asio::async_read_until(*stream, *buf, "\r\n", [st, stream, buf, first](const boost_ec& ec,
                                                                           std::size_t n) {
      if (ec) return;
      std::string line(asio::buffers_begin(buf->data()), asio::buffers_begin(buf->data()) + n - 2);
      buf->consume(n);
      record(st, &state::lines, line);
      if (first) {
        std::string out;
        for (auto l : st->plan.on_hello) {
          const auto at = l.find("{reverse}");
          if (at != std::string::npos)
            l.replace(at, 9, "127.0.0.1:" + std::to_string(st->reverse.local_endpoint().port()));
          out += l + "\r\n";
        }
        auto text = std::make_shared<std::string>(out);
        asio::async_write(*stream, asio::buffer(*text), [st, stream, text](const boost_ec&,
                                                                          std::size_t) {
          if (st->plan.close_after) {
            boost_ec ignored;
            stream->next_layer().close(ignored);
          }
        });
      }
      read_lines(st, stream, buf, false);
    });
  }

  static void accept_reverse(std::shared_ptr<state> st) {
    st->reverse.async_accept([st](const boost_ec& ec, asio_tcp::socket s) {
      if (ec) return;
      auto socket = std::make_shared<asio_tcp::socket>(std::move(s));
      st->reverse_sockets.push_back(socket);
      auto buf = std::make_shared<asio::streambuf>();
      asio::async_read_until(*socket, *buf, "\r\n", [st, socket, buf](const boost_ec& ec,
                                                                     std::size_t n) {
        if (ec) return;
        std::string line(asio::buffers_begin(buf->data()), asio::buffers_begin(buf->data()) + n);
        record(st, &state::reverse_lines, line);
      });
      accept_reverse(st);
    });
  }

  std::shared_ptr<state> st_;
};

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
