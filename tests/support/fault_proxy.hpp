// A TCP proxy for fault-injection tests (this machine's kernel has no netem):
// it listens on 127.0.0.1 on a port the kernel picks and forwards every
// accepted connection to a target. Each proxied connection has two
// directions: upstream (accepted side → target) and downstream (target →
// accepted side). On command, per direction, it delays, stalls, resumes,
// cuts (FIN), truncates (K more bytes, then reset or FIN); per connection it
// resets (RST both ways). One background thread runs a poll(2) loop; each
// direction has a fixed buffer, so a stalled reader backs up into the
// kernel rather than into the proxy. Every wait has a deadline.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/socket_io.hpp"

namespace tlsrelay::test {

enum class direction {
  upstream,    // accepted side → target
  downstream,  // target → accepted side
};

// What a direction does once its truncation budget is spent.
enum class truncate_end {
  reset,  // both sockets closed with SO_LINGER 0: both peers see RST
  cut,    // FIN to the receiving peer; the other direction goes on
};

class fault_proxy {
 public:
  // Which connections a command applies to: one by its number (0 for the
  // first accepted, in accept order) or every live one.
  static constexpr std::size_t all = std::numeric_limits<std::size_t>::max();

  // Listens on 127.0.0.1:0 and starts the thread. Connections go to
  // target_host:target_port (a numeric IPv4 address). Throws io_error.
  fault_proxy(std::string target_host, std::uint16_t target_port);
  explicit fault_proxy(std::uint16_t target_port) : fault_proxy("127.0.0.1", target_port) {}
  // Stops the thread and closes every descriptor (peers see EOF).
  ~fault_proxy();
  fault_proxy(const fault_proxy&) = delete;
  fault_proxy& operator=(const fault_proxy&) = delete;

  // Where clients connect.
  std::uint16_t port() const { return port_; }

  // Every byte is forwarded no sooner than `hold` after the proxy read it
  // (zero: no delay). With `chunk` > 0, at most `chunk` bytes are written per
  // `hold` interval: chunk 1 trickles the stream byte by byte.
  void delay(direction d, millis hold, std::size_t chunk = 0, std::size_t conn = all);
  // Stops reading from the sending peer (what the proxy already holds is
  // still delivered); the peer's sends back up in the kernel.
  void stall(direction d, std::size_t conn = all);
  // Undoes stall().
  void resume(direction d, std::size_t conn = all);
  // Stops reading and, once what the proxy holds is delivered, shuts down
  // writing towards the receiving peer: it reads a clean EOF.
  void cut(direction d, std::size_t conn = all);
  // Closes both sockets of the connection with SO_LINGER 0: both peers see
  // a reset. Bytes the proxy holds are dropped.
  void reset(std::size_t conn = all);
  // Forwards only `bytes` more bytes in this direction, then ends as told.
  void truncate(direction d, std::size_t bytes, truncate_end end = truncate_end::reset,
                std::size_t conn = all);

  // Connections accepted since start; those not yet closed by the proxy.
  std::size_t accepted() const;
  std::size_t live() const;
  // Bytes written to the receiving peer, over all connections or one.
  std::uint64_t forwarded(direction d, std::size_t conn = all) const;

  // Wait until the condition holds; false if the deadline passes first.
  bool wait_accepted(std::size_t n, millis timeout = default_timeout) const;
  bool wait_live(std::size_t n, millis timeout = default_timeout) const;
  bool wait_forwarded(direction d, std::uint64_t bytes, std::size_t conn = all,
                      millis timeout = default_timeout) const;

  // Problems the proxy thread met (failed target connects are normal and
  // are not listed): empty in a healthy run.
  std::vector<std::string> errors() const;

 private:
  struct connection;
  struct half;

  void run();
  void accept_new();
  void finish_connect(connection& c);
  void read_into(connection& c, half& h);
  // Writes what may be written, applies budgets, FINs and resets, closes when done.
  void progress(connection& c);
  void reset_locked(connection& c);
  void for_each_target(std::size_t conn, const std::function<void(connection&)>& f);
  void wake();
  bool wait_for(millis timeout, const std::function<bool()>& done) const;

  std::string target_host_;
  std::uint16_t target_port_;
  std::uint16_t port_ = 0;
  unique_fd listener_;
  unique_fd wake_read_, wake_write_;

  mutable std::mutex mutex_;  // guards everything below, and the thread's work
  mutable std::condition_variable changed_;
  bool stopping_ = false;
  std::vector<std::unique_ptr<connection>> connections_;  // in accept order, closed ones too
  std::vector<std::string> errors_;
  std::thread thread_;
};

}  // namespace tlsrelay::test
