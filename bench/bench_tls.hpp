// tlsrelay-bench: the TLS client side of a protocol v1 control connection, shared by
// `agent` (one session) and `sessions` (many). Keys come from a tlsrelay keys directory:
// client certificate DIR/client.crt.pem + DIR/client.key.pem, relay verified against
// DIR/ca.crt.pem. Every step is non-blocking; the caller waits for readiness.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

#include "bench/bench_common.hpp"
#include "protocol/line_splitter.hpp"

namespace tlsrelay::bench {

// The queued OpenSSL errors as text (the queue is emptied).
std::string openssl_errors();

struct ssl_ctx_deleter {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct ssl_deleter {
  void operator()(SSL* p) const { SSL_free(p); }
};
using ssl_ctx_ptr = std::unique_ptr<SSL_CTX, ssl_ctx_deleter>;
using ssl_ptr = std::unique_ptr<SSL, ssl_deleter>;

// A client context from the keys directory (TLS 1.2+, the relay's chain verified against
// the CA, its host name not checked), offering ALPN `alpn` when not empty. Throws
// bench_error.
ssl_ctx_ptr make_client_context(const std::string& dir, const std::string& alpn = {});

// A client SSL on a (non-blocking, connected or connecting) socket. Throws bench_error.
ssl_ptr new_client_ssl(SSL_CTX* ctx, int fd);

// The protocol the relay chose by ALPN, "" if none.
std::string selected_alpn(SSL* ssl);

// One step of a non-blocking handshake (SSL_connect).
enum class tls_step { done, want_read, want_write, failed };
// On failure `error` says why (certificate verification or the OpenSSL errors), and
// `*peer_closed` (when given) whether the peer closed or reset the connection before the
// handshake ended.
tls_step handshake_step(SSL* ssl, const std::string& peer, std::string& error,
                        bool* peer_closed = nullptr);

// The whole handshake by `deadline`, waiting with poll(); throws bench_error on
// failure, timeout or a stop request.
void handshake(SSL* ssl, int fd, const std::string& peer, steady::time_point deadline);

// What reading a control connection found.
struct control_read {
  bool open = true;         // false: closed or failed (then `kind` and `error` say how)
  bool want_write = false;  // OpenSSL needs the socket writable before it can read on
  const char* kind = "";    // "closed" (the relay closed), "too_long", "tls"
  std::string error;
};

// Reads whatever the connection has now, handing each complete line (without its ending)
// to on_line(std::string_view); stops at the first error.
template <class OnLine>
control_read read_control_lines(SSL* ssl, line_splitter& lines, OnLine&& on_line);

// ---- implementation of the template

// Writes as much of `pending` as the connection takes now and drops that from its front.
// Returns false when the connection failed (`error` says why); `want_write` is set when
// OpenSSL needs the socket writable to go on (a want-read is met by the caller's reads).
bool write_pending(SSL* ssl, std::string& pending, bool& want_write, std::string& error);

// One SSL_read into buf; > 0: bytes; 0: would block (want_write set when it needs
// POLLOUT); < 0: closed or failed (`out` filled in).
int read_some(SSL* ssl, char* buf, int size, control_read& out);

template <class OnLine>
control_read read_control_lines(SSL* ssl, line_splitter& lines, OnLine&& on_line) {
  control_read out;
  char buf[16 * 1024];
  for (;;) {
    const int r = read_some(ssl, buf, sizeof buf, out);
    if (r <= 0) return out;
    lines.append(std::string_view(buf, static_cast<std::size_t>(r)));
    for (;;) {
      const auto next = lines.next();
      if (next.state == line_splitter::status::line) {
        on_line(next.line);
        continue;
      }
      if (next.state == line_splitter::status::too_long) {
        out.open = false;
        out.kind = "too_long";
        out.error = "the relay sent an over-long control line";
        return out;
      }
      break;
    }
  }
}

}  // namespace tlsrelay::bench
