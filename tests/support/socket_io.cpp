#include "tests/support/socket_io.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace tlsrelay::test {
namespace {

std::string errno_text(int error) { return std::strerror(error); }

std::string loopback_name(std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

unique_fd new_tcp_socket() {
  // CLOEXEC: a relay or helper process spawned by another test thread must
  // not inherit our end, or our close() would not reach the peer.
  unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) throw io_error("socket(): " + errno_text(errno));
  return fd;
}

// Connects `fd` to 127.0.0.1:port. Returns 0 or the errno of the failure;
// ETIMEDOUT if the deadline passed.
int connect_loopback(int fd, std::uint16_t port, steady::time_point deadline) {
  const sockaddr_in address = loopback(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) return 0;
  if (errno != EINPROGRESS && errno != EINTR) return errno;
  if (wait_fd(fd, POLLOUT, deadline) == 0) return ETIMEDOUT;
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return errno;
  return error;
}

}  // namespace

void ignore_sigpipe() {
  static std::once_flag once;
  std::call_once(once, [] { std::signal(SIGPIPE, SIG_IGN); });
}

std::string printable(std::string_view data, std::size_t max) {
  std::string out = "\"";
  for (std::size_t i = 0; i < data.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(data[i]);
    switch (c) {
      case '\r': out += "\\r"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      default:
        if (c >= 0x20 && c < 0x7f) {
          out += static_cast<char>(c);
        } else {
          char hex[5];
          std::snprintf(hex, sizeof hex, "\\x%02x", c);
          out += hex;
        }
    }
  }
  out += "\"";
  if (data.size() > max) out += "... (" + std::to_string(data.size()) + " bytes)";
  return out;
}

unique_fd& unique_fd::operator=(unique_fd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

int unique_fd::release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void unique_fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

int poll_timeout_ms(steady::time_point deadline) {
  const auto left = std::chrono::ceil<millis>(deadline - steady::now()).count();
  if (left <= 0) return 0;
  return left > INT_MAX ? INT_MAX : static_cast<int>(left);
}

short wait_fd(int fd, short events, steady::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, poll_timeout_ms(deadline));
    if (n > 0) return p.revents;
    if (n == 0) return 0;
    if (errno != EINTR) throw io_error("poll(): " + errno_text(errno));
  }
}

bool accepts_connections(std::uint16_t port, millis timeout) {
  unique_fd fd = new_tcp_socket();
  const int error = connect_loopback(fd.get(), port, steady::now() + timeout);
  if (error == 0) return true;
  if (error == ECONNREFUSED) return false;
  throw io_error("probing " + loopback_name(port) + ": " + errno_text(error));
}

unique_fd listen_on(std::uint16_t port) {
  unique_fd fd = new_tcp_socket();
  const sockaddr_in address = loopback(port);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(fd.get(), 16) != 0)
    return {};
  return fd;
}

tcp_conn tcp_conn::connect(std::uint16_t port, millis timeout) {
  ignore_sigpipe();
  unique_fd fd = new_tcp_socket();
  const int error = connect_loopback(fd.get(), port, steady::now() + timeout);
  if (error == ETIMEDOUT)
    throw io_error("connecting to " + loopback_name(port) + ": no answer within " +
                   std::to_string(timeout.count()) + " ms");
  if (error != 0)
    throw io_error("connecting to " + loopback_name(port) + ": " + errno_text(error));
  return tcp_conn(std::move(fd), loopback_name(port));
}

void tcp_conn::send_all(std::string_view data, millis timeout) {
  const auto deadline = steady::now() + timeout;
  std::size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd_.get(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
      throw io_error("sending to " + name_ + ": " + errno_text(errno) + " after " +
                     std::to_string(sent) + " of " + std::to_string(data.size()) + " bytes");
    if (wait_fd(fd_.get(), POLLOUT, deadline) == 0)
      throw io_error("sending to " + name_ + ": only " + std::to_string(sent) + " of " +
                     std::to_string(data.size()) + " bytes accepted within " +
                     std::to_string(timeout.count()) + " ms");
  }
}

tcp_conn::fill_result tcp_conn::fill(steady::time_point deadline) {
  char chunk[64 * 1024];
  for (;;) {
    const ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
    if (n > 0) {
      buf_.append(chunk, static_cast<std::size_t>(n));
      return fill_result::data;
    }
    if (n == 0) return fill_result::eof;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      last_errno_ = errno;
      return fill_result::reset;
    }
    if (wait_fd(fd_.get(), POLLIN, deadline) == 0) return fill_result::timeout;
  }
}

std::string tcp_conn::take(std::size_t n) {
  std::string out = buf_.substr(0, n);
  buf_.erase(0, n);
  return out;
}

void tcp_conn::fail(const std::string& what, fill_result why, millis timeout) const {
  std::string reason;
  switch (why) {
    case fill_result::eof: reason = "the connection was closed (EOF)"; break;
    case fill_result::reset: reason = "the connection failed: " + errno_text(last_errno_); break;
    case fill_result::timeout:
      reason = "nothing more arrived within " + std::to_string(timeout.count()) + " ms";
      break;
    case fill_result::data: reason = "unexpected data"; break;
  }
  throw io_error(name_ + ": " + what + ", but " + reason + "; received so far " +
                 std::to_string(buf_.size()) + " bytes: " + printable(buf_));
}

std::string tcp_conn::recv_exact(std::size_t n, millis timeout) {
  const auto deadline = steady::now() + timeout;
  while (buf_.size() < n) {
    const fill_result r = fill(deadline);
    if (r != fill_result::data) fail("waiting for " + std::to_string(n) + " bytes", r, timeout);
  }
  return take(n);
}

std::optional<std::string> tcp_conn::recv_some(millis timeout) {
  if (buf_.empty()) {
    const fill_result r = fill(steady::now() + timeout);
    if (r == fill_result::eof) return std::nullopt;
    if (r != fill_result::data) fail("waiting for data", r, timeout);
  }
  return take(buf_.size());
}

std::string tcp_conn::recv_until_eof(millis timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    const fill_result r = fill(deadline);
    if (r == fill_result::eof) return take(buf_.size());
    if (r != fill_result::data) fail("waiting for EOF", r, timeout);
  }
}

std::string tcp_conn::read_line(millis timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    if (const auto end = buf_.find('\n'); end != std::string::npos) return take(end + 1);
    const fill_result r = fill(deadline);
    if (r != fill_result::data) fail("waiting for a line", r, timeout);
  }
}

std::string tcp_conn::exchange(std::string_view out, std::size_t in_size, millis timeout) {
  const auto deadline = steady::now() + timeout;
  std::size_t sent = 0;
  char chunk[64 * 1024];
  while (sent < out.size() || buf_.size() < in_size) {
    pollfd p{fd_.get(), 0, 0};
    if (sent < out.size()) p.events |= POLLOUT;
    if (buf_.size() < in_size) p.events |= POLLIN;
    const int n = ::poll(&p, 1, poll_timeout_ms(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw io_error("poll(): " + errno_text(errno));
    if (n == 0)
      throw io_error(name_ + ": exchanging data, sent " + std::to_string(sent) + " of " +
                     std::to_string(out.size()) + " bytes and received " +
                     std::to_string(buf_.size()) + " of " + std::to_string(in_size) +
                     " within " + std::to_string(timeout.count()) + " ms");
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && buf_.size() < in_size) {
      const ssize_t got = ::recv(fd_.get(), chunk, sizeof chunk, 0);
      if (got > 0) {
        buf_.append(chunk, static_cast<std::size_t>(got));
      } else if (got == 0) {
        fail("exchanging data (sent " + std::to_string(sent) + " of " +
                 std::to_string(out.size()) + " bytes), waiting for " + std::to_string(in_size) +
                 " bytes",
             fill_result::eof, timeout);
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        last_errno_ = errno;
        fail("exchanging data, waiting for " + std::to_string(in_size) + " bytes",
             fill_result::reset, timeout);
      }
    }
    if ((p.revents & (POLLOUT | POLLERR)) && sent < out.size()) {
      const ssize_t put = ::send(fd_.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (put > 0) {
        sent += static_cast<std::size_t>(put);
      } else if (put < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        throw io_error(name_ + ": exchanging data, sending failed after " + std::to_string(sent) +
                       " of " + std::to_string(out.size()) + " bytes: " + errno_text(errno));
      }
    }
  }
  return take(in_size);
}

void tcp_conn::shutdown_write() {
  if (::shutdown(fd_.get(), SHUT_WR) != 0)
    throw io_error(name_ + ": shutdown(SHUT_WR): " + errno_text(errno));
}

void tcp_conn::expect_closed(millis timeout) {
  if (!buf_.empty())
    throw io_error(name_ + ": expected the connection to be closed, but " +
                   std::to_string(buf_.size()) + " unread bytes had arrived: " + printable(buf_));
  const fill_result r = fill(steady::now() + timeout);
  if (r == fill_result::eof || r == fill_result::reset) return;
  if (r == fill_result::timeout)
    throw io_error(name_ + ": expected the connection to be closed (EOF or reset) within " +
                   std::to_string(timeout.count()) + " ms, but it stayed open");
  throw io_error(name_ + ": expected the connection to be closed, but " +
                 std::to_string(buf_.size()) + " bytes arrived: " + printable(buf_));
}

// -- numeric addresses ---------------------------------------------------------------

namespace {

// A socket address for a numeric IPv4 or IPv6 host; false if it is neither.
bool make_address(const std::string& host, std::uint16_t port, sockaddr_storage& out,
                  socklen_t& length) {
  std::memset(&out, 0, sizeof out);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    length = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    length = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

}  // namespace

std::string host_port_text(const std::string& host, std::uint16_t port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

tcp_conn tcp_connect_to(const std::string& host, std::uint16_t port, millis timeout) {
  ignore_sigpipe();
  sockaddr_storage address;
  socklen_t length = 0;
  if (!make_address(host, port, address, length))
    throw io_error("tcp_connect_to: " + host + " is not a numeric IP address");
  const std::string name = host_port_text(host, port);
  unique_fd fd(::socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) throw io_error("socket(): " + std::string(std::strerror(errno)));
  int error = 0;
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    if (errno != EINPROGRESS && errno != EINTR) {
      error = errno;
    } else if (wait_fd(fd.get(), POLLOUT, steady::now() + timeout) == 0) {
      throw io_error("connecting to " + name + ": no answer within " +
                     std::to_string(timeout.count()) + " ms");
    } else {
      socklen_t len = sizeof error;
      if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
    }
  }
  if (error != 0) throw io_error("connecting to " + name + ": " + std::strerror(error));
  return tcp_conn(std::move(fd), name);
}

bool can_bind(const std::string& host) {
  sockaddr_storage address;
  socklen_t length = 0;
  if (!make_address(host, 0, address, length)) return false;
  unique_fd fd(::socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  return fd && ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) == 0;
}

}  // namespace tlsrelay::test
