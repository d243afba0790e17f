// The control channel: the listener's one connection to a relay and its
// life. Connect to the seeds in turn (and wherever a node redirects us), TLS
// with the relay verified, the greeting (v2: our `hello`, the relay's
// `welcome`; both: public_listener and reverse_listener), then the session:
// control lines parsed as v1 or v2, pings answered, our heartbeat (v2), and
// when the session or an attempt ends, the next seed, a reconnect with
// backoff, or the end. What it learns goes to its owner (relay_listener);
// it opens no reverse connection itself. Everything runs on the listener's
// strand. Internal to relay_listener.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "client/backoff.hpp"
#include "client/options.hpp"
#include "client/relay_listener.hpp"
#include "client/reverse_connector.hpp"
#include "protocol/connection_id.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/v1.hpp"
#include "protocol/v2.hpp"

namespace tlsrelay::client::detail {

// What a v2 welcome adds to session_info (v1: nothing).
struct session_terms {
  unsigned warm_offered = 0;     // warm=
  bool proxy_announced = false;  // proxy=2
};

class control_channel : public std::enable_shared_from_this<control_channel> {
 public:
  // Called on the strand, for the current connection only; the owner
  // outlives the channel's work (it calls close() first).
  struct owner {
    virtual ~owner() = default;
    // The greeting is complete: a session runs. `first`: the first attempt
    // succeeded (the user's async_listen waits for this).
    virtual void session_started(const session_info& s, const session_terms& terms,
                                 bool first) = 0;
    // The relay announced a client: v2 with its id and address, v1 with neither.
    virtual void client_announced(std::optional<connection_id> id,
                                  std::optional<host_port> client) = 0;
    // The current control connection was closed (whatever ends it).
    virtual void session_closed() = 0;
    // An attempt or session failed: the listener's last error is now this.
    virtual void failure(std::error_code code, const std::string& detail) = 0;
    // The first attempt failed: async_listen's answer (then stopped follows).
    virtual void first_attempt_failed(std::error_code code) = 0;
    // No more attempts.
    virtual void stopped(std::error_code code, const std::string& detail) = 0;
    // Every other change of state for the user's event handler.
    virtual void event(const listener_event& ev) = 0;
  };

  // `relay_tls`: the client context for the control connection (ALPN
  // offered for v2). `options` must be valid (validate()).
  control_channel(boost::asio::io_context& io, listener_strand strand,
                  const listener_options& options,
                  std::shared_ptr<boost::asio::ssl::context> relay_tls, owner& to_tell);

  // The first attempt (from the first seed).
  void start();
  // Closes the control connection and stops trying; idempotent.
  void close();
  bool closed() const { return closed_; }

 private:
  struct connection;
  using connection_ptr = std::shared_ptr<connection>;

  void start_round();
  void start_chain();
  void start_attempt();
  void on_connected(const connection_ptr& c, const boost::system::error_code& ec,
                    const std::string& where);
  void on_handshake(const connection_ptr& c, const boost::system::error_code& ec,
                    const std::string& where);
  std::string rejection_detail(const boost::system::error_code& ec, SSL* ssl) const;
  void read(const connection_ptr& c);
  void on_read(const connection_ptr& c, const boost::system::error_code& ec, std::size_t n);
  void on_read_error(const connection_ptr& c, const boost::system::error_code& ec);
  void send_line(const connection_ptr& c, std::string line);
  void write_next(const connection_ptr& c);
  void handle_v1_line(const connection_ptr& c, const std::string& line);
  void handle_v2_line(const connection_ptr& c, const std::string& line);
  void handle_common(const connection_ptr& c, const v1::public_listener& m);
  void handle_common(const connection_ptr& c, const v1::reverse_listener& m);
  void handle_common(const connection_ptr& c, const v1::no_available_listeners& m);
  void announced(const connection_ptr& c, const std::string& line, std::optional<connection_id> id,
                 std::optional<host_port> client);
  void relay_error(const connection_ptr& c, const v2::error& m);
  void unexpected_line(const connection_ptr& c, const std::string& line, std::error_code ec);
  void maybe_greeted(const connection_ptr& c);
  void schedule_heartbeat(const connection_ptr& c);
  void follow_redirect(const connection_ptr& c, const host_port& to);
  std::string describe_chain() const;
  void arm_deadline(const connection_ptr& c, std::chrono::milliseconds after, client_errc code,
                    std::string detail, bool not_this_relay = false);
  void close_connection();
  void fail(const connection_ptr& c, std::error_code code, std::string detail,
            bool not_this_relay = false);
  void schedule_reconnect();

  boost::asio::io_context& io_;
  listener_strand strand_;
  const listener_options options_;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<boost::asio::ssl::context> relay_tls_;
  owner& owner_;

  backoff backoff_;
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::steady_timer deadline_;   // the current step of an attempt
  boost::asio::steady_timer heartbeat_;  // pings and the silence check (v2)
  boost::asio::steady_timer reconnect_timer_;
  connection_ptr control_;
  const std::vector<host_port> seeds_;  // options' relay, then relays
  std::size_t seed_ = 0;                // the seed of the current chain
  host_port target_;  // the relay of the current attempt (differs after a redirect)
  std::vector<host_port> chain_;  // the seed and the redirect targets visited from it
  int redirects_ = 0;
  std::vector<std::string> round_failures_;  // why each seed of this round failed
  bool first_done_ = false;  // the first attempt has succeeded or failed
  // A first attempt heard `error draining`: the relay was restarting, so it
  // being unreachable for a while does not end the listener.
  bool heard_draining_ = false;
  bool closed_ = false;
};

}  // namespace tlsrelay::client::detail
