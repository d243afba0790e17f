#include "client/relayed_connection.hpp"

#include <stdexcept>

namespace tlsrelay::client {

relayed_connection::relayed_connection() = default;

relayed_connection::relayed_connection(tcp::socket socket, std::optional<host_port> client,
                                       std::string id, bool warm)
    : socket_(std::move(socket)), client_(std::move(client)), id_(std::move(id)), warm_(warm) {}

relayed_connection::relayed_connection(std::unique_ptr<tls_stream> stream,
                                       std::shared_ptr<boost::asio::ssl::context> context,
                                       std::optional<host_port> client, std::string id,
                                       std::string proxy_header, bool warm)
    : context_(std::move(context)),
      tls_(std::move(stream)),
      client_(std::move(client)),
      id_(std::move(id)),
      proxy_header_(std::move(proxy_header)),
      warm_(warm) {}

relayed_connection::relayed_connection(relayed_connection&&) noexcept = default;
relayed_connection& relayed_connection::operator=(relayed_connection&&) noexcept = default;
relayed_connection::~relayed_connection() = default;

relayed_connection::tcp::socket& relayed_connection::socket() {
  if (!socket_) throw std::logic_error("relayed_connection::socket(): not a plain connection");
  return *socket_;
}

tls_stream& relayed_connection::tls() {
  if (!tls_) throw std::logic_error("relayed_connection::tls(): not a TLS connection");
  return *tls_;
}

relayed_connection::tcp::socket& relayed_connection::lowest_layer() {
  if (tls_) return tls_->next_layer();
  return socket();
}

relayed_connection::tcp::socket relayed_connection::release_socket() {
  auto s = std::move(socket());
  socket_.reset();
  return s;
}

std::unique_ptr<tls_stream> relayed_connection::release_tls() {
  if (!tls_) throw std::logic_error("relayed_connection::release_tls(): not a TLS connection");
  return std::move(tls_);
}

void relayed_connection::close() {
  boost::system::error_code ignored;
  if (tls_) tls_->next_layer().close(ignored);
  if (socket_) socket_->close(ignored);
}

}  // namespace tlsrelay::client
