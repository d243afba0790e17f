#include "net/tls_socket.hpp"

#include <cerrno>

#include <array>

#include <openssl/err.h>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>

namespace tlsrelay::net {

namespace asio = boost::asio;

namespace {

// Where SSL_read puts what it decrypted before the handler sees it: one per
// thread, so no connection keeps a read buffer while it waits. A TLS record
// carries at most 16 KiB of plaintext.
char* scratch(std::size_t& size) {
  thread_local std::array<char, 16384> buffer;
  size = buffer.size();
  return buffer.data();
}

}  // namespace

tls_socket::tls_socket(tcp::socket socket, SSL_CTX* ctx) : socket_(std::move(socket)) {
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);
  if (ec) return;
  ssl_ = SSL_new(ctx);
  if (ssl_ == nullptr) return;
  // RELEASE_BUFFERS: the record buffers are freed whenever they are empty,
  // i.e. between the bursts of an idle connection. The moving-buffer and
  // partial-write modes let a write resume with what is left of it.
  SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                       SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // The socket BIO does not own the descriptor (BIO_NOCLOSE): socket_ does.
  if (SSL_set_fd(ssl_, static_cast<int>(socket_.native_handle())) != 1) {
    SSL_free(ssl_);
    ssl_ = nullptr;
    return;
  }
  SSL_set_accept_state(ssl_);
}

tls_socket::~tls_socket() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

boost::system::error_code tls_socket::failure(int ssl_result) {
  const int kind = SSL_get_error(ssl_, ssl_result);
  const int saved_errno = errno;
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  switch (kind) {
    case SSL_ERROR_ZERO_RETURN: return asio::error::eof;  // close_notify
    case SSL_ERROR_SYSCALL:
      // No OpenSSL reason: the socket failed, or (errno 0) the TCP stream ended.
      if (code == 0 && saved_errno != 0)
        return boost::system::error_code(saved_errno, boost::system::system_category());
      if (code == 0) return asio::ssl::error::stream_truncated;
      break;
    case SSL_ERROR_SSL:
      // OpenSSL 3 reports a TCP EOF without close_notify this way.
      if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        return asio::ssl::error::stream_truncated;
      break;
    default: break;
  }
  if (code != 0)
    return boost::system::error_code(static_cast<int>(code), asio::error::get_ssl_category());
  return asio::error::fault;
}

tls_socket::step tls_socket::handshake_step(boost::system::error_code& ec) {
  if (ssl_ == nullptr) {
    ec = asio::error::no_memory;
    return step::failed;
  }
  if (!socket_.is_open()) {
    // Closed while a readiness wait was already complete: the descriptor
    // number may belong to another socket by now.
    ec = asio::error::operation_aborted;
    return step::failed;
  }
  ERR_clear_error();
  errno = 0;
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) return step::done;
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_READ: return step::want_read;
    case SSL_ERROR_WANT_WRITE: return step::want_write;
    default: ec = failure(r); return step::failed;
  }
}

tls_socket::step tls_socket::read_step(std::string_view& bytes, boost::system::error_code& ec) {
  if (ssl_ == nullptr || !socket_.is_open()) {
    ec = asio::error::operation_aborted;
    return step::failed;
  }
  std::size_t capacity = 0;
  char* buffer = scratch(capacity);
  std::size_t n = 0;
  ERR_clear_error();
  errno = 0;
  const int r = SSL_read_ex(ssl_, buffer, capacity, &n);
  if (r == 1) {
    bytes = std::string_view(buffer, n);
    return step::done;
  }
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_READ: return step::want_read;
    // TLS 1.3 lets a read have to write (a key update's answer).
    case SSL_ERROR_WANT_WRITE: return step::want_write;
    default: ec = failure(r); return step::failed;
  }
}

tls_socket::step tls_socket::write_step(std::string_view& rest, boost::system::error_code& ec) {
  if (ssl_ == nullptr || !socket_.is_open()) {
    ec = asio::error::operation_aborted;
    return step::failed;
  }
  while (!rest.empty()) {
    std::size_t n = 0;
    ERR_clear_error();
    errno = 0;
    const int r = SSL_write_ex(ssl_, rest.data(), rest.size(), &n);
    if (r == 1) {
      rest.remove_prefix(n);
      continue;
    }
    switch (SSL_get_error(ssl_, r)) {
      case SSL_ERROR_WANT_READ: return step::want_read;
      case SSL_ERROR_WANT_WRITE: return step::want_write;
      default: ec = failure(r); return step::failed;
    }
  }
  return step::done;
}

void tls_socket::shutdown_send() {
  if (ssl_ != nullptr && socket_.is_open() && SSL_is_init_finished(ssl_)) {
    // One attempt: close_notify is one small record, and a peer that does not
    // read it still gets the FIN below.
    ERR_clear_error();
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
}

void tls_socket::close() {
  boost::system::error_code ignored;
  socket_.close(ignored);
}

}  // namespace tlsrelay::net
