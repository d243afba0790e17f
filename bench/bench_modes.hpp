// tlsrelay-bench: the modes. Each returns the process exit code and prints one JSON
// object on stdout; it throws bench_error when it cannot run at all.
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

}  // namespace tlsrelay::bench
