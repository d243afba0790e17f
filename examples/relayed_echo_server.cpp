// An echo server behind the relay: every byte a client sends comes back.
//
//   relayed_echo_server 127.0.0.1:12000 --protocol 1
//       --ca relay_server_certs/ca.crt.pem
//       --cert relay_server_certs/client.crt.pem --key relay_server_certs/client.key.pem
//
// prints the public address; then `nc HOST PORT` on it echoes.
//
// With --forward HOST:PORT it echoes nothing itself but hands every relayed
// client to that local service, the way a server embedding the library
// passes connections on to a backend (how bulk is measured: a sink there,
// `tlsrelay-bench sink`). The bytes are spliced socket to socket
// (client::pump_relayed); `--pump copy` copies them through the process
// instead, as the library did before, for comparison.
#include <array>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>

#include "client/relay_listener.hpp"
#include "client/relayed_pump.hpp"
#include "examples/example_options.hpp"

namespace asio = boost::asio;
using tlsrelay::client::relay_listener;
using tlsrelay::client::relayed_connection;
using tcp = asio::ip::tcp;

namespace {

// One client: read, write back, until EOF; then EOF back.
class echo_session : public std::enable_shared_from_this<echo_session> {
 public:
  explicit echo_session(tcp::socket socket) : socket_(std::move(socket)) {}
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

  tcp::socket socket_;
  std::array<char, 16 * 1024> buffer_{};
};

// --forward: where relayed clients go instead of the echo.
struct forward_target {
  tcp::resolver::results_type addresses;
  tlsrelay::client::relayed_pump_options pump;
};

// One client handed to the forward target: connect, then pump both ways. A
// client whose target is not there is reset.
void forward(relayed_connection conn, const forward_target& target) {
  auto& executor_source = conn.lowest_layer();
  auto local = std::make_shared<tcp::socket>(executor_source.get_executor());
  auto relayed = std::make_shared<relayed_connection>(std::move(conn));
  asio::async_connect(
    *local, target.addresses,
    [local, relayed, options = target.pump](const boost::system::error_code& ec,
                                            const tcp::endpoint&) {
      if (ec) {
        std::fprintf(stderr, "relayed_echo_server: --forward: %s\n", ec.message().c_str());
        boost::system::error_code ignored;
        relayed->lowest_layer().set_option(asio::socket_base::linger(true, 0), ignored);
        relayed->close();
        return;
      }
      tlsrelay::client::pump_relayed(std::move(*relayed), std::move(*local), nullptr, options);
    });
}

void accept_next(relay_listener& listener, const std::optional<forward_target>& target) {
  listener.async_accept([&listener, &target](std::error_code ec, relayed_connection conn) {
    if (ec) return;  // closed
    if (conn.client())
      std::printf("client %s\n", tlsrelay::format_host_port(*conn.client()).c_str());
    std::fflush(stdout);
    if (target)
      forward(std::move(conn), *target);
    else
      std::make_shared<echo_session>(conn.release_socket())->start();
    accept_next(listener, target);
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"An echo server reachable through a tlsrelay relay"};
  tlsrelay::examples::relay_arguments args;
  args.add_to(app);
  std::string forward_to;
  std::string pump = "splice";
  app.add_option("--forward", forward_to,
                 "do not echo: hand every client to this local service, HOST:PORT");
  app.add_option("--pump", pump,
                 "with --forward: splice (socket to socket in the kernel) or copy (through "
                 "this process's memory)")
    ->capture_default_str()
    ->check(CLI::IsMember({"splice", "copy"}));
  CLI11_PARSE(app, argc, argv);

  std::optional<forward_target> target;
  if (!forward_to.empty()) {
    tlsrelay::host_port where;
    if (auto ec = tlsrelay::parse_host_port(forward_to, where)) {
      std::fprintf(stderr, "relayed_echo_server: --forward %s: %s (want HOST:PORT)\n",
                   forward_to.c_str(), ec.message().c_str());
      return 2;
    }
    asio::io_context resolving;
    tcp::resolver resolver(resolving);
    boost::system::error_code ec;
    auto addresses = resolver.resolve(where.host, std::to_string(where.port), ec);
    if (ec) {
      std::fprintf(stderr, "relayed_echo_server: --forward %s: %s\n", forward_to.c_str(),
                   ec.message().c_str());
      return 2;
    }
    target = forward_target{addresses, {}};
    target->pump.path = pump == "copy" ? tlsrelay::client::relayed_pump_path::copy
                                       : tlsrelay::client::relayed_pump_path::splice;
  }
  tlsrelay::client::listener_options options;
  if (auto err = args.to_options(options); !err.empty()) {
    std::fprintf(stderr, "relayed_echo_server: %s\n", err.c_str());
    return 2;
  }
  return tlsrelay::examples::serve_until_signal(
    "relayed_echo_server", "", options,
    [&target](relay_listener& listener) { accept_next(listener, target); });
}
