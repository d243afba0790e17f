// The "server" of protocol v1 (the program behind NAT), played by a test:
// a TLS control connection to the relay, the listener lines, new_connection
// announcements and reverse connections. Every wait has a deadline.
#pragma once

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
#include "tests/support/tls_client.hpp"

namespace tlsrelay::test {

// The v1 control connection: a TLS client to 127.0.0.1 that offers no ALPN.
class tls_line_conn : public tls_client_conn {
 public:
  // TCP-connects to 127.0.0.1:port; the handshake is separate.
  tls_line_conn(std::uint16_t port, const tls_identity& identity,
                millis timeout = default_timeout)
      : tls_client_conn("127.0.0.1", port, identity, {}, timeout) {}
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
