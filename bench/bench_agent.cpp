// `agent`: a tlsrelay protocol v1 server, as a fast one would be. One TLS control
// connection (client certificate DIR/client.crt.pem + DIR/client.key.pem, relay verified
// against DIR/ca.crt.pem); prints "public HOST:PORT" on stdout once the relay has said
// it; for each `new_connection` opens a plain TCP reverse connection and serves it as
// echo or sink in epoll worker threads (bench_serve). Runs until SIGTERM/SIGINT.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <optional>

#include "bench/bench_common.hpp"
#include "bench/bench_modes.hpp"
#include "protocol/defaults.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/line_splitter.hpp"
#include "protocol/v1.hpp"

namespace tlsrelay::bench {
namespace {

std::string openssl_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string("no OpenSSL error queued") : out;
}

struct ssl_ctx_deleter {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct ssl_deleter {
  void operator()(SSL* p) const { SSL_free(p); }
};

std::unique_ptr<SSL_CTX, ssl_ctx_deleter> make_context(const std::string& dir) {
  std::unique_ptr<SSL_CTX, ssl_ctx_deleter> ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) throw bench_error("SSL_CTX_new: " + openssl_errors());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  const auto ca = dir + "/ca.crt.pem", crt = dir + "/client.crt.pem", key = dir + "/client.key.pem";
  if (SSL_CTX_load_verify_locations(ctx.get(), ca.c_str(), nullptr) != 1)
    throw bench_error("cannot load " + ca + ": " + openssl_errors());
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), crt.c_str()) != 1)
    throw bench_error("cannot load " + crt + ": " + openssl_errors());
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1)
    throw bench_error("cannot load " + key + ": " + openssl_errors());
  if (SSL_CTX_check_private_key(ctx.get()) != 1)
    throw bench_error(key + " does not match " + crt);
  // The relay's chain is verified against the CA; like the original's servers, the
  // host name is not checked (the relay's certificate names are deployment-specific).
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  return ctx;
}

// Waits for `events` on fd until `deadline`; false on timeout or stop request.
bool wait_fd(int fd, short events, steady::time_point deadline) {
  while (!stop_requested()) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, ms_until(deadline, 200));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) throw bench_error("poll: " + errno_text(errno));
    if (steady::now() >= deadline) return false;
  }
  return false;
}

}  // namespace

int run_agent(const agent_options& o) {
  const auto fd_limit = raise_nofile_limit();
  const auto relay = resolve(o.relay);
  auto ctx = make_context(o.keys);
  const auto timeout = std::chrono::duration_cast<steady::duration>(
    std::chrono::duration<double>(o.timeout));

  auto fd = connect_with_timeout(relay, std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
  std::unique_ptr<SSL, ssl_deleter> ssl(SSL_new(ctx.get()));
  if (!ssl) throw bench_error("SSL_new: " + openssl_errors());
  SSL_set_fd(ssl.get(), fd.get());
  const auto handshake_deadline = steady::now() + timeout;
  for (;;) {
    const int rc = SSL_connect(ssl.get());
    if (rc == 1) break;
    const int err = SSL_get_error(ssl.get(), rc);
    short want = 0;
    if (err == SSL_ERROR_WANT_READ) want = POLLIN;
    else if (err == SSL_ERROR_WANT_WRITE) want = POLLOUT;
    else {
      const long verify = SSL_get_verify_result(ssl.get());
      throw bench_error("TLS handshake with " + relay.text + " failed: " +
                        (verify != X509_V_OK ? std::string(X509_verify_cert_error_string(verify))
                                             : openssl_errors()));
    }
    if (!wait_fd(fd.get(), want, handshake_deadline))
      throw bench_error(stop_requested() ? std::string("interrupted")
                                         : "TLS handshake with " + relay.text + " timed out");
  }
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

  char buf[16 * 1024];
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
    want_write = false;
    for (;;) {
      const int r = SSL_read(ssl.get(), buf, sizeof buf);
      if (r > 0) {
        lines.append(std::string_view(buf, static_cast<std::size_t>(r)));
        for (;;) {
          const auto next = lines.next();
          if (next.state == line_splitter::status::line) {
            on_line(next.line);
          } else {
            if (next.state == line_splitter::status::too_long)
              error = "the relay sent an over-long control line";
            break;
          }
        }
        if (!error.empty()) break;
        continue;
      }
      const int err = SSL_get_error(ssl.get(), r);
      if (err == SSL_ERROR_WANT_READ) break;
      if (err == SSL_ERROR_WANT_WRITE) {
        want_write = true;
        break;
      }
      if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
        error = "the relay closed the control connection";
      else if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        error = "the relay closed the control connection (without a TLS close_notify)";
      else
        error = "control connection: " + openssl_errors();
      break;
    }
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
