// Shared by the drain and log scenarios: the relay is the real `tlsrelay`
// process, stopped with SIGTERM as an operator (or systemd) would.
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <string>
#include <thread>

#include "tests/e2e/e2e.hpp"

namespace tlsrelay::test {

// A relay of `port_count` ports that drains for `drain_timeout` seconds on
// SIGTERM, with these extra flags.
inline relay_options draining_relay(std::string drain_timeout,
                                    std::vector<std::string> extra_args = {},
                                    unsigned port_count = 4) {
  relay_options options = relay_with(port_count);
  options.drain_timeout = std::move(drain_timeout);
  options.extra_args = std::move(extra_args);
  return options;
}

// What the relay logs once its control and public ports are closed (net
// writes it after closing them: a connection attempt after it is refused).
inline const std::string ports_closed_line = "stopped accepting: the control port";

// How many times `text` occurs in `haystack`.
inline std::size_t count_of(const std::string& haystack, const std::string& text) {
  std::size_t n = 0;
  for (auto at = haystack.find(text); at != std::string::npos; at = haystack.find(text, at + 1)) ++n;
  return n;
}

// Waits until the relay has written `text` to stderr `n` times (a log line
// saying that something happened). The relay offers no wake-up on stderr, so
// this looks every 20 ms until the deadline.
inline bool wait_for_log(const relay_process& relay, const std::string& text, std::size_t n = 1,
                         millis timeout = 5000ms) {
  return relay.wait_for_log(text, timeout, n);
}

// Whether the peer reset `conn` (ECONNRESET, not an orderly EOF) within `timeout`.
inline bool reset_within(tcp_conn& conn, millis timeout) {
  if (!(wait_fd(conn.fd(), POLLIN, steady::now() + timeout) & (POLLIN | POLLERR | POLLHUP)))
    return false;
  char byte;
  const long n = ::recv(conn.fd(), &byte, 1, MSG_DONTWAIT);
  return n < 0 && errno == ECONNRESET;
}

inline long long ms_since(steady::time_point t) {
  return std::chrono::duration_cast<millis>(steady::now() - t).count();
}

}  // namespace tlsrelay::test
