#include "protocol/warm_ticket.hpp"

#include <string>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "protocol/wire.hpp"

namespace tlsrelay::warm_ticket {

connection_id tag(const connection_id& secret, std::uint64_t serial) {
  std::string message(wire::warm_ticket_label);
  message += std::to_string(serial);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.bytes.data(), static_cast<int>(secret.bytes.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &length);
  connection_id out;
  for (std::size_t i = 0; i < out.bytes.size(); ++i) out.bytes[i] = digest[i];
  return out;
}

bool same_tag(const connection_id& a, const connection_id& b) {
  return CRYPTO_memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size()) == 0;
}

bool replay_window::admit(std::uint64_t serial) {
  if (serial == 0) return false;
  if (serial > highest_) {
    const std::uint64_t shift = serial - highest_;
    seen_ = shift >= width ? 0 : seen_ << shift;
    seen_ |= 1;
    highest_ = serial;
    return true;
  }
  const std::uint64_t age = highest_ - serial;
  if (age >= width) return false;
  const std::uint64_t bit = std::uint64_t{1} << age;
  if (seen_ & bit) return false;
  seen_ |= bit;
  return true;
}

}  // namespace tlsrelay::warm_ticket
