#include "protocol/admin_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <nlohmann/json.hpp>

namespace tlsrelay {

void histogram::add(const histogram& other) {
  if (other.buckets.empty()) return;
  if (buckets.size() != other.buckets.size()) buckets.assign(other.buckets.size(), 0);
  for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += other.buckets[i];
  sum += other.sum;
}

std::uint64_t histogram::count() const {
  std::uint64_t n = 0;
  for (auto b : buckets) n += b;
  return n;
}

std::string_view to_string(pairing_outcome o) {
  switch (o) {
    case pairing_outcome::matched: return "matched";
    case pairing_outcome::matched_warm: return "matched_warm";
    case pairing_outcome::timed_out: return "timed_out";
    case pairing_outcome::over_bound: return "over_bound";
    case pairing_outcome::bad_id: return "bad_id";
    case pairing_outcome::client_left: return "client_left";
    case pairing_outcome::server_left: return "server_left";
  }
  return "unknown";
}

void session_activity::add(const session_activity& other) {
  for (std::size_t i = 0; i < pairings.size(); ++i) pairings[i] += other.pairings[i];
  auth_failures += other.auth_failures;
  bytes_in += other.bytes_in;
  bytes_out += other.bytes_out;
  pairing_latency.add(other.pairing_latency);
}

namespace {

// A sample value: integers exactly, others with enough digits to round-trip.
std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[32];
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else {
    // The shortest form that reads back as the same double (0.0005, not
    // 0.00050000000000000001).
    for (int digits = 6; digits <= 17; ++digits) {
      std::snprintf(buf, sizeof buf, "%.*g", digits, v);
      if (std::strtod(buf, nullptr) == v) break;
    }
  }
  return buf;
}
std::string number(std::uint64_t v) { return std::to_string(v); }

std::string escape_label(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

class exposition {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // `labels` as `key="value"` pairs, already joined (escape values with escape_label).
  void sample(std::string_view name, const std::string& labels, const std::string& value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  template <std::size_t N>
  void histogram_samples(std::string_view name, const std::array<double, N>& bounds,
                         const histogram& h) {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= N; ++i) {
      if (i < h.buckets.size()) cumulative += h.buckets[i];
      const std::string le = i < N ? number(bounds[i]) : "+Inf";
      sample(std::string(name) + "_bucket", "le=\"" + le + "\"", number(cumulative));
    }
    sample(std::string(name) + "_sum", {}, number(h.sum));
    sample(std::string(name) + "_count", {}, number(cumulative));
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string label(std::string_view key, std::string_view value) {
  return std::string(key) + "=\"" + escape_label(value) + "\"";
}

}  // namespace

std::string format_metrics(const metrics_snapshot& s) {
  exposition m;
  const auto& r = s.relay;
  session_activity all = r.ended;
  std::uint64_t sessions_by_protocol[3] = {0, 0, 0};
  std::uint64_t waiting = 0, warm = 0, open_pairs = 0;
  for (const auto& session : r.sessions) {
    all.add(session.activity);
    if (session.protocol == 1 || session.protocol == 2) ++sessions_by_protocol[session.protocol];
    waiting += session.waiting_clients;
    warm += session.warm_connections;
    open_pairs += session.open_pairs;
  }

  m.family("tlsrelay_build_info", "gauge", "Version and git commit of this relay (always 1).");
  m.sample("tlsrelay_build_info", label("version", s.version) + "," + label("commit", s.commit), "1");

  m.family("tlsrelay_control_sessions", "gauge",
           "Control sessions open now (servers connected), by protocol version.");
  for (int v : {1, 2})
    m.sample("tlsrelay_control_sessions", label("protocol", std::to_string(v)),
             number(sessions_by_protocol[v]));

  m.family("tlsrelay_pool_pairs", "gauge",
           "Port pairs of the pool by state: free, in_use (held by a session), reserved (kept "
           "for a name whose session has ended).");
  const std::uint64_t in_use = r.pairs - r.pairs_free - r.pairs_reserved;
  m.sample("tlsrelay_pool_pairs", label("state", "free"), number(std::uint64_t{r.pairs_free}));
  m.sample("tlsrelay_pool_pairs", label("state", "in_use"), number(in_use));
  m.sample("tlsrelay_pool_pairs", label("state", "reserved"), number(std::uint64_t{r.pairs_reserved}));

  m.family("tlsrelay_waiting_clients", "gauge",
           "Clients waiting for their server's reverse connection.");
  m.sample("tlsrelay_waiting_clients", {}, number(waiting));
  m.family("tlsrelay_warm_connections", "gauge",
           "Warm reverse connections (protocol 2) held open ahead of demand.");
  m.sample("tlsrelay_warm_connections", {}, number(warm));
  m.family("tlsrelay_relayed_pairs", "gauge", "Joined client/reverse pairs relaying now.");
  m.sample("tlsrelay_relayed_pairs", {}, number(open_pairs));

  m.family("tlsrelay_pairings_total", "counter",
           "Clients by how their pairing ended: matched (through new_connection), "
           "matched_warm, timed_out, over_bound (--max-pending reached), client_left, "
           "server_left; bad_id counts reverse connections refused for a bad id or ticket.");
  for (std::size_t i = 0; i < pairing_outcomes; ++i)
    m.sample("tlsrelay_pairings_total", label("outcome", to_string(static_cast<pairing_outcome>(i))),
             number(all.pairings[i]));

  m.family("tlsrelay_relayed_bytes_total", "counter",
           "Bytes relayed between clients and servers, by direction, counted as they are "
           "delivered (pairs still open included).");
  m.sample("tlsrelay_relayed_bytes_total", label("direction", "client_to_server"),
           number(s.network.bytes_client_to_server));
  m.sample("tlsrelay_relayed_bytes_total", label("direction", "server_to_client"),
           number(s.network.bytes_server_to_client));

  m.family("tlsrelay_auth_failures_total", "counter",
           "Control connections refused for their credentials (a bad or revoked token, a v1 "
           "server without a client certificate, a certificate where a token is needed).");
  m.sample("tlsrelay_auth_failures_total", {}, number(all.auth_failures));

  m.family("tlsrelay_refused_connections_total", "counter",
           "Connections closed at accept, before any byte, by the limit that refused them.");
  for (const auto& [reason, n] : s.network.refused)
    m.sample("tlsrelay_refused_connections_total", label("reason", reason), number(n));

  m.family("tlsrelay_tls_handshake_failures_total", "counter",
           "TLS handshakes on the control port that failed or timed out.");
  m.sample("tlsrelay_tls_handshake_failures_total", {}, number(s.network.tls_handshake_failures));

  m.family("tlsrelay_pairs_moved_between_io_threads_total", "counter",
           "Joined pairs handed to another io thread than the one that accepted them, to "
           "spread the pumping (--io-threads).");
  m.sample("tlsrelay_pairs_moved_between_io_threads_total", {}, number(s.network.pairs_moved));

  const auto& c = r.cluster;
  m.family("tlsrelay_redirects_total", "counter",
           "redirect lines sent to v2 servers, by reason: name_elsewhere (its name is held by "
           "another node), full (this node has no free pair), draining (this node drains).");
  for (const auto reason : redirect_reasons) {
    std::uint64_t n = 0;
    for (const auto& [r, count] : c.redirects)
      if (r == reason) n = count;
    m.sample("tlsrelay_redirects_total", label("reason", reason), number(n));
  }
  for (const auto& [reason, n] : c.redirects)
    if (std::find(redirect_reasons.begin(), redirect_reasons.end(), reason) ==
        redirect_reasons.end())
      m.sample("tlsrelay_redirects_total", label("reason", reason), number(n));
  std::uint64_t peers_up = 0, peers_down = 0;
  for (const auto& member : c.members)
    if (!member.self) ++(member.up ? peers_up : peers_down);
  m.family("tlsrelay_cluster_peers", "gauge",
           "Other nodes of the cluster this node knows, by state (0 and 0 on a relay of one).");
  m.sample("tlsrelay_cluster_peers", label("state", "up"), number(peers_up));
  m.sample("tlsrelay_cluster_peers", label("state", "down"), number(peers_down));
  m.family("tlsrelay_reservation_conflicts_total", "counter",
           "Names found claimed on two nodes at once (after a partition or a race), settled by "
           "the conflict rule: the earlier claim wins.");
  m.sample("tlsrelay_reservation_conflicts_total", {}, number(c.conflicts_resolved));

  m.family("tlsrelay_reloads_total", "counter",
           "Configuration reloads asked for (SIGHUP or POST /reload), refused ones included.");
  m.sample("tlsrelay_reloads_total", {}, number(s.reloads));
  m.family("tlsrelay_reload_failures_total", "counter",
           "Configuration reloads refused (the old configuration stayed in force).");
  m.sample("tlsrelay_reload_failures_total", {}, number(s.reload_failures));

  m.family("tlsrelay_pairing_latency_seconds", "histogram",
           "Time from a client's connection being accepted to its pair being joined.");
  m.histogram_samples("tlsrelay_pairing_latency_seconds", pairing_latency_bounds,
                      all.pairing_latency);
  m.family("tlsrelay_session_duration_seconds", "histogram",
           "How long control sessions that have ended lasted (sessions given a pair).");
  m.histogram_samples("tlsrelay_session_duration_seconds", session_duration_bounds,
                      r.session_duration);

  // The names every Prometheus client library uses for these.
  m.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  m.sample("process_resident_memory_bytes", {}, number(s.process.resident_memory_bytes));
  m.family("process_open_fds", "gauge", "Number of open file descriptors.");
  m.sample("process_open_fds", {}, number(s.process.open_fds));
  m.family("process_max_fds", "gauge", "Maximum number of open file descriptors (soft limit).");
  m.sample("process_max_fds", {}, number(s.process.max_fds));
  m.family("process_start_time_seconds", "gauge",
           "Start time of the process since the Unix epoch in seconds.");
  m.sample("process_start_time_seconds", {}, number(s.process.start_time_seconds));
  return m.take();
}

std::string format_status(const relay_description& d, const relay_report& r,
                          std::int64_t now_unix_ms) {
  using nlohmann::json;
  json limits = json::object();
  for (const auto& [key, value] : d.limits) limits[key] = value;
  json relay = {
    {"version", d.version},
    {"commit", d.commit},
    {"started_unix_ms", d.started_unix_ms},
    {"uptime_seconds", static_cast<double>(now_unix_ms - d.started_unix_ms) / 1000.0},
    {"listen_address", d.listen_address},
    {"control_port", d.control_port},
    {"myhost", d.myhost},
    {"pool",
     {{"pairs", r.pairs},
      {"free", r.pairs_free},
      {"in_use", r.pairs - r.pairs_free - r.pairs_reserved},
      {"reserved", r.pairs_reserved},
      {"reverse_ports", {d.first_reverse_port, d.last_reverse_port}},
      {"public_ports", {d.first_public_port, d.last_public_port}}}},
    {"limits", limits},
  };
  json sessions = json::array();
  for (const auto& s : r.sessions) {
    json pairings = json::object();
    for (std::size_t i = 0; i < pairing_outcomes; ++i)
      pairings[std::string(to_string(static_cast<pairing_outcome>(i)))] = s.activity.pairings[i];
    sessions.push_back({
      {"id", s.id},
      {"name", s.name},
      {"protocol", s.protocol},
      {"identity", s.identity},
      {"server", s.server},
      {"public_port", s.public_port},
      {"reverse_port", s.reverse_port},
      {"connected_unix_ms", s.connected_unix_ms},
      {"connected_seconds", static_cast<double>(now_unix_ms - s.connected_unix_ms) / 1000.0},
      {"open_pairs", s.open_pairs},
      {"waiting_clients", s.waiting_clients},
      {"warm_connections", s.warm_connections},
      {"bytes_in", s.activity.bytes_in},
      {"bytes_out", s.activity.bytes_out},
      {"pairings", pairings},
    });
  }
  json doc = {{"relay", relay}, {"sessions", sessions}};
  if (r.cluster.enabled) {
    json members = json::array();
    for (const auto& n : r.cluster.members)
      members.push_back({
        {"name", n.name},
        {"self", n.self},
        {"cluster_address", n.cluster_address},
        {"control_address", n.control_address},
        {"state", n.up ? (n.draining ? "draining" : "up") : "down"},
        {"since_unix_ms", n.since_unix_ms},
        {"free_pairs", n.free_pairs},
        {"sessions", n.sessions},
      });
    json redirects = json::object();
    for (const auto& [reason, n] : r.cluster.redirects) redirects[reason] = n;
    doc["cluster"] = {{"node", r.cluster.node},
                      {"members", members},
                      {"names", r.cluster.names},
                      {"redirects", redirects},
                      {"conflicts_resolved", r.cluster.conflicts_resolved}};
  }
  return doc.dump(2) + "\n";
}

}  // namespace tlsrelay
