// The control channel against a scripted relay on 127.0.0.1: what it sends
// (hello), what it makes of the relay's lines (v2 welcome and listener
// lines, v1 greeting without a hello, announcements with and without an
// id, ping, unknown lines, a redirect, a refusal) and what it does when the
// session is lost. The owner (the listener in real use) is a recorder.
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/strand.hpp>
#include <catch2/catch.hpp>

#include "client/control_channel.hpp"
#include "client/errc.hpp"
#include "client/tls.hpp"
#include "protocol/connection_id.hpp"
#include "protocol/wire.hpp"
#include "tests/client/part_test_support.hpp"
#include "tests/client/scripted_relay.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;
using client::client_errc;
using client::listener_event;
using client::session_info;
using client::detail::control_channel;
using client::detail::session_terms;
using kind = listener_event::kind;

namespace {

const std::string secret_hex = "0123456789abcdef0123456789abcdef";
const std::string id_hex = "00112233445566778899aabbccddeeff";

// What the channel reported, in order, for the test thread to wait on.
class channel_recorder : public control_channel::owner {
 public:
  struct started {
    session_info session;
    session_terms terms;
    bool first = false;
  };
  struct announcement {
    std::optional<std::string> id;  // hex
    std::optional<host_port> client;
  };

  void session_started(const session_info& s, const session_terms& terms, bool first) override {
    note([&] { sessions_.push_back({s, terms, first}); });
  }
  void client_announced(std::optional<connection_id> id,
                        std::optional<host_port> client) override {
    note([&] {
      announcements_.push_back(
        {id ? std::optional<std::string>(to_hex(*id)) : std::nullopt, std::move(client)});
    });
  }
  void session_closed() override { note([&] { ++closed_; }); }
  void failure(std::error_code code, const std::string& detail) override {
    note([&] { failures_.push_back({code, detail}); });
  }
  void first_attempt_failed(std::error_code code) override {
    note([&] { first_failed_ = code; });
  }
  void stopped(std::error_code code, const std::string&) override {
    note([&] { stopped_ = code; });
  }
  void event(const listener_event& ev) override { note([&] { events_.push_back(ev.what); }); }

  std::optional<started> session(std::size_t n, millis timeout = default_timeout) {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, timeout, [&] { return sessions_.size() > n; })) return {};
    return sessions_[n];
  }
  std::optional<announcement> announced(std::size_t n, millis timeout = default_timeout) {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, timeout, [&] { return announcements_.size() > n; })) return {};
    return announcements_[n];
  }
  std::optional<std::error_code> stopped_with(millis timeout = default_timeout) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return stopped_.has_value(); });
    return stopped_;
  }
  bool wait_event(kind what, millis timeout = default_timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] {
      return std::find(events_.begin(), events_.end(), what) != events_.end();
    });
  }
  std::optional<std::error_code> first_failed() const {
    std::lock_guard lock(mutex_);
    return first_failed_;
  }
  std::vector<std::pair<std::error_code, std::string>> failures() const {
    std::lock_guard lock(mutex_);
    return failures_;
  }
  int closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }

 private:
  template <class F>
  void note(F&& f) {
    {
      std::lock_guard lock(mutex_);
      f();
    }
    changed_.notify_all();
  }

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<started> sessions_;
  std::vector<announcement> announcements_;
  std::vector<std::pair<std::error_code, std::string>> failures_;
  std::optional<std::error_code> first_failed_, stopped_;
  std::vector<kind> events_;
  int closed_ = 0;
};

// A channel for `options`, started on its strand; closed at the end.
struct channel_fixture {
  channel_fixture(asio::io_context& io, const client::listener_options& options)
      : strand(asio::make_strand(io)) {
    std::string err;
    const std::string alpn = options.protocol == client::protocol_version::v2
                               ? std::string(wire::alpn_v2)
                               : std::string();
    auto ctx = client::make_client_context(options.tls, alpn, err);
    REQUIRE(ctx);
    channel = std::make_shared<control_channel>(io, strand, options, ctx, owner);
    run_on(strand, [c = channel] { c->start(); });
  }
  ~channel_fixture() {
    run_on(strand, [c = channel] { c->close(); });
  }
  part_strand strand;
  channel_recorder owner;
  std::shared_ptr<control_channel> channel;
};

}  // namespace

SCENARIO("control channel: a v2 session from hello to announcements and pings",
         "[client][control_channel]") {
  pki keys;
  io_thread io;
  scripted_relay relay(io.io(), keys,
                       {true,
                        {"welcome session=" + secret_hex + " warm=3 proxy=2",
                         "public_listener 127.0.0.1:40001", "reverse_listener {reverse}"}});
  auto options = v2_options(keys.dir(), relay.port(), "sekrit");
  options.name = "web";
  channel_fixture f(io.io(), options);

  const auto started = f.owner.session(0);
  REQUIRE(started.has_value());
  CHECK(relay.lines().at(0) == "hello 2 token=sekrit name=web");
  CHECK(started->first);
  CHECK(started->session.protocol == client::protocol_version::v2);
  CHECK(started->session.relay == relay.address());
  CHECK(started->session.public_endpoint == host_port{"127.0.0.1", 40001});
  CHECK(started->session.reverse_endpoint == host_port{"127.0.0.1", relay.reverse_port()});
  CHECK(started->session.session_secret == secret_hex);
  CHECK(started->terms.warm_offered == 3);
  CHECK(started->terms.proxy_announced);

  WHEN("the relay announces a client") {
    relay.send("new_connection " + id_hex + " 127.0.0.1:5555");
    THEN("the owner learns its id and address") {
      const auto a = f.owner.announced(0);
      REQUIRE(a.has_value());
      CHECK(a->id == id_hex);
      CHECK(a->client == host_port{"127.0.0.1", 5555});
    }
  }
  WHEN("the relay pings") {
    relay.send("ping");
    THEN("the channel answers pong") { CHECK(relay.wait_line("pong")); }
  }
  WHEN("the relay sends a line this version does not know") {
    // One write: the scripted relay does not queue its writes.
    relay.send("something_new 1\r\nnew_connection " + id_hex + " 127.0.0.1:5556");
    THEN("it is ignored and the session goes on") {
      const auto a = f.owner.announced(0);
      REQUIRE(a.has_value());
      CHECK(a->client == host_port{"127.0.0.1", 5556});
      CHECK(f.owner.failures().empty());
    }
  }
  WHEN("the channel is closed") {
    run_on(f.strand, [&] { f.channel->close(); });
    THEN("the owner hears the control connection closed, and of no failure") {
      CHECK(f.owner.closed() == 1);
      CHECK(f.owner.failures().empty());
      CHECK_FALSE(f.owner.first_failed().has_value());
    }
  }
}

SCENARIO("control channel: a v1 relay speaks first and announces clients without an id",
         "[client][control_channel]") {
  pki keys;
  io_thread io;
  scripted_relay::script script;
  script.alpn = false;
  script.speak_first = true;
  script.on_hello = {"public_listener 127.0.0.1:40001", "reverse_listener {reverse}"};
  scripted_relay relay(io.io(), keys, script);
  channel_fixture f(io.io(), v1_options(keys.dir(), relay.port()));

  const auto started = f.owner.session(0);
  REQUIRE(started.has_value());
  CHECK(started->session.protocol == client::protocol_version::v1);
  CHECK(started->session.public_endpoint == host_port{"127.0.0.1", 40001});
  CHECK(started->session.session_secret == "");
  relay.send("new_connection");
  const auto a = f.owner.announced(0);
  REQUIRE(a.has_value());
  CHECK_FALSE(a->id.has_value());
  CHECK_FALSE(a->client.has_value());
  CHECK(relay.lines().empty());  // a v1 server says nothing on the control connection
}

SCENARIO("control channel: a redirect is followed to the relay it names",
         "[client][control_channel]") {
  pki keys;
  io_thread io;
  scripted_relay target(io.io(), keys,
                        {true,
                         {"welcome session=" + secret_hex, "public_listener 127.0.0.1:40002",
                          "reverse_listener {reverse}"}});
  scripted_relay seed(io.io(), keys,
                      {true, {"redirect 127.0.0.1:" + std::to_string(target.port())}});
  channel_fixture f(io.io(), v2_options(keys.dir(), seed.port(), "sekrit"));
  const auto started = f.owner.session(0);
  REQUIRE(started.has_value());
  CHECK(started->session.relay == target.address());
  CHECK(started->session.public_endpoint == host_port{"127.0.0.1", 40002});
  CHECK(seed.lines().at(0) == "hello 2 token=sekrit");
  CHECK(target.lines().at(0) == "hello 2 token=sekrit");
}

SCENARIO("control channel: a refusal in the first attempt is reported and ends it",
         "[client][control_channel]") {
  pki keys;
  io_thread io;
  scripted_relay relay(io.io(), keys, {true, {"error auth_failed unknown token"}});
  channel_fixture f(io.io(), v2_options(keys.dir(), relay.port(), "wrong"));
  const auto stopped = f.owner.stopped_with();
  REQUIRE(stopped.has_value());
  CHECK(*stopped == client_errc::auth_failed);
  CHECK(f.owner.first_failed() == std::optional<std::error_code>(client_errc::auth_failed));
  const auto failures = f.owner.failures();
  REQUIRE(failures.size() == 1);
  CHECK(failures[0].second ==
        "relay " + format_host_port(relay.address()) + ": auth_failed (unknown token)");
}

SCENARIO("control channel: a lost session is reported and a new one follows",
         "[client][control_channel]") {
  pki keys;
  io_thread io;
  scripted_relay relay(io.io(), keys,
                       {true,
                        {"welcome session=" + secret_hex, "public_listener 127.0.0.1:40003",
                         "reverse_listener {reverse}"}});
  auto options = v2_options(keys.dir(), relay.port(), "sekrit");
  options.backoff = fast_backoff();
  channel_fixture f(io.io(), options);
  REQUIRE(f.owner.session(0).has_value());
  relay.drop_sessions();
  CHECK(f.owner.wait_event(kind::session_lost));
  CHECK(f.owner.wait_event(kind::reconnecting));
  const auto again = f.owner.session(1);
  REQUIRE(again.has_value());
  CHECK_FALSE(again->first);
  CHECK(again->session.public_endpoint == host_port{"127.0.0.1", 40003});
  CHECK(f.owner.failures().at(0).first == client_errc::session_lost);
}
