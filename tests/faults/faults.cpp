#include "tests/faults/faults.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

namespace tlsrelay::test {

stream_outcome read_to_end(tcp_conn& conn, millis timeout) {
  const auto deadline = steady::now() + timeout;
  stream_outcome out;
  char chunk[64 * 1024];
  for (;;) {
    const ssize_t n = ::recv(conn.fd(), chunk, sizeof chunk, 0);
    if (n > 0) {
      out.bytes.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) {
      out.ending = stream_end::eof;
      return out;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      out.ending = stream_end::reset;
      out.error = errno;
      return out;
    }
    if (wait_fd(conn.fd(), POLLIN, deadline) == 0) {
      out.ending = stream_end::timeout;
      return out;
    }
  }
}

std::string describe(const stream_outcome& outcome) {
  std::string text = std::to_string(outcome.bytes.size()) + " bytes, then ";
  switch (outcome.ending) {
    case stream_end::eof: return text + "EOF";
    case stream_end::reset: return text + "reset (" + std::strerror(outcome.error) + ")";
    case stream_end::timeout: return text + "nothing more before the deadline";
  }
  return text;
}

std::string fd_census::text() const {
  return std::to_string(sockets) + " sockets, " + std::to_string(pipes) + " pipe ends, " +
         std::to_string(other) + " other";
}

fd_census census_of(pid_t pid) {
  namespace fs = std::filesystem;
  fd_census census;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", error)) {
    std::error_code link_error;
    const std::string target = fs::read_symlink(entry.path(), link_error).string();
    if (link_error) continue;  // closed between listing and reading
    if (target.rfind("socket:", 0) == 0)
      ++census.sockets;
    else if (target.rfind("pipe:", 0) == 0)
      ++census.pipes;
    else
      ++census.other;
  }
  if (error) throw io_error("cannot list /proc/" + std::to_string(pid) + "/fd: " + error.message());
  return census;
}

std::string wait_for_census(pid_t pid, const std::function<bool(const fd_census&)>& wanted,
                            const std::string& expected, millis timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    const fd_census now = census_of(pid);
    if (wanted(now)) return "";
    if (steady::now() >= deadline)
      return "the relay holds " + now.text() + " " + std::to_string(timeout.count()) +
             " ms after the scenario; expected " + expected;
    // The relay closes in its own time; there is no event to wait on.
    std::this_thread::sleep_for(10ms);
  }
}

std::string wait_for_descriptors(pid_t pid, const fd_census& expected, std::size_t spare_pipe_fds,
                                 millis timeout) {
  return wait_for_census(
    pid,
    [&](const fd_census& now) {
      // Fewer "other" descriptors than at the baseline is no leak: one taken
      // right after start-up may hold something the relay opens only briefly.
      return now.sockets == expected.sockets && now.other <= expected.other &&
             now.pipes >= expected.pipes && now.pipes <= expected.pipes + spare_pipe_fds;
    },
    expected.text() +
      (spare_pipe_fds ? " (up to " + std::to_string(spare_pipe_fds) + " more pipe ends)"
                      : std::string()),
    timeout);
}

millis cpu_time_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name, which is in parentheses and may hold spaces:
  // state is field 3, utime field 14, stime field 15.
  const auto close_paren = text.rfind(')');
  if (close_paren == std::string::npos)
    throw io_error("cannot read /proc/" + std::to_string(pid) + "/stat");
  std::istringstream fields(text.substr(close_paren + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index == 14) utime = std::stoull(field);
    if (index == 15) stime = std::stoull(field);
  }
  const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  return millis((utime + stime) * 1000 / static_cast<unsigned long long>(ticks_per_second));
}

long status_kib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) != 0) continue;
    std::istringstream values(line.substr(field.size() + 1));
    long kib = 0;
    values >> kib;
    return kib;
  }
  throw io_error("no " + field + " in /proc/" + std::to_string(pid) + "/status");
}

}  // namespace tlsrelay::test
