// Test helpers for net/: real TCP connections on 127.0.0.1 whose far ends
// ("peers") the test drives with plain POSIX calls, each wait bounded by
// poll() with a deadline, and an io_context thread for the code under test.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>

namespace tlsrelay::test {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Owns one file descriptor.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept;
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// One TCP connection: `peer` is a non-blocking POSIX socket the test drives,
// `side` the accepted end, handed to the code under test.
struct tcp_pair {
  unique_fd peer;
  boost::asio::ip::tcp::socket side;
};

// Connects a fresh pair through a listener on 127.0.0.1 with a port chosen by
// the kernel. When `buffer_bytes` is set, SO_SNDBUF and SO_RCVBUF of both ends
// are set to it before the connection is made (so the TCP window honours it).
tcp_pair make_tcp_pair(boost::asio::io_context& io, std::optional<int> buffer_bytes = std::nullopt);

// Everything one peer observed while reading.
struct read_result {
  std::vector<std::uint8_t> data;
  bool eof = false;        // recv returned 0
  int error = 0;           // errno of a failed recv (ECONNRESET, ...)
  bool timed_out = false;  // the deadline passed first
};

// Waits until `fd` is ready for `events` (POLLIN, POLLOUT) or the deadline
// passes. Returns the revents, or 0 on timeout.
short wait_ready(int fd, short events, clock::time_point deadline);

// Sends all bytes before the deadline (MSG_NOSIGNAL). Returns 0 or the errno
// of the failure (ETIMEDOUT when the deadline passed).
int send_all(int fd, const std::uint8_t* data, std::size_t size, clock::time_point deadline);
inline int send_all(int fd, const std::vector<std::uint8_t>& data, clock::time_point deadline) {
  return send_all(fd, data.data(), data.size(), deadline);
}
inline int send_all(int fd, const std::string& data, clock::time_point deadline) {
  return send_all(fd, reinterpret_cast<const std::uint8_t*>(data.data()), data.size(), deadline);
}

// Reads exactly `size` bytes, or less if EOF, an error or the deadline comes first.
read_result read_exact(int fd, std::size_t size, clock::time_point deadline);

// Reads until EOF, an error or the deadline.
read_result read_to_end(int fd, clock::time_point deadline);

// Sends `out` and then shuts down the sending half, while reading until EOF;
// both at once on one thread (poll on POLLIN|POLLOUT), so that neither side
// of a relay can stall the other. `send_error` is the errno of a failed send.
struct exchange_result {
  read_result received;
  int send_error = 0;
  std::size_t sent = 0;
};
exchange_result exchange(int fd, const std::vector<std::uint8_t>& out, clock::time_point deadline);

// Sends `data` without blocking until no byte has been accepted for `stall`
// ("send blocked"), all of it is accepted, an error, or the deadline.
struct fill_result {
  std::size_t accepted = 0;
  bool blocked = false;
  int error = 0;
};
fill_result send_until_blocked(int fd, const std::vector<std::uint8_t>& data,
                               std::chrono::milliseconds stall, clock::time_point deadline);

// `size` pseudo-random bytes, reproducible from `seed`.
std::vector<std::uint8_t> pattern(std::size_t size, std::uint64_t seed);

// Index of the first difference between `got` and `want`, or -1 when equal
// (sizes included): a failing check then prints an offset, not megabytes.
long long first_difference(const std::vector<std::uint8_t>& got, const std::vector<std::uint8_t>& want);

// The SO_SNDBUF or SO_RCVBUF the kernel reports for a socket.
int socket_buffer(int fd, int option);

// Sets SO_LINGER {1, 0} and closes: the peer gets a RST.
void close_with_reset(unique_fd& fd);

// An io_context with its own thread, for the code under test.
class io_thread {
 public:
  io_thread();
  ~io_thread();
  io_thread(const io_thread&) = delete;
  io_thread& operator=(const io_thread&) = delete;

  boost::asio::io_context& io() { return io_; }

  // Runs `f` on the io thread and waits for it (bounded). Returns false when
  // it did not run within the timeout.
  bool run(std::function<void()> f, std::chrono::milliseconds timeout = 5s);

 private:
  boost::asio::io_context io_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::thread thread_;
};

}  // namespace tlsrelay::test
