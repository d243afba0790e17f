// The pool_manager and its sessions in a cluster: what they ask the
// cluster_member (played here by an actor that answers as scripted and
// records what it is told), and what the servers hear: `redirect` instead of
// a pair, a name given up, a drain that sends v2 servers elsewhere. A relay
// of one (no cluster_member) never asks: the other actor tests.
#include "relay_fixture.hpp"

#include <memory>
#include <optional>

using namespace tlsrelay;
using namespace tlsrelay::test;

namespace {

struct cluster_record {
  std::vector<placement_query> queries;
  std::optional<local_claims> claims;  // the last
  std::optional<local_load> load;      // the last
  placement answer;                    // to every placement_query
  host_port drain_target;
  std::map<std::string, std::uint64_t> redirects;
};

caf::behavior scripted_cluster(caf::event_based_actor*, std::shared_ptr<cluster_record> r) {
  return {
    [r](placement_query& q) -> placement {
      r->queries.push_back(q);
      return r->answer;
    },
    [r](local_claims& c) { r->claims = std::move(c); },
    [r](local_load& l) { r->load = l; },
    [r](drain_atom) -> host_port { return r->drain_target; },
    [r](redirected_atom, const std::string& reason, std::uint64_t n) { r->redirects[reason] += n; },
    [](status_atom) -> cluster_report {
      cluster_report c;
      c.enabled = true;
      c.node = "a";
      return c;
    },
  };
}

struct clustered_fixture : v2_fixture {
  std::shared_ptr<cluster_record> cluster = std::make_shared<cluster_record>();
  caf::actor member;

  clustered_fixture() {
    // Hidden: not one of the relay's actors the fixture counts.
    member = sys.spawn<caf::hidden>(scripted_cluster, cluster);
    config.cluster = member;
    start();
    settle();
  }
  ~clustered_fixture() {
    // Before the relay fixture counts what is left running.
    caf::anon_send_exit(member, caf::exit_reason::user_shutdown);
    settle();
  }

  // The one line a refused server was sent before its connection closed.
  std::string refusal(const v2_control& c) {
    const auto got = take_orders();
    INFO("orders: " << Catch::Detail::stringify(got));
    REQUIRE(got.size() == 1);
    auto* last = std::get_if<send_and_close>(&got[0]);
    REQUIRE(last);
    REQUIRE(last->id == c.id);
    return last->bytes;
  }

  bool claims_has(const std::string& name, bool held) {
    if (!cluster->claims) return false;
    for (const auto& c : cluster->claims->claims)
      if (c.name == name && c.held == held) return true;
    return false;
  }
};

}  // namespace

SCENARIO_METHOD(clustered_fixture, "cluster: the load and the reservations are reported as they change",
                "[actors][cluster]") {
  REQUIRE(cluster->load);
  CHECK(cluster->load->free_pairs == 3);
  CHECK(cluster->load->sessions == 0);
  auto web = v2_server_connects("hello 2 name=web");
  CHECK(cluster->load->free_pairs == 2);
  CHECK(cluster->load->sessions == 1);
  CHECK(claims_has("web", true));
  // A name not held here was placed by the cluster first.
  REQUIRE(cluster->queries.size() == 1);
  CHECK(cluster->queries[0].name == "web");
  CHECK(cluster->queries[0].owner == certificate_a);
  CHECK_FALSE(cluster->queries[0].local_full);

  WHEN("its server goes away") {
    net_sends(web.session, connection_closed{web.control, close_reason::peer_closed});
    settle();
    THEN("the name lingers, announced as not held; its pair stays reserved") {
      CHECK(claims_has("web", false));
      CHECK(cluster->load->sessions == 0);
      CHECK(cluster->load->free_pairs == 2);
    }
  }
}

SCENARIO_METHOD(clustered_fixture, "cluster: a server without a name, with pairs free here, costs no question",
                "[actors][cluster]") {
  v2_server_connects("hello 2");
  v2_server_connects("hello 2");
  CHECK(cluster->queries.empty());
  WHEN("the pool is down to its last pair and that is taken") {
    v2_server_connects("hello 2");
    cluster->answer = {placement_decision::redirect, {"b.relay", 12000}, "full"};
    auto c = v2_connects();
    server_says(c, "hello 2");
    THEN("the next server is asked about, and sent to the node the cluster names") {
      CHECK(refusal(c) == "redirect b.relay:12000\r\n");
      REQUIRE(cluster->queries.size() == 1);
      CHECK(cluster->queries[0].local_full);
    }
  }
}

SCENARIO_METHOD(clustered_fixture, "cluster: a name held on another node sends its server there",
                "[actors][cluster]") {
  cluster->answer = {placement_decision::redirect, {"b.relay", 12000}, "name_elsewhere"};
  auto c = v2_connects();
  server_says(c, "hello 2 name=web");
  CHECK(refusal(c) == "redirect b.relay:12000\r\n");
  CHECK_FALSE(claims_has("web", true));
  CHECK(cluster->load->free_pairs == 3);
}

SCENARIO_METHOD(clustered_fixture, "cluster: a name of another identity elsewhere, or a full cluster, is refused",
                "[actors][cluster]") {
  GIVEN("the name belongs to another identity on another node") {
    cluster->answer = {placement_decision::name_unavailable, {}, "name web belongs to another identity (on node b)"};
    auto c = v2_connects();
    server_says(c, "hello 2 name=web");
    const auto e = v2_refused(c);
    CHECK(e.code == v2::error_code::name_unavailable);
    CHECK(e.text == "name web belongs to another identity (on node b)");
  }
  GIVEN("every node is full") {
    cluster->answer = {placement_decision::pool_exhausted, {}, ""};
    auto c = v2_connects();
    server_says(c, "hello 2 name=web");
    CHECK(refusal(c) == "no_available_listeners\r\n");
  }
}

SCENARIO_METHOD(clustered_fixture, "cluster: a name lost to another node's claim sends its server there",
                "[actors][cluster]") {
  auto web = v2_server_connects("hello 2 name=web");
  take_orders();
  net_sends(pool, name_lost{"web", {"b.relay", 12000}});
  settle();
  const auto got = take_orders();
  INFO("orders: " << Catch::Detail::stringify(got));
  CHECK(std::any_of(got.begin(), got.end(), [&](const order& o) {
    auto* s = std::get_if<send_and_close>(&o);
    return s && s->id == web.control && s->bytes == "redirect b.relay:12000\r\n";
  }));
  CHECK(has_ended(web.session));
  // The pair is free again, the name no longer claimed here.
  CHECK_FALSE(claims_has("web", true));
  CHECK_FALSE(claims_has("web", false));
  CHECK(cluster->load->free_pairs == 3);
  CHECK(cluster->redirects["name_elsewhere"] == 1);
}

SCENARIO_METHOD(clustered_fixture, "cluster: a drain sends v2 servers to the node the cluster names",
                "[actors][cluster][drain]") {
  auto s = v2_server_connects("hello 2");
  take_orders();
  cluster->drain_target = {"b.relay", 12000};
  caf::anon_send(pool, drain_atom::value, std::uint64_t{30000});
  settle();
  const auto got = take_orders();
  INFO("orders: " << Catch::Detail::stringify(got));
  CHECK(std::any_of(got.begin(), got.end(), [&](const order& o) {
    auto* x = std::get_if<send_and_close>(&o);
    return x && x->id == s.control && x->bytes == "redirect b.relay:12000\r\n";
  }));
  CHECK(cluster->redirects["draining"] == 1);
  WHEN("a server completes its handshake while the node drains") {
    const auto late = new_conn();
    net_sends(pool, control_connected{late, {"192.0.2.11", 4000}, 2, true, certificate_a});
    settle();
    CHECK_THAT(take_orders(),
               are_exactly({send_and_close{late, "redirect b.relay:12000\r\n"}}));
  }
}
