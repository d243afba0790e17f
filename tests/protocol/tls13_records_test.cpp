// TLS 1.3 record protection (protocol/tls13_records.hpp) against a real
// OpenSSL 3 client, in memory: OpenSSL does the handshake on both ends over
// memory BIOs, the server's key-log callback gives the two application
// traffic secrets, the server SSL is freed (as the relay does) and
// tls13::server_records takes its place. The client stays an OpenSSL SSL whose
// records are read from its write BIO and whose input is fed to its read BIO.
// Every scenario runs for each of the three suites server_records supports.
#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "protocol/tls13_records.hpp"

namespace tls13 = tlsrelay::tls13;
using kind = tls13::server_records::event::kind;

namespace Catch {
template <>
struct StringMaker<kind> {
  static std::string convert(kind k) {
    switch (k) {
      case kind::need_more: return "need_more";
      case kind::data: return "data";
      case kind::nothing: return "nothing";
      case kind::closed: return "closed";
      case kind::failed: return "failed";
    }
    return "?";
  }
};
}  // namespace Catch

namespace {

struct free_ssl_ctx {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct free_ssl {
  void operator()(SSL* p) const { SSL_free(p); }
};
struct free_pkey {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct free_x509 {
  void operator()(X509* p) const { X509_free(p); }
};
using ssl_ctx_ptr = std::unique_ptr<SSL_CTX, free_ssl_ctx>;
using ssl_ptr = std::unique_ptr<SSL, free_ssl>;

struct suite {
  const char* name;
  std::uint16_t id;
  tls13::aead aead;
};
constexpr suite suites[] = {
  {"TLS_AES_128_GCM_SHA256", 0x1301, tls13::aead::aes_128_gcm},
  {"TLS_AES_256_GCM_SHA384", 0x1302, tls13::aead::aes_256_gcm},
  {"TLS_CHACHA20_POLY1305_SHA256", 0x1303, tls13::aead::chacha20_poly1305},
};

// What the server's key-log callback saw, hex-decoded (one per server SSL,
// through SSL_set_app_data).
struct captured_secrets {
  std::string client;  // CLIENT_TRAFFIC_SECRET_0
  std::string server;  // SERVER_TRAFFIC_SECRET_0
  std::vector<std::string> lines;  // all of them, for application_secret_of
};

std::string from_hex(std::string_view hex) {
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    const int hi = digit(hex[i]), lo = digit(hex[i + 1]);
    if (hi < 0 || lo < 0) return {};
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  return hex.size() % 2 == 0 ? out : std::string();
}

// "<LABEL> <client_random hex> <secret hex>"
void keylog(const SSL* ssl, const char* line) {
  auto* secrets = static_cast<captured_secrets*>(SSL_get_app_data(ssl));
  if (secrets == nullptr) return;
  const std::string_view text(line);
  secrets->lines.emplace_back(text);
  const auto first = text.find(' ');
  const auto second = first == std::string_view::npos ? first : text.find(' ', first + 1);
  if (second == std::string_view::npos) return;
  const auto label = text.substr(0, first);
  const auto secret = from_hex(text.substr(second + 1));
  if (label == "CLIENT_TRAFFIC_SECRET_0") secrets->client = secret;
  if (label == "SERVER_TRAFFIC_SECRET_0") secrets->server = secret;
}

// A TLS 1.3-only server context with a fresh self-signed P-256 certificate,
// no session tickets (as the relay) and the key-log callback.
ssl_ctx_ptr make_server_ctx() {
  std::unique_ptr<EVP_PKEY, free_pkey> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  REQUIRE(key);
  std::unique_ptr<X509, free_x509> cert(X509_new());
  REQUIRE(cert);
  X509_NAME* name = X509_get_subject_name(cert.get());
  REQUIRE(X509_set_version(cert.get(), X509_VERSION_3) == 1);
  REQUIRE(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1) == 1);
  REQUIRE(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr);
  REQUIRE(X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600) != nullptr);
  REQUIRE(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                     reinterpret_cast<const unsigned char*>("tls13-records-test"),
                                     -1, -1, 0) == 1);
  REQUIRE(X509_set_issuer_name(cert.get(), name) == 1);
  REQUIRE(X509_set_pubkey(cert.get(), key.get()) == 1);
  REQUIRE(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0);

  ssl_ctx_ptr ctx(SSL_CTX_new(TLS_server_method()));
  REQUIRE(ctx);
  REQUIRE(SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) == 1);
  REQUIRE(SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION) == 1);
  REQUIRE(SSL_CTX_use_certificate(ctx.get(), cert.get()) == 1);
  REQUIRE(SSL_CTX_use_PrivateKey(ctx.get(), key.get()) == 1);
  REQUIRE(SSL_CTX_set_num_tickets(ctx.get(), 0) == 1);
  SSL_CTX_set_keylog_callback(ctx.get(), keylog);
  return ctx;
}

std::string drain(BIO* bio) {
  std::string bytes;
  char chunk[4096];
  int n = 0;
  while ((n = BIO_read(bio, chunk, sizeof chunk)) > 0) bytes.append(chunk, static_cast<std::size_t>(n));
  return bytes;
}

void feed(BIO* bio, std::string_view bytes) {
  if (bytes.empty()) return;
  REQUIRE(BIO_write(bio, bytes.data(), static_cast<int>(bytes.size())) ==
          static_cast<int>(bytes.size()));
}

// The body lengths of the records that exactly make up `bytes`, each checked
// to be an application_data record of version 0x0303.
std::vector<std::size_t> record_lengths(std::string_view bytes) {
  std::vector<std::size_t> lengths;
  while (!bytes.empty()) {
    REQUIRE(bytes.size() >= tls13::header_size);
    CHECK(static_cast<unsigned char>(bytes[0]) == 23);
    CHECK(static_cast<unsigned char>(bytes[1]) == 3);
    CHECK(static_cast<unsigned char>(bytes[2]) == 3);
    const std::size_t length =
      std::size_t{static_cast<unsigned char>(bytes[3])} << 8 | static_cast<unsigned char>(bytes[4]);
    REQUIRE(bytes.size() >= tls13::header_size + length);
    lengths.push_back(length);
    bytes.remove_prefix(tls13::header_size + length);
  }
  return lengths;
}

// An established connection: a real OpenSSL client and, in place of the
// freed server SSL, server_records.
struct connection {
  explicit connection(const suite& s) {
    client_ctx.reset(SSL_CTX_new(TLS_client_method()));
    REQUIRE(client_ctx);
    REQUIRE(SSL_CTX_set_min_proto_version(client_ctx.get(), TLS1_3_VERSION) == 1);
    REQUIRE(SSL_CTX_set_ciphersuites(client_ctx.get(), s.name) == 1);
    SSL_CTX_set_verify(client_ctx.get(), SSL_VERIFY_NONE, nullptr);
    client.reset(SSL_new(client_ctx.get()));
    REQUIRE(client);
    client_in = BIO_new(BIO_s_mem());
    client_out = BIO_new(BIO_s_mem());
    SSL_set_bio(client.get(), client_in, client_out);  // the SSL owns both
    REQUIRE((client_in != nullptr && client_out != nullptr));
    SSL_set_connect_state(client.get());

    const auto server_ctx = make_server_ctx();
    ssl_ptr server(SSL_new(server_ctx.get()));
    REQUIRE(server);
    BIO* server_in = BIO_new(BIO_s_mem());
    BIO* server_out = BIO_new(BIO_s_mem());
    SSL_set_bio(server.get(), server_in, server_out);
    REQUIRE((server_in != nullptr && server_out != nullptr));
    SSL_set_accept_state(server.get());
    SSL_set_app_data(server.get(), &secrets);

    int c = 0, v = 0;
    for (int round = 0; round < 10 && !(c == 1 && v == 1); ++round) {
      if (c != 1) c = SSL_do_handshake(client.get());
      if (v != 1) v = SSL_do_handshake(server.get());
      feed(server_in, drain(client_out));
      feed(client_in, drain(server_out));
    }
    REQUIRE(c == 1);
    REQUIRE(v == 1);
    // The server took all of the client's handshake and sent nothing after
    // its Finished (no tickets): the first application record each way has
    // sequence number 0.
    REQUIRE(BIO_ctrl_pending(server_in) == 0);
    REQUIRE(BIO_ctrl_pending(client_in) == 0);
    REQUIRE(SSL_version(server.get()) == TLS1_3_VERSION);

    const SSL_CIPHER* cipher = SSL_get_current_cipher(server.get());
    REQUIRE(cipher != nullptr);
    REQUIRE(SSL_CIPHER_get_protocol_id(cipher) == s.id);
    const auto aead = tls13::aead_of_suite(SSL_CIPHER_get_protocol_id(cipher));
    REQUIRE(aead == s.aead);
    REQUIRE(secrets.client.size() == (s.aead == tls13::aead::aes_256_gcm ? 48u : 32u));
    REQUIRE(secrets.server.size() == secrets.client.size());
    // The relay's own reading of the same key log lines agrees.
    for (const auto& line : secrets.lines) {
      CAPTURE(line);
      const auto logged = tls13::application_secret_of(line);
      const bool client_line = line.rfind("CLIENT_TRAFFIC_SECRET_0 ", 0) == 0;
      const bool server_line = line.rfind("SERVER_TRAFFIC_SECRET_0 ", 0) == 0;
      REQUIRE(logged.has_value() == (client_line || server_line));
      if (logged) {
        CHECK(logged->client == client_line);
        CHECK(logged->secret == (client_line ? secrets.client : secrets.server));
      }
    }
    REQUIRE(secrets.lines.size() >= 5);  // handshake, exporter and application secrets
    records.emplace(*aead, secrets.client, secrets.server);
    REQUIRE(records->ok());
    server.reset();  // as the relay does: from here on, server_records is the server
  }

  // The client writes `text`: the bytes it puts on the wire.
  std::string client_write(std::string_view text) {
    REQUIRE(SSL_write(client.get(), text.data(), static_cast<int>(text.size())) ==
            static_cast<int>(text.size()));
    return drain(client_out);
  }

  // Feeds `bytes` to the client and reads until it wants more (and nothing
  // else stops it): what it read.
  std::string client_read(std::string_view bytes) {
    feed(client_in, bytes);
    std::string got;
    std::vector<char> chunk(65536);
    for (;;) {
      const int n = SSL_read(client.get(), chunk.data(), static_cast<int>(chunk.size()));
      if (n <= 0) {
        CHECK(SSL_get_error(client.get(), n) == SSL_ERROR_WANT_READ);
        return got;
      }
      got.append(chunk.data(), static_cast<std::size_t>(n));
    }
  }

  // What the client put on the wire since.
  std::string client_sent() { return drain(client_out); }

  tls13::server_records::event read(std::string_view in) {
    return records->read(in, buffer.data(), out);
  }

  ssl_ctx_ptr client_ctx;
  ssl_ptr client;
  BIO* client_in = nullptr;   // what the server sends, for the client to read
  BIO* client_out = nullptr;  // what the client sends
  captured_secrets secrets;
  std::optional<tls13::server_records> records;
  std::vector<char> buffer = std::vector<char>(tls13::max_ciphertext);
  std::string out;  // what server_records has to send
};

const suite& each_suite() {
  return suites[GENERATE(0, 1, 2)];
}

void check_failed(const tls13::server_records::event& e) {
  CHECK(e.what == kind::failed);
  CHECK_FALSE(e.error.empty());
  CHECK(e.data.empty());
}

}  // namespace

// -- against a real client --------------------------------------------------------------

TEST_CASE("tls13 records: a record from an OpenSSL client opens to its bytes", "[tls13]") {
  const auto& s = each_suite();
  INFO(s.name);
  connection conn(s);
  const auto bytes = conn.client_write("hello\n");
  CHECK(record_lengths(bytes) == std::vector<std::size_t>{6 + 1 + tls13::tag_size});
  const auto e = conn.read(bytes);
  CHECK(e.what == kind::data);
  CHECK(e.data == "hello\n");
  CHECK(e.consumed == bytes.size());
  CHECK(e.error.empty());
  CHECK(conn.out.empty());
}

TEST_CASE("tls13 records: a 40000-byte server write reaches the client as three records",
          "[tls13]") {
  const auto& s = each_suite();
  INFO(s.name);
  connection conn(s);
  std::string pattern(40000, '\0');
  for (std::size_t i = 0; i < pattern.size(); ++i)
    pattern[i] = static_cast<char>((i * 7 + i / 251) & 0xff);
  REQUIRE(conn.records->write(pattern, conn.out));
  const std::size_t overhead = 1 + tls13::tag_size;
  CHECK(record_lengths(conn.out) == std::vector<std::size_t>{tls13::max_plaintext + overhead,
                                                             tls13::max_plaintext + overhead,
                                                             40000 - 2 * tls13::max_plaintext +
                                                               overhead});
  CHECK(conn.client_read(conn.out) == pattern);
}

TEST_CASE("tls13 records: read takes one record at a time and waits for whole records",
          "[tls13]") {
  const auto& s = each_suite();
  INFO(s.name);
  connection conn(s);

  SECTION("several records in one buffer come out one by one in order") {
    const std::vector<std::string> sent{"first", std::string(3000, 'x'), "third\r\n", "last"};
    std::string in;
    for (const auto& text : sent) in += conn.client_write(text);
    const auto lengths = record_lengths(in);
    REQUIRE(lengths.size() == 4);
    std::vector<std::string> got;
    std::string_view left = in;
    std::size_t i = 0;
    for (;;) {
      const auto e = conn.read(left);
      if (e.what != kind::data) {
        CHECK(e.what == kind::need_more);
        CHECK(e.consumed == 0);
        break;
      }
      REQUIRE(i < lengths.size());
      CHECK(e.consumed == tls13::header_size + lengths[i++]);
      got.emplace_back(e.data);
      left.remove_prefix(e.consumed);
    }
    CHECK(left.empty());
    CHECK(got == sent);
    CHECK(conn.out.empty());
  }

  SECTION("a record cut anywhere gives need_more until its last byte arrives") {
    const auto one = conn.client_write("one");
    const auto two = conn.client_write("byte by byte");
    // A whole record and the start of the next: the first comes out, then
    // need_more as the second arrives byte by byte, until its last byte.
    std::string in = one + two.substr(0, 3);
    auto e = conn.read(in);
    CHECK(e.what == kind::data);
    CHECK(e.data == "one");
    REQUIRE(e.consumed == one.size());
    in.erase(0, e.consumed);
    while (in.size() < two.size()) {
      CAPTURE(in.size());
      e = conn.read(in);
      CHECK(e.what == kind::need_more);
      CHECK(e.consumed == 0);
      in.push_back(two[in.size()]);
    }
    REQUIRE(in == two);
    e = conn.read(in);
    CHECK(e.what == kind::data);
    CHECK(e.data == "byte by byte");
    CHECK(e.consumed == two.size());
    CHECK(conn.out.empty());
  }

  SECTION("an empty input and a lone partial header give need_more") {
    const auto bytes = conn.client_write("x");
    for (std::size_t have = 0; have < tls13::header_size; ++have) {
      const auto e = conn.read(std::string_view(bytes).substr(0, have));
      CHECK(e.what == kind::need_more);
      CHECK(e.consumed == 0);
    }
    const auto e = conn.read(bytes);
    CHECK(e.what == kind::data);
    CHECK(e.data == "x");
  }
}

TEST_CASE("tls13 records: the client's KeyUpdates", "[tls13]") {
  const auto& s = each_suite();
  INFO(s.name);
  connection conn(s);
  // One KeyUpdate record from us: its 5 bytes, the inner type and the tag.
  const std::vector<std::size_t> one_key_update{5 + 1 + tls13::tag_size};

  // The client asks for an update and writes `text`: our read sees its
  // KeyUpdate (nothing) then the data. Returns what we appended to `out`.
  auto client_updates_and_writes = [&](int type, std::string_view text) {
    REQUIRE(SSL_key_update(conn.client.get(), type) == 1);
    const auto bytes = conn.client_write(text);
    const auto lengths = record_lengths(bytes);
    REQUIRE(lengths.size() == 2);
    const auto before = conn.out.size();
    auto e = conn.read(bytes);
    CHECK(e.what == kind::nothing);
    CHECK(e.data.empty());
    CHECK(e.consumed == tls13::header_size + lengths[0]);
    const std::string appended = conn.out.substr(before);
    e = conn.read(std::string_view(bytes).substr(tls13::header_size + lengths[0]));
    CHECK(e.what == kind::data);
    CHECK(e.data == text);
    CHECK(e.consumed == tls13::header_size + lengths[1]);
    return appended;
  };

  SECTION("update_requested is answered with one KeyUpdate before our next data") {
    CHECK(record_lengths(client_updates_and_writes(SSL_KEY_UPDATE_REQUESTED, "after update")) ==
          one_key_update);
    REQUIRE(conn.records->write("reply", conn.out));
    CHECK(record_lengths(conn.out).size() == 2);
    CHECK(conn.client_read(conn.out) == "reply");
    conn.out.clear();

    // Two requests while we are silent: one answer.
    CHECK(record_lengths(client_updates_and_writes(SSL_KEY_UPDATE_REQUESTED, "one")) ==
          one_key_update);
    CHECK(client_updates_and_writes(SSL_KEY_UPDATE_REQUESTED, "two").empty());
    REQUIRE(conn.records->write("after two", conn.out));
    CHECK(record_lengths(conn.out).size() == 2);
    CHECK(conn.client_read(conn.out) == "after two");
    conn.out.clear();

    // We wrote since: the next request is answered again.
    CHECK(record_lengths(client_updates_and_writes(SSL_KEY_UPDATE_REQUESTED, "three")) ==
          one_key_update);
    REQUIRE(conn.records->write("last", conn.out));
    CHECK(conn.client_read(conn.out) == "last");
    conn.out.clear();

    // And the client's keys moved on with ours: plain data still flows.
    const auto bytes = conn.client_write("still here");
    const auto e = conn.read(bytes);
    CHECK(e.what == kind::data);
    CHECK(e.data == "still here");
  }

  SECTION("update_not_requested is not answered") {
    CHECK(client_updates_and_writes(SSL_KEY_UPDATE_NOT_REQUESTED, "quiet update").empty());
    CHECK(conn.out.empty());
    REQUIRE(conn.records->write("same keys", conn.out));
    CHECK(record_lengths(conn.out).size() == 1);
    CHECK(conn.client_read(conn.out) == "same keys");
  }
}

TEST_CASE("tls13 records: close_notify both ways", "[tls13]") {
  const auto& s = each_suite();
  INFO(s.name);
  connection conn(s);
  // The client reads what we send: SSL_read returns 0, SSL_ERROR_ZERO_RETURN.
  auto client_sees_close_notify = [&] {
    const std::vector<std::size_t> one_alert{2 + 1 + tls13::tag_size};
    CHECK(record_lengths(conn.out) == one_alert);
    feed(conn.client_in, conn.out);
    conn.out.clear();
    char byte = 0;
    const int n = SSL_read(conn.client.get(), &byte, 1);
    CHECK(n == 0);
    CHECK(SSL_get_error(conn.client.get(), n) == SSL_ERROR_ZERO_RETURN);
  };

  SECTION("the client's close_notify after its data, then ours") {
    std::string bytes = conn.client_write("bye");
    REQUIRE(SSL_shutdown(conn.client.get()) == 0);  // sent, not yet received
    bytes += conn.client_sent();
    REQUIRE(record_lengths(bytes).size() == 2);
    auto e = conn.read(bytes);
    CHECK(e.what == kind::data);
    CHECK(e.data == "bye");
    bytes.erase(0, e.consumed);
    e = conn.read(bytes);
    CHECK(e.what == kind::closed);
    CHECK(e.consumed == bytes.size());
    CHECK(e.data.empty());
    CHECK(e.error.empty());
    CHECK(conn.out.empty());

    REQUIRE(conn.records->close_notify(conn.out));
    client_sees_close_notify();
    CHECK(SSL_shutdown(conn.client.get()) == 1);  // both ways now
  }

  SECTION("ours first, then the client's") {
    REQUIRE(conn.records->write("closing", conn.out));
    REQUIRE(conn.records->close_notify(conn.out));
    const auto lengths = record_lengths(conn.out);
    REQUIRE(lengths.size() == 2);
    CHECK(conn.client_read(std::string_view(conn.out).substr(0, tls13::header_size + lengths[0])) ==
          "closing");
    conn.out.erase(0, tls13::header_size + lengths[0]);
    client_sees_close_notify();
    REQUIRE(SSL_shutdown(conn.client.get()) == 1);
    const auto bytes = conn.client_sent();
    const auto e = conn.read(bytes);
    CHECK(e.what == kind::closed);
    CHECK(e.consumed == bytes.size());
  }
}

TEST_CASE("tls13 records: hostile input fails the connection", "[tls13]") {
  const auto& s = each_suite();
  INFO(s.name);
  connection conn(s);
  // A genuine record and the one after it: the stream a tampered record
  // arrives in (so that a length made longer still finds its bytes).
  std::string record = conn.client_write("secret data");
  const std::string next = conn.client_write("next");
  const std::size_t body = record.size() - tls13::header_size;
  REQUIRE(body == 11 + 1 + tls13::tag_size);

  auto fails = [&](std::string_view in) {
    check_failed(conn.read(in));
    CHECK(conn.out.empty());
  };
  // A header of `type` and `length`.
  auto header = [](unsigned char type, std::size_t length) {
    const char h[] = {static_cast<char>(type), 3, 3, static_cast<char>(length >> 8),
                      static_cast<char>(length & 0xff)};
    return std::string(h, sizeof h);
  };

  SECTION("a flipped bit in the ciphertext") {
    record[tls13::header_size + 3] ^= 0x10;
    fails(record + next);
  }
  SECTION("a flipped bit in the tag") {
    record.back() ^= 0x01;
    fails(record + next);
  }
  SECTION("a flipped bit in the header's length, shorter") {
    record[4] ^= 0x04;  // 28 = 0x1c: 24
    fails(record + next);
  }
  SECTION("a flipped bit in the header's length, longer") {
    record[4] ^= 0x01;  // 28: 29, the 29th byte being the next record's first
    REQUIRE(record.size() + next.size() >= tls13::header_size + 29);
    fails(record + next);
  }
  SECTION("a flipped bit in the header's type") {
    record[0] ^= 0x01;  // 23: 22, a handshake record in the clear
    fails(record + next);
  }
  SECTION("a flipped bit in the header's version, which is authenticated") {
    record[2] ^= 0x01;
    fails(record + next);
  }
  SECTION("a length over 2^14 + 256 fails on its header alone") {
    for (const std::size_t length : {tls13::max_ciphertext + 1, std::size_t{0xffff}}) {
      CAPTURE(length);
      fails(header(23, length));
      fails(header(23, length) + std::string(length, 'x'));
    }
  }
  SECTION("unprotected handshake, alert and change_cipher_spec records") {
    for (const unsigned char type : {22, 21, 20}) {
      CAPTURE(int(type));
      fails(header(type, 8) + "garbage!");
      fails(header(type, 2) + std::string("\x02\x28", 2));
    }
    fails(header(20, 1) + std::string("\x01", 1));  // the compatibility CCS: not after the handshake
  }
  SECTION("a replayed record") {
    const auto e = conn.read(record);
    CHECK(e.what == kind::data);
    CHECK(e.data == "secret data");
    fails(record);  // the sequence number moved on
  }
  SECTION("a record with less than 17 bytes of body") {
    for (const std::size_t length : {0, 1, 16}) {
      CAPTURE(length);
      fails(header(23, length) + record.substr(tls13::header_size, length));
      fails(header(23, length) + record.substr(tls13::header_size, length) + next);
    }
  }
  SECTION("random bytes") {
    std::mt19937 rng(s.id);
    for (int i = 0; i < 300; ++i) {
      CAPTURE(i);
      std::string in(tls13::header_size + rng() % 600, '\0');
      for (auto& c : in) c = static_cast<char>(rng());
      if (i % 2 == 1) {  // a plausible header, so the tag is what fails
        in[0] = 23;
        in[1] = in[2] = 3;
        in[3] = static_cast<char>(in[3] & 0x3f);
      }
      auto e = conn.read(in);
      if (e.what == kind::need_more) {
        const std::size_t length = std::size_t{static_cast<unsigned char>(in[3])} << 8 |
                                   static_cast<unsigned char>(in[4]);
        CHECK(static_cast<unsigned char>(in[0]) == 23);
        CHECK(length >= 1 + tls13::tag_size);
        CHECK(length <= tls13::max_ciphertext);
        CHECK(in.size() < tls13::header_size + length);
        CHECK(e.consumed == 0);
        while (in.size() < tls13::header_size + length) in.push_back(static_cast<char>(rng()));
        e = conn.read(in);
      }
      check_failed(e);
    }
    CHECK(conn.out.empty());
  }
}

TEST_CASE("tls13 records: protected records a client may not send", "[tls13]") {
  const auto& s = each_suite();
  INFO(s.name);
  connection conn(s);
  // The client's own keys, at the client's sequence number (it has sent
  // nothing yet): records the OpenSSL client would never write.
  tls13::traffic_keys client_keys(s.aead, conn.secrets.client);
  REQUIRE(client_keys.ok());
  auto sealed = [&](tls13::content_type type, std::string_view plaintext) {
    std::string record;
    REQUIRE(client_keys.seal(type, plaintext, record));
    return record;
  };
  using ct = tls13::content_type;
  auto read = [&](ct type, std::string_view plaintext) {
    const auto record = sealed(type, plaintext);
    const auto e = conn.read(record);
    if (e.what != kind::failed) CHECK(e.consumed == record.size());
    return e;
  };
  const std::string key_update_not_requested("\x18\x00\x00\x01\x00", 5);

  SECTION("an empty application data record is data with no bytes") {
    auto e = read(ct::application_data, "");
    CHECK(e.what == kind::data);
    CHECK(e.data.empty());
    e = read(ct::application_data, "after");
    CHECK(e.what == kind::data);
    CHECK(e.data == "after");
  }
  SECTION("a stream of records without data ends after 32 of them, data resets the count") {
    for (unsigned i = 0; i < tls13::server_records::max_records_without_data; ++i) {
      CAPTURE(i);
      const auto e = read(ct::application_data, "");
      REQUIRE(e.what == kind::data);
    }
    auto e = read(ct::application_data, "x");
    REQUIRE(e.what == kind::data);
    CHECK(e.data == "x");
    for (unsigned i = 0; i < tls13::server_records::max_records_without_data; ++i) {
      CAPTURE(i);
      e = read(ct::handshake, key_update_not_requested);
      REQUIRE(e.what == kind::nothing);
      REQUIRE(client_keys.update());  // the client's next records are under its next keys
    }
    e = read(ct::application_data, "");
    check_failed(e);
    CHECK(e.error.find("without data") != std::string::npos);
  }
  SECTION("padding after the content type is removed") {
    // Sealed as type 0 after the bytes "hi", 23, 0, 0: the inner plaintext
    // is "hi" 23 and three zeros of padding.
    const auto e = read(static_cast<ct>(0), std::string("hi\x17\0\0", 5));
    CHECK(e.what == kind::data);
    CHECK(e.data == "hi");
  }
  SECTION("user_canceled then close_notify") {
    auto e = read(ct::alert, std::string("\x01\x5a", 2));
    CHECK(e.what == kind::nothing);
    e = read(ct::alert, std::string("\x01\x00", 2));
    CHECK(e.what == kind::closed);
    CHECK(conn.out.empty());
  }
  SECTION("a fatal alert") {
    const auto e = read(ct::alert, std::string("\x02\x28", 2));  // handshake_failure
    check_failed(e);
    CHECK(e.error.find("40") != std::string::npos);
  }
  SECTION("a warning alert other than close_notify and user_canceled") {
    check_failed(read(ct::alert, std::string("\x01\x64", 2)));  // no_renegotiation
  }
  SECTION("an alert that is not two bytes") {
    check_failed(read(ct::alert, std::string("\x01\x00\x00", 3)));
  }
  SECTION("an empty alert record") {
    check_failed(read(ct::alert, ""));
  }
  SECTION("a protected change_cipher_spec") {
    check_failed(read(ct::change_cipher_spec, "\x01"));
  }
  SECTION("an unknown inner content type") {
    check_failed(read(static_cast<ct>(99), "what"));
  }
  SECTION("an inner plaintext of zeros only") {
    check_failed(read(static_cast<ct>(0), std::string(3, '\0')));
  }
  SECTION("a NewSessionTicket") {
    check_failed(read(ct::handshake, std::string("\x04\x00\x00\x01\x00", 5)));
  }
  SECTION("a ClientHello") {
    check_failed(read(ct::handshake, std::string("\x01\x00\x00\x01\x00", 5)));
  }
  SECTION("an empty handshake record") {
    check_failed(read(ct::handshake, ""));
  }
  SECTION("a KeyUpdate split over two records") {
    check_failed(read(ct::handshake, key_update_not_requested.substr(0, 3)));
  }
  SECTION("a KeyUpdate whose body is not one byte") {
    check_failed(read(ct::handshake, std::string("\x18\x00\x00\x02\x00\x00", 6)));
    check_failed(read(ct::handshake, std::string("\x18\x00\x00\x00", 4)));
  }
  SECTION("a KeyUpdate followed by more in its record") {
    check_failed(read(ct::handshake, key_update_not_requested + key_update_not_requested));
    CHECK(conn.out.empty());
  }
  SECTION("a KeyUpdate with request_update 2") {
    check_failed(read(ct::handshake, std::string("\x18\x00\x00\x01\x02", 5)));
    CHECK(conn.out.empty());
  }
  SECTION("after a KeyUpdate the old keys no longer open records") {
    CHECK(read(ct::handshake, key_update_not_requested).what == kind::nothing);
    const auto old_keys = sealed(ct::application_data, "old keys");
    check_failed(conn.read(old_keys));
    REQUIRE(client_keys.update());
    const auto e = read(ct::application_data, "new keys");
    CHECK(e.what == kind::data);
    CHECK(e.data == "new keys");
  }
}

TEST_CASE("tls13 records: connections of the three suites interleave on one thread", "[tls13]") {
  // Records are sealed and opened with one cipher context per thread, keyed
  // for each record: switching AEADs, keys and directions from record to
  // record, or a record that failed, must not carry anything over.
  connection a(suites[0]), b(suites[1]), c(suites[2]);
  auto round_trip = [](connection& conn, const std::string& text) {
    const auto bytes = conn.client_write(text);
    const auto e = conn.read(bytes);
    CHECK(e.what == kind::data);
    CHECK(e.data == text);
    CHECK(e.consumed == bytes.size());
    REQUIRE(conn.records->write("echo " + text, conn.out));
    CHECK(conn.client_read(conn.out) == "echo " + text);
    conn.out.clear();
  };
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    for (connection* conn : {&a, &b, &c, &b, &a, &c}) round_trip(*conn, "round " + std::to_string(round));
  }
  // A record of b that fails, then a and c go on.
  std::string tampered = b.client_write("tampered");
  tampered.back() ^= 0x01;
  check_failed(b.read(tampered));
  round_trip(a, "after b failed");
  round_trip(c, "after b failed");
}

// -- the record layer on its own --------------------------------------------------------

TEST_CASE("tls13 records: traffic_keys seal and open", "[tls13]") {
  const auto& s = each_suite();
  INFO(s.name);
  const std::size_t secret_size = s.aead == tls13::aead::aes_256_gcm ? 48 : 32;
  std::string secret(secret_size, '\0');
  for (std::size_t i = 0; i < secret.size(); ++i) secret[i] = static_cast<char>(0xa0 + i);
  tls13::traffic_keys sealer(s.aead, secret);
  tls13::traffic_keys opener(s.aead, secret);
  REQUIRE(sealer.ok());
  REQUIRE(opener.ok());
  CHECK(sealer.kind() == s.aead);
  CHECK(sealer.sequence() == 0);
  std::vector<char> buffer(tls13::max_ciphertext);
  using ct = tls13::content_type;

  SECTION("seal then open gives back the type and the bytes") {
    std::uint64_t sequence = 0;
    for (const std::size_t size : {std::size_t{0}, std::size_t{1}, tls13::max_plaintext}) {
      for (const ct type : {ct::application_data, ct::handshake, ct::alert}) {
        CAPTURE(size, int(type));
        std::string plaintext(size, '\0');
        for (std::size_t i = 0; i < size; ++i) plaintext[i] = static_cast<char>(i % 251 + 1);
        std::string out = "before";
        REQUIRE(sealer.seal(type, plaintext, out));
        CHECK(out.compare(0, 6, "before") == 0);
        const std::string record = out.substr(6);
        CHECK(record_lengths(record) == std::vector<std::size_t>{size + 1 + tls13::tag_size});
        // The record and more after it: open takes the record only.
        const auto r = opener.open(record + "after", buffer.data());
        REQUIRE(r.status == tls13::traffic_keys::opened::status::record);
        CHECK(r.type == type);
        CHECK(r.plaintext == plaintext);
        CHECK(r.consumed == record.size());
        ++sequence;
        CHECK(sealer.sequence() == sequence);
        CHECK(opener.sequence() == sequence);
      }
    }
  }
  SECTION("seal refuses more than 2^14 bytes") {
    std::string out = "untouched";
    CHECK_FALSE(sealer.seal(ct::application_data, std::string(tls13::max_plaintext + 1, 'x'), out));
    CHECK(out == "untouched");
    CHECK(sealer.sequence() == 0);
  }
  SECTION("records open only in order") {
    std::string first, second;
    REQUIRE(sealer.seal(ct::application_data, "first", first));
    REQUIRE(sealer.seal(ct::application_data, "second", second));
    CHECK(opener.open(second, buffer.data()).status == tls13::traffic_keys::opened::status::bad);
    CHECK(opener.sequence() == 0);
    CHECK(opener.open(first, buffer.data()).plaintext == "first");
    CHECK(opener.open(second, buffer.data()).plaintext == "second");
  }
  SECTION("update moves both ends to new keys at sequence 0") {
    std::string before;
    REQUIRE(sealer.seal(ct::application_data, "before", before));
    REQUIRE(sealer.update());
    CHECK(sealer.sequence() == 0);
    std::string after;
    REQUIRE(sealer.seal(ct::application_data, "after", after));
    CHECK(opener.open(before, buffer.data()).plaintext == "before");
    // Not yet updated: the new generation does not open.
    const auto stale = opener.open(after, buffer.data());
    CHECK(stale.status == tls13::traffic_keys::opened::status::bad);
    CHECK(std::string(stale.error) != "");
    REQUIRE(opener.update());
    const auto r = opener.open(after, buffer.data());
    REQUIRE(r.status == tls13::traffic_keys::opened::status::record);
    CHECK(r.plaintext == "after");
  }
  SECTION("a secret of the wrong length makes keys that are not ok") {
    for (const std::size_t size : {std::size_t{0}, std::size_t{16}, secret_size - 1, secret_size + 1,
                                   secret_size == 48 ? std::size_t{32} : std::size_t{48}}) {
      CAPTURE(size);
      tls13::traffic_keys wrong(s.aead, std::string(size, '\x42'));
      CHECK_FALSE(wrong.ok());
      std::string out = "untouched";
      CHECK_FALSE(wrong.seal(ct::application_data, "x", out));
      CHECK(out == "untouched");
      std::string record;
      REQUIRE(sealer.seal(ct::application_data, "x", record));
      CHECK(wrong.open(record, buffer.data()).status == tls13::traffic_keys::opened::status::bad);
    }
  }
}

TEST_CASE("tls13 records: aead_of_suite knows the three default TLS 1.3 suites only", "[tls13]") {
  CHECK(tls13::aead_of_suite(0x1301) == tls13::aead::aes_128_gcm);
  CHECK(tls13::aead_of_suite(0x1302) == tls13::aead::aes_256_gcm);
  CHECK(tls13::aead_of_suite(0x1303) == tls13::aead::chacha20_poly1305);
  CHECK_FALSE(tls13::aead_of_suite(0x1304));  // TLS_AES_128_CCM_SHA256
  CHECK_FALSE(tls13::aead_of_suite(0x1305));  // TLS_AES_128_CCM_8_SHA256
  CHECK_FALSE(tls13::aead_of_suite(0x0000));
  CHECK_FALSE(tls13::aead_of_suite(0xc02f));  // a TLS 1.2 suite
}

TEST_CASE("tls13 records: application_secret_of reads the two application secret lines only",
          "[tls13]") {
  const std::string random(64, 'a');
  const std::string hex32 = "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F";
  std::string bytes32;
  for (int i = 0; i < 32; ++i) bytes32.push_back(static_cast<char>(i));

  const auto client = tls13::application_secret_of("CLIENT_TRAFFIC_SECRET_0 " + random + " " + hex32);
  REQUIRE(client);
  CHECK(client->client);
  CHECK(client->secret == bytes32);
  const auto server =
    tls13::application_secret_of("SERVER_TRAFFIC_SECRET_0 " + random + " " + hex32 + hex32.substr(0, 32));
  REQUIRE(server);
  CHECK_FALSE(server->client);
  CHECK(server->secret == bytes32 + bytes32.substr(0, 16));

  for (const std::string& line : {
         "CLIENT_HANDSHAKE_TRAFFIC_SECRET " + random + " " + hex32,
         "SERVER_HANDSHAKE_TRAFFIC_SECRET " + random + " " + hex32,
         "EXPORTER_SECRET " + random + " " + hex32,
         "CLIENT_RANDOM " + random + " " + hex32 + hex32,       // TLS 1.2
         "CLIENT_TRAFFIC_SECRET_1 " + random + " " + hex32,     // not a generation we take
         "CLIENT_TRAFFIC_SECRET_0 " + random + " ",             // no secret
         "CLIENT_TRAFFIC_SECRET_0 " + random,                   // no random or no secret
         "CLIENT_TRAFFIC_SECRET_0 " + random + " " + hex32.substr(1),  // odd digits
         "CLIENT_TRAFFIC_SECRET_0 " + random + " " + hex32 + "zz",      // not hex
         "CLIENT_TRAFFIC_SECRET_0 " + random + " " + hex32 + " ",       // trailing space
         "SERVER_TRAFFIC_SECRET_0 " + random + " " + hex32 + hex32 + hex32 + hex32,  // > 48 bytes
         std::string("CLIENT_TRAFFIC_SECRET_0"), std::string()}) {
    CAPTURE(line);
    CHECK_FALSE(tls13::application_secret_of(line));
  }
}
