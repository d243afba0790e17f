#include "client/tls.hpp"

#include <fstream>

#include <boost/asio/error.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>
#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace tlsrelay::client {
namespace ssl = boost::asio::ssl;
namespace {

std::string openssl_reason() {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

// OpenSSL's message for a missing file is cryptic; say it plainly.
std::string check_readable(const std::filesystem::path& file, const char* what) {
  std::error_code ec;
  const auto status = std::filesystem::status(file, ec);
  if (!std::filesystem::exists(status)) return std::string(what) + " " + file.string() + ": no such file";
  if (std::filesystem::is_directory(status))
    return std::string(what) + " " + file.string() + ": is a directory, not a PEM file";
  std::ifstream in(file);
  if (!in) return std::string(what) + " " + file.string() + ": cannot be read";
  return {};
}

void harden(SSL_CTX* native) {
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
}

std::string load_identity(SSL_CTX* native, const std::filesystem::path& cert,
                          const std::filesystem::path& key) {
  if (auto err = check_readable(cert, "certificate"); !err.empty()) return err;
  if (auto err = check_readable(key, "key"); !err.empty()) return err;
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(native, cert.c_str()) != 1)
    return "certificate " + cert.string() + ": not a usable PEM certificate (" + openssl_reason() + ")";
  if (SSL_CTX_use_PrivateKey_file(native, key.c_str(), SSL_FILETYPE_PEM) != 1)
    return "key " + key.string() + ": not a usable PEM private key (" + openssl_reason() + ")";
  if (SSL_CTX_check_private_key(native) != 1)
    return "key " + key.string() + ": does not match the certificate " + cert.string();
  return {};
}

// TLS alerts (RFC 8446 §6.2) by which a peer says it refuses our certificate.
bool is_certificate_alert(int alert) {
  switch (alert) {
    case 42:   // bad_certificate
    case 43:   // unsupported_certificate
    case 44:   // certificate_revoked
    case 45:   // certificate_expired
    case 46:   // certificate_unknown
    case 48:   // unknown_ca
    case 49:   // access_denied
    case 116:  // certificate_required
      return true;
    default:
      return false;
  }
}

}  // namespace

std::shared_ptr<ssl::context> make_client_context(const relay_tls_options& options,
                                                  const std::string& alpn, std::string& error) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX* native = ctx->native_handle();
  harden(native);
  ERR_clear_error();
  if (options.insecure) {
    SSL_CTX_set_verify(native, SSL_VERIFY_NONE, nullptr);
  } else {
    if (options.ca_file) {
      if (auto err = check_readable(*options.ca_file, "CA file"); !err.empty()) {
        error = err;
        return nullptr;
      }
      if (SSL_CTX_load_verify_locations(native, options.ca_file->c_str(), nullptr) != 1) {
        error = "CA file " + options.ca_file->string() + ": not a usable PEM CA certificate (" +
                openssl_reason() + ")";
        return nullptr;
      }
    } else if (SSL_CTX_set_default_verify_paths(native) != 1) {
      error = "the system's trusted CA certificates cannot be loaded (" + openssl_reason() +
              "); give a CA file";
      return nullptr;
    }
    SSL_CTX_set_verify(native, SSL_VERIFY_PEER, nullptr);
  }
  if (options.cert_file.has_value() != options.key_file.has_value()) {
    error = options.cert_file ? "a client certificate needs its key" : "a client key needs its certificate";
    return nullptr;
  }
  if (options.cert_file) {
    if (auto err = load_identity(native, *options.cert_file, *options.key_file); !err.empty()) {
      error = err;
      return nullptr;
    }
  }
  if (!alpn.empty()) {
    std::string wire(1, static_cast<char>(alpn.size()));
    wire += alpn;
    // Unusually, 0 means success here.
    if (SSL_CTX_set_alpn_protos(native, reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned>(wire.size())) != 0) {
      error = "cannot offer ALPN " + alpn;
      return nullptr;
    }
  }
  return ctx;
}

std::shared_ptr<ssl::context> make_server_context(const end_to_end_tls_options& options,
                                                  std::string& error) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  harden(native);
  if (auto err = load_identity(native, options.cert_file, options.key_file); !err.empty()) {
    error = err;
    return nullptr;
  }
  // Session tickets would be useless across our short-lived contexts.
  SSL_CTX_set_num_tickets(native, 0);
  return ctx;
}

std::string set_peer_name(SSL* ssl, const std::string& name, bool insecure) {
  if (name.empty()) return {};
  boost::system::error_code not_ip;
  const auto address = boost::asio::ip::make_address(name, not_ip);
  if (not_ip) {
    // SNI only for names (RFC 6066 forbids addresses).
    if (SSL_set_tlsext_host_name(ssl, name.c_str()) != 1) return "bad server name " + name;
  }
  if (insecure) return {};
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (!not_ip) {
    if (X509_VERIFY_PARAM_set1_ip_asc(param, address.to_string().c_str()) != 1)
      return "bad server address " + name;
  } else {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size()) != 1)
      return "bad server name " + name;
  }
  return {};
}

std::string selected_alpn(SSL* ssl) {
  const unsigned char* data = nullptr;
  unsigned int size = 0;
  SSL_get0_alpn_selected(ssl, &data, &size);
  return data ? std::string(reinterpret_cast<const char*>(data), size) : std::string();
}

bool is_tls_error(const boost::system::error_code& ec) {
  return ec.category() == boost::asio::error::get_ssl_category() ||
         ec.category() == ssl::error::get_stream_category();
}

bool is_certificate_rejection(const boost::system::error_code& ec) {
  if (ec.category() != boost::asio::error::get_ssl_category()) return false;
  const int reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
  return reason > SSL_AD_REASON_OFFSET && is_certificate_alert(reason - SSL_AD_REASON_OFFSET);
}

bool is_tls_eof(const boost::system::error_code& ec) {
  return ec == boost::asio::error::eof || ec == ssl::error::stream_truncated;
}

std::string describe_tls_error(const boost::system::error_code& ec, SSL* ssl) {
  if (ssl && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) != 0) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK)
      return std::string("certificate verification failed: ") +
             X509_verify_cert_error_string(verify);
  }
  if (ec == ssl::error::stream_truncated) return "the peer closed the connection during TLS";
  if (ec.category() == boost::asio::error::get_ssl_category()) {
    const int reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
    std::string text = ec.message();
    if (const char* r = ERR_reason_error_string(static_cast<unsigned long>(ec.value()))) text = r;
    if (reason > SSL_AD_REASON_OFFSET) text = "the peer sent TLS alert: " + text;
    return text;
  }
  return ec.message();
}

}  // namespace tlsrelay::client
