// serve's cluster flags (--node-name, --cluster-listen, --peer, --node-cert,
// --node-key, --peer-timeout) and the start of this node's cluster_member:
// CAF's middleman with caf::openssl, the node certificate, the publication
// on --cluster-listen. Without --cluster-listen none of it runs: a relay of
// one loads no middleman.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>

#include "actors/cluster_member.hpp"

namespace CLI {
class App;
}

namespace tlsrelay::cli {

struct cluster_options {
  std::string node_name;        // "": the host name
  std::string cluster_listen;   // ADDR:PORT; "": no cluster
  std::vector<std::string> peers;
  std::string node_cert;        // "": KEYS/node.crt.pem
  std::string node_key;         // "": KEYS/node.key.pem
  std::string cluster_ca;       // "": KEYS/cluster-ca.crt.pem
  double peer_timeout_s = std::chrono::duration<double>(defaults::peer_timeout).count();
};

void declare_cluster_options(CLI::App* cmd, cluster_options* opt);

// Everything a cluster member needs, checked before anything starts.
struct cluster_setup {
  cluster_config member;   // without the connector (start_cluster_member adds it)
  std::string listen_host;
  std::uint16_t listen_port = 0;
  std::string certificate, key, ca;
};

// "" with `out` filled, or one line naming the flag or file at fault.
// `keys` is --keys; `control` the address servers are told to reach
// (--myhost, control port).
std::string prepare_cluster(const cluster_options& opt, const std::string& keys,
                            const host_port& control,
                            std::chrono::milliseconds reservation_ttl, cluster_setup& out);

// Loads the middleman and caf::openssl with the node certificate, key and CA
// (peers must present a certificate of the same CA, and so must we).
void configure_cluster_transport(const cluster_setup& setup, caf::actor_system_config& cfg);

// Spawns the cluster_member and publishes it on --cluster-listen; "" or why
// not (the flag named).
std::string start_cluster_member(caf::actor_system& system, const cluster_setup& setup,
                                 caf::actor& out);

}  // namespace tlsrelay::cli
