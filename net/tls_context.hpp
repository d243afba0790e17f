// TLS configuration of the relay's control port, from a keys directory in the
// original's layout (ca.crt.pem, server.crt.pem, server.key.pem).
#pragma once

#include <filesystem>
#include <string>

#include <boost/asio/ssl/context.hpp>

namespace tlsrelay::net {

// Mutual TLS, 1.2 or 1.3: the relay presents server.crt.pem and requires a
// client certificate signed by ca.crt.pem. Returns "" on success, otherwise
// one line naming the file at fault.
std::string configure_relay_tls(boost::asio::ssl::context& ctx, const std::filesystem::path& keys_dir);

}  // namespace tlsrelay::net
