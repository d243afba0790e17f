#include "bench/bench_tls.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <poll.h>

#include <cerrno>

namespace tlsrelay::bench {

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

ssl_ctx_ptr make_client_context(const std::string& dir, const std::string& alpn) {
  ssl_ctx_ptr ctx(SSL_CTX_new(TLS_client_method()));
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
  if (!alpn.empty()) {
    const std::string wire = std::string(1, static_cast<char>(alpn.size())) + alpn;
    // unlike most OpenSSL calls, 0 is success here
    if (SSL_CTX_set_alpn_protos(ctx.get(), reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned>(wire.size())) != 0)
      throw bench_error("cannot offer ALPN " + alpn + ": " + openssl_errors());
  }
  return ctx;
}

ssl_ptr new_client_ssl(SSL_CTX* ctx, int fd) {
  ssl_ptr ssl(SSL_new(ctx));
  if (!ssl) throw bench_error("SSL_new: " + openssl_errors());
  if (SSL_set_fd(ssl.get(), fd) != 1) throw bench_error("SSL_set_fd: " + openssl_errors());
  return ssl;
}

std::string selected_alpn(SSL* ssl) {
  const unsigned char* data = nullptr;
  unsigned size = 0;
  SSL_get0_alpn_selected(ssl, &data, &size);
  return std::string(reinterpret_cast<const char*>(data), size);
}

tls_step handshake_step(SSL* ssl, const std::string& peer, std::string& error,
                        bool* peer_closed) {
  errno = 0;  // SSL_ERROR_SYSCALL leaves the socket's errno, or 0 at end of stream
  const int rc = SSL_connect(ssl);
  if (rc == 1) return tls_step::done;
  const int err = SSL_get_error(ssl, rc);
  if (err == SSL_ERROR_WANT_READ) return tls_step::want_read;
  if (err == SSL_ERROR_WANT_WRITE) return tls_step::want_write;
  const long verify = SSL_get_verify_result(ssl);
  const int sys = errno;
  const bool closed =
    verify == X509_V_OK &&
    ((err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 &&
      (sys == 0 || sys == ECONNRESET || sys == EPIPE)) ||
     ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
  if (peer_closed) *peer_closed = closed;
  std::string why;
  if (verify != X509_V_OK)
    why = X509_verify_cert_error_string(verify);
  else if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
    why = sys != 0 ? errno_text(sys) : std::string("the relay closed the connection");
  else
    why = openssl_errors();
  ERR_clear_error();
  error = "TLS handshake with " + peer + " failed: " + why;
  return tls_step::failed;
}

void handshake(SSL* ssl, int fd, const std::string& peer, steady::time_point deadline) {
  for (;;) {
    std::string error;
    short want = 0;
    switch (handshake_step(ssl, peer, error)) {
      case tls_step::done: return;
      case tls_step::want_read: want = POLLIN; break;
      case tls_step::want_write: want = POLLOUT; break;
      case tls_step::failed: throw bench_error(error);
    }
    for (;;) {
      if (stop_requested()) throw bench_error("interrupted");
      pollfd p{fd, want, 0};
      const int n = ::poll(&p, 1, ms_until(deadline, 200));
      if (n > 0) break;
      if (n < 0 && errno != EINTR) throw bench_error("poll: " + errno_text(errno));
      if (steady::now() >= deadline) throw bench_error("TLS handshake with " + peer + " timed out");
    }
  }
}

bool write_pending(SSL* ssl, std::string& pending, bool& want_write, std::string& error) {
  want_write = false;
  while (!pending.empty()) {
    const int w = SSL_write(ssl, pending.data(), static_cast<int>(pending.size()));
    if (w > 0) {
      pending.erase(0, static_cast<std::size_t>(w));
      continue;
    }
    const int err = SSL_get_error(ssl, w);
    if (err == SSL_ERROR_WANT_READ) return true;
    if (err == SSL_ERROR_WANT_WRITE) {
      want_write = true;
      return true;
    }
    error = err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0
              ? "control connection: " + errno_text(errno)
              : "control connection: " + openssl_errors();
    ERR_clear_error();
    return false;
  }
  return true;
}

int read_some(SSL* ssl, char* buf, int size, control_read& out) {
  const int r = SSL_read(ssl, buf, size);
  if (r > 0) return r;
  const int err = SSL_get_error(ssl, r);
  if (err == SSL_ERROR_WANT_READ) return 0;
  if (err == SSL_ERROR_WANT_WRITE) {
    out.want_write = true;
    return 0;
  }
  out.open = false;
  if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
    out.kind = "closed";
    out.error = "the relay closed the control connection";
  } else if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    out.kind = "closed";
    out.error = "the relay closed the control connection (without a TLS close_notify)";
  } else {
    out.kind = "tls";
    out.error = "control connection: " + openssl_errors();
  }
  ERR_clear_error();
  return -1;
}

}  // namespace tlsrelay::bench
