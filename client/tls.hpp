// TLS set-up shared by the listener and the CLI: contexts toward the relay
// (and toward any TLS service, for `tlsrelay connect`), the end-to-end
// server context, peer-name checks, readable failure reasons, and sending
// close_notify as a half-close.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/system/error_code.hpp>
#include <openssl/ssl.h>

#include "client/options.hpp"

namespace tlsrelay::client {

using tls_stream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;

// A TLS client context, TLS 1.2 or newer: the peer is verified against the
// CA file (or the system store) unless `insecure`; the client certificate
// and key are loaded when given; `alpn` (e.g. "tlsrelay/2") is offered when
// non-empty. Null and `error` set (one line naming the file) on failure.
std::shared_ptr<boost::asio::ssl::context> make_client_context(const relay_tls_options& options,
                                                               const std::string& alpn,
                                                               std::string& error);

// A TLS server context presenting cert_file/key_file (end-to-end TLS).
std::shared_ptr<boost::asio::ssl::context> make_server_context(
  const end_to_end_tls_options& options, std::string& error);

// Before a client handshake: SNI (names only) and, unless `insecure`, the
// check that the peer's certificate carries `name` (DNS name or IP address).
// "" on success.
std::string set_peer_name(SSL* ssl, const std::string& name, bool insecure);

// The protocol chosen by ALPN, "" if none.
std::string selected_alpn(SSL* ssl);

// A readable reason for a failed handshake or TLS read: the certificate
// verification result if that failed, else OpenSSL's reason or the system error.
std::string describe_tls_error(const boost::system::error_code& ec, SSL* ssl);

// True if `ec` is a TLS alert from the peer that refuses our certificate
// (bad, unknown CA, expired, certificate required, access denied...).
bool is_certificate_rejection(const boost::system::error_code& ec);
// True if `ec` is any TLS-layer failure (as opposed to a socket error).
bool is_tls_error(const boost::system::error_code& ec);

// Sends close_notify and nothing else: the TLS equivalent of
// shutdown(SHUT_WR). Unlike ssl::stream::async_shutdown it does not then wait
// for the peer's close_notify, so reading may go on (and no received
// application data is discarded). Must not overlap another write on `stream`.
template <class Handler>
void async_send_close_notify(tls_stream& stream, Handler&& handler) {
  SSL* ssl = stream.native_handle();
  const int before = SSL_get_shutdown(ssl);
  // With "received" set, SSL_shutdown completes as soon as close_notify is
  // queued; async_shutdown's engine step runs synchronously in the initiating
  // call, so the flag can be restored right after it.
  SSL_set_shutdown(ssl, before | SSL_RECEIVED_SHUTDOWN);
  stream.async_shutdown(std::forward<Handler>(handler));
  SSL_set_shutdown(ssl, (before & SSL_RECEIVED_SHUTDOWN) | SSL_SENT_SHUTDOWN);
}

// True if `ec` ends a TLS read the way a TCP EOF ends a plain one: the
// peer's close_notify, or the peer closing TCP without it (truncation).
bool is_tls_eof(const boost::system::error_code& ec);

}  // namespace tlsrelay::client
