// Shared by the fault scenarios: how a test reads a connection to its end
// (EOF or reset, told apart), how it checks that the relay holds no more
// descriptors after a scenario than before it, and what CPU time and memory
// it used. (The io threads and flood scenarios use the last three too.)
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <string>

#include "tests/support/socket_io.hpp"

namespace tlsrelay::test {

enum class stream_end { eof, reset, timeout };

// Everything that arrived on a connection, and how it ended.
struct stream_outcome {
  std::string bytes;
  stream_end ending = stream_end::timeout;
  int error = 0;  // errno of a reset (ECONNRESET, EPIPE, ...)
};

// Reads `conn` until EOF, an error (a reset) or the deadline. Reads the
// socket directly: call it on a tcp_conn that holds no unread bytes (one
// whose earlier reads asked for exactly what had been sent).
stream_outcome read_to_end(tcp_conn& conn, millis timeout = default_timeout);

// "EOF", "reset (Connection reset by peer)", "timeout": for messages.
std::string describe(const stream_outcome& outcome);

// A process's open descriptors by kind (from /proc/<pid>/fd).
struct fd_census {
  std::size_t sockets = 0, pipes = 0, other = 0;
  std::string text() const;  // "12 sockets, 4 pipes, 7 other"
};
fd_census census_of(pid_t pid);

// Waits until the descriptors `pid` holds pass `wanted`. "" once they do;
// otherwise, at the deadline, what it holds instead and what was `expected`
// (a description).
std::string wait_for_census(pid_t pid, const std::function<bool(const fd_census&)>& wanted,
                            const std::string& expected, millis timeout = default_timeout);

// Waits until `pid` holds the descriptors of `expected` again: as many
// sockets and other descriptors, and at most `spare_pipe_fds` more pipe ends
// (the splice data path keeps emptied pipes for reuse). "" once it does;
// otherwise, at the deadline, what it holds instead.
std::string wait_for_descriptors(pid_t pid, const fd_census& expected,
                                 std::size_t spare_pipe_fds = 0,
                                 millis timeout = default_timeout);

// Pipe ends the splice data path may keep after one pair at a time carried
// bytes both ways: one emptied pipe (two ends) per direction.
inline constexpr std::size_t splice_spare_pipe_fds = 4;

// CPU time (user + system) a process has used so far, from /proc/<pid>/stat.
millis cpu_time_of(pid_t pid);

// A field of /proc/<pid>/status in KiB (VmRSS: now, VmHWM: the peak so far).
long status_kib(pid_t pid, const std::string& field);

// Sanitizer builds keep freed memory in quarantine and add shadow memory, so
// a process's RSS says nothing about what it holds there: memory bounds are
// checked on the Release build (make test runs both).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool rss_is_meaningful = false;
#else
inline constexpr bool rss_is_meaningful = true;
#endif

}  // namespace tlsrelay::test
