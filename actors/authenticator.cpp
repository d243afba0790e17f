#include "actors/authenticator.hpp"

#include <algorithm>

#include <caf/all.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include "actors/messages.hpp"
#include "logging/structured_log.hpp"
#include "protocol/hex.hpp"

namespace tlsrelay {
namespace {

using auth_ptr = caf::stateful_actor<authenticator_state>*;

// Bounds the memory an address scan can make us spend on failure records.
constexpr std::size_t max_failure_records = 4096;
// A failure is forgotten after this long without another one.
constexpr auto failure_memory = std::chrono::minutes(10);

std::string sha256(const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(digest), len);
}

// Looks at every known token whatever matches, comparing digests with
// CRYPTO_memcmp: neither timing nor the order of the file tells which
// token (or how much of one) was right.
const authenticator_state::known_token* find_token(const authenticator_state& st,
                                                   const std::string& token) {
  const std::string digest = sha256(token);
  const authenticator_state::known_token* found = nullptr;
  for (const auto& known : st.tokens) {
    const bool equal = CRYPTO_memcmp(known.digest.data(), digest.data(), digest.size()) == 0;
    if (equal) found = &known;
  }
  return found;
}

caf::result<grant> refuse(auth_ptr self, const credentials& c, std::string reason) {
  auto& st = self->state;
  const auto now = std::chrono::steady_clock::now();
  if (st.failures.size() >= max_failure_records && st.failures.count(c.peer_host) == 0) {
    // Full: forget the records that have aged out; if none has, the oldest.
    for (auto it = st.failures.begin(); it != st.failures.end();)
      it = now - it->second.last > failure_memory ? st.failures.erase(it) : std::next(it);
    if (st.failures.size() >= max_failure_records)
      st.failures.erase(std::min_element(st.failures.begin(), st.failures.end(),
                                         [](const auto& a, const auto& b) {
                                           return a.second.last < b.second.last;
                                         }));
  }
  auto& record = st.failures[c.peer_host];
  if (now - record.last > failure_memory) record.count = 0;
  ++record.count;
  record.last = now;
  const auto delay = auth_failure_delay(record.count);
  // At most one line a second, however many fail (a guessing flood must not
  // flood the log); the count says how many it stands for.
  if (const auto n = st.failure_log.note(log_throttle::clock::now()))
    logging::event(spdlog::level::warn, "auth_failed",
                   logging::fields()
                     .peer(c.peer_host)
                     .name(c.name)
                     .reason(reason)
                     .add("count", n),
                   "authentication failed for {}: {} ({} recent failures from it, answered after "
                   "{} ms; {} failure(s) in all since the last such line)",
                   c.peer_host, reason, record.count, delay.count(), n);
  auto promise = self->make_response_promise<grant>();
  const auto key = st.next_delay_key++;
  st.delayed.emplace(key, std::make_pair(promise, std::move(reason)));
  self->delayed_send(self, delay, release_atom::value, key);
  return promise;
}

std::vector<authenticator_state::known_token> known_tokens(std::vector<token_entry> entries) {
  std::vector<authenticator_state::known_token> tokens;
  for (auto& entry : entries) {
    authenticator_state::known_token known;
    known.digest = sha256(entry.token);
    known.owner = to_hex(known.digest);
    known.names = std::move(entry.names);
    known.ports = std::move(entry.ports);
    tokens.push_back(std::move(known));
  }
  return tokens;
}

}  // namespace

std::chrono::milliseconds auth_failure_delay(unsigned failures) {
  // 100 ms, doubling per recent failure, at most 5 s.
  if (failures == 0) return std::chrono::milliseconds(0);
  const unsigned shift = std::min(failures - 1, 6u);
  return std::min(std::chrono::milliseconds(100 << shift), std::chrono::milliseconds(5000));
}

caf::behavior authenticator(caf::stateful_actor<authenticator_state>* self,
                            authenticator_config config) {
  auto& st = self->state;
  st.open_access = config.open_access;
  st.tokens = known_tokens(std::move(config.tokens));
  return {
    [self](credentials& c) -> caf::result<grant> {
      auto& st = self->state;
      if (st.tokens.empty()) {
        // No tokens configured: the TLS layer's certificate check is the gate,
        // and the certificate is the identity.
        if (c.client_certificate && !c.certificate_fingerprint.empty())
          return grant{c.certificate_fingerprint, false};
        if (st.open_access) return grant{"", false};  // anonymous: no name
        return refuse(self, c, "no client certificate and this relay has no tokens");
      }
      if (c.token.empty()) return refuse(self, c, "no token given");
      const auto* known = find_token(st, c.token);
      if (known == nullptr) return refuse(self, c, "unknown token");
      if (!c.name.empty() && !known->names.empty() &&
          std::find(known->names.begin(), known->names.end(), c.name) == known->names.end())
        return refuse(self, c, "name " + c.name + " is not allowed for this token");
      if (c.public_port != 0 && !known->ports.empty() &&
          std::find(known->ports.begin(), known->ports.end(), c.public_port) == known->ports.end())
        return refuse(self, c,
                      "port " + std::to_string(c.public_port) + " is not allowed for this token");
      return grant{known->owner, true};
    },
    // A reload's new tokens file: hellos from now on are judged by it. The
    // reply names the owners (token digests) now known and those removed,
    // whose sessions the pool_manager ends. A changed name= or port= list
    // applies to the next hello; a session already up keeps what it has.
    [self](token_table& table) -> token_owners {
      auto& st = self->state;
      auto fresh = known_tokens(std::move(table.tokens));
      token_owners owners;
      for (const auto& known : fresh) owners.current.push_back(known.owner);
      for (const auto& old : st.tokens)
        if (std::find(owners.current.begin(), owners.current.end(), old.owner) ==
            owners.current.end())
          owners.removed.push_back(old.owner);
      spdlog::info("tokens replaced: {} token(s), {} removed", fresh.size(), owners.removed.size());
      st.tokens = std::move(fresh);
      return owners;
    },
    [self](release_atom, std::uint64_t key) {
      auto& delayed = self->state.delayed;
      auto it = delayed.find(key);
      if (it == delayed.end()) return;
      it->second.first.deliver(make_error(relay_errc::auth_failed, it->second.second));
      delayed.erase(it);
    },
  };
}

}  // namespace tlsrelay
