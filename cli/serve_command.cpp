#include "cli/serve_command.hpp"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <vector>
#include <unistd.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/authenticator.hpp"
#include "actors/messages.hpp"
#include "actors/pool_manager.hpp"
#include "cli/config_file.hpp"
#include "cli/reload.hpp"
#include "cli/serve_cluster.hpp"
#include "cli/version.hpp"
#include "net/admin_server.hpp"
#include "cli/serve_drain.hpp"
#include "logging/structured_log.hpp"
#include "net/net_bridge.hpp"
#include "net/relay_network.hpp"
#include "net/tls_context.hpp"
#include "protocol/defaults.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/errc.hpp"
#include "protocol/pool_layout.hpp"
#include "protocol/state_file.hpp"
#include "protocol/token_file.hpp"
#include "protocol/v2.hpp"

namespace tlsrelay::cli {
namespace {

// CAF's threads (workers, timer, middleman) run under SCHED_BATCH: a message
// from an io thread then makes a worker runnable without preempting that io
// thread, so on a busy CPU the io thread finishes its round of events and
// the worker takes the messages in one go, instead of two context switches
// per message. On an idle core the worker runs at once, as before.
// Measured (bench connect load, v1, relay alone on one CPU): relay CPU per
// relayed connection 134-156 -> 91-102 us. The io threads stay SCHED_OTHER:
// they carry the data path, which must not wait behind other processes.
class batch_scheduling_hook final : public caf::thread_hook {
public:
  void init(caf::actor_system&) override {}
  void thread_started() override {
    sched_param none{};
    none.sched_priority = 0;
    // Refused (a seccomp filter): the threads keep SCHED_OTHER, which only costs speed.
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &none);
  }
  void thread_terminates() override {}
};

struct serve_options {
  unsigned port = defaults::control_port;
  unsigned port_count = defaults::port_count;
  std::string myhost{defaults::myhost};
  std::string keys{defaults::keys_dir};
  std::string listen;  // empty: dual-stack "::", or 0.0.0.0 without IPv6
  std::string log_level = "info";
  std::string data_path = "splice";
  unsigned io_threads = net::default_io_threads();
  std::size_t max_pending = defaults::max_pending_clients;
  std::string tokens_file;
  std::string client_auth = "optional";
  double heartbeat_s = std::chrono::duration<double>(defaults::heartbeat_interval).count();
  double reservation_ttl_s = std::chrono::duration<double>(defaults::reservation_ttl).count();
  unsigned max_sessions_per_token = defaults::max_sessions_per_token;
  std::string state_file;
  bool proxy_protocol = false;
  unsigned warm_max = defaults::warm_max;
  double warm_idle_s = std::chrono::duration<double>(defaults::warm_idle_timeout).count();
  double hello_timeout_s = std::chrono::duration<double>(defaults::hello_timeout).count();
  double pending_timeout_s =
    std::chrono::duration<double>(defaults::pending_timeout).count();
  unsigned keepalive_s = static_cast<unsigned>(defaults::keepalive_idle.count());
  double idle_timeout_s = std::chrono::duration<double>(defaults::pair_idle_timeout).count();
  double half_close_timeout_s =
    std::chrono::duration<double>(defaults::half_close_timeout).count();
  std::size_t max_connections = 0;  // 0: as many as the descriptor limit allows
  std::size_t max_handshakes = defaults::max_handshakes;
  std::size_t max_handshakes_per_source = defaults::max_handshakes_per_source;
  std::size_t max_unchecked_per_source = defaults::max_unchecked_per_source;
  double client_rate = 0;
  double control_rate = defaults::control_rate;
  std::string admin;        // ADDR:PORT of the admin endpoint; "" = off
  std::string admin_token;  // required by the admin endpoint when set
  double drain_timeout_s = std::chrono::duration<double>(defaults::drain_timeout).count();
  std::string log_format = "text";
  bool access_log = false;
  cluster_options cluster;
};

// --admin ADDR:PORT as an endpoint, or an error naming the flag. Only a
// loopback address may go without a token.
std::string parse_admin_endpoint(const serve_options& opt, boost::asio::ip::tcp::endpoint& out) {
  // Port 0 (any free port, printed at start) is allowed here, unlike in
  // listener lines: hence not parse_host_port.
  host_port hp;
  const auto colon = opt.admin.rfind(':');
  unsigned long port = 65536;
  if (colon != std::string::npos && colon + 1 < opt.admin.size() &&
      opt.admin.find_first_not_of("0123456789", colon + 1) == std::string::npos &&
      opt.admin.size() - colon - 1 <= 5)
    port = std::stoul(opt.admin.substr(colon + 1));
  if (port > 65535 || colon == 0)
    return "--admin " + opt.admin + ": expected ADDRESS:PORT (e.g. 127.0.0.1:9100 or [::1]:9100)";
  hp.host = opt.admin.substr(0, colon);
  if (hp.host.size() >= 2 && hp.host.front() == '[' && hp.host.back() == ']')
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  hp.port = static_cast<std::uint16_t>(port);
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(hp.host, ec);
  if (ec) return "--admin " + opt.admin + ": " + hp.host + " is not an IP address";
  if (!net::is_loopback(address) && opt.admin_token.empty())
    return "--admin " + opt.admin +
           ": not a loopback address; an admin endpoint reachable from other hosts needs "
           "--admin-token (or TLSRELAY_ADMIN_TOKEN)";
  out = {address, hp.port};
  return {};
}

int fail(const std::string& message) {
  std::fprintf(stderr, "tlsrelay: error: %s\n", message.c_str());
  return 2;
}

// Replaces `path` so that a crash leaves the old or the new contents, never
// a mix: write a temporary file beside it, flush it to disk, rename.
bool write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  std::size_t done = 0;
  while (done < text.size()) {
    const auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  const bool ok = done == text.size() && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

// Rounded up: a positive duration never becomes 0 ms (which would expire or
// time out everything at once).
std::chrono::milliseconds to_millis(double seconds) {
  return std::chrono::milliseconds(static_cast<long>(std::ceil(seconds * 1000)));
}

const char* signal_name(int signal_number) {
  return signal_number == SIGINT ? "SIGINT" : signal_number == SIGTERM ? "SIGTERM" : "a signal";
}

// The first SIGTERM/SIGINT: drain (see cli/serve_drain.hpp), until the
// pool_manager reports the drain over, a second signal, or the drain timeout
// and a margin for actors that do not answer. Returns when it is time to stop.
void drain(int first_signal, const caf::actor& pool, drain_waiter& waiter,
           net::relay_network& network, std::chrono::milliseconds timeout) {
  mark_draining();
  // Only these end the drain early (other signals blocked for serve's loop,
  // such as SIGHUP, stay pending meanwhile).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  if (timeout.count() == 0) {
    spdlog::info("received {}, stopping", signal_name(first_signal));
    return;
  }
  spdlog::info("received {}: draining for up to {} s (send SIGTERM or SIGINT again to stop at "
               "once)",
               signal_name(first_signal), timeout.count() / 1000.0);
  caf::anon_send(pool, drain_atom::value, static_cast<std::uint64_t>(timeout.count()));
  int second_signal = 0;
  switch (waiter.wait(stop_signals, timeout + defaults::drain_report_margin, &second_signal)) {
    case drain_waiter::outcome::drained:
      // The last `error draining` lines reach their servers before the end.
      network.await_last_lines(defaults::close_linger);
      return;
    case drain_waiter::outcome::signal:
      spdlog::warn("received {} again: stopping now, without waiting for the drain",
                   signal_name(second_signal));
      return;
    case drain_waiter::outcome::overdue:
      spdlog::error("the drain did not report its end within {} s; stopping now",
                    (timeout + defaults::drain_report_margin).count() / 1000.0);
      return;
  }
}

// Each relayed pair costs two descriptors, and two pipes while bytes are in
// flight; the hard limit is ours to use. Returns the limit in force.
std::size_t raise_descriptor_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  return lim.rlim_cur == RLIM_INFINITY ? std::size_t{1} << 20 : static_cast<std::size_t>(lim.rlim_cur);
}

// The tokens file, or one line naming it (and the line at fault).
std::string read_tokens(const std::string& path, std::vector<token_entry>& out) {
  std::string text;
  if (auto err = read_whole_file(path, text); !err.empty()) return "--tokens " + err;
  std::vector<token_entry> tokens;
  if (auto err = parse_token_file(text, tokens); !err.empty())
    return "--tokens " + path + ": " + err;
  if (tokens.empty()) return "--tokens " + path + ": no tokens in it";
  out = std::move(tokens);
  return {};
}

void declare_serve_options(CLI::App* cmd, serve_options* opt);

// Long names of serve's options that are not config file keys.
const std::set<std::string>& command_line_only() {
  static const std::set<std::string> names{"config", "help", "version"};
  return names;
}

// The options in force: the defaults, then the config file at `config_path`
// ("" for none), then the command line's `given` flags over both. Declared
// afresh each time on a throwaway CLI11 app, so a reload sees exactly what a
// start would. "" or one line naming the flag or the file, line and key.
std::string load_serve_options(const option_values& given, const std::string& config_path,
                               serve_options& out, file_values& from_file) {
  CLI::App app;
  auto* cmd = app.add_subcommand("serve");
  serve_options opt;
  declare_serve_options(cmd, &opt);
  if (auto err = apply_options(*cmd, given, config_path, command_line_only(), from_file);
      !err.empty())
    return err;
  out = std::move(opt);
  return {};
}

// Settings a reload applies while the relay runs; every other key of the
// config file takes effect at the next start.
const std::set<std::string>& reloadable_keys() {
  static const std::set<std::string> keys{"keys", "tokens", "log-level"};
  return keys;
}

// What a reload needs of the running relay (touched under the reloader's
// lock only).
struct running_relay {
  option_values given;      // the command line, which still wins over the file
  std::string config_path;  // "" without --config
  serve_options options;    // in force
  file_values from_file;    // what the file said for the settings in force
  net::client_auth auth_mode = net::client_auth::optional;
  net::relay_network* network = nullptr;
  caf::actor_system* system = nullptr;
  caf::actor pool;
};

// One reload (see cli/reload.hpp): everything new is read and checked first;
// only then are the tokens, certificates and log level swapped in.
std::string reload_relay(running_relay& relay) {
  serve_options fresh;
  file_values fresh_file;
  if (auto err = load_serve_options(relay.given, relay.config_path, fresh, fresh_file);
      !err.empty())
    return err;

  // Whatever else the file changed waits for a restart (bound ports, the
  // pool, limits given to net/ and actors at start). So does turning tokens
  // on or off: it changes who may connect at all, not just with what.
  std::vector<std::string> ignored;
  auto keep_running_value = [&](const std::string& key) {
    ignored.push_back("--" + key);
    if (auto it = relay.from_file.find(key); it != relay.from_file.end())
      fresh_file[key] = it->second;
    else
      fresh_file.erase(key);
  };
  std::set<std::string> keys;
  for (const auto& [key, value] : relay.from_file) keys.insert(key);
  for (const auto& [key, value] : fresh_file) keys.insert(key);
  for (const auto& key : keys) {
    const auto before = relay.from_file.find(key), after = fresh_file.find(key);
    const bool changed = (before == relay.from_file.end()) != (after == fresh_file.end()) ||
                         (before != relay.from_file.end() && before->second != after->second);
    if (changed && !reloadable_keys().count(key)) keep_running_value(key);
  }
  if (relay.options.tokens_file.empty() != fresh.tokens_file.empty()) {
    keep_running_value("tokens");
    fresh.tokens_file = relay.options.tokens_file;
  }

  auto tls = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
  if (auto err = net::configure_relay_tls(*tls, fresh.keys, relay.auth_mode); !err.empty())
    return err;
  std::vector<token_entry> tokens;
  if (!fresh.tokens_file.empty())
    if (auto err = read_tokens(fresh.tokens_file, tokens); !err.empty()) return err;

  std::string token_summary = "no tokens file";
  if (!fresh.tokens_file.empty()) {
    const auto count = tokens.size();
    caf::scoped_actor self{*relay.system};
    std::string failure;
    std::uint64_t ended = 0;
    self->request(relay.pool, defaults::reload_answer_timeout, token_table{std::move(tokens)})
      .receive([&](std::uint64_t n) { ended = n; },
               [&](caf::error& err) {
                 failure = "the relay did not take the new tokens: " + relay.system->render(err);
               });
    if (!failure.empty()) return failure;
    token_summary = fmt::format("{} token(s) from {}, {} session(s) with a removed token ended",
                                count, fresh.tokens_file, ended);
  }
  relay.network->replace_tls(std::move(tls));
  spdlog::set_level(spdlog::level::from_str(fresh.log_level));

  relay.options.keys = fresh.keys;
  relay.options.tokens_file = fresh.tokens_file;
  relay.options.log_level = fresh.log_level;
  relay.from_file = std::move(fresh_file);
  spdlog::info("reloaded{}: {}; certificate, key and CA from {} for new handshakes; log level {}",
               relay.config_path.empty() ? "" : " " + relay.config_path, token_summary,
               fresh.keys, fresh.log_level);
  if (!ignored.empty()) {
    std::string names;
    for (const auto& name : ignored) names += (names.empty() ? "" : ", ") + name;
    spdlog::warn("changed in {} but ignored until restart: {}", relay.config_path, names);
  }
  return {};
}

// SIGHUP: reload; the outcome is logged by the reloader.
void on_sighup(reloader& reload) {
  spdlog::info("received SIGHUP, reloading");
  reload.reload();
}

int run_serve(const serve_options& opt, running_relay& relay) {
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
  const bool dual_stack_default = opt.listen.empty();
  auto listen_address = boost::asio::ip::make_address(
    dual_stack_default ? std::string(defaults::listen_address) : opt.listen, addr_ec);
  if (addr_ec) return fail("--listen " + opt.listen + ": not an IP address");

  authenticator_config auth_config;
  if (!opt.tokens_file.empty())
    if (auto err = read_tokens(opt.tokens_file, auth_config.tokens); !err.empty()) return fail(err);
  const auto auth_mode = opt.client_auth == "required" ? net::client_auth::required
                         : opt.client_auth == "none"   ? net::client_auth::none
                                                       : net::client_auth::optional;
  auth_config.open_access = auth_mode == net::client_auth::none;

  std::vector<reservation_record> restored;
  if (!opt.state_file.empty() && std::filesystem::exists(opt.state_file)) {
    std::string text;
    if (auto err = read_whole_file(opt.state_file, text); !err.empty()) return fail("--state " + err);
    if (auto err = parse_state(text, restored); !err.empty())
      return fail("--state " + opt.state_file + ": corrupt: " + err +
                  " (fix or remove the file; it is never ignored)");
  }

  boost::asio::ip::tcp::endpoint admin_endpoint;
  if (!opt.admin.empty())
    if (auto err = parse_admin_endpoint(opt, admin_endpoint); !err.empty()) return fail(err);
  // The listeners and the headroom must fit under the descriptor limit, with
  // room for connections; --max-connections defaults to that room.
  const std::size_t descriptor_limit = raise_descriptor_limit();
  const std::size_t fixed_descriptors = opt.port_count + 1 + defaults::descriptor_headroom;
  if (descriptor_limit < fixed_descriptors + defaults::min_connections)
    return fail("the descriptor limit (ulimit -n) is " + std::to_string(descriptor_limit) +
                ": too small for --port-count " + std::to_string(opt.port_count) + ", which needs " +
                std::to_string(fixed_descriptors + defaults::min_connections) +
                " (its listeners, " + std::to_string(defaults::descriptor_headroom) +
                " kept back, " + std::to_string(defaults::min_connections) + " connections)");
  const std::size_t connection_room = descriptor_limit - fixed_descriptors;
  if (opt.max_connections > connection_room)
    return fail("--max-connections " + std::to_string(opt.max_connections) +
                " does not fit the descriptor limit (ulimit -n " +
                std::to_string(descriptor_limit) + "): at most " +
                std::to_string(connection_room) + " with --port-count " +
                std::to_string(opt.port_count));
  const std::size_t max_connections = opt.max_connections ? opt.max_connections : connection_room;

  if (opt.drain_timeout_s < 0) return fail("--drain-timeout must not be negative (0: no drain)");
  logging::setup("tlsrelay",
                 opt.log_format == "json" ? logging::log_format::json : logging::log_format::text,
                 opt.log_level);

  boost::asio::ssl::context tls(boost::asio::ssl::context::tls_server);
  if (auto err = net::configure_relay_tls(tls, opt.keys, auth_mode); !err.empty()) return fail(err);

  // Every thread created from here on inherits the blocked signals, so only
  // the sigwait below ever sees SIGINT/SIGTERM.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);  // not a stop: a reload (on_sighup)
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  cluster_setup cluster;
  if (auto err = prepare_cluster(opt.cluster, opt.keys,
                                 {opt.myhost, layout.control_port()},
                                 to_millis(opt.reservation_ttl_s), cluster);
      !err.empty())
    return fail(err);
  const bool clustered = !opt.cluster.cluster_listen.empty();

  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::tlsrelay>();
  if (clustered) configure_cluster_transport(cluster, cfg);
  // Two workers, or one when the process may run on one CPU only (taskset, a
  // cpuset): two workers on one CPU wake each other for every message and
  // contend for the shared job queue's mutex.
  cfg.set("scheduler.max-threads", std::min(2u, net::default_io_threads()));
  // Work sharing: an idle worker sleeps on a condition variable and is woken
  // by the next message. CAF's default work stealing polls, then sleeps in
  // 50 µs steps, which costs the io thread CPU time and delays each message
  // (perf stat, v1 connect load: 6.2-6.7 -> 3.4-4.8 context switches and
  // ~147 -> ~115 µs of relay CPU per relayed connection).
  cfg.set("scheduler.policy", caf::atom("sharing"));
  cfg.add_thread_hook<batch_scheduling_hook>();
  caf::actor_system system{cfg};

  net::network_config net_config{listen_address, layout,
                                 opt.data_path == "copy" ? net::data_path::copy
                                                         : net::data_path::splice};
  net_config.pair_limits = {to_millis(opt.idle_timeout_s), to_millis(opt.half_close_timeout_s)};
  net_config.keepalive = std::chrono::seconds(opt.keepalive_s);
  net_config.io_threads = opt.io_threads;
  net_config.limits.max_connections = max_connections;
  net_config.limits.max_handshakes = opt.max_handshakes;
  net_config.limits.max_handshakes_per_source = opt.max_handshakes_per_source;
  net_config.limits.max_unchecked_per_source = opt.max_unchecked_per_source;
  net_config.limits.client_rate = opt.client_rate;
  net_config.limits.control_rate = opt.control_rate;
  auto network = std::make_unique<net::relay_network>(net_config, tls);
  auto bind_error = network->bind();
  if (!bind_error.empty() && dual_stack_default) {
    // No IPv6 on this host: the default falls back to IPv4 only.
    net_config.listen_address =
      boost::asio::ip::make_address(std::string(defaults::listen_address_ipv4_only));
    network = std::make_unique<net::relay_network>(net_config, tls);
    auto v4_error = network->bind();
    if (v4_error.empty()) spdlog::warn("cannot listen on [::] ({}); listening on 0.0.0.0", bind_error);
    bind_error = v4_error;
  }
  if (!bind_error.empty()) return fail(bind_error);
  const auto listen_text = net_config.listen_address.to_string();

  relay.options = opt;
  relay.auth_mode = auth_mode;
  relay.network = network.get();
  relay.system = &system;
  // The entry point for reloads: SIGHUP below, and POST /reload (which can
  // come only once the admin endpoint runs, after relay.pool is set).
  reloader reload([&relay] { return reload_relay(relay); });

  std::unique_ptr<net::admin_server> admin;
  if (!opt.admin.empty()) {
    net::admin_config admin_config;
    admin_config.endpoint = admin_endpoint;
    admin_config.token = opt.admin_token;
    auto& d = admin_config.relay;
    d.version = version();
    d.commit = commit();
    d.started_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
    d.listen_address = listen_text;
    d.control_port = layout.control_port();
    d.myhost = opt.myhost;
    d.first_reverse_port = layout.reverse_port(0);
    d.last_reverse_port = layout.reverse_port(layout.pair_count() - 1);
    d.first_public_port = layout.public_port(0);
    d.last_public_port = layout.public_port(layout.pair_count() - 1);
    d.limits = {
      {"max-connections", static_cast<double>(max_connections)},
      {"max-pending", static_cast<double>(opt.max_pending)},
      {"pending-timeout", opt.pending_timeout_s},
      {"max-handshakes", static_cast<double>(opt.max_handshakes)},
      {"max-handshakes-per-source", static_cast<double>(opt.max_handshakes_per_source)},
      {"max-unchecked-per-source", static_cast<double>(opt.max_unchecked_per_source)},
      {"client-rate", opt.client_rate},
      {"control-rate", opt.control_rate},
      {"max-sessions-per-token", static_cast<double>(opt.max_sessions_per_token)},
      {"warm-max", static_cast<double>(opt.warm_max)},
      {"warm-idle", opt.warm_idle_s},
      {"heartbeat", opt.heartbeat_s},
      {"hello-timeout", opt.hello_timeout_s},
      {"keepalive", static_cast<double>(opt.keepalive_s)},
      {"idle-timeout", opt.idle_timeout_s},
      {"half-close-timeout", opt.half_close_timeout_s},
      {"reservation-ttl", opt.reservation_ttl_s},
      {"descriptor-limit", static_cast<double>(descriptor_limit)},
    };
    admin_config.reload = [&reload] { return reload.reload(); };
    admin_config.draining = [] { return relay_draining(); };
    admin_config.reloads = [] { return reload_stats().reloads.load(); };
    admin_config.reload_failures = [] { return reload_stats().failures.load(); };
    admin = std::make_unique<net::admin_server>(std::move(admin_config), system,
                                                network->counters());
    if (auto err = admin->bind(); !err.empty()) return fail(err);
  }

  pool_manager_config pool_config;
  pool_config.layout = layout;
  pool_config.session.myhost = opt.myhost;
  pool_config.session.max_pending = opt.max_pending;
  pool_config.session.pending_timeout = to_millis(opt.pending_timeout_s);
  pool_config.session.v1_requires_certificate = auth_mode != net::client_auth::none;
  pool_config.session.heartbeat = to_millis(opt.heartbeat_s);
  pool_config.session.hello_timeout = to_millis(opt.hello_timeout_s);
  pool_config.session.proxy_protocol = opt.proxy_protocol;
  pool_config.session.warm_max = opt.warm_max;
  pool_config.session.warm_idle = to_millis(opt.warm_idle_s);
  pool_config.session.access_log = opt.access_log;
  pool_config.reservation_ttl = to_millis(opt.reservation_ttl_s);
  pool_config.max_sessions_per_owner = opt.max_sessions_per_token;
  pool_config.restored = std::move(restored);
  if (!opt.state_file.empty()) {
    pool_config.persist = [path = opt.state_file](const std::string& text) {
      if (!write_file_atomically(path, text))
        spdlog::error("--state {}: cannot write: {}", path, std::strerror(errno));
    };
  }
  drain_waiter drain_wait;
  pool_config.drained = drain_wait.notifier();
  auto bridge = net::spawn_net_bridge(system, *network);
  const bool have_tokens = !auth_config.tokens.empty();
  auto auth = system.spawn(authenticator, std::move(auth_config));
  caf::actor member;
  if (clustered) {
    if (auto err = start_cluster_member(system, cluster, member); !err.empty()) {
      caf::anon_send_exit(auth, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(bridge, caf::exit_reason::user_shutdown);
      return fail(err);
    }
    pool_config.cluster = member;
  }
  auto pool = system.spawn(pool_manager, bridge, auth, pool_config);
  relay.pool = pool;
  network->start(pool);
  if (admin) {
    admin->start(pool);
    const auto ep = admin->local_endpoint();
    const auto url = "http://" + format_host_port(ep.address().to_string(), ep.port());
    std::printf("tlsrelay: admin endpoint on %s (/metrics /healthz /readyz /status%s)\n",
                url.c_str(), opt.admin_token.empty() ? "" : "; bearer token required");
    spdlog::info("admin endpoint on {}", url);
  }

  const auto pairs = layout.pair_count();
  std::printf(
    "tlsrelay: listening on %s (control: TLS, client certificates %s%s, keys %s); %u pairs: "
    "reverse ports %u-%u, public ports %u-%u; servers are told host %s\n",
    format_host_port(listen_text, layout.control_port()).c_str(), opt.client_auth.c_str(),
    have_tokens ? ", tokens" : "", opt.keys.c_str(), pairs,
    layout.reverse_port(0), layout.reverse_port(pairs - 1), layout.public_port(0),
    layout.public_port(pairs - 1), opt.myhost.c_str());
  std::fflush(stdout);
  logging::event(spdlog::level::info, "relay_started",
                 logging::fields()
                   .port(layout.control_port())
                   .add("pairs", pairs)
                   .add("io_threads", opt.io_threads)
                   .add("max_connections", max_connections),
                 "relay started: control port {}, {} pairs, data path {}, {} io thread(s), "
                 "pending timeout {} s, at most {} connections (descriptor limit {})",
                 layout.control_port(), pairs, opt.data_path, opt.io_threads,
                 opt.pending_timeout_s, max_connections, descriptor_limit);

  int signal_number = 0;
  while (sigwait(&stop_signals, &signal_number) == 0 && signal_number == SIGHUP)
    on_sighup(reload);
  drain(signal_number, pool, drain_wait, *network, to_millis(opt.drain_timeout_s));

  if (admin) admin->stop();  // before the actors it asks (it answered /readyz 503 while draining)
  const auto cut = network->stop();  // listeners and connections closed, io thread joined
  relay.pool = nullptr;
  caf::anon_send_exit(pool, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(auth, caf::exit_reason::user_shutdown);
  if (member) caf::anon_send_exit(member, caf::exit_reason::user_shutdown);
  system.await_all_actors_done();
  logging::event(spdlog::level::info, "relay_stopped",
                 logging::fields().add("pairs_cut", cut),
                 cut ? fmt::format("stopped ({} relayed pair(s) cut)", cut) : std::string("stopped"));
  return 0;
}

// Loads the options (config file, then flags) and runs the relay.
int load_and_run_serve(option_values given, std::string config_path) {
  // A SIGHUP while starting (an eager `systemctl reload`) waits, blocked, for
  // the signal loop, which reloads then; its default action would kill us.
  sigset_t reload_signal;
  sigemptyset(&reload_signal);
  sigaddset(&reload_signal, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &reload_signal, nullptr);
  running_relay relay;
  relay.given = std::move(given);
  relay.config_path = std::move(config_path);
  serve_options opt;
  if (auto err = load_serve_options(relay.given, relay.config_path, opt, relay.from_file);
      !err.empty())
    return fail(err);
  return run_serve(opt, relay);
}

// A number the flag needs above 0 / at least 0 (0 turning it off). Text that
// is no number passes here: CLI11's conversion reports it.
const CLI::Validator positive(
  [](const std::string& text) -> std::string {
    try {
      return std::stod(text) > 0 ? "" : "must be greater than 0";
    } catch (const std::exception&) {
      return {};
    }
  },
  "POSITIVE");
const CLI::Validator not_negative(
  [](const std::string& text) -> std::string {
    try {
      return std::stod(text) >= 0 ? "" : "must not be negative (0 turns it off)";
    } catch (const std::exception&) {
      return {};
    }
  },
  "NONNEGATIVE");

// Every serve flag, bound to `opt`: on the command line, and again on a
// throwaway app each time the options are loaded (start and reload), which
// is what makes every flag a config file key.
void declare_serve_options(CLI::App* cmd, serve_options* opt) {
  cmd->add_option("--port", opt->port, "Control port; the pool lies directly above it")
    ->capture_default_str()
    ->check(CLI::Range(1, 65535));
  cmd->add_option("--port-count", opt->port_count,
                  "Ports in the pool (even): half reverse, half public, one pair per server")
    ->capture_default_str()
    ->check(CLI::Validator(
      [](const std::string& text) -> std::string {
        // Digits only: CLI11 converts afterwards, and reports what is no number.
        if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return {};
        return text.size() > 6 || std::stoul(text) == 0 || std::stoul(text) % 2 != 0
                 ? "must be even and at least 2 (one reverse and one public port per pair)"
                 : "";
      },
      "EVEN"));
  cmd->add_option("--myhost", opt->myhost,
                  "Host written into public_listener/reverse_listener lines (set it when used "
                  "beyond localhost)")
    ->capture_default_str();
  cmd->add_option("-k,--keys", opt->keys,
                  "Directory with ca.crt.pem, server.crt.pem, server.key.pem (see `tlsrelay "
                  "certs init`)")
    ->capture_default_str();
  cmd->add_option("--listen", opt->listen,
                  "Address every port listens on, IPv4 or IPv6 (default: :: dual-stack, or "
                  "0.0.0.0 where IPv6 is unavailable)");
  cmd->add_option("--log-level", opt->log_level, "trace, debug, info, warn, error or off")
    ->capture_default_str()
    ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  cmd->add_option("--data-path", opt->data_path,
                  "How paired connections are pumped: splice (zero-copy through pipes) or copy")
    ->capture_default_str()
    ->check(CLI::IsMember({"splice", "copy"}));
  cmd->add_option("--io-threads", opt->io_threads,
                  "Threads that run the sockets: TLS handshakes, accepts and pumping, each "
                  "relayed pair on one of them (default: one per CPU this process may run on, at most " +
                    std::to_string(net::max_io_threads) + ")")
    ->capture_default_str()
    ->check(CLI::Range(1u, net::max_io_threads));
  cmd->add_option("--pending-timeout", opt->pending_timeout_s,
                  "Seconds a client waits for the server's reverse connection before it is "
                  "closed")
    ->capture_default_str()
    ->check(positive);
  cmd->add_option("--max-pending", opt->max_pending,
                  "Clients one server may have waiting for a reverse connection; more are closed")
    ->capture_default_str()
    ->check(CLI::Range(std::size_t{1}, std::size_t{100000}));
  cmd->add_option("--tokens", opt->tokens_file,
                  "File of tokens for protocol v2, one per line: TOKEN [name=N]... [port=P]... "
                  "(with it, every v2 server needs a token)")
    ->check(CLI::ExistingFile);
  cmd->add_option("--client-auth", opt->client_auth,
                  "Client certificates on the control port: required (all), optional (v1 "
                  "servers must present one, v2 may use a token instead) or none")
    ->capture_default_str()
    ->check(CLI::IsMember({"required", "optional", "none"}));
  cmd->add_option("--heartbeat", opt->heartbeat_s,
                  "Seconds between v2 pings; a control connection silent for 3 intervals is "
                  "dead")
    ->capture_default_str()
    ->check(positive);
  cmd->add_option("--hello-timeout", opt->hello_timeout_s,
                  "Seconds a v2 server has, after its TLS handshake, to send its hello")
    ->capture_default_str()
    ->check(positive);
  cmd->add_option("--reservation-ttl", opt->reservation_ttl_s,
                  "Seconds a v2 name keeps its public port after its session ended")
    ->capture_default_str()
    ->check(not_negative);
  cmd->add_option("--max-sessions-per-token", opt->max_sessions_per_token,
                  "Sessions one token may hold at once (0: no limit)")
    ->capture_default_str();
  cmd->add_option("--state", opt->state_file,
                  "File keeping name reservations across restarts (written atomically; a corrupt "
                  "file stops the start)");
  cmd->add_flag("--proxy-protocol", opt->proxy_protocol,
                "v2: start each reverse connection with a PROXY protocol v2 header naming the "
                "client");
  cmd->add_option("--warm-max", opt->warm_max,
                  "v2: reverse connections one server may keep open ahead of demand (warm), so "
                  "a client is paired without a round trip (0: none)")
    ->capture_default_str()
    ->check(CLI::Range(0u, v2::max_warm));
  cmd->add_option("--warm-idle", opt->warm_idle_s,
                  "v2: seconds a warm connection may stay unused before the relay closes it")
    ->capture_default_str()
    ->check(positive);
  cmd->add_option("--keepalive", opt->keepalive_s,
                  "Seconds of silence before TCP keepalive probes on control connections; a "
                  "server that stopped answering is dropped within twice this (0: off)")
    ->capture_default_str()
    ->check(CLI::Range(0u, 86400u));
  cmd->add_option("--idle-timeout", opt->idle_timeout_s,
                  "Seconds a relayed pair may move no byte before it is reset (0: off)")
    ->capture_default_str()
    ->check(not_negative);
  cmd->add_option("--half-close-timeout", opt->half_close_timeout_s,
                  "Seconds a half-closed relayed pair (one side ended, the other not) may move "
                  "no byte before it is reset (0: off)")
    ->capture_default_str()
    ->check(not_negative);
  cmd->add_option("--max-connections", opt->max_connections,
                  "Accepted connections open at once, of every kind; more are closed at once "
                  "(default 0: as many as the descriptor limit allows after the pool's listeners "
                  "and 128 kept back)")
    ->capture_default_str();
  cmd->add_option("--max-handshakes", opt->max_handshakes,
                  "TLS handshakes on the control port at once (0: no limit)")
    ->capture_default_str();
  cmd->add_option("--max-handshakes-per-source", opt->max_handshakes_per_source,
                  "TLS handshakes at once from one address (0: no limit)")
    ->capture_default_str();
  cmd->add_option("--max-unchecked-per-source", opt->max_unchecked_per_source,
                  "v2 reverse connections from one address whose first line is not read yet "
                  "(0: no limit)")
    ->capture_default_str();
  cmd->add_option("--client-rate", opt->client_rate,
                  "New client connections per second from one address, in bursts of twice it; "
                  "more are closed at once (0: no limit)")
    ->capture_default_str()
    ->check(not_negative);
  cmd->add_option("--control-rate", opt->control_rate,
                  "New control connections per second from one address, in bursts of twice it "
                  "(0: no limit)")
    ->capture_default_str()
    ->check(not_negative);
  cmd->add_option("--admin", opt->admin,
                  "Serve the admin endpoint (HTTP: /metrics, /healthz, /readyz, /status, POST "
                  "/reload) on ADDRESS:PORT, e.g. 127.0.0.1:9100 (default: off; an address other "
                  "than loopback needs --admin-token)");
  cmd->add_option("--admin-token", opt->admin_token,
                  "Bearer token every admin request must carry (Authorization: Bearer T); "
                  "better given in the environment")
    ->envname("TLSRELAY_ADMIN_TOKEN");
  cmd->add_option("--drain-timeout", opt->drain_timeout_s,
                  "Seconds SIGTERM/SIGINT lets relayed pairs finish before the relay exits; it "
                  "takes no new session or client meanwhile and tells v2 servers `error "
                  "draining` (0: exit at once; a second signal also does)")
    ->capture_default_str()
    ->check(not_negative);
  cmd->add_option("--log-format", opt->log_format,
                  "text (human lines) or json (one object per line: ts, level, event, msg and "
                  "the event's fields)")
    ->capture_default_str()
    ->check(CLI::IsMember({"text", "json"}));
  cmd->add_flag("--access-log", opt->access_log,
                "Log every relayed pair's end at info: session, name, client address, public "
                "port, bytes in/out, duration and how it ended (closed, reset, idle_timeout, "
                "half_close_timeout, cut)");
  declare_cluster_options(cmd, &opt->cluster);
}

}  // namespace

void add_serve_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<serve_options>();
  auto config_path = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
    "serve", "Run the relay: a TLS control port and a pool of public/reverse port pairs");
  cmd->add_option("--config", *config_path,
                  "TOML file of settings: each key is a flag below without the dashes "
                  "(port-count = 200, proxy-protocol = true); flags given here override it. "
                  "Re-read on SIGHUP (see deploy/tlsrelay.toml)")
    ->check(CLI::ExistingFile);
  declare_serve_options(cmd, opt.get());
  cmd->footer(
    "SIGHUP reloads the config file, the keys directory and the tokens file without dropping "
    "anything (tokens, certificates and log level change; other settings wait for a restart).\n"
    "SIGTERM/SIGINT drain (see --drain-timeout); a second one stops at once.\n"
    "Exit codes: 0 stopped by SIGINT/SIGTERM (after the drain); 2 bad flag, config file (the line and key are "
    "named), key, tokens or state file, a port already in use, or a descriptor limit (ulimit -n) "
    "too small for the pool (one line on stderr names it).");
  // The flags were checked while parsing; they are loaded again, after the
  // config file, together with it.
  // (`opt` is captured to outlive the parse: CLI11 stores into it.)
  cmd->callback([cmd, opt, config_path, &exit_code] {
    exit_code = load_and_run_serve(values_given(*cmd, command_line_only()), *config_path);
  });
}

}  // namespace tlsrelay::cli
