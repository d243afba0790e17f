#include "relay_fixture.hpp"

#include <optional>

#include <algorithm>
#include <memory>
#include <sstream>

#include <mutex>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include "protocol/overloaded.hpp"

namespace tlsrelay::test {
namespace {

// Names of the actors of the running fixture, for failure messages.
std::map<caf::actor_id, std::string>* actor_names = nullptr;


std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '\r': out += "\\r"; break;
      case '\n': out += "\\n"; break;
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      default: out += c;
    }
  }
  return out + '"';
}

std::string conn(conn_id id) { return "conn " + std::to_string(id.value); }

std::string hex_bytes(const std::string& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 0xf];
  }
  return out;
}

std::uint16_t port_of(conn_id id) { return static_cast<std::uint16_t>(id.value); }

// The fake net: records every order, and anything else it is sent.
caf::behavior fake_net(caf::event_based_actor* self, orders* received,
                       std::vector<std::string>* unexpected,
                       std::map<conn_id, std::uint32_t>* credits) {
  self->set_default_handler(
    [unexpected](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
      unexpected->push_back(caf::to_string(x.content()));
      return caf::sec::unexpected_message;
    });
  return {
    [received](send_line& o) { received->emplace_back(std::move(o)); },
    [received](send_and_close& o) { received->emplace_back(std::move(o)); },
    [received](close_connection& o) { received->emplace_back(o); },
    [received](route_connection& o) { received->emplace_back(std::move(o)); },
    [received](route_pair& o) { received->emplace_back(std::move(o)); },
    [received](join_pair& o) { received->emplace_back(std::move(o)); },
    [received](stop_accepting& o) { received->emplace_back(o); },
    [credits](line_credit& o) { (*credits)[o.id] += o.lines; },
  };
}

// Monitors every actor it is sent and notes when it ends.
caf::behavior watcher(caf::event_based_actor* self, std::vector<caf::actor_addr>* ended) {
  self->set_down_handler([ended](caf::down_msg& msg) { ended->push_back(msg.source); });
  return {
    [self](caf::actor& a) { self->monitor(a); },
  };
}

// What the actors logged at error level or above (they do so only for what
// they consider a bug), since the fixture started.
std::vector<std::string>& logged_errors() {
  static std::vector<std::string> errors;
  return errors;
}

// Formats every message (a bad format string would show) and prints none;
// keeps those at error level or above.
class error_keeping_sink : public spdlog::sinks::base_sink<std::mutex> {
protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (msg.level >= spdlog::level::err)
      logged_errors().emplace_back(msg.payload.data(), msg.payload.size());
  }
  void flush_() override {}
};

void silence_logging() {
  // Logged at the most verbose level into nothing: every log statement of the
  // actors is still formatted, none printed.
  static const bool done = [] {
    auto logger =
      std::make_shared<spdlog::logger>("actors_test", std::make_shared<error_keeping_sink>());
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
    return true;
  }();
  (void)done;
  logged_errors().clear();
}

constexpr std::size_t max_steps_per_settle = 100000;

}  // namespace

// -- orders -------------------------------------------------------------------------

bool same_order(const order& a, const order& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
    overloaded{
      [&](const send_line& x) {
        auto& y = std::get<send_line>(b);
        return x.id == y.id && x.line == y.line;
      },
      [&](const send_and_close& x) {
        auto& y = std::get<send_and_close>(b);
        return x.id == y.id && x.bytes == y.bytes;
      },
      [&](const close_connection& x) { return x.id == std::get<close_connection>(b).id; },
      [&](const route_connection& x) {
        auto& y = std::get<route_connection>(b);
        return x.id == y.id && x.owner == y.owner;
      },
      [&](const route_pair& x) {
        auto& y = std::get<route_pair>(b);
        return x.pair == y.pair && x.owner == y.owner && (!x.owner || x.framing == y.framing);
      },
      [&](const join_pair& x) {
        auto& y = std::get<join_pair>(b);
        return x.client == y.client && x.reverse == y.reverse && x.owner == y.owner &&
               x.reverse_preamble == y.reverse_preamble;
      },
      [&](const stop_accepting&) { return true; },
    },
    a);
}

std::string to_text(const caf::actor& a) {
  if (!a) return "no actor";
  if (actor_names) {
    auto it = actor_names->find(a.id());
    if (it != actor_names->end()) return it->second;
  }
  return "actor #" + std::to_string(a.id());
}

std::string to_text(const order& o) {
  return std::visit(
    overloaded{
      [](const send_line& x) { return "send_line{" + conn(x.id) + ", " + quoted(x.line) + "}"; },
      [](const send_and_close& x) {
        return "send_and_close{" + conn(x.id) + ", " + quoted(x.bytes) + "}";
      },
      [](const close_connection& x) { return "close_connection{" + conn(x.id) + "}"; },
      [](const route_connection& x) {
        return "route_connection{" + conn(x.id) + " -> " + to_text(x.owner) + "}";
      },
      [](const route_pair& x) {
        return "route_pair{pair " + std::to_string(x.pair) + " -> " + to_text(x.owner) +
               (x.owner ? ", " + to_string(x.framing) : std::string{}) + "}";
      },
      [](const join_pair& x) {
        return "join_pair{client " + conn(x.client) + ", reverse " + conn(x.reverse) +
               ", owner " + to_text(x.owner) + ", preamble " +
               (x.reverse_preamble.empty() ? std::string("none")
                                           : "0x" + hex_bytes(x.reverse_preamble)) +
               "}";
      },
      [](const stop_accepting&) { return std::string("stop_accepting{}"); },
    },
    o);
}

bool orders_matcher::match(const orders& actual) const {
  if (actual.size() != expected_.size()) return false;
  if (!any_order_)
    return std::equal(actual.begin(), actual.end(), expected_.begin(), same_order);
  std::vector<bool> used(actual.size(), false);
  for (auto& e : expected_) {
    bool found = false;
    for (std::size_t i = 0; i < actual.size() && !found; ++i) {
      if (!used[i] && same_order(actual[i], e)) used[i] = found = true;
    }
    if (!found) return false;
  }
  return true;
}

std::string orders_matcher::describe() const {
  return std::string(any_order_ ? "are, in any order, exactly " : "are exactly, in this order, ") +
         Catch::Detail::stringify(expected_);
}

// -- fixture ------------------------------------------------------------------------

test_system_config::test_system_config() {
  set("scheduler.policy", caf::atom("testing"));
  set("logger.file-verbosity", caf::atom("quiet"));
  set("logger.console-verbosity", caf::atom("quiet"));
  add_message_types<caf::id_block::tlsrelay>();
}

relay_fixture::relay_fixture(unsigned port_count, std::string myhost, bool start_now)
  : sys(cfg), sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())) {
  silence_logging();
  REQUIRE_FALSE(pool_layout::make(12000, port_count, config.layout));
  actor_names = new std::map<caf::actor_id, std::string>();
  config.session.myhost = std::move(myhost);
  config.session.pending_timeout = pending_timeout;

  net = sys.spawn(fake_net, &record_.received, &record_.unexpected, &record_.credits);
  watcher_ = sys.spawn(watcher, &ended_);
  settle();
  harness_actors_ = sys.registry().running();
  name(net, "net");
  if (start_now) start();
}

void relay_fixture::start() {
  REQUIRE_FALSE(pool);
  auth = sys.spawn(authenticator, auth_config);
  name(auth, "authenticator");
  watch(auth);
  settle();
  harness_actors_ = sys.registry().running();

  pool = sys.spawn(pool_manager, net, auth, config);
  name(pool, "pool_manager");
  watch(pool);
  settle();
}

relay_fixture::~relay_fixture() {
  // Shut down as the relay does: exit to the pool manager (which takes its
  // sessions, and they their brokers, along), then the rest.
  if (pool) {
    caf::anon_send_exit(pool, caf::exit_reason::user_shutdown);
    settle();
    CHECK(relay_actors_running() == 0);
  }
  if (auth) {
    caf::anon_send_exit(auth, caf::exit_reason::user_shutdown);
    settle();
    CHECK(has_ended(auth));
  }
  caf::anon_send_exit(net, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(watcher_, caf::exit_reason::user_shutdown);
  settle();
  // Nothing but orders may ever reach net.
  CHECK(record_.unexpected == std::vector<std::string>{});
  if (sys.registry().running() != 0) {
    FAIL_CHECK(sys.registry().running() << " actors still running at the end of the test");
    sys.await_actors_before_shutdown(false);  // report instead of hanging
  }
  delete actor_names;
  actor_names = nullptr;
}

conn_id relay_fixture::new_conn() { return conn_id{next_conn_++}; }

void relay_fixture::settle() {
  const auto steps = sched.run(max_steps_per_settle);
  CHECK(steps < max_steps_per_settle);  // otherwise the actors never go quiet
}

void relay_fixture::advance_time(std::chrono::milliseconds d) {
  sched.advance_time(std::chrono::duration_cast<caf::timespan>(d));
  settle();
}

std::vector<std::string> relay_fixture::take_logged_errors() {
  std::vector<std::string> out;
  out.swap(logged_errors());
  return out;
}

orders relay_fixture::take_orders() {
  orders out;
  out.swap(record_.received);
  return out;
}

const orders& relay_fixture::orders_so_far() const { return record_.received; }

std::uint32_t relay_fixture::lines_credited(conn_id id) const {
  auto it = record_.credits.find(id);
  return it == record_.credits.end() ? 0 : it->second;
}

bool relay_fixture::step() { return sched.try_run_once(); }

void relay_fixture::name(const caf::actor& a, std::string n) {
  if (a && actor_names) (*actor_names)[a.id()] = std::move(n);
}

void relay_fixture::watch(const caf::actor& a) { caf::anon_send(watcher_, a); }

std::size_t relay_fixture::relay_actors_running() {
  return sys.registry().running() - harness_actors_;
}

std::uint32_t relay_fixture::clients_waiting(const caf::actor& session) {
  auto answer = std::make_shared<std::optional<std::uint32_t>>();
  // (Spawned with an argument: CAF 0.17 dereferences a null tuple for a
  // function-based actor without any, which UBSan reports.)
  sys.spawn<caf::hidden>(
    [session, answer](caf::event_based_actor* self, int) {
      self->request(session, caf::infinite, status_atom::value)
        .then([answer](session_report& r) { *answer = r.waiting_clients; });
    },
    0);
  settle();
  REQUIRE(answer->has_value());
  return **answer;
}

bool relay_fixture::has_ended(const caf::actor& a) const {
  return std::find(ended_.begin(), ended_.end(), a.address()) != ended_.end();
}

relay_fixture::server relay_fixture::server_connects(bool client_certificate) {
  server s;
  s.control = new_conn();
  net_sends(pool, control_connected{s.control, {"192.0.2.10", port_of(s.control)}, 1,
                                    client_certificate});
  settle();
  const auto got = take_orders();
  INFO("orders after control_connected{" << conn(s.control) << "}: "
                                         << Catch::Detail::stringify(got));
  REQUIRE(got.size() == 4);
  auto* routed = std::get_if<route_connection>(&got[0]);
  REQUIRE(routed);
  REQUIRE(routed->id == s.control);
  REQUIRE(routed->owner);
  REQUIRE(routed->owner != pool);
  s.session = routed->owner;
  auto* pair = std::get_if<route_pair>(&got[1]);
  REQUIRE(pair);
  REQUIRE(pair->owner == s.session);
  REQUIRE(pair->framing == reverse_framing::raw);
  REQUIRE(pair->pair < config.layout.pair_count());
  s.pair = pair->pair;
  for (std::size_t i = 2; i < 4; ++i) {
    auto* line = std::get_if<send_line>(&got[i]);
    REQUIRE(line);
    REQUIRE(line->id == s.control);
    s.lines.push_back(line->line);
  }
  const auto& host = config.session.myhost;
  REQUIRE(s.lines == std::vector<std::string>{
                       "public_listener " + host + ":" +
                         std::to_string(config.layout.public_port(s.pair)) + "\r\n",
                       "reverse_listener " + host + ":" +
                         std::to_string(config.layout.reverse_port(s.pair)) + "\r\n"});
  name(s.session, "session " + std::to_string(++sessions_seen_) + " (control " +
                    conn(s.control) + ")");
  watch(s.session);
  settle();
  return s;
}

relay_fixture::waiting_client relay_fixture::client_arrives(const server& s) {
  waiting_client c;
  c.id = new_conn();
  net_sends(s.session,
            client_arrived{c.id, {"198.51.100.20", port_of(c.id)},
                           {config.session.myhost, config.layout.public_port(s.pair)}});
  settle();
  const auto got = take_orders();
  INFO("orders after client_arrived{" << conn(c.id) << "}: " << Catch::Detail::stringify(got));
  REQUIRE(got.size() == 2);
  const send_line* announced = nullptr;
  const route_connection* routed = nullptr;
  for (auto& o : got) {
    if (auto* l = std::get_if<send_line>(&o)) announced = l;
    if (auto* r = std::get_if<route_connection>(&o)) routed = r;
  }
  REQUIRE(announced);
  REQUIRE(announced->id == s.control);
  REQUIRE(announced->line == "new_connection\r\n");
  REQUIRE(routed);
  REQUIRE(routed->id == c.id);
  REQUIRE(routed->owner);
  REQUIRE(routed->owner != s.session);
  c.broker = routed->owner;
  name(c.broker, "broker of " + conn(c.id));
  watch(c.broker);
  settle();
  return c;
}

// -- v2 building blocks ----------------------------------------------------------------

bool is_lower_hex(const std::string& s, std::size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

relay_fixture::v2_control relay_fixture::v2_connects(bool client_certificate, std::string host,
                                                     std::string certificate) {
  v2_control c;
  c.id = new_conn();
  c.peer = {std::move(host), port_of(c.id)};
  net_sends(pool, control_connected{c.id, c.peer, 2, client_certificate,
                                    client_certificate ? std::move(certificate) : std::string{}});
  settle();
  const auto got = take_orders();
  INFO("orders after control_connected{" << conn(c.id) << ", v2}: "
                                         << Catch::Detail::stringify(got));
  REQUIRE(got.size() == 1);
  auto* routed = std::get_if<route_connection>(&got[0]);
  REQUIRE(routed);
  REQUIRE(routed->id == c.id);
  REQUIRE(routed->owner);
  REQUIRE(routed->owner != pool);
  c.session = routed->owner;
  name(c.session, "v2 session " + std::to_string(++sessions_seen_) + " (control " + conn(c.id) +
                    ")");
  watch(c.session);
  settle();
  return c;
}

void relay_fixture::server_says(const v2_control& c, std::string line) {
  net_sends(c.session, control_line{c.id, std::move(line)});
  settle();
}

void relay_fixture::server_says(const server& s, std::string line) {
  net_sends(s.session, control_line{s.control, std::move(line)});
  settle();
}

relay_fixture::v2_server relay_fixture::v2_accepted(const v2_control& c) {
  v2_server s;
  s.control = c.id;
  s.session = c.session;
  const auto got = take_orders();
  INFO("orders after the hello of " << conn(c.id) << ": " << Catch::Detail::stringify(got));
  REQUIRE(got.size() == 4);
  auto* pair = std::get_if<route_pair>(&got[0]);
  REQUIRE(pair);
  REQUIRE(pair->owner == s.session);
  REQUIRE(pair->framing == reverse_framing::accept_line);
  REQUIRE(pair->pair < config.layout.pair_count());
  s.pair = pair->pair;
  for (std::size_t i = 1; i < 4; ++i) {
    auto* line = std::get_if<send_line>(&got[i]);
    REQUIRE(line);
    REQUIRE(line->id == s.control);
    s.lines.push_back(line->line);
  }
  const std::string welcome = "welcome session=";
  // proxy=2 exactly when the relay writes PROXY headers on reverse connections.
  const std::string warm = " warm=" + std::to_string(config.session.warm_max) +
                           (config.session.proxy_protocol ? " proxy=2" : "") + "\r\n";
  REQUIRE(s.lines[0].compare(0, welcome.size(), welcome) == 0);
  REQUIRE(s.lines[0].size() == welcome.size() + 32 + warm.size());
  REQUIRE(s.lines[0].substr(welcome.size() + 32) == warm);
  s.session_secret = s.lines[0].substr(welcome.size(), 32);
  REQUIRE(is_lower_hex(s.session_secret, 32));
  const auto& host = config.session.myhost;
  REQUIRE(std::vector<std::string>(s.lines.begin() + 1, s.lines.end()) ==
          std::vector<std::string>{
            "public_listener " + host + ":" + std::to_string(config.layout.public_port(s.pair)) +
              "\r\n",
            "reverse_listener " + host + ":" + std::to_string(config.layout.reverse_port(s.pair)) +
              "\r\n"});
  return s;
}

relay_fixture::v2_server relay_fixture::v2_server_connects(std::string hello,
                                                           bool client_certificate,
                                                           std::string host) {
  auto c = v2_connects(client_certificate, std::move(host));
  server_says(c, std::move(hello));
  return v2_accepted(c);
}

v2::error relay_fixture::v2_refused(const v2_control& c) {
  const auto got = take_orders();
  INFO("orders after the hello of " << conn(c.id) << ": " << Catch::Detail::stringify(got));
  REQUIRE(got.size() == 1);
  auto* last = std::get_if<send_and_close>(&got[0]);
  REQUIRE(last);
  REQUIRE(last->id == c.id);
  REQUIRE(last->bytes.size() >= 2);
  REQUIRE(last->bytes.substr(last->bytes.size() - 2) == "\r\n");
  v2::relay_message msg;
  REQUIRE_FALSE(v2::parse_relay_line(last->bytes.substr(0, last->bytes.size() - 2), msg));
  auto* err = std::get_if<v2::error>(&msg);
  REQUIRE(err);
  return *err;
}

relay_fixture::v2_client relay_fixture::v2_client_arrives(const server& s, host_port peer,
                                                          host_port local) {
  v2_client c;
  c.id = new_conn();
  c.peer = peer.host.empty() ? host_port{"198.51.100.20", port_of(c.id)} : std::move(peer);
  if (local.host.empty()) local = {"127.0.0.1", config.layout.public_port(s.pair)};
  net_sends(s.session, client_arrived{c.id, c.peer, local});
  settle();
  const auto got = take_orders();
  INFO("orders after client_arrived{" << conn(c.id) << "}: " << Catch::Detail::stringify(got));
  REQUIRE(got.size() == 2);
  const send_line* announced = nullptr;
  const route_connection* routed = nullptr;
  for (auto& o : got) {
    if (auto* l = std::get_if<send_line>(&o)) announced = l;
    if (auto* r = std::get_if<route_connection>(&o)) routed = r;
  }
  REQUIRE(announced);
  REQUIRE(announced->id == s.control);
  const std::string prefix = "new_connection ";
  const std::string suffix = " " + format_host_port(c.peer) + "\r\n";
  const auto& line = announced->line;
  REQUIRE(line.size() == prefix.size() + 32 + suffix.size());
  REQUIRE(line.compare(0, prefix.size(), prefix) == 0);
  REQUIRE(line.substr(prefix.size() + 32) == suffix);
  c.accept_id = line.substr(prefix.size(), 32);
  REQUIRE(is_lower_hex(c.accept_id, 32));
  REQUIRE(routed);
  REQUIRE(routed->id == c.id);
  REQUIRE(routed->owner);
  REQUIRE(routed->owner != s.session);
  c.broker = routed->owner;
  name(c.broker, "broker of " + conn(c.id));
  watch(c.broker);
  settle();
  return c;
}

conn_id relay_fixture::reverse_arrives(const server& s, std::string first_line) {
  const conn_id r = new_conn();
  net_sends(s.session, reverse_arrived{r, "192.0.2.10:" + std::to_string(r.value),
                                       std::move(first_line)});
  settle();
  return r;
}

}  // namespace tlsrelay::test
