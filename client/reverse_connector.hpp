// The reverse connector: for each client the relay announces, a TCP
// connection to the session's reverse address and its first line (v2:
// `accept <ID>`; v1: none); then, with end-to-end TLS, the PROXY v2 header
// (only when the relay announced one) and the TLS server handshake. The
// finished connection goes to the owner (the accept queue). Each step has a
// deadline; at most max_pending are being opened at once. Warm connections
// (warm_pool) join here once the relay has paired them with a client.
// Everything runs on the listener's strand. Internal to relay_listener.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "client/relayed_connection.hpp"
#include "client/tls.hpp"
#include "protocol/connection_id.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/v2.hpp"
#include "pump/adopted_socket.hpp"

namespace spdlog {
class logger;
}

namespace tlsrelay::client::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost_ec = boost::system::error_code;
using listener_strand = asio::strand<asio::io_context::executor_type>;

// "12 s" or "250 ms", for log lines and error details.
std::string ms_text(std::chrono::milliseconds d);

// One reverse connection from new_connection (or, warm, from being opened
// ahead of demand) until it is queued or given up.
struct reverse_op {
  using tcp = boost::asio::ip::tcp;
  explicit reverse_op(const boost::asio::any_io_executor& ex)
      : socket(ex), resolver(ex), timer(ex) {}
  tcp::socket& lowest() { return tls ? tls->next_layer() : socket; }
  tcp::socket socket;
  tcp::resolver resolver;
  boost::asio::steady_timer timer;
  std::unique_ptr<tls_stream> tls;
  std::optional<connection_id> id;
  std::optional<host_port> client;
  std::string id_hex;
  std::string accept_line;  // or the ready line of a warm connection
  std::string proxy_header;
  bool proxy_announced = false;  // the relay's welcome said proxy=2
  bool done = false;

  // Warm connections only, until the relay pairs a client with them.
  bool warm = false;
  std::uint64_t serial = 0;
  bool connected = false;
  bool ready_sent = false;
  std::chrono::steady_clock::time_point ready_at;
  std::array<char, v2::max_paired_line_bytes> line_buf{};
  std::string line;  // the relay's `<ID> <CLIENT>` line so far
};

// "relayed connection <ID> (client <HOST:PORT>)", as far as known.
std::string describe_client(const reverse_op& op);

// The reverse address of one session, resolved once: every reverse and warm
// connection of a session goes to the same reverse_listener, and a lookup
// each (a resolver thread hop) was a measurable part of expose's cost per
// connection.
struct reverse_address {
  explicit reverse_address(host_port where) : endpoint(std::move(where)) {}
  host_port endpoint;
  std::optional<boost::asio::ip::tcp::resolver::results_type> resolved;  // on first use
};

// `handler(ec, results)` runs on `strand` (at once when already resolved).
template <class Handler>
void resolve_reverse(const std::shared_ptr<reverse_address>& to, tcp::resolver& resolver,
                     const listener_strand& strand, Handler handler) {
  if (to->resolved) {
    handler(boost_ec{}, *to->resolved);
    return;
  }
  resolver.async_resolve(
    to->endpoint.host, std::to_string(to->endpoint.port),
    asio::bind_executor(strand, [to, handler = std::move(handler)](
                                  const boost_ec& ec, tcp::resolver::results_type results) mutable {
      if (!ec) to->resolved = results;
      handler(ec, std::move(results));
    }));
}

// Connects `op->socket` to the reverse address `to` (TCP_NODELAY set). Then
// on the strand, unless `op` is done by then: `connected()`, or `failed(why)`
// with why = "cannot resolve|connect to <what>HOST:PORT: <error>".
template <class Connected, class Failed>
void connect_reverse(const std::shared_ptr<reverse_op>& op,
                     const std::shared_ptr<reverse_address>& to, const listener_strand& strand,
                     const std::string& what, Connected connected, Failed failed) {
  const std::string where = what + format_host_port(to->endpoint);
  resolve_reverse(to, op->resolver, strand, [op, strand, where, connected = std::move(connected),
                                             failed = std::move(failed)](
                                              const boost_ec& ec,
                                              tcp::resolver::results_type results) mutable {
    if (op->done) return;
    if (ec) {
      failed("cannot resolve " + where + ": " + ec.message());
      return;
    }
    pump::async_connect(
      op->socket, results,
      asio::bind_executor(strand, [op, where, connected = std::move(connected),
                                   failed = std::move(failed)](const boost_ec& ec,
                                                               const tcp::endpoint&) mutable {
        if (op->done) return;
        if (ec) {
          failed("cannot connect to " + where + ": " + ec.message());
          return;
        }
        boost_ec ignored;
        op->socket.set_option(tcp::no_delay(true), ignored);
        connected();
      }));
  });
}

class reverse_connector : public std::enable_shared_from_this<reverse_connector> {
 public:
  // Where finished and refused connections go. Called on the strand; the
  // owner outlives the connector's work (it calls close_all() first).
  struct owner {
    virtual ~owner() = default;
    virtual void reverse_ready(relayed_connection conn) = 0;
    // A client announced beyond max_pending: not answered (`why`, logged).
    virtual void reverse_refused(const std::string& why) = 0;
  };
  struct settings {
    std::chrono::milliseconds connect_timeout{10000};
    std::chrono::milliseconds handshake_timeout{10000};  // end-to-end TLS
    std::size_t max_pending = 64;
    std::shared_ptr<boost::asio::ssl::context> end_to_end;  // null: no end-to-end TLS
    std::shared_ptr<spdlog::logger> logger;
  };

  reverse_connector(boost::asio::io_context& io, listener_strand strand, settings s,
                    owner& to);

  // A client the relay announced: open its reverse connection to `to`. With
  // an id (v2) the connection starts `accept <ID>`. `proxy_announced`: the
  // session's welcome said proxy=2.
  void open(const std::shared_ptr<reverse_address>& to, bool proxy_announced,
            std::optional<connection_id> id, std::optional<host_port> client);
  // A warm connection the relay has paired (its first line read): from here
  // on like any other after its accept line. Not bounded by max_pending (that
  // would only drop a client the relay has already joined with it).
  void adopt(const std::shared_ptr<reverse_op>& op);
  // Closes every connection still being opened (the listener is closed).
  void close_all();
  std::size_t pending() const { return pending_.size(); }

 private:
  void send_accept_line(const std::shared_ptr<reverse_op>& op);
  void after_accept_line(const std::shared_ptr<reverse_op>& op);
  void read_proxy_header(const std::shared_ptr<reverse_op>& op);
  void start_server_tls(const std::shared_ptr<reverse_op>& op);
  void arm_timer(const std::shared_ptr<reverse_op>& op, std::chrono::milliseconds after,
                 std::string reason);
  void give_up(const std::shared_ptr<reverse_op>& op, const std::string& reason);
  void deliver(const std::shared_ptr<reverse_op>& op);

  boost::asio::io_context& io_;
  listener_strand strand_;
  settings settings_;
  owner& owner_;
  std::set<std::shared_ptr<reverse_op>> pending_;
};

}  // namespace tlsrelay::client::detail
