// cluster_member: this node's member of a relay cluster (serve
// --cluster-listen). One per node, beside the pool_manager; published over
// TLS (caf::openssl) so that peers reach it, and the only actor that talks
// to other nodes.
//
// Membership: it connects to every --peer (through `connector`, the openssl
// middleman in serve, a stand-in in tests), joins with cluster_join, and
// learns every other member from any one of them (heartbeats carry the
// cluster addresses each node knows). A peer is down when its connection
// breaks (CAF's down message) or after --peer-timeout without a heartbeat;
// it is then tried again with exponential backoff and jitter.
//
// Shared view: each node announces its own name reservations (node_claims)
// and its load (in heartbeats). The pool_manager asks `placement_query` for a
// v2 server whose name is not reserved here, or when its pool is full, and
// tells its reservations and load as they change. A name claimed on two
// nodes (a partition, a race) is settled by the rule in DESIGN.md (Cluster):
// a held claim beats a lingering one, then the earlier claim wins, then the
// smaller node name; the losing node is told name_lost.
//
// A cluster of one has no cluster_member at all.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_clock.hpp>
#include <caf/behavior.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/messages.hpp"
#include "protocol/defaults.hpp"

namespace tlsrelay {

struct cluster_config {
  std::string node_name;
  host_port cluster_address;  // where peers reach us (advertised in gossip)
  host_port control_address;  // where servers reach us (--myhost, control port)
  std::vector<host_port> seeds;  // --peer
  std::chrono::milliseconds peer_timeout{defaults::peer_timeout};
  std::chrono::milliseconds reservation_ttl{defaults::reservation_ttl};
  std::chrono::milliseconds retry_first{defaults::peer_retry_first};
  std::chrono::milliseconds retry_last{defaults::peer_retry_last};
  std::uint32_t cluster_version = defaults::cluster_version;
  // Answers (connect_atom, std::string host, std::uint16_t port) with
  // (caf::node_id, caf::strong_actor_ptr, std::set<std::string>): the remote
  // cluster_member published there.
  caf::actor connector;
};

// The conflict rule for a name claimed on two nodes: true if the claim `a`
// of node `node_a` wins over `b` of `node_b`.
bool claim_wins(const name_claim& a, const std::string& node_a, const name_claim& b,
                const std::string& node_b);

struct cluster_member_state {
  // A node of the cluster other than this one, by name.
  struct peer {
    node_status status;
    caf::actor handle;       // valid while up
    bool up = false;
    std::int64_t since_unix_ms = 0;  // up or down since
    caf::actor_clock::time_point last_heard;  // the actor clock (tests move it)
    caf::actor_clock::time_point down_at;     // while down
    std::int64_t claims_incarnation = 0;
    std::uint64_t claims_version = 0;
    std::vector<name_claim> claims;  // its reservations; dropped a TTL after it went down
  };
  // A cluster address to keep a connection to (a seed, or learned by gossip).
  struct address {
    host_port where;
    bool seed = false;
    enum class phase : std::uint8_t { idle, connecting, connected, self } now = phase::idle;
    std::string node;            // the node found there
    unsigned failures = 0;       // in a row: the backoff
    std::uint64_t attempt = 0;   // matches the pending peer_retry_atom
  };

  cluster_config config;
  node_status self_status;
  std::vector<name_claim> own_claims;
  std::set<std::string> given_up;  // own names told lost, until the pool drops them
  caf::actor pool;                 // the local pool_manager (it tells us its load first)
  std::map<std::string, peer> peers;        // by node name
  std::map<std::string, address> addresses;  // by formatted cluster address
  std::map<std::string, std::uint64_t> redirects;  // sent, by reason
  std::uint64_t conflicts_resolved = 0;
  std::size_t claims_known = 0;    // sum of the peers' claims (max_cluster_claims)
  bool addresses_capped = false;   // max_cluster_addresses reached (logged once)
  std::mt19937_64 random;

  static inline const char* name = "cluster_member";
};

caf::behavior cluster_member(caf::stateful_actor<cluster_member_state>* self,
                             cluster_config config);

}  // namespace tlsrelay
