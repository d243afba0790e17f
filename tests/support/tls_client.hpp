// The TLS client end that the test servers (v1 and v2) use toward the
// relay's control port: OpenSSL directly, the relay verified against a CA
// (no host name check: v1 says nothing about names in the relay's
// certificate), an optional client certificate, optional ALPN,
// \r\n-terminated lines. Non-blocking socket, every operation bounded by
// poll(2) deadlines. One thread may read while others write (SSL calls are
// serialised by a mutex).
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "tests/support/socket_io.hpp"

namespace tlsrelay::test {

// What the server side presents and trusts on the control connection.
struct tls_identity {
  std::filesystem::path ca_file;  // the relay must be signed by this CA
  std::optional<std::filesystem::path> cert_file;  // none: present no certificate
  std::optional<std::filesystem::path> key_file;

  // ca.crt.pem, client.crt.pem and client.key.pem of a keys directory.
  static tls_identity from_keys_dir(const std::filesystem::path& dir);
};

class tls_client_conn {
 public:
  // TCP-connects to host:port (a numeric address); the handshake is
  // separate. `alpn`: the protocol offered, "" for none (a v1 client).
  // Throws io_error if a file cannot be loaded or the connection fails.
  tls_client_conn(const std::string& host, std::uint16_t port, const tls_identity& identity,
                  std::string_view alpn, millis timeout = default_timeout);
  ~tls_client_conn();
  tls_client_conn(const tls_client_conn&) = delete;
  tls_client_conn& operator=(const tls_client_conn&) = delete;

  // Runs the handshake. True on success; false if the relay refused it or
  // closed (close_reason()); throws io_error on timeout. With TLS 1.3 the
  // client side completes before the relay has judged the certificate: what
  // follows tells.
  bool handshake(millis timeout = default_timeout);
  // The protocol ALPN chose ("" for none).
  std::string alpn_selected() const;

  // The next line without its \r\n; nullopt if the connection ends first
  // (close_reason()). Throws io_error on timeout, with whatever partial line
  // had arrived.
  std::optional<std::string> read_line(millis timeout = default_timeout);
  // Every byte until the relay ends the connection (lines included).
  // Throws io_error on timeout.
  std::string read_until_closed(millis timeout = default_timeout);
  // Writes all of `bytes`; throws io_error if the connection fails or on timeout.
  void write(std::string_view bytes, millis timeout = default_timeout);

  // close_notify (best effort), then close(2).
  void close();
  // shutdown(2) on the socket, so a thread blocked reading returns.
  void interrupt();

  bool closed() const;
  std::string close_reason() const;
  // "host:port" of the relay.
  const std::string& peer() const { return peer_; }
  int fd() const { return fd_.get(); }

 private:
  // Reads once into buf_; false once the connection has ended.
  bool fill(steady::time_point deadline, millis timeout, const char* waiting_for);
  void note_closed(const std::string& reason);

  struct ctx_free {
    void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
  };
  struct ssl_free {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
  };

  // Declared before fd_ so that the socket is closed before SSL is freed.
  std::unique_ptr<SSL_CTX, ctx_free> ctx_;
  std::unique_ptr<SSL, ssl_free> ssl_;
  unique_fd fd_;
  std::string peer_;
  std::string buf_;  // the reader's only
  mutable std::mutex mutex_;  // guards ssl_ calls, closed_, close_reason_
  bool closed_ = false;
  std::string close_reason_;
};

}  // namespace tlsrelay::test
