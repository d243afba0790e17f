// The accept queue: relayed connections that are ready and not yet taken by
// the user, and the user's accept calls waiting for one. The listener's
// strand delivers; user threads take (async_accept, or accept() blocking).
// Bounded: a connection beyond `max_queued` is closed, and deliver() says why.
// Once stopped it takes no more, and every waiting accept gets the reason.
// Internal to relay_listener.
#pragma once

#include <chrono>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>

#include <boost/asio/any_io_executor.hpp>

#include "client/relayed_connection.hpp"

namespace tlsrelay::client::detail {

class accept_queue : public std::enable_shared_from_this<accept_queue> {
 public:
  using accept_handler = std::function<void(std::error_code, relayed_connection)>;

  // Handlers run on `executor`, in the order they were given; at most
  // `max_queued` connections wait for one.
  accept_queue(boost::asio::any_io_executor executor, std::size_t max_queued);

  // Any thread. The oldest queued connection, else the next one delivered;
  // the stop reason once stopped.
  void async_accept(accept_handler handler);
  // Blocking, from a thread that does not run the executor: nullopt and `ec`
  // set (std::errc::timed_out, or why the queue stopped).
  std::optional<relayed_connection> accept(std::chrono::milliseconds timeout, std::error_code& ec);
  std::size_t size() const;

  // Hands `conn` to the oldest waiting accept, or queues it. Returns "" if it
  // was taken (or closed quietly: the queue was closed); otherwise the queue
  // was full, `conn` is closed and the result says so, naming it.
  std::string deliver(relayed_connection conn);

  // Stops taking connections; waiting handlers get `code` (a later stop
  // keeps the first code, except that listener_closed always wins).
  // `drop_queued`: queued connections are closed too.
  void stop(std::error_code code, bool drop_queued);
  // The user closed the listener: stop(listener_closed, true), and a
  // handler already scheduled with a connection gets listener_closed instead
  // (it must not touch a listener that may be gone).
  void close();

 private:
  void post_accept(accept_handler handler, relayed_connection conn);

  boost::asio::any_io_executor executor_;
  const std::size_t max_queued_;
  std::atomic<bool> closing_{false};
  mutable std::mutex mutex_;  // guards the four below
  std::condition_variable changed_;
  std::deque<relayed_connection> queue_;
  std::deque<accept_handler> waiters_;
  std::error_code stop_error_;  // set once stopped
};

}  // namespace tlsrelay::client::detail
