// relay_network: every socket of one relay node, on its io threads.
//
// It binds the control port and the whole port pool up front, accepts, runs
// TLS handshakes, and reports what happens to actors (see actors/messages.hpp:
// "events"). Actors answer with "orders", which the net_bridge actor hands to
// the order functions below; they post onto the io thread that owns the
// connection and may be called from any thread.
//
// With N io threads (--io-threads), each runs its own io_context and owns
// what lives on it; nothing of one thread's state is touched by another:
//   - thread 0 accepts on the control port and hands each connection, round
//     robin, to a thread that runs its TLS handshake and owns it from then on;
//   - pair p's two pool ports are accepted on thread p mod N, which also owns
//     their connections until they are joined (so a pair's client and reverse
//     connection always meet on one thread);
//   - a joined pair is pumped where it was accepted; once it has moved
//     defaults::busy_pair_bytes it counts as busy, and it is handed to the
//     thread with the fewest busy pairs if that has at least two fewer (its
//     descriptors re-registered there). Pairs that end soon, most of them,
//     never pay for a hand-off; long transfers end up spread.
// A connection's id names its thread (id mod N), so an order goes straight
// to it. Shared by all threads, and safe for that: admission, the counters,
// the stage pool, the refusal log and the table of pumps (under a mutex).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
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
  // Threads that run sockets (1..max_io_threads).
  unsigned io_threads = 1;
};

// --io-threads: at most this many, and by default one per CPU the process
// may run on (its affinity mask) up to it.
inline constexpr unsigned max_io_threads = 8;
unsigned default_io_threads();

class relay_network {
public:
  relay_network(network_config config, boost::asio::ssl::context& tls);
  ~relay_network();
  relay_network(const relay_network&) = delete;
  relay_network& operator=(const relay_network&) = delete;

  // Binds and listens on the control port and every pool port. Returns "" or
  // one line naming the port that could not be bound; then nothing listens.
  std::string bind();

  // Starts the io threads. Events for connections and pairs without a route
  // go to `pool_manager`.
  void start(caf::actor pool_manager);

  // Waits, at most `limit`, until every control connection that is writing
  // its last line (send_and_close: `error draining`) has handed it to the
  // kernel (and its FIN after it), so that stopping right after does not cut
  // that line short. From another thread than the io threads, while they run.
  void await_last_lines(std::chrono::milliseconds limit);

  // Closes the listeners and every connection (joined pairs with a reset:
  // their streams are cut, not ended), then stops the io thread. Returns how
  // many joined pairs were still relaying. Then stops the io threads.
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
  // were made with. Any thread: the swap happens on each io thread.
  void replace_tls(std::shared_ptr<boost::asio::ssl::context> tls);

  // Accepted sockets open now (all kinds), as counted against --max-connections.
  std::size_t open_connections() const { return admission_->connections(); }
  // What net/ has counted since the start (any thread may read).
  const net_counters& counters() const { return counters_; }

  const pump::stage_pool& stages() const { return stages_; }
  unsigned io_threads() const { return static_cast<unsigned>(threads_.size()); }

private:
  struct pool_listener;
  struct plain_connection;
  class io_thread;
  struct running_pump {
    std::shared_ptr<pump::pair_pump> pump;
    io_thread* runs_on = nullptr;  // changed (under the mutex) by runs_on's thread only
    conn_id partner;               // the pair's other id
    bool busy = false;             // has moved defaults::busy_pair_bytes
  };

  using tcp_acceptor = boost::asio::ip::tcp::acceptor;
  io_thread& thread_of(conn_id id) { return *threads_[id.value % threads_.size()]; }
  io_thread& thread_of_pair(pair_index pair) { return *threads_[pair % threads_.size()]; }
  // Runs `work` on every io thread in turn.
  template <class Work>
  void on_every_thread(const Work& work);
  void accept_control();
  void accept_pool(pool_listener& listener);
  // Takes the connections waiting on `acceptor` (up to `batch`) with accept4,
  // each handed to `take(fd, peer)`; then waits for more with `again`.
  // `where()` names the port in a log line.
  template <class Describe, class Take>
  void accept_ready(io_thread& t, tcp_acceptor& acceptor, unsigned batch, Describe where,
                    std::function<void()> again, Take take);
  // On thread t: a control connection accepted for it starts its handshake there.
  void adopt_control(io_thread& t, boost::asio::ip::tcp::socket socket, host_port peer,
                     admission::ticket slot, admission::ticket handshake);
  void on_pool_connection(io_thread& t, pool_listener& listener,
                          boost::asio::ip::tcp::socket socket, host_port peer);
  // After an accept on `acceptor` failed, calls `again` (which accepts anew)
  // when that can succeed. Out of descriptors: idle pipes are given up first,
  // then the spare descriptor sheds the waiting connection; with nobody
  // waiting, it waits until somebody is (accept fails with EMFILE even on an
  // empty queue: retrying on a timer would spin and log forever). Other
  // errors retry shortly, logged once a second.
  void after_accept_error(io_thread& t, const boost::system::error_code& ec,
                          tcp_acceptor& acceptor, const std::string& where,
                          std::function<void()> again);
  void note_refusal(refusal why, const std::string& source);
  void report_refusals_later();
  void close_plain(io_thread& t, conn_id id);
  void lingering_close(std::shared_ptr<plain_connection> conn, std::string bytes);
  void watch_for_departure(io_thread& t, std::shared_ptr<plain_connection> conn);
  void recheck_later(io_thread& t, std::shared_ptr<plain_connection> conn);
  // False if the peer has reset the connection, or closed it without sending
  // a byte that is still to be read.
  static bool still_connected(plain_connection& conn);
  void read_accept_line(io_thread& t, std::shared_ptr<plain_connection> conn, std::string peer);
  void announce_reverse(io_thread& t, plain_connection& conn, std::string peer,
                        std::string first_line);
  void start_pump(io_thread& t, join_pair o, std::shared_ptr<plain_connection> client,
                  std::shared_ptr<plain_connection> reverse);
  // On thread t, whose pump of `client`'s pair has just become busy: moves
  // it to the thread with the fewest busy pairs if that evens them out.
  void spread_busy_pair(io_thread& t, conn_id client);
  // Runs work(pump) on the thread that runs the pump of `id`'s pair; false
  // if there is none.
  template <class Work>
  bool on_pump_thread(conn_id id, Work work);
  // On thread t: closes its listeners and connections, resets the pumps it
  // runs. Returns the joined pairs it cut.
  std::size_t close_everything(io_thread& t);

  network_config config_;
  boost::asio::ssl::context& tls_;
  net_counters counters_;  // before the pumps that add to it (the threads)
  pump::stage_pool stages_;  // before the threads: pumps still held by handlers give their stages back
  // Before the threads too: handlers destroyed with them still hold tickets.
  std::shared_ptr<admission> admission_;
  std::vector<std::unique_ptr<io_thread>> threads_;
  // Every joined pair under both its ids, with the thread that pumps it.
  // After the threads: a pump's sockets belong to its thread's io_context,
  // so they go first.
  std::mutex pumps_mutex_;
  std::unordered_map<conn_id, running_pump> pumps_;
  // The refusal log is one for all threads (its lines sum them up); its
  // timer runs on thread 0.
  std::mutex refusals_mutex_;
  refusal_log refusals_;            // under refusals_mutex_
  bool refusal_timer_armed_ = false;  // under refusals_mutex_: a summary is due
  std::unique_ptr<boost::asio::steady_timer> refusal_timer_;

  // On thread 0; the thread the next control connection goes to.
  std::unique_ptr<tcp_acceptor> control_acceptor_;
  std::size_t next_control_thread_ = 0;
  std::vector<std::unique_ptr<pool_listener>> pool_listeners_;  // pair p's on thread p mod N
  // By pair index, each entry touched only on its pair's thread.
  std::vector<caf::actor> pair_owner_;  // invalid = unrouted
  std::vector<reverse_framing> pair_framing_;
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
