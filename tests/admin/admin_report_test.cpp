// protocol/admin_report alone: histogram buckets, the exposition's cumulative
// buckets and escaping, and the /status document's shape.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "protocol/admin_report.hpp"

using namespace tlsrelay;

TEST_CASE("admin report: a histogram puts a value in the first bucket whose bound is not below it",
          "[admin][protocol]") {
  histogram h;
  h.observe(pairing_latency_bounds, 0.0005);  // on a bound: that bucket (le is inclusive)
  h.observe(pairing_latency_bounds, 0.0007);
  h.observe(pairing_latency_bounds, 99.0);    // above every bound: +Inf
  REQUIRE(h.buckets.size() == pairing_latency_bounds.size() + 1);
  CHECK(h.buckets[0] == 1);
  CHECK(h.buckets[1] == 1);
  CHECK(h.buckets.back() == 1);
  CHECK(h.count() == 3);
  CHECK(h.sum == Approx(99.0012));
}

TEST_CASE("admin report: the exposition has cumulative buckets ending in +Inf, _count, _sum, and "
          "escaped labels",
          "[admin][protocol]") {
  metrics_snapshot s;
  s.version = "1.2.3";
  s.commit = "ab\"c\\d";
  s.relay.pairs = 4;
  s.relay.pairs_free = 3;
  session_report session;
  session.protocol = 2;
  session.activity[pairing_outcome::matched] = 2;
  session.activity.pairing_latency.observe(pairing_latency_bounds, 0.002);
  session.activity.pairing_latency.observe(pairing_latency_bounds, 0.02);
  s.relay.sessions.push_back(session);
  s.relay.ended[pairing_outcome::matched] = 1;
  s.relay.ended.pairing_latency.observe(pairing_latency_bounds, 0.002);
  const auto text = format_metrics(s);
  CHECK(text.find("tlsrelay_build_info{version=\"1.2.3\",commit=\"ab\\\"c\\\\d\"} 1\n") !=
        std::string::npos);
  CHECK(text.find("tlsrelay_pairings_total{outcome=\"matched\"} 3\n") != std::string::npos);
  CHECK(text.find("tlsrelay_pairing_latency_seconds_bucket{le=\"0.001\"} 0\n") != std::string::npos);
  CHECK(text.find("tlsrelay_pairing_latency_seconds_bucket{le=\"0.0025\"} 2\n") != std::string::npos);
  CHECK(text.find("tlsrelay_pairing_latency_seconds_bucket{le=\"0.025\"} 3\n") != std::string::npos);
  CHECK(text.find("tlsrelay_pairing_latency_seconds_bucket{le=\"+Inf\"} 3\n") != std::string::npos);
  CHECK(text.find("tlsrelay_pairing_latency_seconds_count 3\n") != std::string::npos);
  CHECK(text.find("tlsrelay_control_sessions{protocol=\"2\"} 1\n") != std::string::npos);
  CHECK(text.find("tlsrelay_pool_pairs{state=\"in_use\"} 1\n") != std::string::npos);
  CHECK(text.find("# TYPE tlsrelay_pairings_total counter\n") != std::string::npos);
}

TEST_CASE("admin report: /status lists the relay and every session, never more than it is given",
          "[admin][protocol]") {
  relay_description d;
  d.version = "1.0.0";
  d.started_unix_ms = 1000;
  d.limits = {{"max-pending", 64}};
  relay_report r;
  r.pairs = 2;
  r.pairs_free = 1;
  session_report s;
  s.id = 7;
  s.name = "web";
  s.identity = "token:0123456789abcdef";
  s.public_port = 12101;
  s.connected_unix_ms = 2000;
  r.sessions.push_back(s);
  const auto doc = nlohmann::json::parse(format_status(d, r, 5000));
  CHECK(doc.at("relay").at("uptime_seconds") == 4.0);
  CHECK(doc.at("relay").at("pool").at("in_use") == 1);
  CHECK(doc.at("relay").at("limits").at("max-pending") == 64);
  REQUIRE(doc.at("sessions").size() == 1);
  CHECK(doc.at("sessions")[0].at("name") == "web");
  CHECK(doc.at("sessions")[0].at("connected_seconds") == 3.0);
  CHECK(doc.at("sessions")[0].at("identity") == "token:0123456789abcdef");
}

TEST_CASE("admin report: the cluster families are there on a relay of one (no peers, no "
          "redirects, every reason at 0) and count peers by state in a cluster",
          "[admin][protocol][cluster]") {
  metrics_snapshot alone;
  const auto text = format_metrics(alone);
  CHECK(text.find("# TYPE tlsrelay_cluster_peers gauge\n") != std::string::npos);
  CHECK(text.find("tlsrelay_cluster_peers{state=\"up\"} 0\n") != std::string::npos);
  CHECK(text.find("tlsrelay_cluster_peers{state=\"down\"} 0\n") != std::string::npos);
  CHECK(text.find("# TYPE tlsrelay_redirects_total counter\n") != std::string::npos);
  for (const auto reason : redirect_reasons)
    CHECK(text.find("tlsrelay_redirects_total{reason=\"" + std::string(reason) + "\"} 0\n") !=
          std::string::npos);
  CHECK(text.find("tlsrelay_redirects_total 0") == std::string::npos);  // no unlabelled sample
  CHECK(text.find("tlsrelay_reservation_conflicts_total 0\n") != std::string::npos);

  metrics_snapshot clustered;
  auto& c = clustered.relay.cluster;
  c.enabled = true;
  c.node = "a";
  cluster_member_report self, up, down, draining;
  self.self = self.up = true;
  up.up = true;
  draining.up = draining.draining = true;
  c.members = {self, up, down, draining};
  c.redirects = {{"full", 3}, {"name_elsewhere", 1}};
  c.conflicts_resolved = 2;
  const auto text2 = format_metrics(clustered);
  // This node is not its own peer; a draining peer is up (it answers).
  CHECK(text2.find("tlsrelay_cluster_peers{state=\"up\"} 2\n") != std::string::npos);
  CHECK(text2.find("tlsrelay_cluster_peers{state=\"down\"} 1\n") != std::string::npos);
  CHECK(text2.find("tlsrelay_redirects_total{reason=\"name_elsewhere\"} 1\n") != std::string::npos);
  CHECK(text2.find("tlsrelay_redirects_total{reason=\"full\"} 3\n") != std::string::npos);
  CHECK(text2.find("tlsrelay_redirects_total{reason=\"draining\"} 0\n") != std::string::npos);
  CHECK(text2.find("tlsrelay_reservation_conflicts_total 2\n") != std::string::npos);
}

TEST_CASE("admin report: /status has a cluster object only when clustering is on",
          "[admin][protocol][cluster]") {
  relay_description d;
  relay_report r;
  CHECK_FALSE(nlohmann::json::parse(format_status(d, r, 0)).contains("cluster"));
  r.cluster.enabled = true;
  r.cluster.node = "a";
  cluster_member_report self;
  self.name = "a";
  self.self = self.up = true;
  self.since_unix_ms = 5;
  r.cluster.members.push_back(self);
  cluster_member_report gone;
  gone.name = "b";
  r.cluster.members.push_back(gone);
  r.cluster.redirects = {{"full", 1}};
  const auto doc = nlohmann::json::parse(format_status(d, r, 0));
  REQUIRE(doc.contains("cluster"));
  const auto& c = doc.at("cluster");
  CHECK(c.at("node") == "a");
  REQUIRE(c.at("members").size() == 2);
  CHECK(c.at("members")[0].at("state") == "up");
  CHECK(c.at("members")[0].at("self") == true);
  CHECK(c.at("members")[0].at("since_unix_ms") == 5);
  CHECK(c.at("members")[1].at("state") == "down");
  CHECK(c.at("redirects").at("full") == 1);
  for (const char* key : {"names", "conflicts_resolved"}) CHECK(c.contains(key));
}
