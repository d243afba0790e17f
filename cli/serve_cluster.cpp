#include "cli/serve_cluster.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <CLI/CLI.hpp>
#include <boost/asio/ip/address.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/publish.hpp>
#include <spdlog/spdlog.h>

#include "cli/config_file.hpp"
#include "protocol/cluster_limits.hpp"

namespace tlsrelay::cli {
namespace {

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "tlsrelay";
  return name;
}

// A readable file, or one line naming the flag.
std::string check_file(const std::string& flag, const std::string& path, bool defaulted) {
  std::string text;
  if (auto err = read_whole_file(path, text); !err.empty())
    return flag + " " + err +
           (defaulted ? " (the default beside --keys, as `tlsrelay certs init` writes it; "
                        "`tlsrelay certs node DIR NAME` issues more node certificates)"
                      : "");
  return {};
}

// HOST:PORT, checked when the flag is read, so that a config file's bad
// element is named with its file and line.
const CLI::Validator host_and_port(
  [](const std::string& text) -> std::string {
    host_port parsed;
    return parse_host_port(text, parsed) ? text + ": expected HOST:PORT" : "";
  },
  "");  // (the flag's help says HOST:PORT)

}  // namespace

void declare_cluster_options(CLI::App* cmd, cluster_options* opt) {
  const char* group = "Cluster (all relay nodes of one service)";
  cmd->add_option("--cluster-listen", opt->cluster_listen,
                  "ADDR:PORT where this node accepts other nodes of its cluster (TLS with the "
                  "node certificate; peers must present one signed by --cluster-ca). Turns "
                  "clustering on; without it the relay is a cluster of one")
    ->group(group);
  cmd->add_option("--peer", opt->peers,
                  "HOST:PORT of another node's --cluster-listen (repeatable; one is enough, "
                  "members are learned from any of them; names are resolved again on every "
                  "retry, and an address of this node itself is ignored)")
    ->check(host_and_port)
    ->group(group);
  cmd->add_option("--node-name", opt->node_name,
                  "This node's name in the cluster, unique among its nodes (letters, digits, "
                  ". _ -; default: the host name)")
    ->group(group);
  cmd->add_option("--node-cert", opt->node_cert,
                  "Node certificate (PEM, for TLS server and client use) presented to other "
                  "nodes (default: KEYS/node.crt.pem)")
    ->group(group);
  cmd->add_option("--node-key", opt->node_key,
                  "Private key of --node-cert (default: KEYS/node.key.pem)")
    ->group(group);
  cmd->add_option("--cluster-ca", opt->cluster_ca,
                  "CA whose node certificates this node accepts from peers, and that must have "
                  "signed --node-cert (default: KEYS/cluster-ca.crt.pem; a CA of its own, not "
                  "the servers' ca.crt.pem, so that a server's certificate makes nobody a node)")
    ->group(group);
  cmd->add_option("--peer-timeout", opt->peer_timeout_s,
                  "Seconds without a heartbeat after which a peer is down (a broken connection "
                  "says so sooner, within half of it)")
    ->capture_default_str()
    ->group(group);
}

std::string prepare_cluster(const cluster_options& opt, const std::string& keys,
                            const host_port& control,
                            std::chrono::milliseconds reservation_ttl, cluster_setup& out) {
  if (opt.cluster_listen.empty()) {
    const char* stray = !opt.peers.empty()       ? "--peer"
                        : !opt.node_name.empty() ? "--node-name"
                        : !opt.node_cert.empty() ? "--node-cert"
                        : !opt.node_key.empty()  ? "--node-key"
                        : !opt.cluster_ca.empty() ? "--cluster-ca"
                                                 : nullptr;
    if (stray) return std::string(stray) + " needs --cluster-listen (this node's cluster port)";
    return {};
  }
  host_port listen;
  if (parse_host_port(opt.cluster_listen, listen))
    return "--cluster-listen " + opt.cluster_listen + ": expected ADDRESS:PORT (e.g. 0.0.0.0:11999)";
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(listen.host, ec);
  if (ec) return "--cluster-listen " + opt.cluster_listen + ": " + listen.host + " is not an IP address";
  if (!(opt.peer_timeout_s > 0))
    return "--peer-timeout " + std::to_string(opt.peer_timeout_s) + ": must be greater than 0";
  auto& m = out.member;
  m.node_name = opt.node_name.empty() ? host_name() : opt.node_name;
  if (!valid_node_name(m.node_name))
    return "--node-name " + m.node_name +
           ": 1 to 63 letters, digits, '.', '_' or '-'" +
           (opt.node_name.empty() ? " (it defaults to the host name; give one)" : "");
  // Peers reach us at the listen address, or at --myhost when it is a wildcard.
  m.cluster_address = {address.is_unspecified() ? control.host : listen.host, listen.port};
  m.control_address = control;
  for (const auto& text : opt.peers) {
    host_port peer;
    if (parse_host_port(text, peer)) return "--peer " + text + ": expected HOST:PORT";
    if (std::find(m.seeds.begin(), m.seeds.end(), peer) == m.seeds.end()) m.seeds.push_back(peer);
  }
  m.peer_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(opt.peer_timeout_s * 1000));
  m.reservation_ttl = reservation_ttl;
  out.listen_host = listen.host;
  out.listen_port = listen.port;
  const auto dir = std::filesystem::path(keys);
  out.certificate = opt.node_cert.empty() ? (dir / "node.crt.pem").string() : opt.node_cert;
  out.key = opt.node_key.empty() ? (dir / "node.key.pem").string() : opt.node_key;
  out.ca = opt.cluster_ca.empty() ? (dir / "cluster-ca.crt.pem").string() : opt.cluster_ca;
  if (auto err = check_file("--node-cert", out.certificate, opt.node_cert.empty()); !err.empty())
    return err;
  if (auto err = check_file("--node-key", out.key, opt.node_key.empty()); !err.empty()) return err;
  if (auto err = check_file("--cluster-ca", out.ca, opt.cluster_ca.empty()); !err.empty())
    return err;
  return {};
}

void configure_cluster_transport(const cluster_setup& setup, caf::actor_system_config& cfg) {
  cfg.load<caf::io::middleman>();
  cfg.load<caf::openssl::manager>();
  cfg.openssl_certificate = setup.certificate;
  cfg.openssl_key = setup.key;
  cfg.openssl_cafile = setup.ca;
}

std::string start_cluster_member(caf::actor_system& system, const cluster_setup& setup,
                                 caf::actor& out) {
  // Only the member holds the middleman: a handle left in `setup` would
  // outlive the actor system, whose destructor then waits for it forever.
  auto config = setup.member;
  config.connector = caf::actor_cast<caf::actor>(system.openssl_manager().actor_handle());
  auto member = system.spawn(cluster_member, std::move(config));
  auto port = caf::openssl::publish(member, setup.listen_port, setup.listen_host.c_str(), true);
  if (!port) {
    caf::anon_send_exit(member, caf::exit_reason::user_shutdown);
    return "--cluster-listen " + format_host_port(setup.listen_host, setup.listen_port) +
           ": cannot listen: " + system.render(port.error());
  }
  spdlog::info("cluster: node {} listens for peers on {} (advertised as {}); {} seed peer(s)",
               setup.member.node_name, format_host_port(setup.listen_host, *port),
               format_host_port(setup.member.cluster_address), setup.member.seeds.size());
  out = member;
  return {};
}

}  // namespace tlsrelay::cli
