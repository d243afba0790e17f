// relay_network: every socket of one relay node, on one io_context thread.
//
// It binds the control port and the whole port pool up front, accepts, runs
// TLS handshakes, and reports what happens to actors (see actors/messages.hpp:
// "events"). Actors answer with "orders", which the net_bridge actor hands to
// the order functions below. All state is touched only on the io thread; the
// order functions post onto it and may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <caf/actor.hpp>

#include "actors/messages.hpp"
#include "net/admission.hpp"
#include "net/net_counters.hpp"
#include "protocol/log_throttle.hpp"
#include "protocol/pool_layout.hpp"
#include "pump/pair_pump.hpp"
#include "pump/stage_pool.hpp"

namespace tlsrelay::net {

class control_connection;

// How a joined pair's bytes are moved (splice, or copy), and its liveness
// bounds (idle, half-close; zero turns one off): the shared pump's.
using data_path = pump::data_path;
using pair_timeouts = pump::timeouts;

struct network_config {
  boost::asio::ip::address listen_address;
  pool_layout layout;
  data_path path = data_path::splice;
  pair_timeouts pair_limits;
  // TCP keepalive on control connections: first probe after this much
  // silence; with TCP_USER_TIMEOUT the connection is dead within twice it.
  // Zero: off.
  std::chrono::seconds keepalive{0};
  admission_limits limits;  // what is accepted at all (see net/admission.hpp)
};

class relay_network {
public:
  relay_network(network_config config, boost::asio::ssl::context& tls);
  ~relay_network();
  relay_network(const relay_network&) = delete;
  relay_network& operator=(const relay_network&) = delete;

  // Binds and listens on the control port and every pool port. Returns "" or
  // one line naming the port that could not be bound; then nothing listens.
  std::string bind();

  // Starts the io thread. Events for connections and pairs without a route
  // go to `pool_manager`.
  void start(caf::actor pool_manager);

  // Waits, at most `limit`, until every control connection that is writing
  // its last line (send_and_close: `error draining`) has handed it to the
  // kernel (and its FIN after it), so that stopping right after does not cut
  // that line short. From another thread than the io thread, while it runs.
  void await_last_lines(std::chrono::milliseconds limit);

  // Closes the listeners and every connection (joined pairs with a reset:
  // their streams are cut, not ended), then stops the io thread. Returns how
  // many joined pairs were still relaying.
  std::size_t stop();

  // -- orders (any thread) ----------------------------------------------------
  void order(send_line o);
  void order(send_and_close o);
  void order(close_connection o);
  void order(line_credit o);
  void order(route_connection o);
  void order(route_pair o);
  void order(join_pair o);
  void order(stop_accepting o);

  // From now on, TLS handshakes on the control port use `tls` (a reload's new
  // certificate, key and CA); connections already up keep the context they
  // were made with. Any thread: the swap happens on the io thread.
  void replace_tls(std::shared_ptr<boost::asio::ssl::context> tls);

  // Accepted sockets open now (all kinds), as counted against --max-connections.
  std::size_t open_connections() const { return admission_->connections(); }
  // What net/ has counted since the start (any thread may read).
  const net_counters& counters() const { return counters_; }

  // -- used by the connection classes (io thread) --------------------------------
  boost::asio::io_context& io() { return io_; }
  const pump::stage_pool& stages() const { return stages_; }
  void control_ready(control_connection& conn);
  void control_handshake_failed() { net_counters::bump(counters_.tls_handshake_failures); }
  void forget_control(conn_id id);
  // A control connection handed its last lines (send_and_close) to the kernel.
  void last_lines_sent();

private:
  struct pool_listener;
  struct plain_connection;

  using tcp_acceptor = boost::asio::ip::tcp::acceptor;
  conn_id next_id() { return conn_id{++last_id_}; }
  void accept_control();
  void accept_pool(pool_listener& listener);
  void on_pool_connection(pool_listener& listener, boost::asio::ip::tcp::socket socket,
                          host_port peer);
  // After an accept on `acceptor` failed, calls `again` (which accepts anew)
  // when that can succeed. Out of descriptors: idle pipes are given up first,
  // then the spare descriptor sheds the waiting connection; with nobody
  // waiting, it waits until somebody is (accept fails with EMFILE even on an
  // empty queue: retrying on a timer would spin and log forever). Other
  // errors retry shortly, logged once a second.
  void after_accept_error(const boost::system::error_code& ec, tcp_acceptor& acceptor,
                          const std::string& where, std::function<void()> again);
  void note_refusal(refusal why, const std::string& source);
  void report_refusals_later();
  void close_plain(conn_id id);
  void lingering_close(std::shared_ptr<plain_connection> conn, std::string bytes);
  void watch_for_departure(std::shared_ptr<plain_connection> conn);
  void recheck_later(std::shared_ptr<plain_connection> conn);
  // False if the peer has reset the connection, or closed it without sending
  // a byte that is still to be read.
  static bool still_connected(plain_connection& conn);
  void read_accept_line(std::shared_ptr<plain_connection> conn, std::string peer);
  void announce_reverse(plain_connection& conn, std::string peer, std::string first_line);
  void start_pump(join_pair o, std::shared_ptr<plain_connection> client,
                  std::shared_ptr<plain_connection> reverse);
  // Returns the joined pairs it cut.
  std::size_t close_everything();

  network_config config_;
  boost::asio::ssl::context& tls_;
  // Set by replace_tls (io thread only); used instead of tls_ when set. An
  // SSL made from a context holds a reference to it, so a context replaced
  // while its connections live on is freed only after them.
  std::shared_ptr<boost::asio::ssl::context> replaced_tls_;
  net_counters counters_;  // before the pumps that add to it (io_)
  pump::stage_pool stages_;  // before io_: pumps still held by handlers give their stages back
  // Before io_ too: handlers destroyed with it still hold tickets.
  std::shared_ptr<admission> admission_;
  boost::asio::io_context io_{1};
  std::thread thread_;
  bool stopped_ = false;
  std::uint64_t last_id_ = 0;
  caf::actor pool_manager_;
  refusal_log refusals_;
  boost::asio::steady_timer refusal_timer_{io_};
  bool refusal_timer_armed_ = false;
  log_throttle accept_failures_;
  // Kept open to be given up when accept fails for want of descriptors: then
  // the waiting connection can be accepted and closed at once instead of
  // staying in the backlog (and making accept fail again and again).
  int spare_fd_ = -1;

  boost::asio::ip::tcp::acceptor control_acceptor_;
  std::vector<std::unique_ptr<pool_listener>> pool_listeners_;
  bool accepting_ = true;  // false after stop_accepting: control and public ports closed
  // await_last_lines: called (once) when no control connection has last lines to write.
  std::function<void()> last_lines_written_;
  boost::asio::steady_timer last_lines_timer_{io_};
  void check_last_lines();
  std::vector<caf::actor> pair_owner_;  // by pair index; invalid = unrouted
  std::vector<reverse_framing> pair_framing_;  // by pair index

  std::unordered_map<conn_id, std::shared_ptr<control_connection>> controls_;
  std::unordered_map<conn_id, std::shared_ptr<plain_connection>> plains_;  // not yet joined
  std::unordered_map<conn_id, std::shared_ptr<pump::pair_pump>> pumps_;         // both ids of a pair
};

// A socket's peer / local address (IPv4-mapped IPv6 shown as IPv4), and the
// peer as "host:port" for logs.
host_port peer_address(const boost::asio::ip::tcp::socket& socket);
host_port local_address(const boost::asio::ip::tcp::socket& socket);
std::string peer_name(const boost::asio::ip::tcp::socket& socket);
// TCP keepalive with `idle` before the first probe, and TCP_USER_TIMEOUT to
// match (see network_config::keepalive).
void set_keepalive(boost::asio::ip::tcp::socket& socket, std::chrono::seconds idle);

}  // namespace tlsrelay::net
