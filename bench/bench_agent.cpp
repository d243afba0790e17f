// `agent`: a tlsrelay protocol v1 server, as a fast one would be. One TLS control
// connection (bench_tls: client certificate DIR/client.crt.pem + DIR/client.key.pem,
// relay verified against DIR/ca.crt.pem); prints "public HOST:PORT" on stdout once the
// relay has said it; for each `new_connection` opens a plain TCP reverse connection and serves it as
// echo or sink in epoll worker threads (bench_serve). Runs until SIGTERM/SIGINT.
#include <poll.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <optional>

#include "bench/bench_common.hpp"
#include "bench/bench_modes.hpp"
#include "bench/bench_tls.hpp"
#include "protocol/defaults.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/line_splitter.hpp"
#include "protocol/v1.hpp"

namespace tlsrelay::bench {

int run_agent(const agent_options& o) {
  const auto fd_limit = raise_nofile_limit();
  const auto relay = resolve(o.relay);
  auto ctx = make_client_context(o.keys);
  const auto timeout = std::chrono::duration_cast<steady::duration>(
    std::chrono::duration<double>(o.timeout));

  auto fd = connect_with_timeout(relay, std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
  auto ssl = new_client_ssl(ctx.get(), fd.get());
  handshake(ssl.get(), fd.get(), relay.text, steady::now() + timeout);
  note("agent: control connection to " + relay.text + " (" + SSL_get_version(ssl.get()) +
       "), backend " + backend_name(o.backend) + ", open-file limit " + std::to_string(fd_limit));

  serve_pool pool(o.backend, o.threads);
  line_splitter lines(defaults::max_control_line_bytes);
  std::optional<host_port> public_ep, reverse_ep;
  std::optional<address> reverse_addr;
  std::uint64_t new_connections = 0, deferred = 0, immediate_failures = 0, ignored_lines = 0;
  std::string error;
  const auto started = steady::now();
  const auto listeners_deadline = started + timeout;

  auto open_reverse = [&]() {
    try {
      auto s = tcp_socket(*reverse_addr);
      const int err = start_connect(s.get(), *reverse_addr);
      if (err == 0 || err == EINPROGRESS) {
        pool.hand_over(s.release(), err != 0);
        return;
      }
      if (++immediate_failures == 1) note("agent: reverse connect: " + errno_text(err));
    } catch (const bench_error& e) {
      if (++immediate_failures == 1) note(std::string("agent: reverse connection: ") + e.what());
    }
  };
  auto on_line = [&](std::string_view line) {
    v1::relay_message msg;
    if (auto ec = v1::parse_line(line, msg)) {
      if (++ignored_lines <= 5) note("agent: ignoring line '" + std::string(line) + "': " + ec.message());
      return;
    }
    if (auto* p = std::get_if<v1::public_listener>(&msg)) {
      if (!public_ep) {
        public_ep = p->endpoint;
        std::printf("public %s\n", format_host_port(*public_ep).c_str());
        std::fflush(stdout);
        note("agent: public " + format_host_port(*public_ep));
      }
    } else if (auto* r = std::get_if<v1::reverse_listener>(&msg)) {
      reverse_ep = r->endpoint;
      reverse_addr = resolve_host(reverse_ep->host, reverse_ep->port);
      for (; deferred > 0; --deferred) open_reverse();
    } else if (std::holds_alternative<v1::new_connection>(msg)) {
      ++new_connections;
      if (reverse_addr)
        open_reverse();
      else
        ++deferred;
    } else if (std::holds_alternative<v1::no_available_listeners>(msg)) {
      error = "the relay has no available listeners";
    }
  };

  bool want_write = false;
  while (error.empty() && !stop_requested()) {
    if ((!public_ep || !reverse_ep) && steady::now() >= listeners_deadline) {
      error = "no public_listener/reverse_listener line within " + std::to_string(o.timeout) + " s";
      break;
    }
    pollfd p{fd.get(), static_cast<short>(POLLIN | (want_write ? POLLOUT : 0)), 0};
    const int n = ::poll(&p, 1, 200);
    if (n < 0 && errno != EINTR) {
      error = "poll: " + errno_text(errno);
      break;
    }
    if (n <= 0) continue;
    const auto r = read_control_lines(ssl.get(), lines, on_line);
    want_write = r.want_write;
    if (!r.open && error.empty()) error = r.error;
  }
  const double uptime = seconds_between(started, steady::now());
  if (error.empty()) SSL_shutdown(ssl.get());  // best effort, non-blocking
  ssl.reset();
  fd.reset();
  const auto c = pool.stop();

  json_object j;
  j.add("mode", "agent")
    .add("ok", error.empty())
    .add("relay", relay.text)
    .add("backend", backend_name(o.backend))
    .add("threads", o.threads)
    .add("public", public_ep ? format_host_port(*public_ep) : std::string())
    .add("reverse", reverse_ep ? format_host_port(*reverse_ep) : std::string())
    .add("uptime_s", uptime)
    .add("new_connections", new_connections)
    .add("reverse_connected", c.connections)
    .add("reverse_failures", c.connect_failures + immediate_failures)
    .add("peak_open", c.peak_open)
    .add("resets", c.resets)
    .add("bytes_in", c.bytes_in)
    .add("bytes_out", c.bytes_out);
  if (o.backend == backend_kind::sink) j.add("acks", c.acks);
  if (!error.empty()) j.add("error", error);
  print_json(j);
  if (!error.empty()) {
    note("agent: " + error);
    return 1;
  }
  return 0;
}

}  // namespace tlsrelay::bench
