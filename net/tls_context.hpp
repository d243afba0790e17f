// TLS configuration of the relay's control port, from a keys directory in the
// original's layout (ca.crt.pem, server.crt.pem, server.key.pem).
#pragma once

#include <filesystem>
#include <string>

#include <boost/asio/ssl/context.hpp>

namespace tlsrelay::net {

// Whether the control port asks peers for a client certificate.
enum class client_auth {
  required,  // every control connection presents one signed by ca.crt.pem
  optional,  // asked for and verified if presented (v1 still needs one; v2 may use a token)
  none,      // not asked for
};

// TLS 1.2 or 1.3: the relay presents server.crt.pem and verifies client
// certificates against ca.crt.pem as `mode` says. ALPN "tlsrelay/2" is
// selected when a peer offers it (protocol v2); a peer offering nothing we
// know gets no ALPN (protocol v1). Returns "" on success, otherwise one line
// naming the file at fault.
std::string configure_relay_tls(boost::asio::ssl::context& ctx,
                                const std::filesystem::path& keys_dir,
                                client_auth mode = client_auth::required);

// The protocol a completed handshake chose: 2 for ALPN tlsrelay/2, else 1.
unsigned negotiated_protocol(SSL* ssl);

}  // namespace tlsrelay::net
