// Every tunable constant of the relay, with its unit and the reason for its value.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tlsrelay::defaults {

using namespace std::chrono_literals;

// Command-line defaults, identical to the original tx_tlsrelay.
inline constexpr std::uint16_t control_port = 12000;
inline constexpr unsigned port_count = 200;  // 100 pairs
inline constexpr std::string_view myhost = "127.0.0.1";
inline constexpr std::string_view keys_dir = "./relay_server_certs";
// Dual-stack (IPv4 too); the fallback where the host has no IPv6.
inline constexpr std::string_view listen_address = "::";
inline constexpr std::string_view listen_address_ipv4_only = "0.0.0.0";

// A control line longer than this ends the session: no legitimate line is
// anywhere near it, and it bounds what one peer can make us buffer.
inline constexpr std::size_t max_control_line_bytes = 1024;

// Control lines of one connection handed to its actor and not yet dealt with;
// net reads no more from that connection until the actor gives credit back.
// Bounds what a peer streaming lines (say, while its authentication is being
// slowed down) makes the relay hold: a few lines, not its whole stream.
inline constexpr std::uint32_t control_line_credits = 4;

// Lines the relay may have queued for a control connection that is not
// reading; past it the server is not keeping up and the session ends.
inline constexpr std::size_t max_queued_control_bytes = 256 * 1024;

// An accepted control connection must finish its TLS handshake within this;
// otherwise a silent peer could hold a file descriptor forever.
inline constexpr auto tls_handshake_timeout = 10s;

// Read-ahead per direction of a relayed pair: the buffer of the copy pump and
// the pipe size of the splice pump. Memory per pair is bounded by this.
inline constexpr std::size_t pump_buffer_bytes = 64 * 1024;

// Clients one session may have waiting for a reverse connection; more are
// closed at once. Bounds what a flood of connections to one public port costs.
inline constexpr std::size_t max_pending_clients = 64;

// A client whose reverse connection has not come within this is closed, so a
// server that never answers cannot make clients pile up.
inline constexpr auto pending_timeout = 10s;

// After the relay's last bytes to a connection it closes (no_available_listeners,
// no controller linked), how long it waits for the peer's EOF before closing
// anyway. Waiting lets the peer read the bytes instead of getting a reset.
inline constexpr auto close_linger = 2s;

// Idle pipes and buffers kept for reuse by the pairs of one io thread; more
// are freed. Bounds what a burst of traffic leaves behind.
inline constexpr std::size_t idle_stages = 256;

// Bytes one direction of a pair may move per wake-up before yielding to the
// other connections of the io thread.
inline constexpr std::size_t pump_read_budget_bytes = 256 * 1024;

// A v2 reverse connection must send its first line (accept or ready) within this.
inline constexpr auto accept_line_timeout = 10s;
// Connections a pool port takes per wake-up before the io thread turns to
// other work (haproxy's tune.maxaccept is 64 for one process).
inline constexpr unsigned accept_batch = 64;
// A relayed pair that has delivered this much is busy: with more than one io
// thread it may be moved to a thread with fewer busy pairs (a short
// connection is not worth a hand-off; a long transfer is).
inline constexpr std::uint64_t busy_pair_bytes = 1024 * 1024;
// The control port takes one per wake-up: each new connection's handshake
// gets going before the next is accepted, so a burst from one address does
// not hit --max-handshakes-per-source all at once.
inline constexpr unsigned control_accept_batch = 1;

// A v2 control connection must send its hello within this.
inline constexpr auto hello_timeout = 10s;

// v2 liveness: the relay pings this often; a control connection silent for
// three intervals is dead.
inline constexpr auto heartbeat_interval = 15s;
inline constexpr unsigned heartbeat_misses = 3;

// v2 warm reverse connections one session may keep open ahead of demand
// (a server asks for fewer if it sees fewer clients), and how long one may
// stay unused before the relay closes it: idle ones cost the relay two
// descriptors' worth of nothing, but a server that went away must not keep them.
inline constexpr unsigned warm_max = 16;
inline constexpr auto warm_idle_timeout = 60s;

// How long a name keeps its public port after its session ended.
inline constexpr auto reservation_ttl = 60s;

// Sessions one token may hold at once (0 would mean no limit).
inline constexpr unsigned max_sessions_per_token = 16;

// TCP keepalive on control connections: a v1 server has no heartbeat, and a
// server lost behind a NAT must not keep its pair forever (noticed within 2x).
inline constexpr auto keepalive_idle = 30s;

// A joined pair that moves no byte for this long is reset (like haproxy's
// `timeout tunnel`): peers that vanished must give their pair back.
inline constexpr auto pair_idle_timeout = 1h;

// After one direction of a pair has ended (its FIN passed on), the pair may
// be quiet this long, no more (like haproxy's `timeout client-fin`; a
// transfer still flowing the other way is not cut).
inline constexpr auto half_close_timeout = 60s;

// Admission (net/admission.hpp): what an unauthenticated peer may cost.
// TLS handshakes are the costly part of a new control connection (CPU on the
// io thread that also pumps bytes): at most this many at once in all, and
// from one address...
inline constexpr std::size_t max_handshakes = 256;
inline constexpr std::size_t max_handshakes_per_source = 32;
// ...and at most this many new control connections per second and address
// (bursts of twice it): a fleet reconnecting after a restart gets through in
// a few seconds, a handshake flood from one address is bounded.
inline constexpr double control_rate = 50;
// v2 reverse connections of one address whose first line is not judged yet:
// each may hold a descriptor for the accept-line timeout.
inline constexpr std::size_t max_unchecked_per_source = 64;
// Descriptors kept back from --max-connections for everything else the relay
// opens (its listeners come on top): the spare descriptor, stdio, epoll and
// eventfds, the state file, pipes of busy pairs.
inline constexpr std::size_t descriptor_headroom = 128;
// The least --max-connections worth starting with.
inline constexpr std::size_t min_connections = 16;

// Signal to exit: listeners and sessions are closed, then the process ends.
inline constexpr auto shutdown_deadline = 2s;

// A reload waits this long for the actors to take a new token table; they
// answer in microseconds, so running out means the relay is stuck, and the
// reload is refused rather than left hanging.
inline constexpr auto reload_answer_timeout = 5s;
// Admin endpoint (serve --admin). The default port `tlsrelay status` asks.
inline constexpr std::string_view admin_url = "http://127.0.0.1:9100";
// The HTTP handler waits this long for the actors' answer (then 503, and
// /healthz fails); the pool_manager gives each session a little less, so
// that it can still answer in time when one does not.
inline constexpr auto admin_actor_timeout = 1s;
inline constexpr auto admin_session_answer_timeout = 800ms;
// An admin connection must send its request (and read the answer) within
// this; one request per connection (no keep-alive).
inline constexpr auto admin_io_timeout = 5s;
// Admin connections open at once; more are closed at accept (scrapers and
// health checks are few).
inline constexpr std::size_t admin_max_connections = 16;
// Request line and headers, and body (POST /reload has none).
inline constexpr std::size_t admin_max_header_bytes = 8 * 1024;
inline constexpr std::size_t admin_max_body_bytes = 1024;
// `tlsrelay status`: connect, send and read within this.
inline constexpr auto status_command_timeout = 5s;
// SIGTERM/SIGINT drains: joined pairs may finish for this long before the
// relay exits (--drain-timeout). Above most requests, below systemd's default
// stop timeout (90 s).
inline constexpr auto drain_timeout = 30s;
// Beyond the drain timeout, how long serve waits for the actors to report
// the drain over before it stops anyway: the report is due at the timeout.
inline constexpr auto drain_report_margin = 5s;

// -- cluster (serve --cluster-listen) -----------------------------------------------
// Nodes of another cluster version refuse each other (with a log line on both).
inline constexpr std::uint32_t cluster_version = 1;
// A peer silent this long (no heartbeat) is down (--peer-timeout); CAF's down
// message says so sooner when its connection breaks.
inline constexpr auto peer_timeout = 5s;
// Heartbeats (and gossip) go out this many times per peer timeout.
inline constexpr unsigned heartbeats_per_peer_timeout = 5;
// A lost or unreachable peer is tried again after a delay that doubles from
// the first to the last, each with ±50 % jitter.
inline constexpr auto peer_retry_first = 200ms;
inline constexpr auto peer_retry_last = 10s;
// Connecting to a peer (TCP, TLS, CAF's handshake) and its answer to our join.
inline constexpr auto peer_connect_timeout = 5s;
// The pool_manager's questions to the cluster_member; past it a node serves
// the server itself rather than keep it waiting.
inline constexpr auto placement_timeout = 2s;

}  // namespace tlsrelay::defaults
