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

#include "actors/messages.hpp"
#include "actors/pool_manager.hpp"

namespace tlsrelay::test {

using namespace std::chrono_literals;

// -- what net is told ------------------------------------------------------------

using order =
  std::variant<send_line, send_and_close, close_connection, route_connection, route_pair, join_pair>;
using orders = std::vector<order>;

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
  explicit relay_fixture(unsigned port_count = 6, std::string myhost = "127.0.0.1");
  // Sends exit(user_shutdown) to the pool manager and CHECKs, in every test,
  // that all actors of the relay ended and that net was sent nothing but
  // orders. Reports leftover actors instead of hanging in ~actor_system.
  ~relay_fixture();
  relay_fixture(const relay_fixture&) = delete;
  relay_fixture& operator=(const relay_fixture&) = delete;

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

  // A server completes its handshake: control_connected goes to the pool
  // manager. REQUIREs the shape every successful session start has:
  // route_connection{control, session}, route_pair{pair, session}, then two
  // send_line orders on the control connection: public_listener and
  // reverse_listener with myhost and the ports of `pair` (also in `lines`).
  server server_connects();

  struct waiting_client {
    conn_id id;
    caf::actor broker;
  };

  // A client connects to the public port of `s`: client_arrived goes to the
  // session. REQUIREs exactly "new_connection\r\n" on the control connection
  // and route_connection{client, broker} with a broker other than the session.
  waiting_client client_arrives(const server& s);

  // A name for an actor in failure messages ("session 1", "broker of conn 103").
  void name(const caf::actor& a, std::string n);

  // Actors (other than the fake net and the watcher) that have not terminated.
  std::size_t relay_actors_running();

  // Has `a` terminated? Only for actors watched before: the pool manager and
  // every session and broker the helpers above return are.
  bool has_ended(const caf::actor& a) const;

  // Starts watching `a` for has_ended() (takes effect at the next settle()).
  void watch(const caf::actor& a);

  test_system_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  pool_manager_config config;
  caf::actor net;
  caf::actor pool;

private:
  struct net_record {
    orders received;
    std::vector<std::string> unexpected;
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

}  // namespace tlsrelay::test

namespace Catch {
template <>
struct StringMaker<tlsrelay::test::order> {
  static std::string convert(const tlsrelay::test::order& o) { return tlsrelay::test::to_text(o); }
};
}  // namespace Catch
