// A relay node's actors with the network replaced by a fake "net" actor.
//
// The fake net records every order the actors give it; the test plays net's
// part by sending the events net would send. CAF runs on the deterministic
// test_coordinator: nothing happens until the test calls settle(), all actors
// run on the test's thread, and time moves only through advance_time(), so
// every scenario is reproducible and no wait needs a wall-clock timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <catch2/catch.hpp>

#include "actors/authenticator.hpp"
#include "actors/messages.hpp"
#include "actors/pool_manager.hpp"
#include "protocol/v2.hpp"

namespace tlsrelay::test {

using namespace std::chrono_literals;

// -- what net is told ------------------------------------------------------------

using order = std::variant<send_line, send_and_close, close_connection, route_connection,
                           route_pair, join_pair, stop_accepting>;
using orders = std::vector<order>;

// Two orders are the same when every field is: route_pair's framing included
// (except when it unroutes: framing means nothing without an owner), and
// join_pair's reverse_preamble byte for byte.
bool same_order(const order& a, const order& b);
std::string to_text(const order& o);
std::string to_text(const caf::actor& a);

// Compares the orders net received with the expected ones: the same orders,
// nothing more, nothing less; in this order or in any order.
class orders_matcher : public Catch::MatcherBase<orders> {
public:
  orders_matcher(orders expected, bool any_order)
    : expected_(std::move(expected)), any_order_(any_order) {}
  bool match(const orders& actual) const override;
  std::string describe() const override;

private:
  orders expected_;
  bool any_order_;
};

inline orders_matcher are_exactly(orders expected) { return {std::move(expected), false}; }
inline orders_matcher are_in_any_order(orders expected) { return {std::move(expected), true}; }

// -- the fixture -------------------------------------------------------------------

struct test_system_config : caf::actor_system_config {
  test_system_config();
};

class relay_fixture {
public:
  // Pending timeout of the sessions (simulated time: tests never wait for it).
  static constexpr std::chrono::milliseconds pending_timeout = 5s;

  // Pool layout: control port 12000, `port_count` ports (6 = three pairs).
  // With `start_now`, the relay (authenticator and pool manager) starts at
  // once with the default `config` and `auth_config`; otherwise the scenario
  // adjusts them first and calls start().
  explicit relay_fixture(unsigned port_count = 6, std::string myhost = "127.0.0.1",
                         bool start_now = true);
  // Sends exit(user_shutdown) to the pool manager and CHECKs, in every test,
  // that all actors of the relay ended and that net was sent nothing but
  // orders; then stops the authenticator (as the relay does, after the pool
  // manager). Reports leftover actors instead of hanging in ~actor_system.
  ~relay_fixture();
  relay_fixture(const relay_fixture&) = delete;
  relay_fixture& operator=(const relay_fixture&) = delete;

  // Spawns the authenticator (with `auth_config`) and the pool manager (with
  // `config`, net and the authenticator). Once per fixture.
  void start();

  // -- playing net ---------------------------------------------------------------

  // A fresh connection id (net never reuses one).
  conn_id new_conn();

  // Puts an event in `to`'s mailbox; nothing runs until settle().
  template <class Event>
  void net_sends(const caf::actor& to, Event event) {
    caf::anon_send(to, std::move(event));
  }

  // Lets every actor handle everything in its mailbox, transitively, until all
  // mailboxes are empty. Simulated time does not move.
  void settle();

  // Moves simulated time forward (delayed messages that fall due are delivered
  // to mailboxes, then settle() runs).
  void advance_time(std::chrono::milliseconds d);

  // The orders net received since the last call, in the order they arrived.
  orders take_orders();

  // The orders net received since the last take_orders(), without taking them.
  const orders& orders_so_far() const;
  // The control lines of connection `id` its actor has given credit back for
  // (line_credit orders, kept apart from the other orders).
  std::uint32_t lines_credited(conn_id id) const;

  // What the actors logged at error level since the last call (they log at
  // that level only what they consider a bug, such as an unexpected message).
  std::vector<std::string> take_logged_errors();

  // Lets one actor handle one message (for interleavings settle() would not
  // produce); false when no actor has anything to do.
  bool step();

  // -- building blocks of scenarios -----------------------------------------------

  struct server {
    conn_id control;
    caf::actor session;
    pair_index pair = 0;
    std::vector<std::string> lines;  // what the session wrote on the control conn
  };

  // A v1 server completes its handshake (presenting a client certificate
  // unless told otherwise): control_connected goes to the pool manager.
  // REQUIREs the shape every successful v1 session start has:
  // route_connection{control, session}, route_pair{pair, session, raw}, then
  // two send_line orders on the control connection: public_listener and
  // reverse_listener with myhost and the ports of `pair` (also in `lines`).
  server server_connects(bool client_certificate = true);

  struct waiting_client {
    conn_id id;
    caf::actor broker;
  };

  // A client connects to the public port of `s` (v1): client_arrived goes to
  // the session. REQUIREs exactly "new_connection\r\n" on the control
  // connection and route_connection{client, broker} with a broker other than
  // the session.
  waiting_client client_arrives(const server& s);

  // -- building blocks of v2 scenarios ----------------------------------------------

  struct v2_control {
    conn_id id;
    caf::actor session;
    host_port peer;
  };

  // The SHA-256 fingerprints net reports for two different client
  // certificates (two identities under one CA).
  static inline const std::string certificate_a = std::string(64, 'a');
  static inline const std::string certificate_b = std::string(64, 'b');

  // A server completes a TLS handshake choosing protocol 2, from `host` (its
  // port is the connection's number), with the client certificate whose
  // fingerprint is `certificate` if `client_certificate`. REQUIREs that net is
  // told exactly route_connection{control, session} and nothing else: no pair
  // is routed and no line written before the hello.
  v2_control v2_connects(bool client_certificate = true, std::string host = "192.0.2.10",
                         std::string certificate = certificate_a);

  // The server writes `line` (without its line ending) on its control
  // connection; settles.
  void server_says(const v2_control& c, std::string line);
  void server_says(const server& s, std::string line);

  struct v2_server : server {
    std::string session_secret;  // from the welcome line
  };

  // After the hello of `c` went out: REQUIREs its acceptance, exactly
  // route_pair{pair, session, accept_line}, then on the control connection
  // "welcome session=<32 lowercase hex>", public_listener, reverse_listener.
  v2_server v2_accepted(const v2_control& c);

  // A v2 server connects and says `hello`; REQUIREs its acceptance.
  v2_server v2_server_connects(std::string hello = "hello 2", bool client_certificate = true,
                               std::string host = "192.0.2.10");

  // After the hello of `c` went out: REQUIREs that net was told exactly one
  // send_and_close on the control connection carrying an `error` line, and
  // returns that error. (No route_pair: nothing was handed out.)
  v2::error v2_refused(const v2_control& c);

  struct v2_client {
    conn_id id;
    caf::actor broker;
    std::string accept_id;  // the 32 hex digits of its new_connection line
    host_port peer;
  };

  // A client from `peer` (default 198.51.100.20, the connection's number as
  // port) connects to `local` (default 127.0.0.1 and the public port of `s`).
  // REQUIREs "new_connection <32 lowercase hex> <peer>\r\n" on the control
  // connection and route_connection{client, broker}, broker not the session.
  v2_client v2_client_arrives(const server& s, host_port peer = {}, host_port local = {});

  // A reverse connection whose first line was `first_line` reaches the session
  // of `s`; settles; returns its id.
  conn_id reverse_arrives(const server& s, std::string first_line);

  // A name for an actor in failure messages ("session 1", "broker of conn 103").
  void name(const caf::actor& a, std::string n);

  // Actors (other than the fake net, the watcher and the authenticator, which
  // the relay stops on its own) that have not terminated.
  std::size_t relay_actors_running();

  // The clients the session of `s` reports waiting (its /status figure).
  std::uint32_t clients_waiting(const caf::actor& session);

  // Has `a` terminated? Only for actors watched before: the pool manager and
  // every session and broker the helpers above return are.
  bool has_ended(const caf::actor& a) const;

  // Starts watching `a` for has_ended() (takes effect at the next settle()).
  void watch(const caf::actor& a);

  test_system_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  pool_manager_config config;
  authenticator_config auth_config;
  caf::actor net;
  caf::actor auth;
  caf::actor pool;

private:
  struct net_record {
    orders received;
    std::vector<std::string> unexpected;
    std::map<conn_id, std::uint32_t> credits;  // line_credit orders, added up
  };

  net_record record_;
  std::vector<caf::actor_addr> ended_;
  caf::actor watcher_;
  std::size_t harness_actors_ = 0;
  std::uint64_t next_conn_ = 100;
  int sessions_seen_ = 0;
};

// A fixture whose sessions announce another host in their listener lines.
struct relay_fixture_named_host : relay_fixture {
  relay_fixture_named_host() : relay_fixture(6, "relay.example.org") {}
};

// For v2 scenarios: three pairs, the relay not started yet (the scenario sets
// config and auth_config, then calls start()). Heartbeats are moved out of the
// way (one an hour) except where a scenario is about them; reservations last
// 30 s.
struct v2_fixture : relay_fixture {
  static constexpr std::chrono::milliseconds reservation_ttl = 30s;
  v2_fixture() : relay_fixture(6, "127.0.0.1", false) {
    config.session.heartbeat = 1h;
    config.reservation_ttl = reservation_ttl;
  }
};

// Is `s` exactly `n` lowercase hex digits?
bool is_lower_hex(const std::string& s, std::size_t n);

}  // namespace tlsrelay::test

namespace Catch {
template <>
struct StringMaker<tlsrelay::test::order> {
  static std::string convert(const tlsrelay::test::order& o) { return tlsrelay::test::to_text(o); }
};
}  // namespace Catch
