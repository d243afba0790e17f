#include "protocol/tls13_records.hpp"

#include <cstring>
#include <limits>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "protocol/hex.hpp"

namespace tlsrelay::tls13 {

namespace {

// Handshake message types seen after the handshake (§4).
constexpr std::uint8_t new_session_ticket = 4;
constexpr std::uint8_t key_update = 24;
// Alert descriptions (§6).
constexpr std::uint8_t close_notify_alert = 0;
constexpr std::uint8_t user_canceled = 90;

std::size_t key_size(aead kind) { return kind == aead::aes_128_gcm ? 16 : 32; }
std::size_t hash_size(aead kind) { return kind == aead::aes_256_gcm ? 48 : 32; }
const EVP_MD* hash_of(aead kind) {
  return kind == aead::aes_256_gcm ? EVP_sha384() : EVP_sha256();
}

// Fetched once: an implicit fetch on every record would search the
// provider's tables each time.
const EVP_CIPHER* cipher_of(aead kind) {
  static EVP_CIPHER* const aes128 = EVP_CIPHER_fetch(nullptr, "AES-128-GCM", nullptr);
  static EVP_CIPHER* const aes256 = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  static EVP_CIPHER* const chacha = EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr);
  switch (kind) {
    case aead::aes_128_gcm: return aes128;
    case aead::aes_256_gcm: return aes256;
    case aead::chacha20_poly1305: return chacha;
  }
  return nullptr;
}

// One cipher context per thread, keyed anew for each record.
EVP_CIPHER_CTX* thread_cipher_context() {
  struct holder {
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    ~holder() { EVP_CIPHER_CTX_free(ctx); }
  };
  thread_local holder h;
  return h.ctx;
}

// What EVP_*Init_ex2 is given as the cipher: none when the context already
// runs this one, so that a new key reuses its state instead of freeing and
// allocating it again (which naming the cipher does).
const EVP_CIPHER* cipher_to_set(EVP_CIPHER_CTX* ctx, aead kind) {
  const EVP_CIPHER* cipher = cipher_of(kind);
  return EVP_CIPHER_CTX_get0_cipher(ctx) == cipher ? nullptr : cipher;
}

// HKDF-Expand-Label(secret, label, "", size) (§7.1). Every output here is at
// most one hash long, so HKDF-Expand is one HMAC over HkdfLabel || 0x01.
bool expand_label(aead kind, const std::uint8_t* secret, std::size_t secret_size,
                  std::string_view label, std::uint8_t* out, std::size_t size) {
  constexpr std::string_view prefix = "tls13 ";
  std::uint8_t info[2 + 1 + 255 + 1 + 1];
  std::size_t n = 0;
  info[n++] = static_cast<std::uint8_t>(size >> 8);
  info[n++] = static_cast<std::uint8_t>(size);
  info[n++] = static_cast<std::uint8_t>(prefix.size() + label.size());
  std::memcpy(info + n, prefix.data(), prefix.size());
  n += prefix.size();
  std::memcpy(info + n, label.data(), label.size());
  n += label.size();
  info[n++] = 0;  // empty context
  info[n++] = 1;  // HKDF-Expand's block counter
  std::uint8_t block[EVP_MAX_MD_SIZE];
  unsigned int block_size = 0;
  if (HMAC(hash_of(kind), secret, static_cast<int>(secret_size), info, n, block, &block_size) ==
        nullptr ||
      block_size < size)
    return false;
  std::memcpy(out, block, size);
  OPENSSL_cleanse(block, sizeof block);
  return true;
}

}  // namespace

std::optional<aead> aead_of_suite(std::uint16_t suite) {
  switch (suite) {
    case 0x1301: return aead::aes_128_gcm;
    case 0x1302: return aead::aes_256_gcm;
    case 0x1303: return aead::chacha20_poly1305;
    default: return std::nullopt;
  }
}

std::optional<logged_secret> application_secret_of(std::string_view line) {
  constexpr std::string_view client_label = "CLIENT_TRAFFIC_SECRET_0 ";
  constexpr std::string_view server_label = "SERVER_TRAFFIC_SECRET_0 ";
  logged_secret s;
  if (line.substr(0, client_label.size()) == client_label)
    s.client = true;
  else if (line.substr(0, server_label.size()) != server_label)
    return std::nullopt;
  line.remove_prefix(client_label.size());
  const auto space = line.find(' ');  // after the client random
  if (space == std::string_view::npos) return std::nullopt;
  const auto hex = line.substr(space + 1);
  if (hex.size() > 2 * 48 || !from_hex(hex, s.secret) || s.secret.empty()) return std::nullopt;
  return s;
}

// -- traffic_keys ------------------------------------------------------------

traffic_keys::traffic_keys(aead kind, std::string_view secret) : kind_(kind) {
  if (secret.size() != hash_size(kind) || cipher_of(kind) == nullptr) return;
  secret_size_ = static_cast<std::uint8_t>(secret.size());
  std::memcpy(secret_.data(), secret.data(), secret.size());
  ok_ = derive();
}

traffic_keys::~traffic_keys() {
  OPENSSL_cleanse(secret_.data(), secret_.size());
  OPENSSL_cleanse(key_.data(), key_.size());
  OPENSSL_cleanse(iv_.data(), iv_.size());
}

bool traffic_keys::derive() {
  return expand_label(kind_, secret_.data(), secret_size_, "key", key_.data(), key_size(kind_)) &&
         expand_label(kind_, secret_.data(), secret_size_, "iv", iv_.data(), iv_.size());
}

bool traffic_keys::update() {
  if (!ok_) return false;
  std::array<std::uint8_t, 48> next{};
  ok_ = expand_label(kind_, secret_.data(), secret_size_, "traffic upd", next.data(),
                     secret_size_);
  if (ok_) {
    secret_ = next;
    ok_ = derive();
  }
  OPENSSL_cleanse(next.data(), next.size());
  sequence_ = 0;
  return ok_;
}

std::array<std::uint8_t, 12> traffic_keys::nonce() const {
  // §5.3: the 64-bit sequence number, big-endian, left-padded, XOR the IV.
  auto n = iv_;
  for (int i = 0; i < 8; ++i)
    n[11 - i] ^= static_cast<std::uint8_t>(sequence_ >> (8 * i));
  return n;
}

bool traffic_keys::seal(content_type type, std::string_view plaintext, std::string& out) {
  if (!ok_ || plaintext.size() > max_plaintext ||
      sequence_ == std::numeric_limits<std::uint64_t>::max())
    return false;
  // TLSInnerPlaintext: the content, its type, no padding.
  const std::size_t length = plaintext.size() + 1 + tag_size;
  const std::uint8_t header[header_size] = {
    static_cast<std::uint8_t>(content_type::application_data), 0x03, 0x03,
    static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length)};
  const auto iv = nonce();
  const std::size_t start = out.size();
  out.resize(start + header_size + length);
  auto* record = reinterpret_cast<std::uint8_t*>(out.data() + start);
  std::memcpy(record, header, header_size);
  std::uint8_t* body = record + header_size;
  const auto inner_type = static_cast<std::uint8_t>(type);
  EVP_CIPHER_CTX* ctx = thread_cipher_context();
  int n = 0;
  int last = 0;
  const bool sealed =
    ctx != nullptr && EVP_EncryptInit_ex2(ctx, cipher_to_set(ctx, kind_), key_.data(), iv.data(), nullptr) == 1 &&
    EVP_EncryptUpdate(ctx, nullptr, &n, header, header_size) == 1 &&
    EVP_EncryptUpdate(ctx, body, &n, reinterpret_cast<const std::uint8_t*>(plaintext.data()),
                      static_cast<int>(plaintext.size())) == 1 &&
    EVP_EncryptUpdate(ctx, body + n, &last, &inner_type, 1) == 1 &&
    EVP_EncryptFinal_ex(ctx, body + n + last, &last) == 1 &&
    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, static_cast<int>(tag_size),
                        body + plaintext.size() + 1) == 1;
  if (!sealed) {
    out.resize(start);
    return false;
  }
  ++sequence_;
  return true;
}

traffic_keys::opened traffic_keys::open(std::string_view in, char* buffer) {
  opened r;
  if (in.size() < header_size) return r;
  const auto* record = reinterpret_cast<const std::uint8_t*>(in.data());
  // legacy_record_version is ignored on receipt (§5.1); it is authenticated
  // as part of the additional data all the same.
  const std::size_t length = (std::size_t{record[3]} << 8) | record[4];
  auto bad = [&r](const char* why) {
    r.status = opened::status::bad;
    r.error = why;
    return r;
  };
  if (record[0] != static_cast<std::uint8_t>(content_type::application_data))
    return bad("a record that is not protected (unexpected_message)");
  if (length > max_ciphertext) return bad("a record longer than 2^14 + 256 (record_overflow)");
  if (length < tag_size + 1) return bad("a record too short for its tag (decode_error)");
  if (in.size() < header_size + length) return r;
  if (!ok_ || sequence_ == std::numeric_limits<std::uint64_t>::max())
    return bad("no more records under these keys");
  const auto iv = nonce();
  const std::size_t sealed_size = length - tag_size;
  auto* plain = reinterpret_cast<std::uint8_t*>(buffer);
  EVP_CIPHER_CTX* ctx = thread_cipher_context();
  int n = 0;
  int last = 0;
  const bool opened_ok =
    ctx != nullptr && EVP_DecryptInit_ex2(ctx, cipher_to_set(ctx, kind_), key_.data(), iv.data(), nullptr) == 1 &&
    EVP_DecryptUpdate(ctx, nullptr, &n, record, header_size) == 1 &&
    EVP_DecryptUpdate(ctx, plain, &n, record + header_size, static_cast<int>(sealed_size)) == 1 &&
    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(tag_size),
                        const_cast<std::uint8_t*>(record + header_size + sealed_size)) == 1 &&
    EVP_DecryptFinal_ex(ctx, plain + n, &last) == 1;
  if (!opened_ok) return bad("a record that does not authenticate (bad_record_mac)");
  ++sequence_;
  // §5.4: content, type and padding together at most 2^14 + 1 bytes.
  if (sealed_size > max_plaintext + 1)
    return bad("a record with more than 2^14 + 1 inner bytes (record_overflow)");
  // The inner type is the last non-zero byte; zeros after it are padding.
  std::size_t end = sealed_size;
  while (end > 0 && plain[end - 1] == 0) --end;
  if (end == 0) return bad("a record with no content type (unexpected_message)");
  const std::size_t content = end - 1;
  r.status = opened::status::record;
  r.type = static_cast<content_type>(plain[content]);
  r.plaintext = std::string_view(buffer, content);
  r.consumed = header_size + length;
  return r;
}

// -- server_records ----------------------------------------------------------

server_records::server_records(aead kind, std::string_view client_secret,
                               std::string_view server_secret)
  : read_(kind, client_secret), write_(kind, server_secret) {}

server_records::event server_records::read(std::string_view in, char* buffer, std::string& out) {
  event e = read_record(in, buffer, out);
  if (e.what == event::kind::data && !e.data.empty()) {
    records_without_data_ = 0;
  } else if (e.what == event::kind::data || e.what == event::kind::nothing) {
    if (++records_without_data_ > max_records_without_data) {
      e.what = event::kind::failed;
      e.data = {};
      e.error = "more than " + std::to_string(max_records_without_data) +
                " records in a row without data";
    }
  }
  return e;
}

server_records::event server_records::read_record(std::string_view in, char* buffer,
                                                  std::string& out) {
  event e;
  const auto r = read_.open(in, buffer);
  e.consumed = r.consumed;
  if (r.status == traffic_keys::opened::status::need_more) return e;
  if (r.status == traffic_keys::opened::status::bad) {
    e.what = event::kind::failed;
    e.error = r.error;
    return e;
  }
  switch (r.type) {
    case content_type::application_data:
      e.what = event::kind::data;
      e.data = r.plaintext;
      return e;
    case content_type::alert: {
      if (r.plaintext.size() != 2) {
        e.what = event::kind::failed;
        e.error = "an alert that is not two bytes (decode_error)";
        return e;
      }
      const auto description = static_cast<std::uint8_t>(r.plaintext[1]);
      if (description == close_notify_alert) {
        e.what = event::kind::closed;
      } else if (description == user_canceled) {
        e.what = event::kind::nothing;  // a close_notify follows (§6.1)
      } else {
        // §6.2: every other alert ends the connection, whatever its level.
        e.what = event::kind::failed;
        e.error = "the peer sent alert " + std::to_string(description);
      }
      return e;
    }
    case content_type::handshake: {
      auto h = handshake_messages(r.plaintext, out);
      h.consumed = e.consumed;
      return h;
    }
    default:
      e.what = event::kind::failed;
      e.error = "a record of content type " + std::to_string(static_cast<int>(r.type)) +
                " after the handshake (unexpected_message)";
      return e;
  }
}

server_records::event server_records::handshake_messages(std::string_view messages,
                                                         std::string& out) {
  event e;
  e.what = event::kind::nothing;
  auto fail = [&e](std::string why) {
    e.what = event::kind::failed;
    e.error = std::move(why);
    return e;
  };
  // The only message a client may send after its Finished is a KeyUpdate,
  // and the key changes after it, so it must be alone in its record (§5.1).
  // Splitting a handshake message over records is legal, but no client splits
  // the 5-byte KeyUpdate: the relay refuses it rather than keep a reassembly
  // buffer for every connection.
  if (messages.size() < 4) return fail("a handshake message split over records");
  const auto type = static_cast<std::uint8_t>(messages[0]);
  const std::size_t length = (std::size_t{static_cast<std::uint8_t>(messages[1])} << 16) |
                             (std::size_t{static_cast<std::uint8_t>(messages[2])} << 8) |
                             static_cast<std::uint8_t>(messages[3]);
  if (type != key_update)
    return fail(type == new_session_ticket
                  ? "a NewSessionTicket from a client (unexpected_message)"
                  : "handshake message " + std::to_string(type) +
                      " after the handshake (unexpected_message)");
  if (messages.size() - 4 < length) return fail("a handshake message split over records");
  if (length != 1) return fail("a KeyUpdate that is not one byte (decode_error)");
  if (messages.size() != 5)
    return fail("a record that goes on after its KeyUpdate (unexpected_message)");
  const auto request = static_cast<std::uint8_t>(messages[4]);
  if (request > 1)
    return fail("a KeyUpdate with request_update " + std::to_string(request) +
                " (illegal_parameter)");
  if (!read_.update()) return fail("could not derive the next read keys");
  if (request == 1 && !update_answered_) {
    static constexpr char update_not_requested[] = {key_update, 0, 0, 1, 0};
    if (!write_.seal(content_type::handshake,
                     std::string_view(update_not_requested, sizeof update_not_requested), out) ||
        !write_.update())
      return fail("could not answer a KeyUpdate");
    update_answered_ = true;
  }
  return e;
}

bool server_records::write(std::string_view plaintext, std::string& out) {
  while (!plaintext.empty()) {
    const auto chunk = plaintext.substr(0, max_plaintext);
    if (!write_.seal(content_type::application_data, chunk, out)) return false;
    plaintext.remove_prefix(chunk.size());
    update_answered_ = false;
  }
  return true;
}

bool server_records::close_notify(std::string& out) {
  static constexpr char alert[] = {1, close_notify_alert};  // warning, close_notify
  return write_.seal(content_type::alert, std::string_view(alert, sizeof alert), out);
}

}  // namespace tlsrelay::tls13
