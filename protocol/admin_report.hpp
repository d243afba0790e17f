// What the admin endpoint reports, and how: the figures the actors and net/
// gather (plain structs), and their two renderings, the Prometheus text
// exposition format (/metrics) and JSON (/status). Metric names, label values
// and JSON keys are wire strings of the admin endpoint: they live here only.
//
// Pure: the caller gathers the figures (actors answer, net/ reads its
// counters and /proc); this only formats them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tlsrelay {

// -- histograms -----------------------------------------------------------------

// Upper bounds (seconds) of the buckets of the two histograms; +Inf follows.
// Pairing latency: a warm pairing takes well under a millisecond on loopback,
// one through new_connection a round trip to the server, a slow server up to
// the pending timeout (10 s by default).
inline constexpr std::array<double, 14> pairing_latency_bounds = {
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
// Session duration: reconnect storms (seconds) up to servers that stay for weeks.
inline constexpr std::array<double, 10> session_duration_bounds = {
  1, 10, 60, 300, 900, 3600, 14400, 86400, 604800, 2592000};

// Counts per bucket (not cumulative; the last bucket is +Inf) and the sum.
struct histogram {
  std::vector<std::uint64_t> buckets;
  double sum = 0;

  // `bounds` must be the same for every observe/add of one histogram.
  template <std::size_t N>
  void observe(const std::array<double, N>& bounds, double value) {
    if (buckets.size() != N + 1) buckets.assign(N + 1, 0);
    std::size_t i = 0;
    while (i < N && value > bounds[i]) ++i;
    ++buckets[i];
    sum += value;
  }
  void add(const histogram& other);
  std::uint64_t count() const;
};

// -- what the actors report ---------------------------------------------------------

// How a waiting client's pairing ended (one outcome per client, except
// bad_id, which counts reverse connections refused for a bad id or ticket).
enum class pairing_outcome : std::uint8_t {
  matched,       // joined with a reverse connection announced by new_connection
  matched_warm,  // joined with a warm reverse connection, without a round trip
  timed_out,     // no reverse connection within the pending timeout
  over_bound,    // refused at once: --max-pending clients were already waiting
  bad_id,        // a v2 reverse connection with an unknown, used or expired id or ticket
  client_left,   // the client went away while it waited
  server_left,   // its session, or the reverse connection opened for it, ended first
};
inline constexpr std::size_t pairing_outcomes = 7;
std::string_view to_string(pairing_outcome o);

// Cumulative activity of one session (or of many, added up).
struct session_activity {
  std::array<std::uint64_t, pairing_outcomes> pairings{};  // by pairing_outcome
  std::uint64_t auth_failures = 0;  // control connections refused for their credentials
  // Bytes of this session's pairs that have ended (the admin endpoint adds
  // those of its open pairs, which net/ counts): client → server ("in", what
  // the server received) and server → client ("out").
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  histogram pairing_latency;  // client accepted → pair joined, seconds

  std::uint64_t& operator[](pairing_outcome o) { return pairings[static_cast<std::size_t>(o)]; }
  std::uint64_t operator[](pairing_outcome o) const {
    return pairings[static_cast<std::size_t>(o)];
  }
  void add(const session_activity& other);
};

// One live control session, as /status shows it.
struct session_report {
  std::uint64_t id = 0;          // the control connection's id, unique while the relay runs
  std::string name;              // v2 name, "" for none
  std::uint8_t protocol = 1;
  std::string identity;          // "token:<16 hex of its SHA-256>", "certificate:<SHA-256>", or "anonymous"
  std::string server;            // the server's address, host:port
  std::uint16_t public_port = 0;   // 0 while it has no pair yet
  std::uint16_t reverse_port = 0;
  std::int64_t connected_unix_ms = 0;
  std::uint32_t open_pairs = 0;        // joined (or being joined) pairs
  std::uint32_t waiting_clients = 0;
  std::uint32_t warm_connections = 0;
  session_activity activity;
};

// One node of a cluster as this node sees it (/status "cluster").
struct cluster_member_report {
  std::string name;
  std::string cluster_address;  // host:port where nodes reach it
  std::string control_address;  // host:port where servers are redirected to it
  bool self = false;            // this node
  bool up = false;
  bool draining = false;
  std::int64_t since_unix_ms = 0;  // up, or down, since
  std::uint32_t free_pairs = 0;    // as it last said
  std::uint32_t sessions = 0;
};

// Why a v2 server was sent to another node (label `reason` of
// tlsrelay_redirects_total, keys of /status "redirects"): its name is held
// by another node, this node has no free pair, this node drains. Each is
// exported, 0 until it happens, also on a relay of one.
inline constexpr std::string_view redirect_name_elsewhere = "name_elsewhere";
inline constexpr std::string_view redirect_full = "full";
inline constexpr std::string_view redirect_draining = "draining";
inline constexpr std::array<std::string_view, 3> redirect_reasons = {
  redirect_name_elsewhere, redirect_full, redirect_draining};

// The cluster_member's answer; `enabled` is false on a relay of one.
struct cluster_report {
  bool enabled = false;
  std::string node;                              // this node's name
  std::vector<cluster_member_report> members;    // this node first, then by name
  std::vector<std::pair<std::string, std::uint64_t>> redirects;  // sent, by reason
  std::uint64_t conflicts_resolved = 0;  // names claimed on two nodes, settled by the rule
  std::uint32_t names = 0;               // name reservations known cluster-wide
};

// The pool_manager's answer: the pool, every live session, and the activity
// of the sessions that have ended.
struct relay_report {
  std::uint32_t pairs = 0;
  std::uint32_t pairs_free = 0;
  std::uint32_t pairs_reserved = 0;  // kept for a name whose session is gone
  std::vector<session_report> sessions;
  session_activity ended;             // of sessions that have ended
  histogram session_duration;         // of sessions that have ended (with a pair), seconds
  cluster_report cluster;
};

// -- what net/ and the process report ---------------------------------------------

// Counters net/ keeps itself (atomics read at scrape time).
struct network_figures {
  std::uint64_t bytes_client_to_server = 0;  // delivered, pairs still open included
  std::uint64_t bytes_server_to_client = 0;
  std::uint64_t tls_handshake_failures = 0;  // failed or timed out
  std::uint64_t pairs_moved = 0;  // joined pairs pumped on another io thread than their own
  // Refused at accept, by reason (the reason's name, e.g. "client_rate").
  std::vector<std::pair<std::string, std::uint64_t>> refused;
};

struct process_figures {
  std::uint64_t resident_memory_bytes = 0;
  std::uint64_t open_fds = 0;
  std::uint64_t max_fds = 0;
  double start_time_seconds = 0;  // Unix time
};

// Facts of this relay that do not change while it runs.
struct relay_description {
  std::string version;
  std::string commit;
  std::int64_t started_unix_ms = 0;
  std::string listen_address;  // every port listens here
  std::uint16_t control_port = 0;
  std::string myhost;          // written into listener lines
  std::uint16_t first_reverse_port = 0, last_reverse_port = 0;
  std::uint16_t first_public_port = 0, last_public_port = 0;
  std::vector<std::pair<std::string, double>> limits;  // flag name without "--" → value
};

struct metrics_snapshot {
  relay_report relay;
  network_figures network;
  process_figures process;
  std::string version, commit;
  std::uint64_t reloads = 0;
  std::uint64_t reload_failures = 0;
};

// The Prometheus text exposition format (version 0.0.4), every family with
// # HELP and # TYPE.
std::string format_metrics(const metrics_snapshot& snapshot);
inline constexpr std::string_view metrics_content_type = "text/plain; version=0.0.4; charset=utf-8";

// The /status document (JSON): {"relay": {...}, "sessions": [...]}.
std::string format_status(const relay_description& relay, const relay_report& report,
                          std::int64_t now_unix_ms);

}  // namespace tlsrelay
