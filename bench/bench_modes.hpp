// tlsrelay-bench: the modes. Each returns the process exit code and prints one JSON
// object on stdout; it throws bench_error when it cannot run at all (then main prints
// "tlsrelay-bench MODE: reason" on stderr, no JSON, exit 1). Every object has "mode" and
// "ok"; when ok is false it has "error" and the exit code is 1.
//
//   sink|echo --listen H:P [--threads 1]          (until SIGTERM/SIGINT; "listening on H:P" on stderr)
//     listen threads uptime_s connections peak_open resets accept_errors bytes_in bytes_out [acks]
//   bulk --target H:P --streams 4 --seconds 10 [--chunk-kib 64] [--drain-timeout 10]
//     target streams seconds elapsed_s chunk_bytes bytes_written bytes_acked gbit_s
//     per_stream_bytes_acked all_bytes_acked        (gbit_s = bytes_acked * 8 / seconds / 1e9)
//   latency --target H:P --round-trips 20000 --warmup 2000 [--size 64] [--timeout 5]
//     target round_trips warmup message_bytes elapsed_s p50_us p90_us p99_us p999_us mean_us
//     min_us max_us
//   connect --target H:P --slots 32 --seconds 10 [--timeout 5]
//     target slots seconds elapsed_s connections connections_per_s failures failure_kinds
//     p50_ms p99_ms mean_ms max_ms
//   hold --target H:P --count K [--pid PID] [--window 32] [--timeout 10] [--pause 1]
//     target count window established held failures failure_kinds setup_s setup_per_s
//     second_echo_s [pid rss_kib_before rss_kib_after rss_bytes_per_connection]
//     (failures = count - held; ok only when every connection was held)
//   agent --relay H:P --keys DIR --backend echo|sink [--threads 1] [--timeout 10]
//     stdout first: "public HOST:PORT"; at SIGTERM/SIGINT: relay backend threads public
//     reverse uptime_s new_connections reverse_connected reverse_failures peak_open resets
//     bytes_in bytes_out [acks]
//   sessions --relay H:P --keys DIR --count S [--pid PID] [--window 32] [--timeout 10]
//     S idle v1 control sessions (agent's TLS client, bench_tls), `window` being set up at
//     once; one is established once public_listener and reverse_listener have arrived.
//     stdout first: "held N" (N established; with --pid "held N rss_kib_before B
//     rss_kib_after A"); then holds them, a session the relay closes being a failure (with
//     none established it ends at once); at SIGTERM/SIGINT: relay count window established
//     open_at_end failures failure_kinds setup_s setup_per_s held_s new_connection_lines
//     protocol names [pings_answered] [pid rss_kib_before rss_kib_after rss_bytes_per_session]
//     With --v2 [--name-prefix P]: protocol v2 sessions (ALPN tlsrelay/2, `hello 2
//     [name=P-<index>]`), established once welcome and both listener lines arrived.
//     (failures = count - open_at_end; rss_kib_after is read when "held" is printed;
//     rss_bytes_per_session = (after - before) / established)
//   flood --relay H:P --keys DIR --concurrency 1000 --seconds 10 [--timeout 10]
//     up to N full TLS handshakes under way (ALPN tlsrelay/2, client certificate), a new
//     one as soon as one ends, for T s: relay concurrency seconds elapsed_s started
//     completed refused failed unfinished completed_per_s refused_per_s failed_per_s
//     refused_kinds failure_kinds alpn_v2_selected tls13 peak_in_flight handshake_p50_ms
//     handshake_p99_ms [first_failure]   (ok unless nothing completed or was refused)
#pragma once

#include <string>

#include "bench/bench_serve.hpp"

namespace tlsrelay::bench {

struct backend_options {
  backend_kind kind = backend_kind::sink;
  std::string listen;
  unsigned threads = 1;
};
int run_backend(const backend_options& o);

struct bulk_options {
  std::string target;
  unsigned streams = 4;
  double seconds = 10;
  unsigned chunk_kib = 64;
  double drain_timeout = 10;
};
int run_bulk(const bulk_options& o);

struct latency_options {
  std::string target;
  unsigned round_trips = 20000;
  unsigned warmup = 2000;
  unsigned size = 64;
  double timeout = 5;  // per round trip
};
int run_latency(const latency_options& o);

struct connect_options {
  std::string target;
  unsigned slots = 32;
  double seconds = 10;
  double timeout = 5;  // per connection
};
int run_connect(const connect_options& o);

struct hold_options {
  std::string target;
  unsigned count = 1000;
  long pid = 0;         // 0: no RSS measurement
  unsigned window = 32; // connections being set up at once
  double timeout = 10;  // per connection and echo
  double pause = 1;     // between the two echoes
};
int run_hold(const hold_options& o);

struct agent_options {
  std::string relay;
  std::string keys;
  backend_kind backend = backend_kind::echo;
  unsigned threads = 1;
  double timeout = 10;  // TLS handshake and listener lines
};
int run_agent(const agent_options& o);

struct sessions_options {
  std::string relay;
  std::string keys;
  unsigned count = 1000;
  long pid = 0;          // 0: no RSS measurement
  unsigned window = 32;  // sessions being set up at once
  double timeout = 10;   // per session: connect, TLS handshake and listener lines
  bool v2 = false;          // protocol v2 sessions (ALPN tlsrelay/2, hello 2)
  std::string name_prefix;  // v2: hello with name=PREFIX-<index>; empty: no name
};
int run_sessions(const sessions_options& o);

struct flood_options {
  std::string relay;
  std::string keys;
  unsigned concurrency = 1000;  // handshakes under way at once
  double seconds = 10;
  double timeout = 10;  // per attempt: connect and handshake
};
int run_flood(const flood_options& o);

}  // namespace tlsrelay::bench
