#include "tests/net/peer_io.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>
#include <stdexcept>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace tlsrelay::test {

namespace {

// Like the daemon's main(): a write to a closed socket is an error, not a
// signal (splice(2) has no MSG_NOSIGNAL).
const bool sigpipe_ignored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

void set_buffers(int fd, int bytes) {
  for (int option : {SO_SNDBUF, SO_RCVBUF})
    if (::setsockopt(fd, SOL_SOCKET, option, &bytes, sizeof bytes) != 0) fail("setsockopt");
}

constexpr std::size_t chunk_bytes = 64 * 1024;

// Reads until `want` bytes (if given), EOF, an error or the deadline.
read_result read_some(int fd, std::optional<std::size_t> want, clock::time_point deadline) {
  read_result r;
  std::vector<std::uint8_t> chunk(chunk_bytes);
  while (!want || r.data.size() < *want) {
    const std::size_t room = want ? std::min(chunk.size(), *want - r.data.size()) : chunk.size();
    const ssize_t n = ::recv(fd, chunk.data(), room, 0);
    if (n > 0) {
      r.data.insert(r.data.end(), chunk.data(), chunk.data() + n);
      continue;
    }
    if (n == 0) {
      r.eof = true;
      return r;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      r.error = errno;
      return r;
    }
    if (wait_ready(fd, POLLIN, deadline) == 0) {
      r.timed_out = true;
      return r;
    }
  }
  return r;
}

}  // namespace

unique_fd& unique_fd::operator=(unique_fd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

void unique_fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

tcp_pair make_tcp_pair(boost::asio::io_context& io, std::optional<int> buffer_bytes) {
  (void)sigpipe_ignored;
  const auto deadline = clock::now() + 5s;
  unique_fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener.get() < 0) fail("socket");
  // Accepted sockets inherit the listener's buffer sizes.
  if (buffer_bytes) set_buffers(listener.get(), *buffer_bytes);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail("bind");
  if (::listen(listener.get(), 1) != 0) fail("listen");
  socklen_t len = sizeof addr;
  if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    fail("getsockname");

  unique_fd peer(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (peer.get() < 0) fail("socket");
  if (buffer_bytes) set_buffers(peer.get(), *buffer_bytes);
  if (::connect(peer.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) fail("connect");
    if (wait_ready(peer.get(), POLLOUT, deadline) == 0) throw std::runtime_error("connect timed out");
    int error = 0;
    socklen_t error_len = sizeof error;
    ::getsockopt(peer.get(), SOL_SOCKET, SO_ERROR, &error, &error_len);
    if (error != 0) {
      errno = error;
      fail("connect");
    }
  }
  if (wait_ready(listener.get(), POLLIN, deadline) == 0) throw std::runtime_error("accept timed out");
  unique_fd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (accepted.get() < 0) fail("accept4");
  boost::asio::ip::tcp::socket side(io, boost::asio::ip::tcp::v4(), accepted.get());
  accepted.release();
  return tcp_pair{std::move(peer), std::move(side)};
}

short wait_ready(int fd, short events, clock::time_point deadline) {
  for (;;) {
    const auto now = clock::now();
    if (now >= deadline) return 0;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n > 0) return p.revents;
    if (n < 0 && errno != EINTR) fail("poll");
  }
}

int send_all(int fd, const std::uint8_t* data, std::size_t size, clock::time_point deadline) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::send(fd, data + done, size - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return errno;
    if (wait_ready(fd, POLLOUT, deadline) == 0) return ETIMEDOUT;
  }
  return 0;
}

read_result read_exact(int fd, std::size_t size, clock::time_point deadline) {
  return read_some(fd, size, deadline);
}

read_result read_to_end(int fd, clock::time_point deadline) {
  return read_some(fd, std::nullopt, deadline);
}

exchange_result exchange(int fd, const std::vector<std::uint8_t>& out, clock::time_point deadline) {
  exchange_result r;
  std::vector<std::uint8_t> chunk(chunk_bytes);
  bool sending = true;
  for (;;) {
    if (sending && r.sent == out.size()) {
      ::shutdown(fd, SHUT_WR);
      sending = false;
    }
    bool progress = false;
    if (sending) {
      const ssize_t n = ::send(fd, out.data() + r.sent, std::min(chunk_bytes, out.size() - r.sent),
                               MSG_NOSIGNAL);
      if (n > 0) {
        r.sent += static_cast<std::size_t>(n);
        progress = true;
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        r.send_error = errno;
        sending = false;
      }
    }
    const ssize_t n = ::recv(fd, chunk.data(), chunk.size(), 0);
    if (n > 0) {
      r.received.data.insert(r.received.data.end(), chunk.data(), chunk.data() + n);
      progress = true;
    } else if (n == 0) {
      r.received.eof = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      r.received.error = errno;
    }
    if (r.received.eof || r.received.error != 0) {
      // Whatever is left to send can no longer be answered; finish sending
      // only if the other side still reads.
      if (sending && r.received.error == 0) {
        r.send_error = send_all(fd, out.data() + r.sent, out.size() - r.sent, deadline);
        if (r.send_error == 0) {
          r.sent = out.size();
          ::shutdown(fd, SHUT_WR);
        }
      }
      return r;
    }
    if (progress) continue;
    if (wait_ready(fd, static_cast<short>(POLLIN | (sending ? POLLOUT : 0)), deadline) == 0) {
      r.received.timed_out = true;
      return r;
    }
  }
}

fill_result send_until_blocked(int fd, const std::vector<std::uint8_t>& data,
                               std::chrono::milliseconds stall, clock::time_point deadline) {
  fill_result r;
  while (r.accepted < data.size() && clock::now() < deadline) {
    const ssize_t n = ::send(fd, data.data() + r.accepted, std::min(chunk_bytes, data.size() - r.accepted),
                             MSG_NOSIGNAL);
    if (n > 0) {
      r.accepted += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      r.error = errno;
      return r;
    }
    if (wait_ready(fd, POLLOUT, std::min(deadline, clock::now() + stall)) == 0) {
      r.blocked = clock::now() < deadline;
      return r;
    }
  }
  return r;
}

std::vector<std::uint8_t> pattern(std::size_t size, std::uint64_t seed) {
  std::vector<std::uint8_t> out(size);
  std::uint64_t state = seed;
  for (std::size_t i = 0; i < size; i += 8) {
    // splitmix64
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    for (std::size_t b = 0; b < 8 && i + b < size; ++b) out[i + b] = static_cast<std::uint8_t>(z >> (8 * b));
  }
  return out;
}

long long first_difference(const std::vector<std::uint8_t>& got, const std::vector<std::uint8_t>& want) {
  const auto [g, w] = std::mismatch(got.begin(), got.end(), want.begin(), want.end());
  if (g == got.end() && w == want.end()) return -1;
  return static_cast<long long>(g - got.begin());
}

int socket_buffer(int fd, int option) {
  int value = 0;
  socklen_t len = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, option, &value, &len) != 0) fail("getsockopt");
  return value;
}

void close_with_reset(unique_fd& fd) {
  const linger lg{1, 0};
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0) fail("setsockopt SO_LINGER");
  fd.reset();
}

io_thread::io_thread() : guard_(boost::asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {}

io_thread::~io_thread() {
  guard_.reset();
  io_.stop();
  thread_.join();
}

bool io_thread::run(std::function<void()> f, std::chrono::milliseconds timeout) {
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  boost::asio::post(io_, [f = std::move(f), done] {
    f();
    done->set_value();
  });
  return future.wait_for(timeout) == std::future_status::ready;
}

}  // namespace tlsrelay::test
