#include "cli/serve_command.hpp"

#include <csignal>
#include <cstdio>
#include <memory>
#include <pthread.h>
#include <sys/resource.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <caf/all.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "actors/messages.hpp"
#include "actors/pool_manager.hpp"
#include "net/net_bridge.hpp"
#include "net/relay_network.hpp"
#include "net/tls_context.hpp"
#include "protocol/defaults.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/errc.hpp"
#include "protocol/pool_layout.hpp"

namespace tlsrelay::cli {
namespace {

struct serve_options {
  unsigned port = defaults::control_port;
  unsigned port_count = defaults::port_count;
  std::string myhost{defaults::myhost};
  std::string keys{defaults::keys_dir};
  std::string listen{defaults::listen_address};
  std::string log_level = "info";
  std::string data_path = "splice";
  std::size_t max_pending = defaults::max_pending_clients;
  double pending_timeout_s =
    std::chrono::duration<double>(defaults::pending_timeout).count();
};

int fail(const std::string& message) {
  std::fprintf(stderr, "tlsrelay: error: %s\n", message.c_str());
  return 2;
}

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("tlsrelay");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

// Each relayed pair costs up to six descriptors; the hard limit is ours to use.
void raise_descriptor_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

int run_serve(const serve_options& opt) {
  pool_layout layout;
  if (auto ec = pool_layout::make(opt.port, opt.port_count, layout)) {
    if (ec == protocol_errc::bad_port_count)
      return fail("--port-count " + std::to_string(opt.port_count) + ": " + ec.message());
    if (ec == protocol_errc::port_range_overflow)
      return fail("--port " + std::to_string(opt.port) + " with --port-count " +
                  std::to_string(opt.port_count) + ": " + ec.message() + " (last port would be " +
                  std::to_string(opt.port + opt.port_count) + ")");
    return fail("--port " + std::to_string(opt.port) + ": " + ec.message());
  }
  boost::system::error_code addr_ec;
  const auto listen_address = boost::asio::ip::make_address(opt.listen, addr_ec);
  if (addr_ec) return fail("--listen " + opt.listen + ": not an IP address");
  if (opt.pending_timeout_s <= 0) return fail("--pending-timeout must be positive");

  setup_logging(opt.log_level);
  raise_descriptor_limit();

  boost::asio::ssl::context tls(boost::asio::ssl::context::tls_server);
  if (auto err = net::configure_relay_tls(tls, opt.keys); !err.empty()) return fail(err);

  // Every thread created from here on inherits the blocked signals, so only
  // the sigwait below ever sees SIGINT/SIGTERM.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::tlsrelay>();
  cfg.set("scheduler.max-threads", 2);
  caf::actor_system system{cfg};

  net::network_config net_config{listen_address, layout,
                                 opt.data_path == "copy" ? net::data_path::copy
                                                         : net::data_path::splice};
  net::relay_network network(net_config, tls);
  if (auto err = network.bind(); !err.empty()) return fail(err);

  pool_manager_config pool_config;
  pool_config.layout = layout;
  pool_config.session.myhost = opt.myhost;
  pool_config.session.max_pending = opt.max_pending;
  pool_config.session.pending_timeout = std::chrono::milliseconds(
    static_cast<long>(opt.pending_timeout_s * 1000));
  auto bridge = net::spawn_net_bridge(system, network);
  auto pool = system.spawn(pool_manager, bridge, pool_config);
  network.start(pool);

  const auto pairs = layout.pair_count();
  std::printf(
    "tlsrelay: listening on %s (control, mutual TLS, keys %s); %u pairs: reverse ports %u-%u, "
    "public ports %u-%u; servers are told host %s\n",
    format_host_port(opt.listen, layout.control_port()).c_str(), opt.keys.c_str(), pairs,
    layout.reverse_port(0), layout.reverse_port(pairs - 1), layout.public_port(0),
    layout.public_port(pairs - 1), opt.myhost.c_str());
  std::fflush(stdout);
  spdlog::info("relay started: control port {}, {} pairs, data path {}, pending timeout {} s",
               layout.control_port(), pairs, opt.data_path, opt.pending_timeout_s);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("received {}, stopping", signal_number == SIGINT ? "SIGINT" : "SIGTERM");

  network.stop();  // listeners and connections closed, io thread joined
  caf::anon_send_exit(pool, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(bridge, caf::exit_reason::user_shutdown);
  system.await_all_actors_done();
  spdlog::info("stopped");
  return 0;
}

}  // namespace

void add_serve_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<serve_options>();
  auto* cmd = app.add_subcommand(
    "serve", "Run the relay: a TLS control port and a pool of public/reverse port pairs");
  cmd->add_option("--port", opt->port, "Control port; the pool lies directly above it")
    ->capture_default_str()
    ->check(CLI::Range(1, 65535));
  cmd->add_option("--port-count", opt->port_count,
                  "Ports in the pool (even): half reverse, half public, one pair per server")
    ->capture_default_str();
  cmd->add_option("--myhost", opt->myhost,
                  "Host written into public_listener/reverse_listener lines (set it when used "
                  "beyond localhost)")
    ->capture_default_str();
  cmd->add_option("-k,--keys", opt->keys,
                  "Directory with ca.crt.pem, server.crt.pem, server.key.pem (see `tlsrelay "
                  "certs init`)")
    ->capture_default_str();
  cmd->add_option("--listen", opt->listen, "Address every port listens on (IPv4 or IPv6)")
    ->capture_default_str();
  cmd->add_option("--log-level", opt->log_level, "trace, debug, info, warn, error or off")
    ->capture_default_str()
    ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  cmd->add_option("--data-path", opt->data_path,
                  "How paired connections are pumped: splice (zero-copy through pipes) or copy")
    ->capture_default_str()
    ->check(CLI::IsMember({"splice", "copy"}));
  cmd->add_option("--pending-timeout", opt->pending_timeout_s,
                  "Seconds a client waits for the server's reverse connection before it is "
                  "closed")
    ->capture_default_str();
  cmd->add_option("--max-pending", opt->max_pending,
                  "Clients one server may have waiting for a reverse connection; more are closed")
    ->capture_default_str()
    ->check(CLI::Range(std::size_t{1}, std::size_t{100000}));
  cmd->callback([opt, &exit_code] { exit_code = run_serve(*opt); });
}

}  // namespace tlsrelay::cli
