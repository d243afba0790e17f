#include "protocol/cluster_limits.hpp"

#include <algorithm>

#include "protocol/state_file.hpp"

namespace tlsrelay {

bool valid_node_name(std::string_view name) {
  return !name.empty() && name.size() <= 63 &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
         });
}

bool valid_claim_owner(std::string_view owner) {
  return owner.empty() || is_owner_fingerprint(owner);
}

bool valid_peer_host(std::string_view host) {
  return !host.empty() && host.size() <= 253 &&
         std::all_of(host.begin(), host.end(), [](char c) { return c > ' ' && c < 127; });
}

}  // namespace tlsrelay
