// TLS 1.3 record protection after the handshake (RFC 8446 §5, §7.1-7.3, §4.6.3).
//
// Why: an idle control connection held in OpenSSL keeps ~20 KB of state that
// only the handshake needed (the SSL object with its 32 record slots, the
// session, the client's certificate, the key shares, two cipher contexts).
// Once a TLS 1.3 handshake is over, all a connection needs is two traffic
// secrets, their keys and IVs and two sequence numbers (~200 bytes). So the
// relay lets OpenSSL do the handshake, takes the traffic secrets it exports
// (its key-log callback), frees the SSL and protects records here: what the
// kernel's kTLS would do, which this relay cannot count on.
//
// Pure: bytes in, bytes out; the AEADs are libcrypto's (EVP). A record is
// sealed and opened with a per-thread cipher context keyed for that record,
// so an idle connection holds no cipher context either.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tlsrelay::tls13 {

// The AEADs of TLS 1.3's cipher suites that OpenSSL enables by default.
enum class aead : std::uint8_t { aes_128_gcm, aes_256_gcm, chacha20_poly1305 };

// From a cipher suite's two-byte IANA value (0x1301, 0x1302, 0x1303); none for
// any other (the CCM suites: such a connection stays in OpenSSL).
std::optional<aead> aead_of_suite(std::uint16_t suite);

// An application traffic secret from one line of OpenSSL's key log
// (SSL_CTX_set_keylog_callback; the NSS key log format):
// `CLIENT_TRAFFIC_SECRET_0 <client random> <secret>` or `SERVER_...`, hex.
// None for the other lines (handshake secrets, TLS 1.2 master secrets).
struct logged_secret {
  bool client = false;  // CLIENT_TRAFFIC_SECRET_0, else SERVER_TRAFFIC_SECRET_0
  std::string secret;   // bytes
};
std::optional<logged_secret> application_secret_of(std::string_view key_log_line);

// Record sizes (RFC 8446 §5.1, §5.2).
inline constexpr std::size_t header_size = 5;
inline constexpr std::size_t tag_size = 16;
inline constexpr std::size_t max_plaintext = 16384;
inline constexpr std::size_t max_ciphertext = max_plaintext + 256;
inline constexpr std::size_t max_record = header_size + max_ciphertext;

enum class content_type : std::uint8_t {
  change_cipher_spec = 20,
  alert = 21,
  handshake = 22,
  application_data = 23,
};

// One direction's traffic secret and what follows from it (§7.1, §7.3).
class traffic_keys {
 public:
  // `secret` is the direction's application traffic secret: 32 bytes for the
  // SHA-256 suites, 48 for TLS_AES_256_GCM_SHA384. ok() is false when its
  // length does not fit the AEAD or libcrypto failed.
  traffic_keys(aead kind, std::string_view secret);
  ~traffic_keys();
  traffic_keys(const traffic_keys&) = delete;
  traffic_keys& operator=(const traffic_keys&) = delete;

  bool ok() const { return ok_; }
  aead kind() const { return kind_; }
  std::uint64_t sequence() const { return sequence_; }

  // The next generation (a KeyUpdate): new secret, key and IV, sequence 0.
  bool update();

  // Appends one record of `type` carrying `plaintext` (at most max_plaintext
  // bytes) to `out`. False (out unchanged) when the sequence is exhausted or
  // libcrypto failed.
  bool seal(content_type type, std::string_view plaintext, std::string& out);

  struct opened {
    enum class status { need_more, record, bad } status = status::need_more;
    content_type type = content_type::application_data;
    std::string_view plaintext;  // in the caller's buffer
    std::size_t consumed = 0;    // bytes of the input the record took
    const char* error = "";      // with status::bad: why, for logs
  };
  // Opens the first record of `in` into `buffer` (at least max_ciphertext
  // bytes): need_more when `in` holds no whole record yet, bad when its
  // header, length, tag or inner type is not a TLS 1.3 protected record
  // (the connection must then end: §5.2 makes every such error fatal).
  opened open(std::string_view in, char* buffer);

 private:
  bool derive();
  std::array<std::uint8_t, 12> nonce() const;

  aead kind_;
  bool ok_ = false;
  std::uint8_t secret_size_ = 0;
  std::array<std::uint8_t, 48> secret_{};
  std::array<std::uint8_t, 32> key_{};
  std::array<std::uint8_t, 12> iv_{};
  std::uint64_t sequence_ = 0;
};

// The server end of an established TLS 1.3 connection: application data,
// alerts and the peer's KeyUpdates. The caller moves the bytes.
class server_records {
 public:
  // Records in a row that carry no application data (empty records,
  // KeyUpdates, user_canceled) before the connection fails: each costs an
  // AEAD (a KeyUpdate two HMACs more) and hands the owner nothing, so a peer
  // streaming them would hold the io thread for free. OpenSSL allows 32.
  static constexpr unsigned max_records_without_data = 32;

  // `client_secret` protects what the client sends, `server_secret` what we
  // send (CLIENT_/SERVER_TRAFFIC_SECRET_0).
  server_records(aead kind, std::string_view client_secret, std::string_view server_secret);

  bool ok() const { return read_.ok() && write_.ok(); }

  struct event {
    enum class kind {
      need_more,  // no whole record in the input yet
      data,       // `data` (in the caller's buffer); may be empty (the peer sent an empty record)
      nothing,    // a record was taken (a KeyUpdate, a warning alert): look again
      closed,     // close_notify
      failed,     // the connection must end; `error` says why
    } what = kind::need_more;
    std::string_view data;
    std::size_t consumed = 0;
    std::string error;
  };
  // Takes the first record of `in`, opened into `buffer` (at least
  // max_ciphertext bytes). A KeyUpdate that asks for ours appends our
  // KeyUpdate record to `out`, to be sent before anything else.
  event read(std::string_view in, char* buffer, std::string& out);

  // Appends the records carrying `plaintext` (any length) to `out`.
  bool write(std::string_view plaintext, std::string& out);
  // Appends a close_notify alert to `out`.
  bool close_notify(std::string& out);

 private:
  event read_record(std::string_view in, char* buffer, std::string& out);
  event handshake_messages(std::string_view messages, std::string& out);

  traffic_keys read_;
  traffic_keys write_;
  // Our KeyUpdate answers the peer's requests since we last wrote: one is
  // enough (§4.6.3), so a peer that keeps asking while we are silent gets one.
  bool update_answered_ = false;
  unsigned records_without_data_ = 0;
};

}  // namespace tlsrelay::tls13
