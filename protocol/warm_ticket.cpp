#include "protocol/warm_ticket.hpp"

#include <stdexcept>
#include <string>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "protocol/wire.hpp"

namespace tlsrelay::warm_ticket {

namespace {

std::string ticket_message(std::uint64_t serial) {
  std::string message(wire::warm_ticket_label);
  message += std::to_string(serial);
  return message;
}

struct mac_free {
  void operator()(EVP_MAC* mac) const { EVP_MAC_free(mac); }
};
struct mac_ctx_free {
  void operator()(EVP_MAC_CTX* ctx) const { EVP_MAC_CTX_free(ctx); }
};

}  // namespace

// The secret, and a keyed HMAC-SHA256 context made from it at the first tag:
// OpenSSL has absorbed the key (its inner and outer hash states) once; each
// tag works on a duplicate of it. Made lazily because most sessions never see
// a warm connection, and the context is most of a kilobyte.
struct signer::state {
  connection_id secret;
  std::unique_ptr<EVP_MAC_CTX, mac_ctx_free> keyed;

  ~state() { OPENSSL_cleanse(secret.bytes.data(), secret.bytes.size()); }
  EVP_MAC_CTX* get();
};

EVP_MAC_CTX* signer::state::get() {
  if (keyed) return keyed.get();
  // Fetching the algorithm is the costly part; once per process.
  static const std::unique_ptr<EVP_MAC, mac_free> hmac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  char digest_name[] = "SHA256";
  const OSSL_PARAM params[] = {
    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
    OSSL_PARAM_construct_end(),
  };
  keyed.reset(EVP_MAC_CTX_new(hmac.get()));
  if (!keyed || EVP_MAC_init(keyed.get(), secret.bytes.data(), secret.bytes.size(), params) != 1) {
    keyed.reset();
    throw std::runtime_error("OpenSSL: HMAC-SHA256 is not available");
  }
  return keyed.get();
}

connection_id tag(const connection_id& secret, std::uint64_t serial) {
  return signer(secret).tag(serial);
}

signer::signer() = default;
signer::signer(const connection_id& secret) { set_secret(secret); }
signer::~signer() = default;
signer::signer(signer&&) noexcept = default;
signer& signer::operator=(signer&&) noexcept = default;

void signer::set_secret(const connection_id& secret) {
  auto s = std::make_unique<state>();
  s->secret = secret;
  state_ = std::move(s);
}

connection_id signer::tag(std::uint64_t serial) const {
  const std::string message = ticket_message(serial);
  unsigned char digest[EVP_MAX_MD_SIZE];
  std::size_t length = 0;
  std::unique_ptr<EVP_MAC_CTX, mac_ctx_free> ctx(EVP_MAC_CTX_dup(state_->get()));
  if (!ctx || EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(message.data()),
                             message.size()) != 1 ||
      EVP_MAC_final(ctx.get(), digest, &length, sizeof digest) != 1 || length < connection_id::size)
    throw std::runtime_error("OpenSSL: HMAC-SHA256 failed");
  connection_id out;
  for (std::size_t i = 0; i < out.bytes.size(); ++i) out.bytes[i] = digest[i];
  OPENSSL_cleanse(digest, sizeof digest);
  return out;
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
