#include "net/control_connection.hpp"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <boost/asio/ssl/error.hpp>
#include <caf/send.hpp>
#include <spdlog/spdlog.h>

#include "net/tls_context.hpp"
#include "protocol/defaults.hpp"
#include "protocol/hex.hpp"

namespace tlsrelay::net {

namespace asio = boost::asio;

namespace {

// The identity of a server without a token (see grant in actors/messages.hpp).
std::string sha256_fingerprint(X509* cert) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (X509_digest(cert, EVP_sha256(), digest, &length) != 1) return {};
  return to_hex(std::string_view(reinterpret_cast<const char*>(digest), length));
}

}  // namespace

control_connection::control_connection(conn_id id, asio::ip::tcp::socket socket, SSL_CTX* tls,
                                       host_port peer, control_host& host,
                                       admission::ticket slot, admission::ticket handshake)
  : id_(id),
    stream_(std::move(socket), tls),
    peer_address_(std::move(peer)),
    peer_(format_host_port(peer_address_)),
    host_(host),
    deadline_(stream_.lowest_layer().get_executor()),
    lines_(defaults::max_control_line_bytes),
    slot_(std::move(slot)),
    handshake_(std::move(handshake)) {}

void control_connection::start() {
  // The handshake runs under its own deadline: a peer that connects and says
  // nothing must not hold a descriptor.
  deadline_.expires_after(defaults::tls_handshake_timeout);
  deadline_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->closed_) return;
    spdlog::info("control connection from {}: TLS handshake timed out", self->peer_);
    self->host_.control_handshake_failed();
    self->close();
  });
  stream_.async_handshake([self = shared_from_this()](const boost::system::error_code& ec) {
    if (self->closed_) return;
    self->deadline_.cancel();
    self->handshake_.release();
    if (ec) {
      // No line is ever written to a peer that did not
      // prove it holds a certificate from our CA.
      spdlog::info("control connection from {} refused: TLS handshake: {}",
                   self->peer_, ec.message());
      self->host_.control_handshake_failed();
      self->close();
      return;
    }
    SSL* ssl = self->stream_.native_handle();
    self->protocol_ = negotiated_protocol(ssl);
    X509* cert = SSL_get0_peer_certificate(ssl);
    self->client_certificate_ =
      cert != nullptr && SSL_get_verify_result(ssl) == X509_V_OK;
    if (self->client_certificate_)
      self->certificate_fingerprint_ = sha256_fingerprint(cert);
    const char* version = SSL_get_version(ssl);
    // All the connection needs from OpenSSL from now on is in the lines above
    // (ssl is freed here when the records become ours).
    const bool records_taken_over = self->stream_.take_over_records();
    spdlog::debug("control connection from {}: {} established, protocol "
                  "v{}, {} client certificate, records protected by {}",
                  self->peer_, version, self->protocol_,
                  self->client_certificate_ ? "with" : "without",
                  records_taken_over ? "the relay" : "OpenSSL");
    self->host_.control_ready(*self);
  });
}

void control_connection::route(caf::actor owner) {
  owner_ = std::move(owner);
  credits_ = defaults::control_line_credits;
  deliver_lines();
}

void control_connection::add_credit(std::uint32_t lines) {
  if (closed_) return;
  credits_ = std::min(credits_ + lines, defaults::control_line_credits);
  deliver_lines();
}

void control_connection::do_read() {
  reading_ = true;
  stream_.async_read_some([self = shared_from_this()](const boost::system::error_code& ec,
                                                      std::string_view bytes) {
    self->on_read(ec, bytes);
  });
}

void control_connection::on_read(const boost::system::error_code& ec, std::string_view bytes) {
  reading_ = false;
  if (closed_) return;
  if (ec) {
    if (!stream_.record_error().empty())
      spdlog::info("control connection from {}: closed: the peer sent {}", peer_,
                   stream_.record_error());
    const bool orderly = ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
    fail(orderly ? close_reason::peer_closed : close_reason::peer_error);
    return;
  }
  lines_.append(bytes);
  deliver_lines();
}

void control_connection::deliver_lines() {
  if (closed_ || reading_) return;
  if (write_side_closed_) {
    // Closing: only the peer's EOF matters now; what it sends is dropped.
    lines_ = line_splitter(defaults::max_control_line_bytes);
    do_read();
    return;
  }
  if (!owner_) return;
  while (credits_ > 0) {
    auto next = lines_.next();
    if (next.state == line_splitter::status::need_more) {
      do_read();
      return;
    }
    if (next.state == line_splitter::status::too_long) {
      spdlog::warn("control connection from {}: line longer than {} bytes, closing", peer_,
                   defaults::max_control_line_bytes);
      fail(close_reason::line_too_long);
      return;
    }
    --credits_;
    caf::anon_send(owner_, control_line{id_, std::string(next.line)});
  }
  // No credit: the peer's further bytes wait in the kernel (and its window
  // closes) until the owner has dealt with what it was given.
}

void control_connection::send(std::string bytes) {
  if (closed_ || close_after_write_) return;
  outbox_bytes_ += bytes.size();
  if (outbox_.empty()) outbox_ = std::move(bytes);
  else outbox_ += bytes;
  if (outbox_bytes_ > defaults::max_queued_control_bytes) {
    spdlog::warn("control connection from {}: {} bytes queued and not read, closing", peer_,
                 outbox_bytes_);
    fail(close_reason::write_backlog);
    return;
  }
  if (!writing_) do_write();
}

void control_connection::send_and_close(std::string bytes) {
  send(std::move(bytes));
  close_after_write_ = true;
  if (!writing_ && !closed_) do_write();
}

void control_connection::do_write() {
  if (outbox_.empty()) {
    // Nothing to write for now: an idle connection keeps no write buffer.
    std::string().swap(outbox_);
    std::string().swap(in_flight_);
    if (close_after_write_ && !write_side_closed_) {
      // close_notify and our FIN follow the last line; the peer's EOF (or the
      // deadline) then ends the connection, so the peer reads every line
      // before the close.
      write_side_closed_ = true;
      stream_.shutdown_send();
      host_.last_lines_sent();
      deadline_.expires_after(defaults::close_linger);
      deadline_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
        if (!ec) self->close();
      });
      deliver_lines();
    }
    return;
  }
  writing_ = true;
  // Every queued line in one write: one TLS record and one send(2) for a
  // burst of new_connection lines instead of one each.
  in_flight_.clear();
  in_flight_.swap(outbox_);
  stream_.async_write(in_flight_,
                      [self = shared_from_this()](const boost::system::error_code& ec,
                                                std::size_t n) { self->on_write(ec, n); });
}

void control_connection::on_write(const boost::system::error_code& ec, std::size_t n) {
  writing_ = false;
  if (closed_) return;
  if (ec) {
    fail(close_reason::peer_error);
    return;
  }
  outbox_bytes_ -= n;
  do_write();
}

void control_connection::fail(close_reason reason) {
  if (closed_) return;
  if (owner_ && !close_after_write_) caf::anon_send(owner_, connection_closed{id_, reason});
  close();
}

void control_connection::close() {
  if (closed_) return;
  auto keep_alive = shared_from_this();  // forget_control drops the host's reference
  closed_ = true;
  deadline_.cancel();
  stream_.close();
  handshake_.release();
  slot_.release();
  owner_ = nullptr;
  host_.forget_control(id_);
}

}  // namespace tlsrelay::net
