// Listening through a relay: the C++ counterpart of the original's
// TLS4RelayServerEndpoint.
//
//   boost::asio::io_context io;
//   tlsrelay::client::listener_options opt;
//   opt.relay = {"relay.example", 12000};
//   opt.tls.ca_file = "ca.crt.pem";
//   tlsrelay::client::relay_listener listener(io, opt);
//   listener.async_listen([](std::error_code ec, const session_info& s) {
//     // s.public_endpoint is where clients connect
//   });
//   listener.async_accept([](std::error_code ec, relayed_connection c) { ... });
//   io.run();
//
// The listener keeps one TLS control connection to the relay (protocol v2 by
// default: ALPN "tlsrelay/2", `hello`, heartbeats; or v1, the original's).
// For each client the relay announces it opens a reverse connection (v2:
// first line `accept <ID>`), optionally runs the TLS server handshake on it
// (end-to-end TLS), and queues it until the user accepts it. In v2 it also
// keeps a few warm reverse connections open ahead of demand (first line
// `ready <SERIAL> <TAG>`), which the relay pairs with an arriving client at
// once; the pool adapts to the arrival rate (listener_options::warm_max). When an
// established session is lost it reconnects with exponential backoff and full
// jitter, keeping name and port, and reports the public endpoint again.
//
// Several relay nodes of one service: listener_options::relays adds seeds
// after `relay`; each connect and reconnect tries them in turn from the
// first, and follows a node's `redirect` (at most 3 in a row, never back to
// a relay already visited from that seed).
//
// Threads: everything runs on the io_context given (through a strand of its
// own), which may be run by any number of threads. The blocking calls
// listen(timeout) and accept(timeout) are for other threads than those.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include <boost/asio/io_context.hpp>

#include "client/errc.hpp"
#include "client/options.hpp"
#include "client/relayed_connection.hpp"
#include "protocol/endpoint.hpp"

namespace tlsrelay::client {

// What the relay gave this server in one control session.
struct session_info {
  protocol_version protocol = protocol_version::v2;
  host_port relay;             // the relay (node) the session runs on
  host_port public_endpoint;   // where clients connect (public_listener)
  host_port reverse_endpoint;  // where reverse connections go (reverse_listener)
  std::string session_secret;  // v2: from `welcome`; v1: ""
};

struct listener_event {
  enum class kind {
    listening,     // a session is established: `session` holds the public endpoint
    session_lost,  // the established session ended: `error`, `detail`
    reconnecting,  // the next attempt starts in `delay`
    attempt_failed,  // a reconnect attempt failed, or a seed (of several) could not be
                     // used and the next is tried at once: `error`, `detail`
    stopped,       // no more attempts: the first attempt failed, or the
                   // session was lost and reconnecting is off (`error`)
    connection_dropped,  // a relayed client was closed unserved: `detail` says why
                         // (the accept queue was full, too many being opened)
  };
  kind what = kind::listening;
  session_info session;
  std::error_code error;
  std::string detail;
  std::chrono::milliseconds delay{0};
};

// Warm reverse connections (protocol v2), for logs and tests.
struct warm_pool_stats {
  // Of the current session (0 / false between sessions):
  std::size_t waiting = 0;  // open, ready line sent, no client yet
  std::size_t target = 0;   // how many the pool aims to keep now; 0: off
  bool stopped = false;     // the relay refused one (or sent an unusable first line):
                            // none more this session
  // Over the listener's life:
  std::uint64_t opened = 0;   // ready lines sent
  std::uint64_t paired = 0;   // clients that came on a warm connection
  std::uint64_t expired = 0;  // closed unused by the relay (its --warm-idle)
};

namespace detail {
class listener_impl;
}

class relay_listener {
 public:
  using listen_handler = std::function<void(std::error_code, const session_info&)>;
  using accept_handler = std::function<void(std::error_code, relayed_connection)>;
  using event_handler = std::function<void(const listener_event&)>;

  // Checks the options (validate()) and loads the TLS files; throws
  // std::invalid_argument with one readable line if either is unusable.
  // Does not connect yet.
  relay_listener(boost::asio::io_context& io, listener_options options);
  // close(); handlers still pending run later on the io_context with
  // client_errc::listener_closed (so they must not use the listener when
  // they see an error).
  ~relay_listener();
  relay_listener(const relay_listener&) = delete;
  relay_listener& operator=(const relay_listener&) = delete;

  // Called on the listener's strand for every change of state (in order);
  // must not block. Set it before async_listen. Never called once close()
  // was called.
  void set_event_handler(event_handler handler);

  // Starts: the first connection attempt. The handler runs once, with the
  // session or with the reason the first attempt failed (then the listener
  // stops: no reconnect before a first success). With several seeds the
  // first attempt is the first round: it succeeds if any seed (or a relay it
  // redirects to) gives us a session, and fails with the last seed's error
  // (the detail lists each seed's). Call once. A relay that
  // answers `error draining` (it is shutting down or restarting) is not a
  // failure: with `reconnect` on, the listener tries again with backoff, also
  // while that relay is then unreachable, and the handler waits for the outcome.
  void async_listen(listen_handler handler);
  // async_listen and wait, from a thread that is not running the io_context.
  // std::errc::timed_out if no answer within `timeout` (the attempt goes on).
  std::error_code listen(std::chrono::milliseconds timeout, session_info* session = nullptr);

  // The next relayed connection. Handlers run on the io_context (not on the
  // strand), in the order they were given. Fails with listener_closed after
  // close(), or with the error that stopped the listener.
  void async_accept(accept_handler handler);
  // The same, blocking, from a thread that is not running the io_context:
  // nullopt and `ec` set (std::errc::timed_out, or why the listener stopped).
  std::optional<relayed_connection> accept(std::chrono::milliseconds timeout, std::error_code& ec);

  // The current session, if one is established right now.
  std::optional<session_info> session() const;
  // The last failure (code and human detail), empty if none yet.
  std::error_code last_error() const;
  std::string last_error_detail() const;
  // Relayed connections waiting in the queue.
  std::size_t queued() const;
  // The warm pool now.
  warm_pool_stats warm_pool() const;
  const listener_options& options() const;

  // Stops: the control connection and the connections still being opened
  // or queued are closed; pending handlers, and any that had been scheduled
  // with a result but not run yet, get listener_closed. Returns at once;
  // idempotent; callable from any thread.
  void close();

 private:
  std::shared_ptr<detail::listener_impl> impl_;
};

}  // namespace tlsrelay::client
