// An echo server behind the relay: every byte a client sends comes back.
//
//   relayed_echo_server 127.0.0.1:12000 --protocol 1
//       --ca relay_server_certs/ca.crt.pem
//       --cert relay_server_certs/client.crt.pem --key relay_server_certs/client.key.pem
//
// prints the public address; then `nc HOST PORT` on it echoes.
#include <array>
#include <csignal>
#include <cstdio>
#include <memory>

#include <boost/asio/write.hpp>

#include "client/relay_listener.hpp"
#include "examples/example_options.hpp"

namespace asio = boost::asio;
using tlsrelay::client::relay_listener;
using tlsrelay::client::relayed_connection;

namespace {

// One client: read, write back, until EOF; then EOF back.
class echo_session : public std::enable_shared_from_this<echo_session> {
 public:
  explicit echo_session(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}
  void start() { read(); }

 private:
  void read() {
    socket_.async_read_some(asio::buffer(buffer_), [self = shared_from_this()](
                                                     boost::system::error_code ec, std::size_t n) {
      if (ec) {
        // EOF: say so by half-closing; anything else: just close.
        if (ec == asio::error::eof) self->socket_.shutdown(asio::socket_base::shutdown_send, ec);
        return;
      }
      asio::async_write(self->socket_, asio::buffer(self->buffer_.data(), n),
                        [self](boost::system::error_code ec, std::size_t) {
                          if (!ec) self->read();
                        });
    });
  }

  asio::ip::tcp::socket socket_;
  std::array<char, 16 * 1024> buffer_{};
};

void accept_next(relay_listener& listener) {
  listener.async_accept([&listener](std::error_code ec, relayed_connection conn) {
    if (ec) return;  // closed
    if (conn.client())
      std::printf("client %s\n", tlsrelay::format_host_port(*conn.client()).c_str());
    std::fflush(stdout);
    std::make_shared<echo_session>(conn.release_socket())->start();
    accept_next(listener);
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"An echo server reachable through a tlsrelay relay"};
  tlsrelay::examples::relay_arguments args;
  args.add_to(app);
  CLI11_PARSE(app, argc, argv);

  tlsrelay::client::listener_options options;
  if (auto err = args.to_options(options); !err.empty()) {
    std::fprintf(stderr, "relayed_echo_server: %s\n", err.c_str());
    return 2;
  }
  return tlsrelay::examples::serve_until_signal("relayed_echo_server", "", options, accept_next);
}
