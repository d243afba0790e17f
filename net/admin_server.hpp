// admin_server: the relay's HTTP/1.1 admin endpoint (serve --admin), with
// Boost.Beast on an io_context and thread of its own, so the data path's io
// thread never serves HTTP.
//
//   GET  /metrics   Prometheus text format
//   GET  /healthz   200 if the actors answer within 1 s, else 503
//   GET  /readyz    200 unless draining (or the actors do not answer)
//   GET  /status    JSON: the relay and every session
//   POST /reload    runs the reload callback: 200, 500 with its error, 501 without one
//
// It never reads actor state: it asks the pool_manager (status_atom), which
// asks the sessions, and reads only net/'s own counters (net_counters) and
// /proc. Bounded: at most defaults::admin_max_connections at once, one
// request per connection (no keep-alive), request size limits and an I/O
// deadline per connection; a request waits at most 1 s for the actors.
// With a token, every request needs `Authorization: Bearer <token>` (401
// otherwise; compared in constant time).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "net/net_counters.hpp"
#include "protocol/admin_report.hpp"

namespace tlsrelay::net {

struct admin_config {
  boost::asio::ip::tcp::endpoint endpoint;  // port 0: any free port (see local_endpoint)
  std::string token;                         // "": no Authorization needed
  relay_description relay;                   // version, commit, addresses, limits
  // True while the relay drains (then /readyz says 503). Absent: never.
  std::function<bool()> draining;
  // POST /reload: "" when the new configuration took effect, else one line
  // saying why not. Absent: 501.
  std::function<std::string()> reload;
  // Counters of reloads that took effect / were refused. Absent: 0.
  std::function<std::uint64_t()> reloads;
  std::function<std::uint64_t()> reload_failures;
};

class admin_server {
 public:
  // `system` and `counters` must outlive the server (stop() it before the
  // actor system goes).
  admin_server(admin_config config, caf::actor_system& system, const net_counters& counters);
  ~admin_server();
  admin_server(const admin_server&) = delete;
  admin_server& operator=(const admin_server&) = delete;

  // Binds and listens. "" or one line naming the address that failed.
  std::string bind();
  // The bound address (its port when asked for port 0).
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // Starts the admin thread; requests go to `pool_manager`.
  void start(caf::actor pool_manager);
  // Closes the listener and every admin connection, joins the thread.
  void stop();

  class impl;

 private:
  std::unique_ptr<impl> impl_;
};

// Whether `address` is a loopback address (127.0.0.0/8, ::1, or an
// IPv4-mapped loopback): only there may the endpoint run without a token.
bool is_loopback(const boost::asio::ip::address& address);

}  // namespace tlsrelay::net
