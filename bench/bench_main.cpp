// tlsrelay-bench: load generators, backends and a v1 relay server for benchmarks.
// Each mode prints exactly one JSON object on stdout at the end; human text on stderr.
#include <cstdio>
#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "bench/bench_common.hpp"
#include "bench/bench_modes.hpp"

using namespace tlsrelay::bench;

int main(int argc, char** argv) {
  install_signal_handlers();
  CLI::App app{"tlsrelay-bench: benchmark loads, sink/echo backends and a v1 relay agent",
               "tlsrelay-bench"};
  app.require_subcommand(1);
  std::function<int()> run;
  std::string mode;

  static backend_options sink_o, echo_o;
  sink_o.kind = backend_kind::sink;
  echo_o.kind = backend_kind::echo;
  for (auto* o : {&sink_o, &echo_o}) {
    const bool sink = o->kind == backend_kind::sink;
    auto* cmd = app.add_subcommand(
      sink ? "sink" : "echo",
      sink ? "backend: read everything, answer running totals (8-byte little-endian)"
           : "backend: write back what is read");
    cmd->add_option("--listen", o->listen, "HOST:PORT to listen on (port 0: any free port)")
      ->required();
    cmd->add_option("--threads", o->threads, "epoll worker threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
    cmd->callback([o, &run, &mode] {
      mode = backend_name(o->kind);
      run = [o] { return run_backend(*o); };
    });
  }

  static bulk_options bulk_o;
  auto* bulk = app.add_subcommand("bulk", "N streams write into a sink for T s; acknowledged bytes count");
  bulk->add_option("--target", bulk_o.target, "HOST:PORT of a sink (or what leads to one)")->required();
  bulk->add_option("--streams", bulk_o.streams, "connections")->capture_default_str()->check(CLI::Range(1, 10000));
  bulk->add_option("--seconds", bulk_o.seconds, "duration")->capture_default_str()->check(CLI::Range(0.001, 86400.0));
  bulk->add_option("--chunk-kib", bulk_o.chunk_kib, "write size in KiB")->capture_default_str()->check(CLI::Range(1, 65536));
  bulk->add_option("--drain-timeout", bulk_o.drain_timeout, "seconds to wait for the final totals")
    ->capture_default_str()->check(CLI::Range(0.0, 3600.0));
  bulk->callback([&] {
    mode = "bulk";
    run = [] { return run_bulk(bulk_o); };
  });

  static latency_options lat_o;
  auto* lat = app.add_subcommand("latency", "ping-pong on one connection to an echo; percentiles in us");
  lat->add_option("--target", lat_o.target, "HOST:PORT of an echo")->required();
  lat->add_option("--round-trips", lat_o.round_trips, "measured round trips")->capture_default_str()->check(CLI::Range(1u, 100000000u));
  lat->add_option("--warmup", lat_o.warmup, "round trips before measuring")->capture_default_str();
  lat->add_option("--size", lat_o.size, "message bytes")->capture_default_str()->check(CLI::Range(1u, 1u << 20));
  lat->add_option("--timeout", lat_o.timeout, "seconds one round trip may take")->capture_default_str()->check(CLI::Range(0.001, 3600.0));
  lat->callback([&] {
    mode = "latency";
    run = [] { return run_latency(lat_o); };
  });

  static connect_options con_o;
  auto* con = app.add_subcommand("connect", "C slots: connect, 1-byte echo, close, again, for T s");
  con->add_option("--target", con_o.target, "HOST:PORT of an echo")->required();
  con->add_option("--slots", con_o.slots, "concurrent connection attempts")->capture_default_str()->check(CLI::Range(1, 10000));
  con->add_option("--seconds", con_o.seconds, "duration")->capture_default_str()->check(CLI::Range(0.001, 86400.0));
  con->add_option("--timeout", con_o.timeout, "seconds one attempt may take")->capture_default_str()->check(CLI::Range(0.001, 3600.0));
  con->callback([&] {
    mode = "connect";
    run = [] { return run_connect(con_o); };
  });

  static hold_options hold_o;
  auto* hold = app.add_subcommand("hold", "open K connections to an echo, echo twice, measure RSS of --pid");
  hold->add_option("--target", hold_o.target, "HOST:PORT of an echo")->required();
  hold->add_option("--count", hold_o.count, "connections")->capture_default_str()->check(CLI::Range(1, 1000000));
  hold->add_option("--pid", hold_o.pid, "process whose VmRSS is measured")->check(CLI::PositiveNumber);
  hold->add_option("--window", hold_o.window, "connections being set up at once")->capture_default_str()->check(CLI::Range(1, 100000));
  hold->add_option("--timeout", hold_o.timeout, "seconds one connection or echo may take")->capture_default_str()->check(CLI::Range(0.001, 3600.0));
  hold->add_option("--pause", hold_o.pause, "seconds between the two echoes")->capture_default_str()->check(CLI::Range(0.0, 3600.0));
  hold->callback([&] {
    mode = "hold";
    run = [] { return run_hold(hold_o); };
  });

  static agent_options agent_o;
  static std::string agent_backend = "echo";
  auto* agent = app.add_subcommand("agent", "a protocol v1 server: serves relayed connections as echo or sink");
  agent->add_option("--relay", agent_o.relay, "HOST:PORT of the relay's control port")->required();
  agent->add_option("--keys", agent_o.keys, "directory with ca.crt.pem, client.crt.pem, client.key.pem")->required();
  agent->add_option("--backend", agent_backend, "echo or sink")->capture_default_str()->check(CLI::IsMember({"echo", "sink"}));
  agent->add_option("--threads", agent_o.threads, "epoll worker threads")->capture_default_str()->check(CLI::Range(1, 64));
  agent->add_option("--timeout", agent_o.timeout, "seconds for the handshake and the listener lines")->capture_default_str()->check(CLI::Range(0.001, 3600.0));
  agent->callback([&] {
    mode = "agent";
    agent_o.backend = agent_backend == "sink" ? backend_kind::sink : backend_kind::echo;
    run = [] { return run_agent(agent_o); };
  });

  static sessions_options ses_o;
  auto* ses = app.add_subcommand("sessions", "hold S idle control sessions (v1, or v2 with --v2) to a relay; RSS of --pid");
  ses->add_option("--relay", ses_o.relay, "HOST:PORT of the relay's control port")->required();
  ses->add_option("--keys", ses_o.keys, "directory with ca.crt.pem, client.crt.pem, client.key.pem")->required();
  ses->add_option("--count", ses_o.count, "control sessions")->capture_default_str()->check(CLI::Range(1, 1000000));
  ses->add_option("--pid", ses_o.pid, "process whose VmRSS is measured (the relay)")->check(CLI::PositiveNumber);
  ses->add_option("--window", ses_o.window, "sessions being set up at once")->capture_default_str()->check(CLI::Range(1, 100000));
  ses->add_option("--timeout", ses_o.timeout, "seconds one session may take to be established")->capture_default_str()->check(CLI::Range(0.001, 3600.0));
  ses->add_flag("--v2", ses_o.v2, "protocol v2 sessions (ALPN tlsrelay/2, hello 2) instead of v1");
  ses->add_option("--name-prefix", ses_o.name_prefix, "with --v2: each hello asks for the name PREFIX-<index>");
  ses->callback([&] {
    mode = "sessions";
    run = [] { return run_sessions(ses_o); };
  });

  static flood_options flood_o;
  auto* flood = app.add_subcommand("flood", "keep N TLS handshakes with a relay's control port under way for T s");
  flood->add_option("--relay", flood_o.relay, "HOST:PORT of the relay's control port")->required();
  flood->add_option("--keys", flood_o.keys, "directory with ca.crt.pem, client.crt.pem, client.key.pem")->required();
  flood->add_option("--concurrency", flood_o.concurrency, "handshakes under way at once")->capture_default_str()->check(CLI::Range(1, 100000));
  flood->add_option("--seconds", flood_o.seconds, "duration")->capture_default_str()->check(CLI::Range(0.001, 86400.0));
  flood->add_option("--timeout", flood_o.timeout, "seconds one connect and handshake may take")->capture_default_str()->check(CLI::Range(0.001, 3600.0));
  flood->callback([&] {
    mode = "flood";
    run = [] { return run_flood(flood_o); };
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tlsrelay-bench: error: %s\n", e.what());
    return 2;
  }
  if (!run) return 2;
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tlsrelay-bench %s: %s\n", mode.c_str(), e.what());
    return 1;
  }
}
