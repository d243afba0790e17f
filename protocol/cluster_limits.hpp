// What one node of a cluster accepts from another. A peer holds a node
// certificate of the cluster CA, so it is trusted with names; but a buggy or
// compromised node must not make the others grow without bound or keep
// strings no operator could type. Pure: the cluster_member applies these.
#pragma once

#include <cstddef>
#include <string_view>

namespace tlsrelay {

// Nodes in one cluster, this one included. Peers known beyond it (by join,
// heartbeat or claims) are refused or ignored, with a log line.
inline constexpr std::size_t max_cluster_nodes = 64;
// Cluster addresses a node keeps (seeds, and those learned by gossip): each
// node may be known by a seed name and by the address it announces.
inline constexpr std::size_t max_cluster_addresses = 2 * max_cluster_nodes;
// Name reservations of one node: at most one per port of its pool, and a
// pool has fewer than 65536 ports. A longer list is refused whole.
inline constexpr std::size_t max_claims_per_node = 65535;
// All peers' reservations together (about 200 bytes each kept: ~50 MiB).
inline constexpr std::size_t max_cluster_claims = 262144;

// --node-name: 1..63 of [A-Za-z0-9._-] (a host name fits).
bool valid_node_name(std::string_view name);
// A claim's owner: "" (none) or 64 hex digits (see state_file.hpp).
bool valid_claim_owner(std::string_view owner);
// A host of a cluster or control address: 1..253 printable characters, no
// space (a DNS name or an IP literal; resolution says the rest).
bool valid_peer_host(std::string_view host);

}  // namespace tlsrelay
