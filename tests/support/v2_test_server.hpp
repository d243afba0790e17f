// The "server" of protocol v2 (the program behind NAT), played by a test: a
// TLS control connection offering ALPN "tlsrelay/2" (a client certificate is
// optional), `hello 2 ...` first, the relay's answer, `new_connection <ID>
// <CLIENT>` announcements, reverse connections that start `accept <ID>`, and
// pings answered automatically or (to play a dead agent) not at all.
// Lines are built and read with protocol/v2.hpp. Every wait has a deadline.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "protocol/v2.hpp"
#include "tests/support/socket_io.hpp"
#include "tests/support/v1_test_server.hpp"  // tls_identity, listener_address, echo

namespace tlsrelay::test {

// "host:port", or "[v6]:port" for an IPv6 literal.
std::string host_port_text(const std::string& host, std::uint16_t port);

// A plain TCP connection to a numeric IPv4 or IPv6 address (tcp_conn::connect
// knows 127.0.0.1 only). Throws io_error if refused or on timeout.
tcp_conn tcp_connect_to(const std::string& host, std::uint16_t port,
                        millis timeout = default_timeout);

// The local port of a connected socket (what the relay sees as the client's port).
std::uint16_t local_port_of(const tcp_conn& conn);

// Whether a TCP socket can be bound to the numeric address `host` (port 0).
bool can_bind(const std::string& host);

// The two ends of an IPv4 TCP connection, as the kernel lists them: what the
// test needs to find the peer's end (the relay's socket) in /proc/net/tcp.
struct tcp4_ends {
  std::uint32_t our_address = 0, peer_address = 0;  // network byte order
  std::uint16_t our_port = 0, peer_port = 0;        // host byte order
};
tcp4_ends ends_of(const tcp_conn& conn);

// Waits until the peer of `conn` (a process on this machine; IPv4 only) has
// read every byte sent on `conn`: its end of the connection shows no unread
// byte in /proc/net/tcp, or no longer exists. How a test learns that the
// relay has taken the first line of a reverse connection (it reads exactly
// that line, then tells its actors in the same step), without waiting a
// guessed time. Throws io_error on timeout.
void wait_until_peer_has_read(const tcp_conn& conn, millis timeout = default_timeout);

// Waits until the peer's end of a connection whose ends were `ends` is
// closed (gone, or past CLOSE_WAIT in /proc/net/tcp): the peer noticed our
// close and closed its socket. Throws io_error on timeout.
void wait_until_peer_closed(const tcp4_ends& ends, millis timeout = default_timeout);

// The TLS side of a v2 control connection: ALPN tlsrelay/2 offered (unless
// told otherwise), the relay verified against the CA (no host name check),
// \r\n-terminated lines. Non-blocking socket, poll(2) deadlines. One thread
// may read while others write (SSL calls are serialised by a mutex).
class v2_control_conn {
 public:
  // TCP-connects to host:port; the handshake is separate.
  v2_control_conn(const std::string& host, std::uint16_t port, const tls_identity& identity,
                  bool offer_alpn = true, millis timeout = default_timeout);
  ~v2_control_conn();
  v2_control_conn(const v2_control_conn&) = delete;
  v2_control_conn& operator=(const v2_control_conn&) = delete;

  // True on success; false if the relay refused or closed (close_reason());
  // throws io_error on timeout. With TLS 1.3 the client side completes
  // before the relay has judged the certificate: what follows tells.
  bool handshake(millis timeout = default_timeout);
  // The protocol ALPN chose ("" for none).
  std::string alpn_selected() const;

  // The next line without its \r\n; nullopt if the connection ends first.
  // Throws io_error on timeout.
  std::optional<std::string> read_line(millis timeout = default_timeout);
  // Every byte until the relay ends the connection. Throws io_error on timeout.
  std::string read_until_closed(millis timeout = default_timeout);
  // Writes all of `bytes`; throws io_error if the connection fails or on timeout.
  void write(std::string_view bytes, millis timeout = default_timeout);

  // close_notify (best effort), then close(2).
  void close();
  // shutdown(2), so a thread blocked reading returns.
  void interrupt();

  bool closed() const;
  std::string close_reason() const;
  const std::string& peer() const { return peer_; }

 private:
  bool fill(steady::time_point deadline, millis timeout, const char* waiting_for);
  void note_closed(const std::string& reason);

  struct ctx_free {
    void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
  };
  struct ssl_free {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
  };

  std::unique_ptr<SSL_CTX, ctx_free> ctx_;
  std::unique_ptr<SSL, ssl_free> ssl_;
  unique_fd fd_;
  std::string peer_;
  std::string buf_;  // reader's only
  mutable std::mutex mutex_;  // guards ssl_ calls, closed_, close_reason_
  bool closed_ = false;
  std::string close_reason_;
};

// What the relay answered to a hello.
struct hello_answer {
  std::optional<std::string> first_line;       // nullopt: closed without a line
  bool welcomed = false;                        // welcome + both listener lines
  std::optional<v2::error> error;               // `error <code> <text>`
  bool no_available_listeners = false;
  bool closed_after_refusal = false;            // refused, then EOF with no further byte
  std::string after_refusal;                    // bytes after the refusal line
  millis answer_time{0};                        // hello sent → first line (or close)
  std::string close_reason;                     // how the connection ended, if it did
};

// A v2 server behind the relay.
class v2_test_server {
 public:
  struct options {
    std::string host = "127.0.0.1";  // where the relay is (control and reverse)
    bool offer_alpn = true;          // false: a v1 client's handshake
    bool answer_pings = true;        // false: a dead agent that never answers
  };
  using handler = std::function<void(tcp_conn&)>;

  // Connects to the control port and completes the TLS handshake (throws
  // io_error if it fails). Sends nothing yet.
  v2_test_server(std::uint16_t control_port, const tls_identity& identity, options opt,
                 millis timeout = default_timeout);
  v2_test_server(std::uint16_t control_port, const tls_identity& identity,
                 millis timeout = default_timeout)
      : v2_test_server(control_port, identity, options{}, timeout) {}
  // Stops serving, closes the control and every reverse connection it
  // opened, joins every thread.
  ~v2_test_server();
  v2_test_server(const v2_test_server&) = delete;
  v2_test_server& operator=(const v2_test_server&) = delete;

  // The identity of a keys directory: with the client certificate or without.
  static tls_identity with_certificate(const std::filesystem::path& keys_dir);
  static tls_identity without_certificate(const std::filesystem::path& keys_dir);

  // A raw control line (\r\n is added).
  void send_line(std::string_view line, millis timeout = default_timeout);
  void send_hello(const v2::hello& hello, millis timeout = default_timeout);

  // Sends the hello and reads the answer: welcome + public_listener +
  // reverse_listener, or a refusal (then waits for the close).
  hello_answer say_hello(const v2::hello& hello, millis timeout = default_timeout);
  // say_hello() that must be welcomed; throws io_error quoting the answer otherwise.
  void greet(const v2::hello& hello = {}, millis timeout = default_timeout);

  const std::string& session_secret() const { return session_secret_; }
  const listener_address& public_listener() const { return public_; }
  const listener_address& reverse_listener() const { return reverse_; }
  // The greeting lines as received (welcome, public_listener, reverse_listener).
  const std::vector<std::string>& greeting() const { return greeting_; }

  // The next control line (without \r\n) that is not a relay ping; nullopt
  // if the relay closed. Pings are counted and answered with pong when the
  // server answers pings. Throws io_error on timeout.
  std::optional<std::string> read_line(millis timeout = default_timeout);
  // The next line, parsed; throws io_error if it is not a relay line or the
  // connection ended.
  v2::relay_message read_message(millis timeout = default_timeout);
  // The next line must be `new_connection <ID> <CLIENT>`.
  v2::new_connection expect_new_connection(millis timeout = default_timeout);
  // Sends `ping` and reads until `pong`; returns the lines that came before
  // it. Everything the relay sent before it read our ping has then arrived.
  std::vector<std::string> ping_pong(millis timeout = default_timeout);
  // Every byte until the relay ends the control connection.
  std::string read_until_closed(millis timeout = default_timeout);

  // A reverse connection to the reverse port, nothing written yet.
  tcp_conn open_reverse(millis timeout = default_timeout);
  // A reverse connection whose first bytes are `first_bytes` as given.
  tcp_conn open_reverse_with(std::string_view first_bytes, millis timeout = default_timeout);
  // A reverse connection that starts `accept <ID>\r\n`.
  tcp_conn accept(const connection_id& id, millis timeout = default_timeout);
  // expect_new_connection() then accept() for its id.
  tcp_conn accept_client(millis timeout = default_timeout);

  // `ready <SERIAL> <TAG>\r\n` with TAG = warm_ticket::tag(session secret,
  // serial): the first line of a warm reverse connection of this session.
  std::string ready_line(std::uint64_t serial) const;
  // A warm reverse connection: a reverse connection that starts
  // ready_line(serial). The relay reads that line asynchronously; see
  // wait_until_peer_has_read().
  tcp_conn open_warm(std::uint64_t serial, millis timeout = default_timeout);

  // From now on a background thread owns the control connection: pings are
  // handled as above; for each new_connection it opens a reverse connection
  // with the right accept line and runs `h` on it in a thread of its own.
  // Errors and unexpected lines are collected in errors().
  void serve(handler h);
  void serve_echo();

  void set_answer_pings(bool answer) { answer_pings_ = answer; }
  std::size_t pings_received() const { return pings_.load(); }
  std::size_t connections_served() const { return served_.load(); }
  std::vector<std::string> errors() const;
  // Whether the background thread saw the relay end the control connection.
  bool control_ended() const { return control_ended_.load(); }

  // Ends the control connection; reverse connections stay as they are.
  void disconnect();
  v2_control_conn& control() { return *control_; }

 private:
  void stop_serving();
  void track_reverse(tcp_conn& conn, handler h);

  options options_;
  std::unique_ptr<v2_control_conn> control_;
  std::vector<std::string> greeting_;
  std::string session_secret_;
  listener_address public_, reverse_;

  std::atomic<bool> answer_pings_{true};
  std::atomic<std::size_t> pings_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> control_ended_{false};
  std::atomic<std::size_t> served_{0};
  std::thread control_thread_;
  mutable std::mutex mutex_;  // guards the three below
  std::vector<std::thread> handler_threads_;
  std::vector<int> open_reverse_fds_;
  std::vector<std::string> errors_;
};

}  // namespace tlsrelay::test
