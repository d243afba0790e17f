#include "protocol/warm_ticket.hpp"

#include <string>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "protocol/wire.hpp"

namespace tlsrelay::warm_ticket {

namespace {

std::string ticket_message(std::uint64_t serial) {
  std::string message(wire::warm_ticket_label);
  message += std::to_string(serial);
  return message;
}

struct md_ctx_free {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, md_ctx_free>;

}  // namespace

connection_id tag(const connection_id& secret, std::uint64_t serial) {
  const std::string message = ticket_message(serial);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.bytes.data(), static_cast<int>(secret.bytes.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &length);
  connection_id out;
  for (std::size_t i = 0; i < out.bytes.size(); ++i) out.bytes[i] = digest[i];
  return out;
}

// HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)) (RFC 2104); the key is
// shorter than SHA-256's 64-byte block, so it is used zero-padded as is.
struct signer::state {
  md_ctx_ptr inner{EVP_MD_CTX_new()};  // has absorbed K ^ ipad
  md_ctx_ptr outer{EVP_MD_CTX_new()};  // has absorbed K ^ opad
};

signer::signer() = default;
signer::signer(const connection_id& secret) { set_secret(secret); }
signer::~signer() = default;
signer::signer(signer&&) noexcept = default;
signer& signer::operator=(signer&&) noexcept = default;

void signer::set_secret(const connection_id& secret) {
  constexpr std::size_t block = 64;
  unsigned char ipad[block], opad[block];
  for (std::size_t i = 0; i < block; ++i) {
    const unsigned char k = i < secret.bytes.size() ? secret.bytes[i] : 0;
    ipad[i] = k ^ 0x36;
    opad[i] = k ^ 0x5c;
  }
  auto s = std::make_unique<state>();
  EVP_DigestInit_ex(s->inner.get(), EVP_sha256(), nullptr);
  EVP_DigestUpdate(s->inner.get(), ipad, block);
  EVP_DigestInit_ex(s->outer.get(), EVP_sha256(), nullptr);
  EVP_DigestUpdate(s->outer.get(), opad, block);
  OPENSSL_cleanse(ipad, block);
  OPENSSL_cleanse(opad, block);
  state_ = std::move(s);
}

connection_id signer::tag(std::uint64_t serial) const {
  const std::string message = ticket_message(serial);
  unsigned char inner_digest[EVP_MAX_MD_SIZE], digest[EVP_MAX_MD_SIZE];
  unsigned int inner_length = 0, length = 0;
  md_ctx_ptr ctx(EVP_MD_CTX_new());
  EVP_MD_CTX_copy_ex(ctx.get(), state_->inner.get());
  EVP_DigestUpdate(ctx.get(), message.data(), message.size());
  EVP_DigestFinal_ex(ctx.get(), inner_digest, &inner_length);
  EVP_MD_CTX_copy_ex(ctx.get(), state_->outer.get());
  EVP_DigestUpdate(ctx.get(), inner_digest, inner_length);
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
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
