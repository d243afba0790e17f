#include "cli/expose_command.hpp"

#include <filesystem>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "client/errc.hpp"
#include "client/relay_listener.hpp"
#include "client/relayed_pump.hpp"
#include "protocol/defaults.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/v2.hpp"
#include "pump/adopted_socket.hpp"

namespace tlsrelay::cli {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using client::client_errc;

struct expose_options {
  std::string local;
  std::vector<std::string> relays;  // the seeds, in order: listener_options::relay, then relays
  std::string token, name;
  unsigned port = 0;
  std::string tls_cert, tls_key;
  std::string ca;
  bool insecure = false;
  std::string cert, key;
  std::string keys_dir;  // the original's layout: ca.crt.pem, client.crt.pem, client.key.pem
  std::string server_name;
  unsigned protocol = 2;
  double heartbeat_s = std::chrono::duration<double>(defaults::heartbeat_interval).count();
  unsigned warm = defaults::warm_max;
  std::string log_level = "info";
};

int usage_error(const std::string& message) {
  std::fprintf(stderr, "tlsrelay: error: %s\n", message.c_str());
  return exit_code::usage;
}

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("tlsrelay-expose");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

// The local service's addresses, looked up by the first connection and kept:
// a lookup per relayed client (a trip through Asio's resolver thread) was a
// measurable part of expose's cost per connection.
using local_addresses = std::shared_ptr<std::optional<tcp::resolver::results_type>>;

// One relayed client: connect to the local service, then pump both ways.
class forwarder : public std::enable_shared_from_this<forwarder> {
 public:
  forwarder(asio::io_context& io, client::relayed_connection conn, host_port local,
            local_addresses addresses, std::chrono::milliseconds connect_timeout)
      : conn_(std::move(conn)),
        local_(std::move(local)),
        addresses_(std::move(addresses)),
        socket_(io),
        resolver_(io),
        timer_(io),
        connect_timeout_(connect_timeout) {
    const auto& client = conn_.client();
    who_ = client ? "client " + format_host_port(*client) : std::string("a client");
  }

  void start() {
    timer_.expires_after(connect_timeout_);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->connected_) return;
      self->give_up("no connection to the local service within the timeout");
    });
    if (*addresses_) return connect(**addresses_);
    resolver_.async_resolve(
      local_.host, std::to_string(local_.port),
      [self = shared_from_this()](const boost::system::error_code& ec,
                                  tcp::resolver::results_type results) {
        if (self->gave_up_) return;
        if (ec) return self->give_up("cannot resolve the local service: " + ec.message());
        *self->addresses_ = results;
        self->connect(results);
      });
  }

 private:
  void connect(const tcp::resolver::results_type& addresses) {
    pump::async_connect(socket_, addresses,
                        [self = shared_from_this()](const boost::system::error_code& ec,
                                                    const tcp::endpoint&) {
                          self->on_connected(ec);
                        });
  }

  void on_connected(const boost::system::error_code& ec) {
    if (gave_up_) return;
    if (ec) return give_up("cannot connect to the local service: " + ec.message());
    connected_ = true;
    timer_.cancel();
    pump();
  }

  void pump() {
    spdlog::debug("{}: forwarding to {}", who_, format_host_port(local_));
    // A plain connection is spliced socket to socket (the relay's own pump:
    // the bytes never enter expose's memory, which halves its CPU per relayed
    // GB); end-to-end TLS is decrypted here and copied, after the relay's
    // PROXY header (if any) that the library read to reach the handshake.
    client::pump_relayed(std::move(conn_), std::move(socket_),
                         [who = who_](const client::pump_result& r) {
                           if (r.error)
                             spdlog::info("{}: ended by {} ({}), {} bytes in, {} bytes out", who,
                                          r.error.message(), r.error_where, r.a_to_b, r.b_to_a);
                           else
                             spdlog::debug("{}: done, {} bytes in, {} bytes out", who, r.a_to_b,
                                           r.b_to_a);
                         });
  }

  // The client gets a reset: the service it asked for is not there.
  void give_up(const std::string& why) {
    if (gave_up_) return;
    gave_up_ = true;
    timer_.cancel();
    resolver_.cancel();
    spdlog::warn("{}: {} ({}); connection reset", who_, why, format_host_port(local_));
    boost::system::error_code ignored;
    socket_.close(ignored);
    auto& lowest = conn_.lowest_layer();
    lowest.set_option(asio::socket_base::linger(true, 0), ignored);
    lowest.close(ignored);
  }

  client::relayed_connection conn_;
  host_port local_;
  local_addresses addresses_;
  tcp::socket socket_;
  tcp::resolver resolver_;
  asio::steady_timer timer_;
  std::chrono::milliseconds connect_timeout_;
  std::string who_;
  bool connected_ = false;
  bool gave_up_ = false;
};

int run_expose(const expose_options& opt) {
  host_port local;
  if (auto ec = parse_host_port(opt.local, local))
    return usage_error("LOCAL " + opt.local + ": " + ec.message() + " (want HOST:PORT)");
  client::listener_options lo;
  for (std::size_t i = 0; i < opt.relays.size(); ++i) {
    host_port seed;
    if (auto ec = parse_host_port(opt.relays[i], seed))
      return usage_error("--relay " + opt.relays[i] + ": " + ec.message() + " (want HOST:PORT)");
    if (i == 0)
      lo.relay = seed;
    else
      lo.relays.push_back(seed);
  }
  lo.protocol = opt.protocol == 1 ? client::protocol_version::v1 : client::protocol_version::v2;
  lo.token = opt.token;
  lo.name = opt.name;
  lo.port = static_cast<std::uint16_t>(opt.port);
  if (!opt.keys_dir.empty()) {
    // Explicit --ca/--cert/--key win over the directory's files.
    const std::filesystem::path dir(opt.keys_dir);
    lo.tls.ca_file = (dir / "ca.crt.pem").string();
    lo.tls.cert_file = (dir / "client.crt.pem").string();
    lo.tls.key_file = (dir / "client.key.pem").string();
  }
  if (!opt.ca.empty()) lo.tls.ca_file = opt.ca;
  lo.tls.insecure = opt.insecure;
  if (!opt.cert.empty()) lo.tls.cert_file = opt.cert;
  if (!opt.key.empty()) lo.tls.key_file = opt.key;
  lo.tls.server_name = opt.server_name;
  if (!opt.tls_cert.empty() || !opt.tls_key.empty()) {
    if (opt.tls_cert.empty() || opt.tls_key.empty())
      return usage_error("--tls-cert and --tls-key go together");
    lo.end_to_end_tls = client::end_to_end_tls_options{opt.tls_cert, opt.tls_key};
  }
  if (opt.heartbeat_s <= 0) return usage_error("--heartbeat must be positive");
  lo.heartbeat_interval =
    std::chrono::milliseconds(static_cast<long>(opt.heartbeat_s * 1000 + 0.5));
  lo.reconnect = true;
  lo.warm_max = opt.warm;
  if (auto err = client::validate(lo); !err.empty()) return usage_error(err);

  setup_logging(opt.log_level);
  auto addresses = std::make_shared<std::optional<tcp::resolver::results_type>>();
  asio::io_context io;
  std::optional<client::relay_listener> listener;
  try {
    listener.emplace(io, lo);
  } catch (const std::invalid_argument& e) {
    return usage_error(e.what());
  }

  int result = exit_code::ok;
  std::optional<host_port> printed;
  listener->set_event_handler([&](const client::listener_event& ev) {
    if (ev.what != client::listener_event::kind::listening) return;
    if (printed && *printed == ev.session.public_endpoint) return;
    printed = ev.session.public_endpoint;
    std::printf("tlsrelay: exposing %s on %s\n", opt.local.c_str(),
                format_host_port(ev.session.public_endpoint).c_str());
    std::fflush(stdout);
  });
  listener->async_listen([&](std::error_code ec, const client::session_info&) {
    if (!ec) return;
    if (ec == client_errc::listener_closed) return;
    std::fprintf(stderr, "tlsrelay: error: %s: %s\n", ec.message().c_str(),
                 listener->last_error_detail().c_str());
    result = exit_code_for(ec);
    io.stop();
  });

  std::function<void()> accept_next = [&] {
    listener->async_accept([&](std::error_code ec, client::relayed_connection conn) {
      if (ec) return;  // the listener stopped
      std::make_shared<forwarder>(io, std::move(conn), local, addresses, lo.connect_timeout)
        ->start();
      accept_next();
    });
  };
  accept_next();

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    listener->close();
    io.stop();
  });
  io.run();
  listener.reset();
  return result;
}

}  // namespace

int exit_code_for(std::error_code ec) {
  if (ec.category() != client::client_category()) return exit_code::other;
  switch (static_cast<client_errc>(ec.value())) {
    case client_errc::relay_unreachable: return exit_code::unreachable;
    case client_errc::tls_failed: return exit_code::tls;
    case client_errc::auth_failed: return exit_code::auth;
    case client_errc::pool_exhausted:
    case client_errc::port_unavailable:
    case client_errc::name_unavailable:
    case client_errc::too_many_sessions: return exit_code::refused;
    default: return exit_code::other;
  }
}

void add_expose_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<expose_options>();
  auto* cmd = app.add_subcommand(
    "expose", "Offer a local TCP service on a public port of a relay (the server behind NAT)");
  cmd->add_option("LOCAL", opt->local, "The local service, HOST:PORT ([v6]:PORT for IPv6)")
    ->required();
  cmd->add_option("--relay", opt->relays,
                  "The relay's control address, HOST:PORT; repeatable: seeds tried in turn on "
                  "every (re)connect (the next at once if one is down, full or draining)")
    ->type_name("HOST:PORT")
    ->required()
    ->allow_extra_args(false);  // `--relay A LOCAL` leaves LOCAL positional
  cmd->add_option("--token", opt->token, "Token for the relay (protocol 2)")
    ->envname("TLSRELAY_TOKEN");
  cmd->add_option("--name", opt->name,
                  "Reservation name: the same public port again after a reconnect (protocol 2)");
  cmd->add_option("--port", opt->port, "Ask for this public port (protocol 2)")
    ->check(CLI::Range(1, 65535));
  cmd->add_option("--tls-cert", opt->tls_cert,
                  "End-to-end TLS: certificate presented to clients (the relay sees only "
                  "ciphertext; the local service gets plaintext)");
  cmd->add_option("--tls-key", opt->tls_key, "End-to-end TLS: its private key");
  cmd->add_option("--ca", opt->ca,
                  "CA file the relay's certificate must chain to (default: the system store)");
  cmd->add_flag("--insecure", opt->insecure,
                "Do not verify the relay's certificate (development only)");
  cmd->add_option("--cert", opt->cert,
                  "Client certificate toward the relay (protocol 1 needs one)");
  cmd->add_option("--key", opt->key, "Its private key");
  cmd->add_option("-k,--keys", opt->keys_dir,
                  "Directory in the original's layout (as made by `tlsrelay certs init`): its "
                  "ca.crt.pem verifies the relay, client.crt.pem/client.key.pem identify us")
    ->check(CLI::ExistingDirectory);
  cmd->add_option("--server-name", opt->server_name,
                  "Name the relay's certificate must carry (default: the relay host)");
  cmd->add_option("--protocol", opt->protocol, "Control protocol, 1 (the original's) or 2")
    ->capture_default_str()
    ->check(CLI::IsMember({1u, 2u}));
  cmd->add_option("--heartbeat", opt->heartbeat_s,
                  "Seconds between pings (protocol 2); 3 silent intervals end the session")
    ->capture_default_str();
  cmd->add_option("--warm", opt->warm,
                  "Warm reverse connections kept open so a client is paired without a round "
                  "trip (protocol 2; at most the relay's --warm-max); 0: off")
    ->capture_default_str()
    ->check(CLI::Range(0u, v2::max_warm));
  cmd->add_option("--log-level", opt->log_level, "trace, debug, info, warn, error or off")
    ->capture_default_str()
    ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  cmd->footer(
    "Prints `tlsrelay: exposing LOCAL on HOST:PORT` on stdout once the relay gave a public\n"
    "port (again after a reconnect if it changed), forwards every client to LOCAL, and\n"
    "reconnects after the relay restarts, until SIGINT/SIGTERM (exit 0).\n"
    "Several --relay (nodes of one relay cluster): each connect and reconnect tries them in\n"
    "the order given, moving on at once from one that is unreachable, full or draining, and\n"
    "follows a node's redirect; the first connection fails only if none of them works.\n"
    "Exit codes when the first connection to the relay fails (several: the last one tried):\n"
    "  2  usage: a bad flag value or an unusable file\n"
    "  3  relay unreachable (not resolved, refused, timed out)\n"
    "  4  TLS failure (handshake, the relay's certificate not verified)\n"
    "  5  authentication refused (token or client certificate)\n"
    "  6  no port: pool full, port or name unavailable, too many sessions\n"
    "  1  anything else (e.g. a relay that does not speak the protocol)");
  cmd->callback([opt, &exit_code] { exit_code = run_expose(*opt); });
}

}  // namespace tlsrelay::cli
