#include "pump/adopted_socket.hpp"

#include <boost/version.hpp>

namespace tlsrelay::pump {

namespace {

// basic_socket keeps its implementation (and the state bits Asio's reactive
// service keeps for the descriptor) in a protected member; a pointer to that
// member, formed in a derived class, reaches it on any socket.
struct socket_state : boost::asio::ip::tcp::socket {
  static boost::asio::detail::socket_ops::state_type& of(boost::asio::ip::tcp::socket& socket) {
    return (socket.*&socket_state::impl_).get_implementation().state_;
  }
};

}  // namespace

void adopt(boost::asio::ip::tcp::socket& socket, const boost::asio::ip::tcp& protocol, int fd,
           boost::system::error_code& ec) {
  socket.assign(protocol, fd, ec);
  if (ec) return;
  namespace ops = boost::asio::detail::socket_ops;
  // Non-blocking already (internal: the user-visible mode stays "blocking",
  // which only Asio's synchronous operations consult); and not possibly dup'd.
  auto& state = socket_state::of(socket);
  state = static_cast<ops::state_type>((state | ops::internal_non_blocking) & ~ops::possible_dup);
}

}  // namespace tlsrelay::pump
