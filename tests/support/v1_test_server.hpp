// The "server" of protocol v1 (the program behind NAT), played by a test:
// a TLS control connection to the relay, the listener lines, new_connection
// announcements and reverse connections. Every wait has a deadline.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

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

// A TLS connection (TLS 1.2 or 1.3, the relay verified against the CA, no
// host name check) carrying \r\n-terminated lines. Non-blocking socket,
// every operation bounded by poll deadlines.
class tls_line_conn {
 public:
  // TCP-connects to 127.0.0.1:port; the handshake is separate.
  tls_line_conn(std::uint16_t port, const tls_identity& identity,
                millis timeout = default_timeout);
  ~tls_line_conn();
  tls_line_conn(const tls_line_conn&) = delete;
  tls_line_conn& operator=(const tls_line_conn&) = delete;

  // Runs the handshake. True on success; false if the peer refused it or
  // closed (reason in close_reason()); throws io_error on timeout.
  bool handshake(millis timeout = default_timeout);

  // The next line without its \r\n; nullopt if the connection ends first
  // (reason in close_reason()). Throws io_error on timeout, with whatever
  // partial line had arrived.
  std::optional<std::string> read_line(millis timeout = default_timeout);

  // Waits for the relay to end the connection and returns every byte that
  // arrived before that (lines included). Throws io_error on timeout.
  std::string read_until_closed(millis timeout = default_timeout);

  // Ends the connection: close_notify (best effort), then close(2).
  void close();
  // shutdown(2) on the socket, so a thread blocked in read_line returns.
  void interrupt();

  bool closed() const { return closed_; }
  const std::string& close_reason() const { return close_reason_; }
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
  std::string buf_;
  bool closed_ = false;
  std::string close_reason_;
  std::uint16_t port_;
};

// host:port from a listener line.
struct listener_address {
  std::string host;
  std::uint16_t port = 0;
};

// A v1 server behind the relay.
class v1_test_server {
 public:
  using handler = std::function<void(tcp_conn&)>;

  // Connects to the control port and completes the TLS handshake (throws
  // io_error if it fails). Does not read any line yet: see greet().
  v1_test_server(std::uint16_t control_port, const std::filesystem::path& keys_dir,
                 millis timeout = default_timeout);
  v1_test_server(std::uint16_t control_port, const tls_identity& identity,
                 millis timeout = default_timeout);
  // Stops serving, closes the control connection and every reverse
  // connection, joins every thread.
  ~v1_test_server();
  v1_test_server(const v1_test_server&) = delete;
  v1_test_server& operator=(const v1_test_server&) = delete;

  // Reads the two lines the relay sends first, `public_listener H:P` and
  // `reverse_listener H:P` (in this order); throws io_error, quoting what
  // came instead, otherwise.
  void greet(millis timeout = default_timeout);
  // greet(), except that a first line `no_available_listeners` (the pool
  // is empty) returns false instead of throwing.
  bool try_greet(millis timeout = default_timeout);
  const std::vector<std::string>& greeting() const { return greeting_; }
  const listener_address& public_listener() const { return public_; }
  const listener_address& reverse_listener() const { return reverse_; }

  // The next control line (without \r\n), nullopt if the relay closed.
  std::optional<std::string> read_line(millis timeout = default_timeout);
  // Waits for the next control line and requires it to be `new_connection`.
  void expect_new_connection(millis timeout = default_timeout);
  // Opens a reverse connection to the port of reverse_listener.
  tcp_conn open_reverse(millis timeout = default_timeout);
  // expect_new_connection() then open_reverse(): the test plays the server's
  // end of one relayed connection.
  tcp_conn accept_client(millis timeout = default_timeout);

  // From now on a background thread owns the control connection: for each
  // new_connection it opens a reverse connection and runs `h` on it in a
  // thread of its own. Errors (exceptions) are collected in errors().
  void serve(handler h);
  // serve() with an echo: every byte back, EOF answered with EOF.
  void serve_echo();
  std::size_t connections_served() const { return served_.load(); }
  std::vector<std::string> errors() const;

  // Ends the control connection (the server goes away); reverse
  // connections already open stay as they are.
  void disconnect();
  tls_line_conn& control() { return *control_; }

 private:
  void stop_serving();

  std::unique_ptr<tls_line_conn> control_;
  std::vector<std::string> greeting_;
  listener_address public_, reverse_;

  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> served_{0};
  std::thread control_thread_;
  mutable std::mutex mutex_;  // guards the three below
  std::vector<std::thread> handler_threads_;
  std::vector<int> open_reverse_fds_;  // shut down on destruction
  std::vector<std::string> errors_;
};

// Every byte back until EOF, then EOF; a reset ends it quietly.
void echo(tcp_conn& conn);

}  // namespace tlsrelay::test
