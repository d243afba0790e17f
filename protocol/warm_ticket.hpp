// Tickets of warm reverse connections (protocol v2).
//
// A server may open reverse connections before any client arrives; each starts
// `ready <SERIAL> <TAG>` with TAG = the first 128 bits of
// HMAC-SHA256(session secret, "tlsrelay warm ticket <SERIAL>"). The relay
// accepts each serial once (a sliding window, as IPsec does against replays),
// so a ticket seen on the wire is worth nothing afterwards, and the secret,
// which only ever travels inside the TLS control connection, cannot be derived
// from tickets.
#pragma once

#include <cstdint>
#include <memory>

#include "protocol/connection_id.hpp"

namespace tlsrelay::warm_ticket {

connection_id tag(const connection_id& secret, std::uint64_t serial);

// The same tags for one secret, cheaper: the key is absorbed once (HMAC's
// inner and outer hash states), so a tag costs two short SHA-256 runs instead
// of an algorithm fetch and a key schedule each time. One per session.
class signer {
 public:
  signer();  // no key yet: set_secret() before tag()
  explicit signer(const connection_id& secret);
  ~signer();
  signer(signer&&) noexcept;
  signer& operator=(signer&&) noexcept;
  signer(const signer&) = delete;
  signer& operator=(const signer&) = delete;

  void set_secret(const connection_id& secret);
  connection_id tag(std::uint64_t serial) const;

 private:
  struct state;
  std::unique_ptr<state> state_;
};

// Which serials were already used. Serials may arrive out of order (a server
// opens several warm connections at once) by up to `width` behind the highest
// seen; older ones are refused, as are repeats.
class replay_window {
 public:
  static constexpr std::uint64_t width = 64;
  // True (and the serial is then used up) if `serial` was never admitted and
  // is not too old.
  bool admit(std::uint64_t serial);

 private:
  std::uint64_t highest_ = 0;
  std::uint64_t seen_ = 0;  // bit i: serial highest_ - i was admitted
};

}  // namespace tlsrelay::warm_ticket
