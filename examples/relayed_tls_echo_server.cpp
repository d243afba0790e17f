// An echo server behind the relay with end-to-end TLS: the library runs the
// TLS server handshake on each relayed connection, so the relay carries only
// ciphertext. Clients connect with TLS to the public address:
//
//   relayed_tls_echo_server 127.0.0.1:12000 --protocol 1 --ca ca.crt.pem
//       --cert client.crt.pem --key client.key.pem
//       --tls-cert service.crt.pem --tls-key service.key.pem
//   tlsrelay connect --tls --ca service-ca.crt.pem HOST:PORT
#include <array>
#include <csignal>
#include <cstdio>
#include <memory>

#include <boost/asio/write.hpp>

#include "client/relay_listener.hpp"
#include "client/tls.hpp"
#include "examples/example_options.hpp"

namespace asio = boost::asio;
using tlsrelay::client::relay_listener;
using tlsrelay::client::relayed_connection;

namespace {

// One client over TLS: read, write back, until the client's close_notify;
// then our close_notify.
class tls_echo_session : public std::enable_shared_from_this<tls_echo_session> {
 public:
  explicit tls_echo_session(relayed_connection conn) : conn_(std::move(conn)) {}
  void start() { read(); }

 private:
  void read() {
    conn_.tls().async_read_some(asio::buffer(buffer_), [self = shared_from_this()](
                                                         boost::system::error_code ec,
                                                         std::size_t n) {
      if (ec) {
        if (tlsrelay::client::is_tls_eof(ec))
          tlsrelay::client::async_send_close_notify(self->conn_.tls(),
                                                    [self](boost::system::error_code) {});
        return;
      }
      asio::async_write(self->conn_.tls(), asio::buffer(self->buffer_.data(), n),
                        [self](boost::system::error_code ec, std::size_t) {
                          if (!ec) self->read();
                        });
    });
  }

  relayed_connection conn_;
  std::array<char, 16 * 1024> buffer_{};
};

void accept_next(relay_listener& listener) {
  listener.async_accept([&listener](std::error_code ec, relayed_connection conn) {
    if (ec) return;  // closed
    std::make_shared<tls_echo_session>(std::move(conn))->start();
    accept_next(listener);
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"A TLS echo server reachable through a tlsrelay relay (end-to-end TLS)"};
  tlsrelay::examples::relay_arguments args;
  args.add_to(app);
  std::string tls_cert, tls_key;
  app.add_option("--tls-cert", tls_cert, "certificate presented to clients")->required();
  app.add_option("--tls-key", tls_key, "its private key")->required();
  CLI11_PARSE(app, argc, argv);

  tlsrelay::client::listener_options options;
  if (auto err = args.to_options(options); !err.empty()) {
    std::fprintf(stderr, "relayed_tls_echo_server: %s\n", err.c_str());
    return 2;
  }
  options.end_to_end_tls = tlsrelay::client::end_to_end_tls_options{tls_cert, tls_key};
  return tlsrelay::examples::serve_until_signal("relayed_tls_echo_server", " (TLS)", options, accept_next);
}
