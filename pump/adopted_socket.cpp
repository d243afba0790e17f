#include "pump/adopted_socket.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace tlsrelay::pump {

namespace {

namespace ops = boost::asio::detail::socket_ops;

// basic_socket keeps its implementation (and the state bits Asio's reactive
// service keeps for the descriptor) in a protected member; a pointer to that
// member, formed in a derived class, reaches it on any socket.
struct socket_state : boost::asio::ip::tcp::socket {
  static ops::state_type& of(boost::asio::ip::tcp::socket& socket) {
    return (socket.*&socket_state::impl_).get_implementation().state_;
  }
};

boost::system::error_code errno_code(int err) {
  return {err, boost::asio::error::get_system_category()};
}

}  // namespace

void adopt(boost::asio::ip::tcp::socket& socket, const boost::asio::ip::tcp& protocol, int fd,
           boost::system::error_code& ec, descriptor_use use) {
  socket.assign(protocol, fd, ec);
  if (ec) return;
  // Non-blocking already (internal: the user-visible mode stays "blocking",
  // which only Asio's synchronous operations consult, and they still block by
  // polling); and, when ours alone, not possibly dup'd.
  auto& state = socket_state::of(socket);
  state = static_cast<ops::state_type>(state | ops::internal_non_blocking);
  if (use == descriptor_use::ours_alone)
    state = static_cast<ops::state_type>(state & ~ops::possible_dup);
}

bool known_non_blocking(boost::asio::ip::tcp::socket& socket) {
  return (socket_state::of(socket) & ops::non_blocking) != 0;
}

namespace detail {

boost::system::error_code start_connect(boost::asio::ip::tcp::socket& socket,
                                        const boost::asio::ip::tcp::endpoint& to,
                                        bool& in_progress) {
  const int fd = ::socket(to.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          to.protocol().protocol());
  if (fd < 0) return errno_code(errno);
  boost::system::error_code ec;
  adopt(socket, to.protocol(), fd, ec, descriptor_use::may_be_shared);
  if (ec) {
    ::close(fd);
    return ec;
  }
  if (::connect(fd, to.data(), static_cast<socklen_t>(to.size())) == 0) return {};
  if (errno == EINPROGRESS) {
    in_progress = true;
    return {};
  }
  return errno_code(errno);
}

boost::system::error_code connect_result(boost::asio::ip::tcp::socket& socket) {
  int error = 0;
  socklen_t size = sizeof error;
  if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &error, &size) != 0)
    return errno_code(errno);
  return errno_code(error);
}

}  // namespace detail

}  // namespace tlsrelay::pump
