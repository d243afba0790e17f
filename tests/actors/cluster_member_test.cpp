// The cluster_member on CAF's deterministic test scheduler: several nodes in
// one actor system, the network replaced by a connector that hands out the
// member "published" at an address (or refuses, like a dead address), and
// each node's pool_manager by an actor that records what it is told.
// Membership and gossip, loss and return of a peer, the conflict rule, and
// placement decisions.
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <catch2/catch.hpp>

#include "actors/cluster_member.hpp"
#include "actors/messages.hpp"
#include "protocol/cluster_limits.hpp"
#include "relay_fixture.hpp"

namespace tlsrelay::test {
namespace {

using namespace std::chrono_literals;

constexpr auto peer_timeout = 2000ms;
constexpr auto heartbeat = peer_timeout / 5;
constexpr auto ttl = 10s;

const std::string owner_a(64, 'a');
const std::string owner_b(64, 'b');

host_port cluster_address(const std::string& node) { return {node + ".cluster", 7000}; }
host_port control_address(const std::string& node) { return {node + ".relay", 12000}; }

// Addresses → the member published there; anything else refuses.
using directory = std::map<std::string, caf::actor>;

caf::behavior fake_connector(caf::event_based_actor* self, std::shared_ptr<directory> dir) {
  return {
    [self, dir](caf::connect_atom, const std::string& host, std::uint16_t port)
      -> caf::result<caf::node_id, caf::strong_actor_ptr, std::set<std::string>> {
      auto it = dir->find(format_host_port(host, port));
      if (it == dir->end()) return caf::make_error(caf::sec::cannot_connect_to_node);
      return {self->node(), caf::actor_cast<caf::strong_actor_ptr>(it->second),
              std::set<std::string>{}};
    },
  };
}

// What a node's pool_manager is told.
struct pool_record {
  std::vector<name_lost> lost;
};

caf::behavior fake_pool(caf::event_based_actor*, std::shared_ptr<pool_record> record) {
  return {
    [record](name_lost& x) { record->lost.push_back(std::move(x)); },
    [](redirected_atom, const host_port&) {},
  };
}

struct cluster_fixture {
  test_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scheduler::test_coordinator& sched{
    dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())};
  std::shared_ptr<directory> dir = std::make_shared<directory>();
  caf::actor connector = sys.spawn(fake_connector, dir);

  struct node {
    caf::actor member;
    caf::actor pool;
    std::shared_ptr<pool_record> record = std::make_shared<pool_record>();
  };
  std::map<std::string, node> nodes;

  ~cluster_fixture() {
    for (auto& [name, n] : nodes) {
      caf::anon_send_exit(n.member, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(n.pool, caf::exit_reason::user_shutdown);
    }
    caf::anon_send_exit(connector, caf::exit_reason::user_shutdown);
    sched.run();
  }

  // Starts node `name` (published at its address unless `reachable` is
  // false), with these seeds; its pool tells it its load at once.
  node& start(const std::string& name, std::vector<std::string> seeds, bool reachable = true,
              std::uint32_t version = defaults::cluster_version) {
    cluster_config c;
    c.node_name = name;
    c.cluster_address = cluster_address(name);
    c.control_address = control_address(name);
    for (const auto& s : seeds) c.seeds.push_back(cluster_address(s));
    c.peer_timeout = peer_timeout;
    c.reservation_ttl = ttl;
    c.cluster_version = version;
    c.connector = connector;
    auto& n = nodes[name];
    n.member = sys.spawn(cluster_member, c);
    n.pool = sys.spawn(fake_pool, n.record);
    if (reachable) publish(name);
    tell_load(name, 10, 0);
    return n;
  }

  void publish(const std::string& name) {
    (*dir)[format_host_port(cluster_address(name))] = nodes.at(name).member;
  }

  // The node's pool_manager says something to its member.
  template <class T>
  void pool_says(const std::string& name, T msg) {
    auto& n = nodes.at(name);
    caf::send_as(n.pool, n.member, std::move(msg));
  }
  void tell_load(const std::string& name, std::uint32_t free_pairs, std::uint32_t sessions) {
    pool_says(name, local_load{free_pairs, sessions});
  }

  void settle() { REQUIRE(sched.run(100000) < 100000); }
  void advance(std::chrono::milliseconds d) {
    // In heartbeat steps, so that heartbeats go out as they would.
    for (auto done = 0ms; done < d; done += heartbeat / 2) {
      sched.advance_time(std::chrono::duration_cast<caf::timespan>(heartbeat / 2));
      settle();
    }
  }

  // A request answered through the test scheduler.
  template <class Answer, class... Ts>
  Answer ask(const caf::actor& whom, Ts... xs) {
    auto answer = std::make_shared<std::optional<Answer>>();
    // (Spawned with an argument: CAF 0.17 dereferences a null tuple for a
    // function-based actor without any, which UBSan reports.)
    sys.spawn(
      [whom, answer, msg = caf::make_message(xs...)](caf::event_based_actor* self, int) {
        self->request(whom, caf::infinite, msg).then(
          [answer](Answer& a) { *answer = std::move(a); });
      },
      0);
    settle();
    REQUIRE(answer->has_value());
    return std::move(**answer);
  }

  cluster_report report(const std::string& name) {
    return ask<cluster_report>(nodes.at(name).member, status_atom::value);
  }

  // "up", "down" or "draining" for every member `name` knows, by node name.
  std::map<std::string, std::string> view(const std::string& name) {
    std::map<std::string, std::string> out;
    for (const auto& m : report(name).members)
      out[m.name] = !m.up ? "down" : m.draining ? "draining" : "up";
    return out;
  }

  placement place(const std::string& name, placement_query q) {
    return ask<placement>(nodes.at(name).member, std::move(q));
  }

  // The node dies: gone from the directory, its actor ends.
  void kill(const std::string& name) {
    auto& n = nodes.at(name);
    dir->erase(format_host_port(cluster_address(name)));
    caf::anon_send_exit(n.member, caf::exit_reason::kill);
    caf::anon_send_exit(n.pool, caf::exit_reason::kill);
    settle();
  }
};

// The member's state, read between steps of the deterministic scheduler
// (nothing else runs then): how much a hostile peer made it keep.
const cluster_member_state& state_of(const caf::actor& member) {
  auto* ptr = caf::actor_cast<caf::abstract_actor*>(member);
  return static_cast<caf::stateful_actor<cluster_member_state>*>(ptr)->state;
}

// A peer that joins with the node certificate it holds, then says whatever
// it is told to; it records the answer to its join.
struct hostile_peer {
  caf::actor actor;
  std::shared_ptr<std::optional<bool>> joined = std::make_shared<std::optional<bool>>();
};

node_status status_named(const std::string& name) {
  node_status s;
  s.name = name;
  s.cluster = cluster_address(name);
  s.control = control_address(name);
  s.started_unix_ms = 1;
  return s;
}

name_claim claim(std::string name, std::string owner, std::int64_t claimed, bool held = true) {
  return {std::move(name), std::move(owner), 12050, claimed, held, held ? 0 : claimed + 60000};
}

using view_t = std::map<std::string, std::string>;

}  // namespace

TEST_CASE("claim_wins: held beats lingering, then the earlier claim, then the smaller node name",
          "[actors][cluster]") {
  const auto held_late = claim("web", owner_a, 2000, true);
  const auto lingering_early = claim("web", owner_a, 1000, false);
  CHECK(claim_wins(held_late, "b", lingering_early, "a"));
  CHECK_FALSE(claim_wins(lingering_early, "a", held_late, "b"));
  const auto held_early = claim("web", owner_a, 1000, true);
  CHECK(claim_wins(held_early, "z", held_late, "a"));
  CHECK_FALSE(claim_wins(held_late, "a", held_early, "z"));
  const auto same_time = claim("web", owner_a, 1000, true);
  CHECK(claim_wins(held_early, "a", same_time, "b"));
  CHECK_FALSE(claim_wins(same_time, "b", held_early, "a"));
}

SCENARIO("three nodes learn each other from one seed", "[actors][cluster]") {
  cluster_fixture f;
  f.start("a", {});
  f.start("b", {"a"});
  f.start("c", {"a"});
  // Gossip travels with the heartbeats: a's first tells b of c, and b (the
  // smaller cluster address) dials c; c waits for that (see learn).
  f.advance(2 * heartbeat);
  const view_t all_up{{"a", "up"}, {"b", "up"}, {"c", "up"}};
  CHECK(f.view("a") == all_up);
  // b and c heard of each other only through a's gossip.
  CHECK(f.view("b") == all_up);
  CHECK(f.view("c") == all_up);
  const auto r = f.report("b");
  REQUIRE(r.members.size() == 3);
  CHECK(r.members.front().self);
  CHECK(r.members.front().name == "b");
  CHECK(r.node == "b");
}

SCENARIO("a seed that is not up yet is tried again until it is", "[actors][cluster]") {
  cluster_fixture f;
  f.start("b", {"a"});
  f.settle();
  CHECK(f.view("b") == view_t{{"b", "up"}});
  f.start("a", {}, false);  // running, not reachable yet
  f.advance(1000ms);
  CHECK(f.view("b") == view_t{{"b", "up"}});
  f.publish("a");
  // The backoff is at most retry_last (10 s) with jitter up to 1.5x.
  f.advance(16s);
  CHECK(f.view("b") == view_t{{"a", "up"}, {"b", "up"}});
  CHECK(f.view("a") == view_t{{"a", "up"}, {"b", "up"}});
}

SCENARIO("a node that dies is down for the others, and back when it restarts",
         "[actors][cluster]") {
  cluster_fixture f;
  f.start("a", {});
  f.start("b", {"a"});
  f.start("c", {"a"});
  f.advance(2 * heartbeat);  // b and c meet through a's gossip
  f.kill("c");
  // a and b (both smaller than c) check it at once and find nobody there.
  f.advance(heartbeat);
  CHECK(f.view("a") == view_t{{"a", "up"}, {"b", "up"}, {"c", "down"}});
  CHECK(f.view("b") == view_t{{"a", "up"}, {"b", "up"}, {"c", "down"}});
  f.kill("a");
  // b waits for a, the smaller name, to dial again: down within the peer timeout.
  f.advance(peer_timeout + heartbeat);
  CHECK(f.view("b") == view_t{{"a", "down"}, {"b", "up"}, {"c", "down"}});
  // c restarts (a new incarnation) and finds b again.
  f.nodes.erase("c");
  f.start("c", {"b"});
  f.settle();
  CHECK(f.view("b") == view_t{{"a", "down"}, {"b", "up"}, {"c", "up"}});
  // The new c never met a: it knows its address (gossip), not a node.
  CHECK(f.view("c") == view_t{{"b", "up"}, {"c", "up"}});
}

SCENARIO("a peer that stops sending heartbeats is down after the peer timeout",
         "[actors][cluster]") {
  cluster_fixture f;
  f.start("b", {});
  // "a" joins b and then says nothing: a connection that stays open while
  // its node no longer answers.
  auto silent = f.sys.spawn(
    [](caf::event_based_actor*, int) -> caf::behavior {
      return {[](cluster_heartbeat&) {}, [](node_claims&) {}};
    },
    0);
  node_status a_status;
  a_status.name = "a";
  a_status.cluster = cluster_address("a");
  a_status.control = control_address("a");
  a_status.started_unix_ms = 1;
  caf::send_as(silent, f.nodes.at("b").member,
               cluster_join{defaults::cluster_version, a_status, {}});
  f.settle();
  CHECK(f.view("b") == view_t{{"a", "up"}, {"b", "up"}});
  f.advance(peer_timeout - heartbeat);
  CHECK(f.view("b") == view_t{{"a", "up"}, {"b", "up"}});
  f.advance(2 * heartbeat);
  CHECK(f.view("b") == view_t{{"a", "down"}, {"b", "up"}});
  caf::anon_send_exit(silent, caf::exit_reason::user_shutdown);
}

SCENARIO("nodes of another cluster version, or with a taken name, do not join",
         "[actors][cluster]") {
  cluster_fixture f;
  f.start("a", {});
  f.start("b", {"a"}, true, defaults::cluster_version + 1);
  f.settle();
  CHECK(f.view("a") == view_t{{"a", "up"}});
  CHECK(f.view("b") == view_t{{"b", "up"}});
  // A second node calling itself "a", at another address.
  cluster_config twin;
  twin.node_name = "a";
  twin.cluster_address = {"twin.cluster", 7000};
  twin.control_address = {"twin.relay", 12000};
  twin.seeds = {cluster_address("a")};
  twin.connector = f.connector;
  auto impostor = f.sys.spawn(cluster_member, twin);
  f.settle();
  CHECK(f.view("a") == view_t{{"a", "up"}});
  caf::anon_send_exit(impostor, caf::exit_reason::user_shutdown);
}

SCENARIO("placement: a name held on another node, by the same or another identity",
         "[actors][cluster]") {
  cluster_fixture f;
  f.start("a", {});
  f.start("b", {"a"});
  f.settle();
  f.pool_says("b", local_claims{{claim("web", owner_a, 1000)}});
  f.settle();
  GIVEN("the same identity asks node a") {
    const auto p = f.place("a", {"web", owner_a, false});
    CHECK(p.decision == placement_decision::redirect);
    CHECK(p.target == control_address("b"));
    CHECK(p.reason == "name_elsewhere");
  }
  GIVEN("another identity asks node a") {
    const auto p = f.place("a", {"web", owner_b, false});
    CHECK(p.decision == placement_decision::name_unavailable);
  }
  GIVEN("a name nobody holds") {
    CHECK(f.place("a", {"api", owner_b, false}).decision == placement_decision::here);
  }
  GIVEN("node b dies") {
    f.kill("b");
    f.advance(heartbeat);
    // Its identity may take the name on a live node at once; another must
    // wait for the reservation TTL.
    CHECK(f.place("a", {"web", owner_a, false}).decision == placement_decision::here);
    CHECK(f.place("a", {"web", owner_b, false}).decision ==
          placement_decision::name_unavailable);
    f.advance(ttl + heartbeat);
    CHECK(f.place("a", {"web", owner_b, false}).decision == placement_decision::here);
    CHECK(f.report("a").names == 0);
  }
}

SCENARIO("placement: a full node sends servers to the node with the most free pairs",
         "[actors][cluster]") {
  cluster_fixture f;
  f.start("a", {});
  f.start("b", {"a"});
  f.start("c", {"a"});
  f.tell_load("b", 3, 1);
  f.tell_load("c", 7, 1);
  f.advance(heartbeat);  // loads travel with the heartbeats
  auto p = f.place("a", {"", "", true});
  CHECK(p.decision == placement_decision::redirect);
  CHECK(p.target == control_address("c"));
  CHECK(p.reason == "full");
  f.tell_load("b", 0, 4);
  f.tell_load("c", 0, 8);
  f.advance(heartbeat);
  CHECK(f.place("a", {"", "", true}).decision == placement_decision::pool_exhausted);
  CHECK(f.place("a", {"", "", false}).decision == placement_decision::here);
  const auto r = f.report("a");
  CHECK(r.redirects == std::vector<std::pair<std::string, std::uint64_t>>{
                         {"name_elsewhere", 0}, {"full", 1}, {"draining", 0}});
}

SCENARIO("a draining node is told where its servers go, and the others stop sending any",
         "[actors][cluster]") {
  cluster_fixture f;
  f.start("a", {});
  f.start("b", {"a"});
  f.settle();
  const auto to = f.ask<host_port>(f.nodes.at("b").member, drain_atom::value);
  CHECK(to == control_address("a"));
  CHECK(f.view("a") == view_t{{"a", "up"}, {"b", "draining"}});
  // a is full: b, draining, is no place for its servers.
  CHECK(f.place("a", {"", "", true}).decision == placement_decision::pool_exhausted);
  // A server at b goes to a.
  const auto p = f.place("b", {"", "", false});
  CHECK(p.decision == placement_decision::redirect);
  CHECK(p.target == control_address("a"));
  CHECK(p.reason == "draining");
}

SCENARIO("a name claimed on two nodes apart: once they meet, the earlier claim wins",
         "[actors][cluster]") {
  cluster_fixture f;
  // a and b run apart (b not reachable, a not told about it).
  f.start("a", {});
  f.start("b", {"a"}, false);
  f.dir->erase(format_host_port(cluster_address("a")));  // a is unreachable too
  f.settle();
  GIVEN("b claimed it first") {
    f.pool_says("a", local_claims{{claim("web", owner_a, 2000)}});
    f.pool_says("b", local_claims{{claim("web", owner_a, 1000)}});
    f.settle();
    f.publish("a");
    f.advance(16s);  // b's backoff reaches a
    REQUIRE(f.view("a") == view_t{{"a", "up"}, {"b", "up"}});
    // a gave up: its session is sent to b; b keeps the name.
    REQUIRE(f.nodes.at("a").record->lost.size() == 1);
    CHECK(f.nodes.at("a").record->lost[0].name == "web");
    CHECK(f.nodes.at("a").record->lost[0].winner == control_address("b"));
    CHECK(f.nodes.at("b").record->lost.empty());
    CHECK(f.report("a").conflicts_resolved == 1);
    // Once a's pool dropped it, a sends servers of that name to b.
    f.pool_says("a", local_claims{});
    f.settle();
    const auto p = f.place("a", {"web", owner_a, false});
    CHECK(p.decision == placement_decision::redirect);
    CHECK(p.target == control_address("b"));
  }
  GIVEN("the same instant: the smaller node name wins") {
    f.pool_says("a", local_claims{{claim("web", owner_a, 1000)}});
    f.pool_says("b", local_claims{{claim("web", owner_a, 1000)}});
    f.settle();
    f.publish("a");
    f.advance(16s);
    CHECK(f.nodes.at("a").record->lost.empty());
    REQUIRE(f.nodes.at("b").record->lost.size() == 1);
    CHECK(f.nodes.at("b").record->lost[0].winner == control_address("a"));
  }
  GIVEN("a claim in use beats an earlier one that lingers") {
    f.pool_says("a", local_claims{{claim("web", owner_a, 2000, true)}});
    f.pool_says("b", local_claims{{claim("web", owner_a, 1000, false)}});
    f.settle();
    f.publish("a");
    f.advance(16s);
    CHECK(f.nodes.at("a").record->lost.empty());
    REQUIRE(f.nodes.at("b").record->lost.size() == 1);
    CHECK(f.nodes.at("b").record->lost[0].winner == control_address("a"));
  }
}

namespace {

// Spawns a peer that joins node `node` as node `name` of this cluster version,
// gossiping `members`, and records whether it was let in.
hostile_peer join_as(cluster_fixture& f, const std::string& node, const std::string& name,
                     std::vector<host_port> members = {}) {
  const auto target = f.nodes.at(node).member;
  const cluster_join join{defaults::cluster_version, status_named(name), std::move(members)};
  hostile_peer h;
  h.actor = f.sys.spawn(
    [target, join, joined = h.joined](caf::event_based_actor* self, int) -> caf::behavior {
      self->request(target, caf::infinite, join)
        .then([joined](cluster_heartbeat&) { *joined = true; },
              [joined](caf::error&) { *joined = false; });
      return {[](cluster_heartbeat&) {}, [](node_claims&) {}, [](claims_wanted_atom) {}};
    },
    0);
  f.settle();
  return h;
}

std::vector<name_claim> many_claims(std::size_t n, const std::string& prefix) {
  std::vector<name_claim> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    out.push_back(claim(prefix + std::to_string(i), owner_a, 1000));
  return out;
}

}  // namespace

SCENARIO("a peer with a valid certificate cannot make a node keep unbounded gossip",
         "[actors][cluster][hostile]") {
  cluster_fixture f;
  f.start("b", {});
  f.settle();
  // It joins and gossips ten thousand cluster addresses, then more in a heartbeat.
  std::vector<host_port> gossip;
  for (int i = 0; i < 10000; ++i) gossip.push_back({"h" + std::to_string(i) + ".cluster", 7000});
  auto h = join_as(f, "b", "a", gossip);
  REQUIRE(h.joined->value_or(false));
  for (auto& g : gossip) g.port = 7001;
  caf::send_as(h.actor, f.nodes.at("b").member, cluster_heartbeat{status_named("a"), gossip});
  f.advance(peer_timeout);
  CHECK(state_of(f.nodes.at("b").member).addresses.size() <= max_cluster_addresses);
  CHECK(state_of(f.nodes.at("b").member).addresses.size() >= max_cluster_addresses / 2);
  // Hosts no resolver takes are not kept at all.
  f.start("c", {});
  f.settle();
  auto h2 = join_as(f, "c", "a", {{std::string(300, 'x'), 7000}, {"bad host", 7000}, {"", 7000}});
  REQUIRE(h2.joined->value_or(false));
  CHECK(state_of(f.nodes.at("c").member).addresses.size() == 1);  // a's own
  caf::anon_send_exit(h.actor, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(h2.actor, caf::exit_reason::user_shutdown);
}

SCENARIO("a node takes at most max_cluster_nodes members, and only names it can show",
         "[actors][cluster][hostile]") {
  cluster_fixture f;
  f.start("b", {});
  f.settle();
  // A name with a space, or too long, is refused (while there is room).
  auto bad = join_as(f, "b", "bad name");
  CHECK_FALSE(bad.joined->value_or(true));
  auto long_name = join_as(f, "b", std::string(64, 'n'));
  CHECK_FALSE(long_name.joined->value_or(true));
  auto longest = join_as(f, "b", std::string(63, 'n'));
  CHECK(longest.joined->value_or(false));
  caf::anon_send_exit(longest.actor, caf::exit_reason::user_shutdown);
  f.settle();
  f.advance(peer_timeout + ttl + heartbeat);  // gone for good: its place is free again
  std::vector<hostile_peer> peers;
  std::size_t let_in = 0;
  for (std::size_t i = 0; i < max_cluster_nodes + 5; ++i) {
    peers.push_back(join_as(f, "b", "n" + std::to_string(i)));
    REQUIRE(peers.back().joined->has_value());
    let_in += peers.back().joined->value();
  }
  CHECK(let_in == max_cluster_nodes - 1);
  CHECK(f.report("b").members.size() == max_cluster_nodes);
  for (auto& p : peers) caf::anon_send_exit(p.actor, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(bad.actor, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(long_name.actor, caf::exit_reason::user_shutdown);
  // They all fall silent: once down past the TTL, a new node takes a place.
  f.advance(peer_timeout + ttl + heartbeat);
  auto late = join_as(f, "b", "late");
  CHECK(late.joined->value_or(false));
  caf::anon_send_exit(late.actor, caf::exit_reason::user_shutdown);
}

SCENARIO("a peer's reservations are refused when too many or not ones a node grants",
         "[actors][cluster][hostile]") {
  cluster_fixture f;
  f.start("b", {});
  f.settle();
  auto h = join_as(f, "b", "a");
  REQUIRE(h.joined->value_or(false));
  const auto& st = state_of(f.nodes.at("b").member);
  auto send_claims = [&](std::uint64_t version, std::vector<name_claim> claims) {
    caf::send_as(h.actor, f.nodes.at("b").member, node_claims{"a", 1, version, std::move(claims)});
    f.settle();
  };
  GIVEN("one more than a pool could hold") {
    send_claims(1, many_claims(max_claims_per_node + 1, "n"));
    CHECK(f.report("b").names == 0);
    CHECK(st.claims_known == 0);
    // A list within the bound is taken.
    send_claims(2, many_claims(100, "n"));
    CHECK(f.report("b").names == 100);
    CHECK(st.claims_known == 100);
  }
  GIVEN("a name v2 does not allow, an owner that is not a fingerprint, port 0") {
    for (auto bad : {claim("Not_A_Name", owner_a, 1000), claim("web", "me", 1000),
                     name_claim{"web", owner_a, 0, 1000, true, 0}}) {
      send_claims(1, {claim("ok", owner_a, 1000), bad});
      CHECK(f.report("b").names == 0);
    }
    CHECK(f.place("b", {"web", owner_b, false}).decision == placement_decision::here);
  }
  GIVEN("claims of nodes that never join") {
    for (int i = 0; i < 3; ++i) {
      caf::send_as(h.actor, f.nodes.at("b").member,
                   node_claims{"ghost" + std::to_string(i), 1, 1,
                               many_claims(1000, "g" + std::to_string(i) + "-")});
    }
    f.settle();
    CHECK(f.report("b").names == 3000);
    // Kept for a join that may be on its way, forgotten when none came.
    f.advance(peer_timeout + heartbeat);
    CHECK(f.report("b").names == 0);
    CHECK(st.claims_known == 0);
    CHECK(st.peers.size() == 1);  // a
  }
  caf::anon_send_exit(h.actor, caf::exit_reason::user_shutdown);
}

}  // namespace tlsrelay::test
