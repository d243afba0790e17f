// What a server behind the relay asks for: which relay, which protocol, how
// to authenticate, what to do when the session is lost.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/backoff.hpp"
#include "protocol/defaults.hpp"
#include "protocol/endpoint.hpp"

namespace spdlog {
class logger;
}

namespace tlsrelay::client {

using namespace std::chrono_literals;

enum class protocol_version : unsigned { v1 = 1, v2 = 2 };

// TLS toward the relay's control port.
struct relay_tls_options {
  // The relay's certificate must chain to this CA; none: the system's trust store.
  std::optional<std::filesystem::path> ca_file;
  // No verification at all (development only): the relay may be anyone.
  bool insecure = false;
  // Our client certificate and key: needed for protocol v1 and for relays
  // that run with --client-auth required; optional for v2 otherwise.
  std::optional<std::filesystem::path> cert_file;
  std::optional<std::filesystem::path> key_file;
  // The name (DNS name or IP address) the relay's certificate must carry;
  // empty: the relay host of listener_options::relay.
  std::string server_name;
};

// End-to-end TLS: the library runs the TLS *server* handshake over each
// reverse connection, so the relay carries only ciphertext.
struct end_to_end_tls_options {
  std::filesystem::path cert_file;  // PEM chain presented to clients
  std::filesystem::path key_file;   // its private key (PEM)
};

struct listener_options {
  // The seeds: `relay` followed by `relays`, control ports of relay nodes of
  // one service. Every connect and reconnect starts at the first; a seed that
  // cannot be used (unreachable, TLS handshake failed, no greeting in time,
  // heartbeat lost, no_available_listeners, `error draining`, a redirect
  // chain that loops or is too long) sends us on to the next at once; after a
  // whole round without a session comes the backoff, then the first seed
  // again. Refusals that are the set-up's (auth_failed, name_unavailable,
  // port_unavailable, bad_request, unsupported_version, too_many_sessions)
  // end the attempt as with one relay. One seed (`relays` empty): a single relay.
  host_port relay;                // the first seed (kept for the one-relay API)
  std::vector<host_port> relays;  // further seeds, tried in this order after `relay`
  protocol_version protocol = protocol_version::v2;

  // Protocol v2 only (hello keys); empty / 0: not sent.
  std::string token;       // authentication token
  std::string name;        // reservation: the same public port after a reconnect
  std::uint16_t port = 0;  // a specific public port

  relay_tls_options tls;
  std::optional<end_to_end_tls_options> end_to_end_tls;

  // How often we ping the relay (v2); a control connection silent for three
  // intervals is dead. Should match the relay's --heartbeat.
  std::chrono::milliseconds heartbeat_interval = defaults::heartbeat_interval;
  // After a session that had been established is lost: connect again.
  bool reconnect = true;
  backoff_policy backoff{500ms, 30s};

  // Every wait has a deadline.
  std::chrono::milliseconds connect_timeout = 10s;    // TCP connect (control and reverse)
  std::chrono::milliseconds handshake_timeout = 10s;  // TLS handshakes (control and end-to-end)
  std::chrono::milliseconds greeting_timeout = 10s;   // relay's answer until public/reverse listener

  // Relayed connections accepted but not yet taken by the user; more are
  // closed (with a log line).
  std::size_t max_queued_connections = 64;
  // Reverse connections being opened or handshaken at once; a new_connection
  // beyond it is not answered (the relay times the client out).
  std::size_t max_pending_reverse = 64;

  // Protocol v2 (ignored with v1): warm reverse connections kept open ahead
  // of demand, so that the relay pairs an arriving client with one at once
  // instead of a new_connection round trip. The pool starts at 2, doubles
  // when a client had to wait for a new_connection, shrinks by one when the
  // relay expires an unused one, and never exceeds this, the relay's own
  // `warm=` (its --warm-max) or 64 (its ticket replay window). They count
  // apart from max_pending_reverse; all are closed when the session ends.
  // 0: none (every client through new_connection).
  std::size_t warm_max = defaults::warm_max;

  // Where the listener logs; null: spdlog's default logger.
  std::shared_ptr<spdlog::logger> logger;
};

// "" if the options can be used, else one line naming what is wrong (for a
// usage error): v2-only keys with protocol 1, a token or name outside its
// alphabet, a certificate without its key, insecure together with a CA file,
// a seed without host or port.
std::string validate(const listener_options& options);

// The seeds in the order they are tried: relay, then relays.
std::vector<host_port> seeds(const listener_options& options);

}  // namespace tlsrelay::client
