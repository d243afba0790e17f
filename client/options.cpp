#include "client/options.hpp"

#include "protocol/v2.hpp"

namespace tlsrelay::client {

std::string validate(const listener_options& o) {
  if (o.relay.host.empty() || o.relay.port == 0) return "the relay address needs a host and a port";
  for (std::size_t i = 0; i < o.relays.size(); ++i)
    if (o.relays[i].host.empty() || o.relays[i].port == 0)
      return "relay address " + std::to_string(i + 2) + " (of the seeds) needs a host and a port";
  if (o.protocol != protocol_version::v1 && o.protocol != protocol_version::v2)
    return "protocol must be 1 or 2";
  if (o.protocol == protocol_version::v1 && (!o.token.empty() || !o.name.empty() || o.port != 0))
    return "token, name and port are protocol 2 features; protocol 1 cannot send them";
  if (!o.token.empty() && !v2::valid_token(o.token))
    return "token: must be 1 to " + std::to_string(v2::max_token_bytes) +
           " characters of A-Z a-z 0-9 . _ ~ + / = -";
  if (!o.name.empty() && !v2::valid_name(o.name))
    return "name \"" + o.name + "\": must be 1 to " + std::to_string(v2::max_name_bytes) +
           " characters of a-z 0-9 -, not starting with -";
  if (o.tls.cert_file.has_value() != o.tls.key_file.has_value())
    return o.tls.cert_file ? "a client certificate needs its key" : "a client key needs its certificate";
  if (o.tls.insecure && o.tls.ca_file) return "insecure (no verification) and a CA file exclude each other";
  if (o.end_to_end_tls && (o.end_to_end_tls->cert_file.empty() || o.end_to_end_tls->key_file.empty()))
    return "end-to-end TLS needs both a certificate and a key";
  if (o.heartbeat_interval.count() <= 0) return "heartbeat interval must be positive";
  if (o.connect_timeout.count() <= 0 || o.handshake_timeout.count() <= 0 ||
      o.greeting_timeout.count() <= 0)
    return "timeouts must be positive";
  if (o.max_queued_connections == 0) return "the accept queue needs room for at least 1 connection";
  if (o.max_pending_reverse == 0) return "at least 1 reverse connection must be allowed at once";
  return {};
}

std::vector<host_port> seeds(const listener_options& o) {
  std::vector<host_port> all{o.relay};
  all.insert(all.end(), o.relays.begin(), o.relays.end());
  return all;
}

}  // namespace tlsrelay::client
