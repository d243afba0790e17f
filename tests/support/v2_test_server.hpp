// The "server" of protocol v2 (the program behind NAT), played by a test: a
// TLS control connection offering ALPN "tlsrelay/2" (a client certificate is
// optional), `hello 2 ...` first, the relay's answer, `new_connection <ID>
// <CLIENT>` announcements, reverse connections that start `accept <ID>`, and
// pings answered automatically or (to play a dead agent) not at all.
// Lines are built and read with protocol/v2.hpp. Every wait has a deadline.
#pragma once

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
#include "protocol/wire.hpp"
#include "tests/support/socket_io.hpp"
#include "tests/support/tls_client.hpp"
#include "tests/support/v1_test_server.hpp"  // listener_address, echo

namespace tlsrelay::test {

// The local port of a connected socket (what the relay sees as the client's port).
std::uint16_t local_port_of(const tcp_conn& conn);

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

// The TLS side of a v2 control connection: a TLS client offering ALPN
// tlsrelay/2 (unless told otherwise).
class v2_control_conn : public tls_client_conn {
 public:
  // TCP-connects to host:port; the handshake is separate.
  v2_control_conn(const std::string& host, std::uint16_t port, const tls_identity& identity,
                  bool offer_alpn = true, millis timeout = default_timeout)
      : tls_client_conn(host, port, identity, offer_alpn ? wire::alpn_v2 : std::string_view(),
                        timeout) {}
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
