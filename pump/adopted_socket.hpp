#pragma once
// Asio sockets for descriptors this process made itself, non-blocking from
// the start: accept4 or socket with SOCK_NONBLOCK.
//
// Asio's assign() must assume the worst of a descriptor it did not open: that
// it may be blocking (so its first async operation sets FIONBIO with an
// ioctl) and that it may be dup'd elsewhere (so its close() first takes it out
// of the epoll set with EPOLL_CTL_DEL, because close would not). Neither holds
// here, and a relayed connection pays both once per socket: four system calls
// out of ~35 per connection in the relay. Likewise asio::async_connect opens
// a blocking socket (FIONBIO at the connect) and polls it once more after
// epoll said it is writable. These helpers tell Asio what is true instead.
#include <sys/socket.h>

#include <memory>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace tlsrelay::pump {

// Whether a descriptor stays this process's alone for its whole life.
enum class descriptor_use {
  // Never dup'd nor inherited: its epoll registration ends with its close, as
  // the kernel guarantees for the last descriptor of a file, so Asio skips
  // EPOLL_CTL_DEL (the relay's accepted sockets).
  ours_alone,
  // Handed to code that may dup it (a socket the client library gives its
  // user): Asio keeps taking it out of the epoll set before close.
  may_be_shared,
};

// Assigns `fd` to `socket`; `fd` must be non-blocking. On an error the
// descriptor is left open for the caller.
void adopt(boost::asio::ip::tcp::socket& socket, const boost::asio::ip::tcp& protocol, int fd,
           boost::system::error_code& ec, descriptor_use use = descriptor_use::ours_alone);

// True when Asio knows the socket's descriptor is non-blocking (set by Asio,
// by the user, or by adopt()), so a caller needing O_NONBLOCK spares the ioctl.
bool known_non_blocking(boost::asio::ip::tcp::socket& socket);

namespace detail {

// Opens a non-blocking socket for `to` into `socket` and starts connecting.
// Returns no error and sets `in_progress` when the connection is under way.
boost::system::error_code start_connect(boost::asio::ip::tcp::socket& socket,
                                        const boost::asio::ip::tcp::endpoint& to,
                                        bool& in_progress);
// The outcome of a connect that epoll reported writable (SO_ERROR).
boost::system::error_code connect_result(boost::asio::ip::tcp::socket& socket);

template <class Handler>
struct connect_attempt : std::enable_shared_from_this<connect_attempt<Handler>> {
  using results_type = boost::asio::ip::tcp::resolver::results_type;
  connect_attempt(boost::asio::ip::tcp::socket& s, results_type r, Handler h)
    : socket(s), endpoints(std::move(r)), next(endpoints.begin()), handler(std::move(h)) {}

  // Tries the endpoints in order, as asio::async_connect does.
  void try_next(boost::system::error_code last) {
    for (; next != endpoints.end(); ++next) {
      boost::system::error_code ignored;
      socket.close(ignored);
      bool in_progress = false;
      last = start_connect(socket, next->endpoint(), in_progress);
      if (last) continue;
      if (!in_progress) return finish({}, next->endpoint());
      auto executor = boost::asio::get_associated_executor(handler, socket.get_executor());
      socket.async_wait(boost::asio::ip::tcp::socket::wait_write,
                        boost::asio::bind_executor(
                          executor, [self = this->shared_from_this()](
                                      const boost::system::error_code& ec) { self->on_writable(ec); }));
      return;
    }
    finish(last ? last : boost::asio::error::not_found, {});
  }

  void on_writable(boost::system::error_code ec) {
    if (ec == boost::asio::error::operation_aborted) return finish(ec, {});
    if (!ec) ec = connect_result(socket);
    if (!ec) return finish({}, next->endpoint());
    ++next;
    try_next(ec);
  }

  void finish(const boost::system::error_code& ec, const boost::asio::ip::tcp::endpoint& to) {
    if (ec) {
      boost::system::error_code ignored;
      socket.close(ignored);
    }
    handler(ec, to);
  }

  boost::asio::ip::tcp::socket& socket;
  results_type endpoints;
  results_type::const_iterator next;
  Handler handler;
};

}  // namespace detail

// Like asio::async_connect(socket, endpoints, handler): connects to the first
// endpoint that accepts, `handler(ec, endpoint)` on the handler's associated
// executor (or the socket's). The socket is non-blocking from socket(), and
// adopt()ed as may_be_shared (the caller may hand it on); not_found when
// `endpoints` is empty, operation_aborted when the socket is closed
// meanwhile, otherwise the last endpoint's error.
template <class Handler>
void async_connect(boost::asio::ip::tcp::socket& socket,
                   const boost::asio::ip::tcp::resolver::results_type& endpoints, Handler handler) {
  auto attempt =
    std::make_shared<detail::connect_attempt<Handler>>(socket, endpoints, std::move(handler));
  attempt->try_next({});
}

}  // namespace tlsrelay::pump
