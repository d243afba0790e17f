#pragma once
// An Asio socket for a descriptor this process accepted itself (accept4 with
// SOCK_NONBLOCK) and holds alone.
//
// Asio's assign() must assume the worst of a descriptor it did not open: that
// it may be blocking (so its first async operation sets FIONBIO with an
// ioctl) and that it may be dup'd elsewhere (so its close() first takes it out
// of the epoll set with EPOLL_CTL_DEL, because close would not). Neither holds
// for a descriptor accept4 gave us, and a relayed connection pays both twice,
// once per socket: four system calls out of ~35 per connection. adopt()
// assigns the descriptor and then tells Asio what is true of it.
#include <boost/asio/ip/tcp.hpp>

namespace tlsrelay::pump {

// `fd` must be non-blocking and not shared with another descriptor or process
// (no dup, no fork that keeps it): its epoll registration then ends with its
// close, as the kernel guarantees for the last descriptor of a file. On an
// error the descriptor is left open for the caller.
void adopt(boost::asio::ip::tcp::socket& socket, const boost::asio::ip::tcp& protocol, int fd,
           boost::system::error_code& ec);

}  // namespace tlsrelay::pump
