#include "cli/connect_command.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "cli/expose_command.hpp"
#include "client/stream_pump.hpp"
#include "client/tls.hpp"
#include "protocol/defaults.hpp"
#include "protocol/endpoint.hpp"

namespace tlsrelay::cli {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost_ec = boost::system::error_code;

struct connect_options {
  std::string target;
  bool tls = false;
  std::string ca;
  bool insecure = false;
  std::string server_name;
  double timeout_s = 10;
};

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "tlsrelay: error: %s\n", message.c_str());
  return code;
}

// Restores the file status flags of stdin and stdout on exit: Asio makes
// them non-blocking, and a terminal is shared with the shell.
class fd_flags_guard {
 public:
  fd_flags_guard() : in_(::fcntl(0, F_GETFL)), out_(::fcntl(1, F_GETFL)) {}
  ~fd_flags_guard() {
    if (in_ >= 0) ::fcntl(0, F_SETFL, in_);
    if (out_ >= 0) ::fcntl(1, F_SETFL, out_);
  }
  fd_flags_guard(const fd_flags_guard&) = delete;
  fd_flags_guard& operator=(const fd_flags_guard&) = delete;

 private:
  int in_, out_;
};

// stdin as input, stdout as output. The peer's EOF (our shutdown_send)
// means the session is over: `on_peer_eof`.
class stdio_end final : public client::pump_end {
 public:
  stdio_end(asio::io_context& io, std::function<void()> on_peer_eof)
      : in_(io), out_(io), on_peer_eof_(std::move(on_peer_eof)) {
    boost_ec ec;
    in_.assign(::dup(0), ec);
    out_.assign(::dup(1), ec);
  }
  void async_read_some(asio::mutable_buffer buffer, io_handler handler) override {
    in_.async_read_some(buffer, wrap(std::move(handler)));
  }
  void async_write(asio::const_buffer buffer, io_handler handler) override {
    asio::async_write(out_, buffer, wrap(std::move(handler)));
  }
  void async_shutdown_send(done_handler handler) override {
    asio::post(*strand_, [h = std::move(handler), f = on_peer_eof_] {
      h({});
      f();
    });
  }
  void abort() override { close(); }
  void close() override {
    boost_ec ignored;
    in_.close(ignored);
    out_.close(ignored);
  }

 private:
  asio::posix::stream_descriptor in_, out_;
  std::function<void()> on_peer_eof_;
};

int run_connect(const connect_options& opt) {
  host_port target;
  if (auto ec = parse_host_port(opt.target, target))
    return fail(exit_code::usage, opt.target + ": " + ec.message() + " (want HOST:PORT)");
  if (!opt.tls && (!opt.ca.empty() || opt.insecure || !opt.server_name.empty()))
    return fail(exit_code::usage, "--ca, --insecure and --server-name need --tls");
  if (opt.insecure && !opt.ca.empty())
    return fail(exit_code::usage, "--insecure and --ca exclude each other");
  if (opt.timeout_s <= 0) return fail(exit_code::usage, "--timeout must be positive");
  const auto timeout = std::chrono::milliseconds(static_cast<long>(opt.timeout_s * 1000 + 0.5));

  std::shared_ptr<asio::ssl::context> context;
  if (opt.tls) {
    client::relay_tls_options t;
    if (!opt.ca.empty()) t.ca_file = opt.ca;
    t.insecure = opt.insecure;
    std::string err;
    context = client::make_client_context(t, "", err);
    if (!context) return fail(exit_code::usage, err);
  }

  fd_flags_guard restore_flags;
  asio::io_context io;
  const std::string where = format_host_port(target);
  int result = -1;
  auto finish = [&](int code, const std::string& message) {
    if (result >= 0) return;
    result = code;
    if (!message.empty()) std::fprintf(stderr, "tlsrelay: error: %s\n", message.c_str());
    io.stop();
  };

  tcp::socket socket(io);
  tcp::resolver resolver(io);
  asio::steady_timer deadline(io);
  std::unique_ptr<client::tls_stream> stream;
  bool timed_out = false;
  deadline.expires_after(timeout);
  deadline.async_wait([&](const boost_ec& ec) {
    if (ec) return;
    timed_out = true;
    resolver.cancel();
    boost_ec ignored;
    if (stream)
      stream->next_layer().close(ignored);
    else
      socket.close(ignored);
  });

  auto start_pump = [&](std::unique_ptr<client::pump_end> net) {
    deadline.cancel();
    auto in_out = std::make_unique<stdio_end>(io, [&] { finish(exit_code::ok, ""); });
    client::start_pump(io.get_executor(), std::move(in_out), std::move(net),
                       defaults::pump_buffer_bytes, [&](const client::pump_result& r) {
                         if (r.error)
                           finish(exit_code::other, "connection to " + where + " ended: " +
                                                      r.error.message() + " (" + r.error_where +
                                                      ")");
                         else
                           finish(exit_code::ok, "");
                       });
  };

  auto on_connected = [&](const boost_ec& ec) {
    if (ec) {
      finish(exit_code::unreachable,
             "cannot connect to " + where + ": " +
               (timed_out ? "timed out after " + std::to_string(opt.timeout_s) + " s" : ec.message()));
      return;
    }
    boost_ec ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    if (!context) {
      start_pump(client::make_pump_end(std::move(socket)));
      return;
    }
    stream = std::make_unique<client::tls_stream>(std::move(socket), *context);
    const std::string name = opt.server_name.empty() ? target.host : opt.server_name;
    if (auto err = client::set_peer_name(stream->native_handle(), name, opt.insecure);
        !err.empty()) {
      finish(exit_code::usage, err);
      return;
    }
    stream->async_handshake(asio::ssl::stream_base::client, [&](const boost_ec& ec) {
      if (ec) {
        finish(exit_code::tls, "TLS handshake with " + where + " failed: " +
                                 (timed_out ? std::string("timed out")
                                            : client::describe_tls_error(ec, stream->native_handle())));
        return;
      }
      start_pump(client::make_pump_end(std::move(stream), context));
    });
  };

  resolver.async_resolve(target.host, std::to_string(target.port),
                         [&](const boost_ec& ec, tcp::resolver::results_type results) {
                           if (ec) {
                             finish(exit_code::unreachable, "cannot resolve " + target.host +
                                                              ": " + ec.message());
                             return;
                           }
                           asio::async_connect(socket, results,
                                               [&](const boost_ec& ec, const tcp::endpoint&) {
                                                 on_connected(ec);
                                               });
                         });
  io.run();
  std::fflush(stdout);
  return result < 0 ? exit_code::other : result;
}

}  // namespace

void add_connect_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<connect_options>();
  auto* cmd = app.add_subcommand(
    "connect", "Join stdin/stdout to a TCP or TLS connection (like nc / openssl s_client)");
  cmd->add_option("TARGET", opt->target, "HOST:PORT ([v6]:PORT for IPv6)")->required();
  cmd->add_flag("--tls", opt->tls, "Speak TLS (the peer's certificate is verified)");
  cmd->add_option("--ca", opt->ca, "With --tls: CA file to verify the peer (default: system store)");
  cmd->add_flag("--insecure", opt->insecure, "With --tls: do not verify the peer (development only)");
  cmd->add_option("--server-name", opt->server_name,
                  "With --tls: name the peer's certificate must carry (default: HOST)");
  cmd->add_option("--timeout", opt->timeout_s, "Seconds for the connection and TLS handshake")
    ->capture_default_str();
  cmd->footer(
    "stdin goes to the peer; at its end the sending side is shut down (TLS: close_notify)\n"
    "and what the peer sends is still written to stdout until it closes.\n"
    "Exit codes: 0 the peer closed normally, 1 the connection failed later (e.g. reset),\n"
    "2 usage, 3 unreachable (not resolved, refused, timed out), 4 TLS handshake or\n"
    "certificate verification failed.");
  cmd->callback([opt, &exit_code] { exit_code = run_connect(*opt); });
}

}  // namespace tlsrelay::cli
