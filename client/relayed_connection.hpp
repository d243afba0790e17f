// One client of the public port, as handed to the server: the reverse
// connection that the relay joined with it, already past the protocol's
// first lines (v2: `accept <ID>`, or on a warm connection `ready ...` and
// the relay's `<ID> <CLIENT>`), as a plain socket, or as a TLS stream whose
// server handshake the library has completed (end-to-end TLS).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "client/tls.hpp"
#include "protocol/endpoint.hpp"

namespace tlsrelay::client {

class relayed_connection {
 public:
  using tcp = boost::asio::ip::tcp;

  // An empty connection (what a failed accept hands over).
  relayed_connection();
  relayed_connection(tcp::socket socket, std::optional<host_port> client, std::string id,
                     bool warm = false);
  relayed_connection(std::unique_ptr<tls_stream> stream,
                     std::shared_ptr<boost::asio::ssl::context> context,
                     std::optional<host_port> client, std::string id, std::string proxy_header,
                     bool warm = false);
  relayed_connection(relayed_connection&&) noexcept;
  relayed_connection& operator=(relayed_connection&&) noexcept;
  ~relayed_connection();

  // False for an empty connection.
  bool valid() const { return socket_.has_value() || tls_ != nullptr; }
  // True when the library did the TLS server handshake: use tls().
  bool is_tls() const { return tls_ != nullptr; }
  // The plain socket; only when !is_tls(). Bytes read from it are the
  // client's, preceded by a PROXY v2 header (passed through untouched)
  // exactly when the relay announced one (`proxy=2` in its welcome: it runs
  // with --proxy-protocol).
  tcp::socket& socket();
  // The TLS stream; only when is_tls().
  tls_stream& tls();
  // The TCP socket underneath, either way.
  tcp::socket& lowest_layer();

  // Protocol v2: the client's address as the relay saw it; v1: none.
  const std::optional<host_port>& client() const { return client_; }
  // Protocol v2: the connection id (32 hex digits); v1: "".
  const std::string& id() const { return id_; }
  // Protocol v2: true if the client was paired with a warm connection opened
  // ahead of demand (listener_options::warm_max), false if it came through
  // new_connection and a reverse connection opened for it.
  bool warm() const { return warm_; }
  // TLS only: the PROXY v2 header the relay sent ahead of the client's
  // ClientHello (it had to be read before the handshake); "" if the relay
  // did not announce one (then none is looked for: a client cannot forge it).
  const std::string& proxy_header() const { return proxy_header_; }

  // Takes the socket / stream out (the connection is then empty).
  tcp::socket release_socket();
  std::unique_ptr<tls_stream> release_tls();
  // The context the TLS stream was made from; keep it while using the stream.
  const std::shared_ptr<boost::asio::ssl::context>& tls_context() const { return context_; }

  // Closes whatever it holds; errors ignored.
  void close();

 private:
  std::optional<tcp::socket> socket_;
  std::shared_ptr<boost::asio::ssl::context> context_;  // outlives tls_
  std::unique_ptr<tls_stream> tls_;
  std::optional<host_port> client_;
  std::string id_;
  std::string proxy_header_;
  bool warm_ = false;
};

}  // namespace tlsrelay::client
