// The whole message vocabulary of the relay, sectioned by recipient.
//
// net/ turns socket events into the "events" below and carries out the
// "orders"; actors/ decide. Payload bytes never appear here: the only byte
// strings are control lines and the fixed rejection text.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

#include "protocol/admin_report.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/pool_layout.hpp"
#include "protocol/token_file.hpp"

namespace tlsrelay {

// -- identifiers --------------------------------------------------------------

// Names one socket owned by net/ for its whole life; never reused.
struct conn_id {
  std::uint64_t value = 0;
  friend bool operator==(conn_id a, conn_id b) { return a.value == b.value; }
  friend bool operator!=(conn_id a, conn_id b) { return a.value != b.value; }
  friend bool operator<(conn_id a, conn_id b) { return a.value < b.value; }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, conn_id& x) {
  return f(caf::meta::type_name("conn_id"), x.value);
}

enum class port_kind : std::uint8_t { public_port, reverse_port };

enum class close_reason : std::uint8_t {
  peer_closed,    // orderly EOF from the peer
  peer_error,     // reset, or another socket error
  line_too_long,  // a control line over max_control_line_bytes
  write_backlog,  // the peer does not read what the relay must send it
};

// How reverse connections of a pair begin.
enum class reverse_framing : std::uint8_t {
  raw,          // v1: the server's bytes start at once
  accept_line,  // v2: a first line `accept <ID>` says which client it is for
};

// -- events: net → pool_manager -----------------------------------------------

// A control connection finished its TLS handshake. net/ reads nothing from it
// until an actor claims it with route_connection.
struct control_connected {
  conn_id id;
  host_port peer;                 // the server's address
  std::uint8_t protocol = 1;      // 2 when the server chose ALPN tlsrelay/2
  bool client_certificate = false;  // it presented a certificate our CA signed
  // With client_certificate: SHA-256 of the certificate (DER), 64 hex digits.
  std::string certificate_fingerprint;
};

// A connection arrived on a pool port whose pair no session owns.
struct unrouted_arrival {
  conn_id id;
  pair_index pair = 0;
  port_kind kind = port_kind::public_port;
  std::string peer;
};

// -- events: net → the actor a connection or pair is routed to -------------------

struct control_line {
  conn_id id;
  std::string line;  // without its line ending
};

// A client connected to a routed public port. Its bytes stay in the kernel.
struct client_arrived {
  conn_id id;
  host_port peer;   // the client's address
  host_port local;  // the relay's address the client connected to
};

// A server opened a reverse connection to a routed reverse port. With
// reverse_framing::accept_line, net/ has read its first line (and nothing
// more); `first_line` is empty if the peer sent no complete line in time or
// one longer than v2::max_reverse_line_bytes.
struct reverse_arrived {
  conn_id id;
  std::string peer;
  std::string first_line;
};

// A connection that was not (yet) joined ended.
struct connection_closed {
  conn_id id;
  close_reason reason = close_reason::peer_closed;
};

// How a joined pair ended (for the access log and the drain's tally).
enum class pair_end : std::uint8_t {
  closed,              // both sides ended their stream (two EOFs)
  reset,               // a peer reset or broke its connection; both were reset
  idle_timeout,        // no byte either way for --idle-timeout
  half_close_timeout,  // one side ended, then no byte for --half-close-timeout
  cut,                 // closed by the relay: its session ended, or the relay stopped
};

// A joined pair finished: both sockets are closed. (`joined` is false when
// the PROXY preamble could not be written: both are closed then too.)
struct pump_finished {
  conn_id client;
  conn_id reverse;
  bool joined = true;
  std::uint64_t client_to_server_bytes = 0;
  std::uint64_t server_to_client_bytes = 0;
  pair_end end = pair_end::closed;
};

// A join_pair that was not carried out because a side had left (or had
// already closed its sending side without a byte: nothing can be relayed to
// or from it). Net closed the sides that left; a side still there stays as it
// was, unjoined and routed as before, for its owner to pair otherwise (a
// client whose warm connection was closed by its server in that instant is
// announced again, and must never notice).
struct join_failed {
  conn_id client;
  conn_id reverse;
  bool client_left = false;
  bool reverse_left = false;
};

// -- orders: actors → net ----------------------------------------------------------

struct send_line {
  conn_id id;
  std::string line;  // complete, line ending included
};

// Writes `bytes`, then closes the connection (plain or control).
struct send_and_close {
  conn_id id;
  std::string bytes;
};

struct close_connection {
  conn_id id;
};

// The actor has dealt with `lines` more control lines of connection `id`, so
// net may hand it as many more. Credit-based flow control: at most
// defaults::control_line_credits lines of one connection are ever waiting for
// an actor, and net stops reading that connection until credit comes back, so
// a peer that streams lines costs the relay a fixed amount of memory.
struct line_credit {
  conn_id id;
  std::uint32_t lines = 1;
};

// From now on, events of connection `id` go to `owner`. For a control
// connection this also starts reading; for a waiting plain connection it
// starts watching for the peer leaving.
struct route_connection {
  conn_id id;
  caf::actor owner;
};

// Connections arriving on pair `pair` are announced to `owner`; an invalid
// handle unroutes the pair (arrivals then go to the pool_manager). Changing
// the owner closes the connections announced to the previous owner that it
// never claimed (route_connection, join_pair): an owner that ended can no
// longer do so, and nothing else knows about them.
struct route_pair {
  pair_index pair = 0;
  caf::actor owner;
  reverse_framing framing = reverse_framing::raw;
};

// Pump bytes between a client and a reverse connection until both sides are
// done; `pump_finished` then goes to `owner` (or `join_failed` at once if a
// side has left).
struct join_pair {
  conn_id client;
  conn_id reverse;
  caf::actor owner;
  std::string reverse_preamble;  // written to the reverse connection first (PROXY header)
};

// Stop accepting new control connections and new clients: close the control
// port's and the public ports' listeners (new connections are then refused
// by the kernel). Reverse ports stay open for clients still being joined;
// joined pairs and established connections are not touched.
struct stop_accepting {};

// -- control_session ↔ pool_manager ---------------------------------------------------

// A v2 session asks for a pair: `name` (may be empty) reserves its public
// port across reconnects for `owner`; `public_port` (0: any) asks for one.
struct pair_request {
  std::string name;
  std::uint16_t public_port = 0;
  std::string owner;     // the server's identity (see grant); "" for none
  bool by_token = false;  // owner is a token: its sessions are counted
};

// Reply to acquire_atom or pair_request: the pair this session now owns until
// it terminates.
struct pair_assignment {
  pair_index pair = 0;
  std::uint16_t public_port = 0;
  std::uint16_t reverse_port = 0;
};

// control_session → pool_manager while the relay drains (drain_atom): the
// reply to drain_atom, and sent again each time one of its pairs or waiting
// clients is done. A session ends once it has neither.
struct drain_progress {
  std::uint8_t protocol = 1;
  std::uint32_t open_pairs = 0;       // joined and relaying
  std::uint32_t waiting_clients = 0;  // not joined yet
  std::uint64_t pairs_finished = 0;   // pairs of this session that ended since the drain began
};

// -- control_session ↔ authenticator ------------------------------------------------

// Whether a v2 hello may proceed: the token (may be empty), whether the TLS
// peer presented a verified client certificate, and what it asks for.
struct credentials {
  std::string peer_host;  // for slowing down repeated failures from one address
  std::string token;
  bool client_certificate = false;
  std::string certificate_fingerprint;  // with client_certificate
  std::string name;
  std::uint16_t public_port = 0;
};

// Reply to credentials: allowed, as this identity. A name belongs to one
// identity: the SHA-256 of the token (its entry in the tokens file), or else
// of the client certificate, 64 hex digits either way; "" for an anonymous
// server (--client-auth none, no token), which may not use a name.
struct grant {
  std::string owner;
  bool by_token = false;
};

// -- control_session ↔ pair_broker -------------------------------------------------

// A client waits for a reverse connection: the broker holds it (and its
// pending timeout) from now on.
struct client_waits {
  conn_id client;
};

// The reverse connection this waiting client is matched with, and what to
// write on it before the client's bytes (a PROXY header, or nothing).
struct match_reverse {
  conn_id client;
  conn_id reverse;
  std::string reverse_preamble;
};

// The answer to a match_reverse whose client no longer waits (it left or
// timed out just before): the reverse connection is still the session's.
struct match_missed {
  conn_id client;
  conn_id reverse;
};

// -- reload: cli → pool_manager → authenticator --------------------------------

// The tokens file as re-read by a reload. Sent to the pool_manager (which
// replies with the number of sessions it ended, as std::uint64_t) and by it
// to the authenticator (which replies with token_owners).
struct token_table {
  std::vector<token_entry> tokens;
};

// The authenticator's new token table, as owners (see grant): every token in
// it, and those of the old table that are gone. The pool_manager ends the
// sessions of removed owners and refuses their pair requests still on the way.
struct token_owners {
  std::vector<std::string> current;
  std::vector<std::string> removed;
};

// -- admin: what the relay is doing ---------------------------------------------------
//
// The admin endpoint (net/admin_server) asks the pool_manager `status_atom`
// and gets a relay_report; the pool_manager asks every live control_session
// `status_atom` (each answers a session_report) and adds the activity of the
// sessions that have ended, which each reports once as it ends
// (session_ended). Sessions count their own pairings as they happen: no
// message per relayed connection goes to the pool_manager, which would
// become the one queue every pairing of the node passes through.

// net → the owner of a pair: net joined the two and its pump runs.
struct pair_joined {
  conn_id client;
  conn_id reverse;
  std::uint64_t latency_us = 0;  // the client's accept → now
};

// pair_broker → control_session: how a waiting client's pairing ended when
// the broker is the one who knows (the client left, or timed out).
struct pairing_end {
  conn_id client;
  pairing_outcome outcome = pairing_outcome::client_left;
};

// control_session → pool_manager, once, as the session ends.
struct session_ended {
  session_activity activity;
  bool had_pair = false;       // it was serving (its duration counts)
  std::int64_t duration_ms = 0;
};


// -- cluster: pool_manager ↔ cluster_member (local), cluster_member ↔ peers (remote) ----
//
// A cluster_member actor per node (actors/cluster_member) owns membership and
// the shared view; the pool_manager asks it, never the network. The types
// between nodes travel through CAF's middleman (caf::openssl): nothing here
// holds a socket, and no actor handle of a third node is ever sent (each node
// connects to every member directly; gossip carries addresses).

// What a node says about itself, in every heartbeat.
struct node_status {
  std::string name;            // --node-name, unique in the cluster
  host_port cluster;           // where peers reach its cluster port
  host_port control;           // where servers reach it: --myhost and the control port
  std::uint32_t free_pairs = 0;
  std::uint32_t sessions = 0;
  bool draining = false;
  std::int64_t started_unix_ms = 0;     // its incarnation: a restart is a new one
  std::uint64_t reservations_version = 0;  // of its latest name_claims (see node_claims)
};

// One name reservation as the node that holds it announces it.
struct name_claim {
  std::string name;
  std::string owner;   // identity (see grant), 64 hex digits
  std::uint16_t public_port = 0;
  std::int64_t claimed_unix_ms = 0;  // when the node granted the name (the conflict rule)
  bool held = false;                  // a session uses it now; else it lingers until...
  std::int64_t expires_unix_ms = 0;   // ...this (0 while held)
};

// A joining node's first message to a peer, answered with the peer's
// cluster_heartbeat (or an error: another cluster version, or the same name).
struct cluster_join {
  std::uint32_t cluster_version = 0;
  node_status from;
  std::vector<host_port> members;  // cluster addresses it knows
};

// Sent to every member each heartbeat interval (and at once on a change that
// decides placements, like a drain). `members` is the gossip: every cluster
// address the sender knows, so that all learn all from any one peer.
struct cluster_heartbeat {
  node_status from;
  std::vector<host_port> members;
};

// Every reservation a node holds, sent when they change and to a member that
// (re)joins; replaces all earlier ones of that node's incarnation.
struct node_claims {
  std::string node;
  std::int64_t started_unix_ms = 0;
  std::uint64_t version = 0;
  std::vector<name_claim> claims;
};

// pool_manager → cluster_member: its reservations changed (the state file's
// records, with the claim times), and its load.
struct local_claims {
  std::vector<name_claim> claims;
};
struct local_load {
  std::uint32_t free_pairs = 0;
  std::uint32_t sessions = 0;
};

// pool_manager → cluster_member: may a v2 server with this name and identity
// be served here? Asked only when the name is not reserved here, or the
// pool is full.
struct placement_query {
  std::string name;   // "" for none
  std::string owner;
  bool local_full = false;
};

enum class placement_decision : std::uint8_t {
  here,              // serve it on this node (and claim the name, if any)
  redirect,          // send it to `target`
  name_unavailable,  // the name belongs to another identity on another node
  pool_exhausted,    // every node is full
};

struct placement {
  placement_decision decision = placement_decision::here;
  host_port target;     // with redirect: the node's control address
  std::string reason;   // with redirect: name_elsewhere, full, draining; else for humans
};

// cluster_member → pool_manager: another node's claim of `name` won the
// conflict rule (DESIGN.md, Cluster); the session holding it here is sent
// to `winner`, a lingering reservation is dropped.
struct name_lost {
  std::string name;
  host_port winner;
};

// -- errors of actors/ -----------------------------------------------------------

enum class relay_errc : std::uint8_t {
  pool_exhausted = 1,  // no free pair
  port_unavailable,    // the requested public port is not in the pool or is taken
  name_unavailable,    // the name is reserved for another owner
  too_many_sessions,   // the owner's session limit is reached
  auth_failed,         // credentials refused
  bad_request,         // a line the protocol does not allow here
  unsupported_version, // hello with another protocol version
  draining,            // the relay is shutting down: no new session
  redirected,          // served by another node of the cluster; reason: its HOST:PORT
};

std::string to_string(relay_errc x);
caf::error make_error(relay_errc x);
// With a reason for humans, which reason_of() gives back.
caf::error make_error(relay_errc x, std::string reason);
std::string reason_of(const caf::error& err);
// The relay_errc of an error of ours, if it is one.
bool is(const caf::error& err, relay_errc x);
inline constexpr caf::atom_value relay_error_category = caf::atom("tlsrelay");

// -- inspect overloads ----------------------------------------------------------------

#define TLSRELAY_INSPECT(type, ...)                                           \
  template <class Inspector>                                                  \
  typename Inspector::result_type inspect(Inspector& f, type& x) {            \
    return f(caf::meta::type_name(#type), __VA_ARGS__);                       \
  }

TLSRELAY_INSPECT(host_port, x.host, x.port)
TLSRELAY_INSPECT(control_connected, x.id, x.peer, x.protocol, x.client_certificate,
                 x.certificate_fingerprint)
TLSRELAY_INSPECT(unrouted_arrival, x.id, x.pair, x.kind, x.peer)
TLSRELAY_INSPECT(control_line, x.id, x.line)
TLSRELAY_INSPECT(client_arrived, x.id, x.peer, x.local)
TLSRELAY_INSPECT(reverse_arrived, x.id, x.peer, x.first_line)
TLSRELAY_INSPECT(connection_closed, x.id, x.reason)
TLSRELAY_INSPECT(pump_finished, x.client, x.reverse, x.joined, x.client_to_server_bytes,
                 x.server_to_client_bytes, x.end)
TLSRELAY_INSPECT(join_failed, x.client, x.reverse, x.client_left, x.reverse_left)
TLSRELAY_INSPECT(send_line, x.id, x.line)
TLSRELAY_INSPECT(send_and_close, x.id, x.bytes)
TLSRELAY_INSPECT(close_connection, x.id)
TLSRELAY_INSPECT(line_credit, x.id, x.lines)
TLSRELAY_INSPECT(route_connection, x.id, x.owner)
TLSRELAY_INSPECT(route_pair, x.pair, x.owner, x.framing)
TLSRELAY_INSPECT(join_pair, x.client, x.reverse, x.owner, x.reverse_preamble)
TLSRELAY_INSPECT(pair_request, x.name, x.public_port, x.owner, x.by_token)
TLSRELAY_INSPECT(credentials, x.peer_host, x.token, x.client_certificate,
                 x.certificate_fingerprint, x.name, x.public_port)
TLSRELAY_INSPECT(grant, x.owner, x.by_token)
TLSRELAY_INSPECT(pair_assignment, x.pair, x.public_port, x.reverse_port)
TLSRELAY_INSPECT(client_waits, x.client)
TLSRELAY_INSPECT(match_reverse, x.client, x.reverse, x.reverse_preamble)
TLSRELAY_INSPECT(match_missed, x.client, x.reverse)
TLSRELAY_INSPECT(token_entry, x.token, x.names, x.ports, x.line)
TLSRELAY_INSPECT(token_table, x.tokens)
TLSRELAY_INSPECT(token_owners, x.current, x.removed)
TLSRELAY_INSPECT(histogram, x.buckets, x.sum)
TLSRELAY_INSPECT(session_activity, x.pairings, x.auth_failures, x.bytes_in, x.bytes_out,
                 x.pairing_latency)
TLSRELAY_INSPECT(session_report, x.id, x.name, x.protocol, x.identity, x.server, x.public_port,
                 x.reverse_port, x.connected_unix_ms, x.open_pairs, x.waiting_clients,
                 x.warm_connections, x.activity)
TLSRELAY_INSPECT(relay_report, x.pairs, x.pairs_free, x.pairs_reserved, x.sessions, x.ended,
                 x.session_duration, x.cluster)
TLSRELAY_INSPECT(pair_joined, x.client, x.reverse, x.latency_us)
TLSRELAY_INSPECT(pairing_end, x.client, x.outcome)
TLSRELAY_INSPECT(session_ended, x.activity, x.had_pair, x.duration_ms)
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stop_accepting&) {
  return f(caf::meta::type_name("stop_accepting"));
}
TLSRELAY_INSPECT(drain_progress, x.protocol, x.open_pairs, x.waiting_clients, x.pairs_finished)
TLSRELAY_INSPECT(node_status, x.name, x.cluster, x.control, x.free_pairs, x.sessions, x.draining,
                 x.started_unix_ms, x.reservations_version)
TLSRELAY_INSPECT(name_claim, x.name, x.owner, x.public_port, x.claimed_unix_ms, x.held,
                 x.expires_unix_ms)
TLSRELAY_INSPECT(cluster_join, x.cluster_version, x.from, x.members)
TLSRELAY_INSPECT(cluster_heartbeat, x.from, x.members)
TLSRELAY_INSPECT(node_claims, x.node, x.started_unix_ms, x.version, x.claims)
TLSRELAY_INSPECT(local_claims, x.claims)
TLSRELAY_INSPECT(local_load, x.free_pairs, x.sessions)
TLSRELAY_INSPECT(placement_query, x.name, x.owner, x.local_full)
TLSRELAY_INSPECT(placement, x.decision, x.target, x.reason)
TLSRELAY_INSPECT(name_lost, x.name, x.winner)
TLSRELAY_INSPECT(cluster_member_report, x.name, x.cluster_address, x.control_address, x.self,
                 x.up, x.draining, x.since_unix_ms, x.free_pairs, x.sessions)
TLSRELAY_INSPECT(cluster_report, x.enabled, x.node, x.members, x.redirects, x.conflicts_resolved,
                 x.names)

#undef TLSRELAY_INSPECT

std::string to_string(port_kind k);
std::string to_string(close_reason r);
std::string to_string(reverse_framing f);
// Stable names: closed, reset, idle_timeout, half_close_timeout, cut.
std::string to_string(pair_end e);

}  // namespace tlsrelay

template <>
struct std::hash<tlsrelay::conn_id> {
  std::size_t operator()(tlsrelay::conn_id id) const noexcept {
    return std::hash<std::uint64_t>{}(id.value);
  }
};

CAF_BEGIN_TYPE_ID_BLOCK(tlsrelay, caf::first_custom_type_id)
  // events: net → actors
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::conn_id))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::port_kind))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::close_reason))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::reverse_framing))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::host_port))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::control_connected))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::unrouted_arrival))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::control_line))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::client_arrived))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::reverse_arrived))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::connection_closed))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::pump_finished))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::join_failed))
  // orders: actors → net
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::send_line))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::send_and_close))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::close_connection))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::line_credit))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::route_connection))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::route_pair))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::join_pair))
  // between actors
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::pair_request))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::pair_assignment))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::credentials))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::grant))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::match_reverse))
  CAF_ADD_ATOM(tlsrelay, tlsrelay, acquire_atom, "acquire")
  CAF_ADD_ATOM(tlsrelay, tlsrelay, hello_timeout_atom, "helloTO")
  CAF_ADD_ATOM(tlsrelay, tlsrelay, heartbeat_atom, "heartbeat")
  CAF_ADD_ATOM(tlsrelay, tlsrelay, expire_atom, "expire")
  CAF_ADD_ATOM(tlsrelay, tlsrelay, release_atom, "release")
  CAF_ADD_ATOM(tlsrelay, tlsrelay, warm_expire_atom, "warmExpire")
  // reload (config): a new token table; a session whose token was removed
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::token_entry))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::token_table))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::token_owners))
  CAF_ADD_ATOM(tlsrelay, tlsrelay, revoke_atom, "revoke")
  // admin: what the relay is doing
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::pairing_outcome))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::histogram))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::session_activity))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::session_report))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::relay_report))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::pair_joined))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::pairing_end))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::session_ended))
  CAF_ADD_ATOM(tlsrelay, tlsrelay, status_atom, "status")
  // draining (SIGTERM): serve → pool_manager → control_session, and back
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::pair_end))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::stop_accepting))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::drain_progress))
  CAF_ADD_ATOM(tlsrelay, tlsrelay, drain_atom, "drain")
  CAF_ADD_ATOM(tlsrelay, tlsrelay, drain_tick_atom, "drainTick")
  CAF_ADD_ATOM(tlsrelay, tlsrelay, drain_deadline_atom, "drainEnd")
  // cluster: local (pool_manager ↔ cluster_member) and between nodes
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::node_status))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::name_claim))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::cluster_join))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::cluster_heartbeat))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::node_claims))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::local_claims))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::local_load))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::placement_query))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::placement_decision))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::placement))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::name_lost))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::cluster_member_report))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::cluster_report))
  CAF_ADD_ATOM(tlsrelay, tlsrelay, cluster_tick_atom, "clTick")
  CAF_ADD_ATOM(tlsrelay, tlsrelay, peer_retry_atom, "peerRetry")
  CAF_ADD_ATOM(tlsrelay, tlsrelay, redirected_atom, "redirected")
  // peer -> peer: send me your node_claims again (your heartbeat names a
  // version of them that I do not have).
  CAF_ADD_ATOM(tlsrelay, tlsrelay, claims_wanted_atom, "claimsWant")
  // control_session ↔ pair_broker (one broker per session)
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::client_waits))
  CAF_ADD_TYPE_ID(tlsrelay, (tlsrelay::match_missed))
  CAF_ADD_ATOM(tlsrelay, tlsrelay, pair_timeout_atom, "pairTO")
CAF_END_TYPE_ID_BLOCK(tlsrelay)
