#include "net/tls_context.hpp"

#include <cstring>

#include <fstream>
#include <system_error>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "net/tls_socket.hpp"
#include "protocol/wire.hpp"

namespace tlsrelay::net {
namespace {

std::string openssl_reason() {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

// Checks the file can be opened for reading, so the message can say why not
// (OpenSSL's own reason for a missing file is cryptic).
std::string check_readable(const std::filesystem::path& file) {
  std::error_code ec;
  const auto status = std::filesystem::status(file, ec);
  if (!std::filesystem::exists(status)) return file.string() + ": no such file";
  if (std::filesystem::is_directory(status)) return file.string() + ": is a directory, not a PEM file";
  std::ifstream in(file);
  if (!in) return file.string() + ": cannot be read";
  return {};
}

// Picks tlsrelay/2 from the peer's ALPN list; anything else continues the
// handshake without ALPN, which is what a v1 server expects.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  const auto wanted = wire::alpn_v2;
  for (unsigned i = 0; i < inlen;) {
    const unsigned len = in[i];
    if (i + 1 + len > inlen) break;
    if (len == wanted.size() && std::memcmp(in + i + 1, wanted.data(), len) == 0) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

unsigned negotiated_protocol(SSL* ssl) {
  const unsigned char* proto = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(ssl, &proto, &len);
  const auto v2 = wire::alpn_v2;
  return len == v2.size() && std::memcmp(proto, v2.data(), len) == 0 ? 2 : 1;
}

std::string configure_relay_tls(boost::asio::ssl::context& ctx,
                                const std::filesystem::path& keys_dir, client_auth mode) {
  const auto ca = keys_dir / "ca.crt.pem";
  const auto cert = keys_dir / "server.crt.pem";
  const auto key = keys_dir / "server.key.pem";
  std::error_code ec;
  if (!std::filesystem::is_directory(keys_dir, ec))
    return "--keys " + keys_dir.string() + ": no such directory (create one with `tlsrelay certs init " +
           keys_dir.string() + "`)";
  for (const auto& file : {ca, cert, key})
    if (auto err = check_readable(file); !err.empty()) return err;

  SSL_CTX* native = ctx.native_handle();
  ERR_clear_error();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_load_verify_locations(native, ca.c_str(), nullptr) != 1)
    return ca.string() + ": not a usable CA certificate (" + openssl_reason() + ")";
  if (SSL_CTX_use_certificate_chain_file(native, cert.c_str()) != 1)
    return cert.string() + ": not a usable certificate (" + openssl_reason() + ")";
  if (SSL_CTX_use_PrivateKey_file(native, key.c_str(), SSL_FILETYPE_PEM) != 1)
    return key.string() + ": not a usable private key (" + openssl_reason() + ")";
  if (SSL_CTX_check_private_key(native) != 1)
    return key.string() + ": does not match the certificate " + cert.string();
  // A certificate that is presented is always verified; whether one must be
  // presented is the mode's choice (v1 sessions check for one later).
  switch (mode) {
    case client_auth::required:
      SSL_CTX_set_verify(native, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      break;
    case client_auth::optional: SSL_CTX_set_verify(native, SSL_VERIFY_PEER, nullptr); break;
    case client_auth::none: SSL_CTX_set_verify(native, SSL_VERIFY_NONE, nullptr); break;
  }
  SSL_CTX_set_alpn_select_cb(native, select_alpn, nullptr);
  // No TLS 1.3 session tickets: a control connection lives long and no
  // server resumes one (without a session id context OpenSSL would not
  // resume it with client certificates anyway); each ticket costs the
  // handshake a copy of the session and its encryption.
  SSL_CTX_set_num_tickets(native, 0);
  // TLS 1.2 sessions are not resumed either: no cache to fill.
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  // The application traffic secrets, for connections whose records the relay
  // then protects itself once the handshake is over (tls_socket::take_over_records).
  SSL_CTX_set_keylog_callback(native, tls_socket::keep_traffic_secrets);
  return {};
}

}  // namespace tlsrelay::net
