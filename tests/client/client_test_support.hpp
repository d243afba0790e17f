// What the tests of the client library (and of `tlsrelay expose/connect`)
// share: an io_context on a thread, an echo service, a client with deadlines
// (plain or TLS, IPv4 or IPv6), a relay that can be restarted on the same
// ports, a recorder of listener events, a byte-capturing TCP proxy.
// Loopback only; every wait has a deadline.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include "client/relay_listener.hpp"
#include "client/stream_pump.hpp"
#include "tests/support/child_process.hpp"
#include "tests/support/relay_process.hpp"
#include "tests/support/socket_io.hpp"

// As tests/e2e: the last word of a test that started a relay: SIGTERM, exit 0
// within 2 s, no sanitizer output.
#define CHECK_STOPS_CLEANLY(relay)                           \
  do {                                                       \
    const std::string stop_problems = (relay).stop();        \
    CHECK(stop_problems == "");                              \
  } while (false)

namespace tlsrelay::test {

namespace asio = boost::asio;
using asio_tcp = boost::asio::ip::tcp;

// An io_context run by one thread for the lifetime of the object.
class io_thread {
 public:
  io_thread();
  ~io_thread();
  io_thread(const io_thread&) = delete;
  io_thread& operator=(const io_thread&) = delete;
  asio::io_context& io() { return io_; }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
};

// A TCP echo service on `address` (port chosen by the kernel): every byte
// back; EOF answered with EOF (half-close).
class echo_service {
 public:
  echo_service(asio::io_context& io, const std::string& address = "127.0.0.1");
  ~echo_service();
  std::uint16_t port() const { return port_; }
  std::size_t accepted() const;

  struct state;

 private:
  std::shared_ptr<state> state_;
  std::uint16_t port_ = 0;
};

// What a relayed connection looked like when the test's echo accepted it.
struct accepted_info {
  std::optional<host_port> client;
  std::string id;
  std::string proxy_header;
  bool tls = false;
  bool warm = false;  // paired with a warm connection (relayed_connection::warm)
};

// Accepts every connection of `listener` and echoes it (plain or TLS).
class relayed_echo {
 public:
  explicit relayed_echo(client::relay_listener& listener);
  std::size_t served() const;
  std::vector<accepted_info> accepted() const;
  // Waits until `n` connections were accepted.
  bool wait_served(std::size_t n, millis timeout = default_timeout) const;

  struct state;

 private:
  std::shared_ptr<state> state_;
};

// A blocking client with a deadline on every operation; plain TCP or TLS.
class test_client {
 public:
  // host: an IPv4 or IPv6 address. Throws io_error if refused or timed out.
  static test_client connect(const std::string& host, std::uint16_t port,
                             millis timeout = default_timeout);
  static test_client connect(const host_port& where, millis timeout = default_timeout) {
    return connect(where.host, where.port, timeout);
  }
  test_client(test_client&&) noexcept;
  test_client& operator=(test_client&&) noexcept;
  ~test_client();

  // TLS client handshake; the peer must present a certificate signed by `ca`
  // naming `server_name`. Throws io_error (with OpenSSL's reason) on failure.
  void start_tls(const std::filesystem::path& ca, const std::string& server_name,
                 millis timeout = default_timeout);
  // The same, returning the failure reason instead of throwing ("" on success).
  std::string try_start_tls(const std::filesystem::path& ca, const std::string& server_name,
                            millis timeout = default_timeout);

  void send_all(std::string_view data, millis timeout = default_timeout);
  std::string recv_exact(std::size_t n, millis timeout = default_timeout);
  // Sends `data` while receiving as many bytes back (neither side can block
  // the other).
  std::string exchange(std::string_view data, millis timeout = default_timeout);
  // Every byte until an orderly end (TCP EOF, or close_notify / truncation on TLS).
  std::string recv_until_eof(millis timeout = default_timeout);
  // Ends our sending side: shutdown(SHUT_WR), or close_notify on TLS.
  void shutdown_write(millis timeout = default_timeout);
  // Waits for the peer to end the connection (EOF or reset), no data allowed
  // ... or returns what did arrive. True if it closed.
  bool closed_within(millis timeout = default_timeout);
  // The local port of the connection (the relay reports it as the client's).
  std::uint16_t local_port() const;
  void close();
  // Closes with a TCP reset (SO_LINGER 0).
  void reset();

 private:
  struct impl;
  explicit test_client(std::unique_ptr<impl> p);
  std::unique_ptr<impl> p_;
};

// The relay daemon on arguments the test chooses (any --listen, extra flags),
// restartable on the same ports. Complements relay_process (which always
// listens on 127.0.0.1 and cannot restart).
class relay_runner {
 public:
  struct config {
    explicit config(std::filesystem::path keys_dir) : keys(std::move(keys_dir)) {}
    std::filesystem::path keys;       // --keys
    std::string listen = "127.0.0.1";  // --listen
    std::optional<std::string> myhost;  // --myhost
    unsigned port_count = 4;
    std::vector<std::string> extra;    // appended
    // --drain-timeout: 0 stops at once on SIGTERM (what restart() wants);
    // a test of the drain sets its own.
    std::string drain_timeout = "0";
  };
  explicit relay_runner(config c);
  ~relay_runner();
  relay_runner(const relay_runner&) = delete;
  relay_runner& operator=(const relay_runner&) = delete;

  std::uint16_t port() const { return port_; }
  std::uint16_t public_port(unsigned pair) const {
    return static_cast<std::uint16_t>(port_ + config_.port_count / 2 + 1 + pair);
  }
  std::uint16_t reverse_port(unsigned pair) const {
    return static_cast<std::uint16_t>(port_ + 1 + pair);
  }
  std::string stderr_text() const;

  // SIGTERM; "" if it exited 0 within 3 s without sanitizer output, else
  // what went wrong. (The destructor SIGKILLs a relay still running.)
  std::string stop();
  // stop() (which must succeed), then start again on the same ports.
  void restart();

 private:
  void start_on(std::uint16_t port);
  config config_;
  std::uint16_t port_ = 0;
  std::unique_ptr<child_process> process_;
  std::string earlier_stderr_;
};

// Records a listener's events; waits for them.
class event_log {
 public:
  // The handler to give relay_listener::set_event_handler.
  client::relay_listener::event_handler handler();
  std::vector<client::listener_event> events() const;
  std::size_t count(client::listener_event::kind what) const;
  // Waits until `n` events of kind `what` were recorded.
  bool wait_count(client::listener_event::kind what, std::size_t n,
                  millis timeout = default_timeout) const;
  // "listening 127.0.0.1:1234, session_lost (...), ..." for messages.
  std::string describe() const;

 private:
  struct state {
    mutable std::mutex mutex;
    mutable std::condition_variable changed;
    std::vector<client::listener_event> events;
  };
  std::shared_ptr<state> state_ = std::make_shared<state>();
};

// A TCP proxy on 127.0.0.1 to 127.0.0.1:target that keeps a copy of every
// byte it forwards (both directions): what the relay could see.
class capture_proxy {
 public:
  capture_proxy(asio::io_context& io, std::uint16_t target);
  ~capture_proxy();
  std::uint16_t port() const { return port_; }
  std::string captured() const;
  // Closes both sides of every connection passing through now (as a broken
  // network path would end them); later connections pass as before.
  void cut();
  std::size_t connections() const;

  struct state;

 private:
  std::shared_ptr<state> state_;
  std::uint16_t port_ = 0;
};

// A relayed plain connection as a tcp_conn of the support library (for
// reading what the server side gets, with deadlines). The connection is
// consumed.
tcp_conn as_tcp_conn(client::relayed_connection conn);

// Listener options for `relay` with its PKI: v1 (client certificate) or v2.
client::listener_options v1_options(const std::filesystem::path& keys, std::uint16_t port);
client::listener_options v2_options(const std::filesystem::path& keys, std::uint16_t port,
                                    const std::string& token);

// A TCP socket bound to 127.0.0.1 on a port the kernel chose (`port`), not
// listening; `flags` are added to socket(2)'s type (e.g. SOCK_NONBLOCK).
unique_fd bound_loopback_socket(int flags, std::uint16_t& port);

// A loopback port where connections are refused, for as long as the object
// lives: bound (so no other test can take it) but not listening.
class refusing_port {
 public:
  refusing_port();
  std::uint16_t port() const { return port_; }

 private:
  unique_fd fd_;
  std::uint16_t port_ = 0;
};

// Writes `text` to `dir/name` and returns the path.
std::filesystem::path write_file(const std::filesystem::path& dir, const std::string& name,
                                 const std::string& text);

// Quick options for impatient tests: short backoff.
inline client::backoff_policy fast_backoff() { return {std::chrono::milliseconds(50), std::chrono::milliseconds(400)}; }

// For what happens on an io thread with no event a test could wait on (a
// pool filling, a stage given back): polls `condition` every millisecond
// until it holds (true) or the timeout passes (false).
template <class Condition>
bool eventually(Condition condition, millis timeout = default_timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (steady::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// A pump's done handler as a future: callback() hands it to the pump.
struct pump_outcome {
  std::promise<client::pump_result> promise;
  std::future<client::pump_result> future = promise.get_future();
  std::function<void(const client::pump_result&)> callback() {
    return [this](const client::pump_result& r) { promise.set_value(r); };
  }
};

// Hands out connected loopback pairs: the test's end as a tcp_conn (one
// thread may send on it while another receives) and the accepted socket, for
// a pump under test.
class socket_pair_source {
 public:
  explicit socket_pair_source(asio::io_context& io);
  std::pair<tcp_conn, asio_tcp::socket> connect();

 private:
  asio::io_context& io_;
  asio_tcp::acceptor acceptor_;
};

}  // namespace tlsrelay::test
