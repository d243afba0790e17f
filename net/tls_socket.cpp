#include "net/tls_socket.hpp"

#include <sys/socket.h>

#include <cerrno>

#include <array>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>

namespace tlsrelay::net {

namespace asio = boost::asio;

namespace {

// Where SSL_read (or a record opened here) puts what it decrypted before the
// handler sees it: one per thread, so no connection keeps a read buffer while
// it waits. A TLS record carries at most 16 KiB of plaintext, and opening one
// needs room for its whole ciphertext.
char* scratch(std::size_t& size) {
  thread_local std::array<char, tls13::max_ciphertext> buffer;
  size = buffer.size();
  return buffer.data();
}

// What one recv() of records_ mode takes in before it is opened: one per thread.
char* receive_buffer(std::size_t& size) {
  thread_local std::array<char, tls13::max_record> buffer;
  size = buffer.size();
  return buffer.data();
}

// Gives a string's storage back (clear() keeps it).
void release(std::string& s) { std::string().swap(s); }

// Where an SSL of ours points back to its tls_socket: an ex_data slot of its
// own, not the app data (slot 0), which an asio::ssl::stream on the same
// context would fill with its verify callback.
int owner_slot() {
  static const int slot = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return slot;
}

boost::system::error_code last_errno() {
  return boost::system::error_code(errno, boost::system::system_category());
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
  SSL_set_ex_data(ssl_, owner_slot(), this);  // for keep_traffic_secrets
}

struct tls_socket::traffic_secrets {
  std::string client;
  std::string server;
  ~traffic_secrets() {
    OPENSSL_cleanse(client.data(), client.size());
    OPENSSL_cleanse(server.data(), server.size());
  }
};

tls_socket::~tls_socket() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

void tls_socket::keep_traffic_secrets(const SSL* ssl, const char* line) {
  auto* self = static_cast<tls_socket*>(SSL_get_ex_data(ssl, owner_slot()));
  if (self == nullptr || line == nullptr) return;
  auto logged = tls13::application_secret_of(line);
  if (!logged) return;
  if (!self->secrets_) self->secrets_ = std::make_unique<traffic_secrets>();
  auto& slot = logged->client ? self->secrets_->client : self->secrets_->server;
  slot.swap(logged->secret);
  OPENSSL_cleanse(logged->secret.data(), logged->secret.size());
}

bool tls_socket::take_over_records() {
  // Whatever is decided here, the secrets are not kept: a connection OpenSSL
  // goes on protecting holds no second copy of its keys.
  const auto secrets = std::move(secrets_);
  if (ssl_ == nullptr || records_ || !secrets || secrets->client.empty() ||
      secrets->server.empty())
    return false;
  // Only right after the handshake: with no tickets sent (configure_relay_tls
  // sets none) and nothing read or written yet, both directions' first
  // application record has sequence number 0. OpenSSL reads no further than
  // the client's Finished (no read-ahead), so it holds no bytes of ours.
  if (SSL_version(ssl_) != TLS1_3_VERSION || !SSL_is_init_finished(ssl_) || SSL_has_pending(ssl_))
    return false;
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_);
  if (cipher == nullptr) return false;
  const auto kind = tls13::aead_of_suite(SSL_CIPHER_get_protocol_id(cipher));
  if (!kind) return false;
  auto records = std::make_unique<tls13::server_records>(*kind, secrets->client, secrets->server);
  if (!records->ok()) return false;
  records_ = std::move(records);
  SSL_free(ssl_);  // no close_notify: only SSL_shutdown sends one
  ssl_ = nullptr;
  return true;
}

bool tls_socket::has_pending() const {
  if (records_) return !in_.empty();
  return ssl_ != nullptr && SSL_has_pending(ssl_);
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
  if (records_ && socket_.is_open()) return read_records(bytes, ec);
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
  if (records_ && socket_.is_open()) return write_records(rest, ec);
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

tls_socket::step tls_socket::read_records(std::string_view& bytes,
                                          boost::system::error_code& ec) {
  std::size_t capacity = 0;
  char* plaintext = scratch(capacity);
  for (;;) {
    if (!in_.empty()) {
      auto e = records_->read(in_, plaintext, out_);
      using kind = tls13::server_records::event::kind;
      if (e.what != kind::need_more) {
        in_.erase(0, e.consumed);
        if (in_.empty()) release(in_);
      }
      if (!out_.empty()) {
        // Our answer to a KeyUpdate: one attempt now; a write sends the rest first.
        boost::system::error_code ignored;
        flush(ignored);
      }
      switch (e.what) {
        case kind::data:
          if (e.data.empty()) continue;
          bytes = e.data;
          return step::done;
        case kind::nothing: continue;
        case kind::closed: ec = asio::error::eof; return step::failed;
        case kind::failed:
          record_error_ = std::move(e.error);
          ec = boost::system::errc::make_error_code(boost::system::errc::protocol_error);
          return step::failed;
        case kind::need_more: break;
      }
    }
    // No whole record yet: in_ holds less than one, so it stays under two.
    std::size_t room = 0;
    char* received = receive_buffer(room);
    const long n = ::recv(socket_.native_handle(), received, room, 0);
    if (n > 0) {
      in_.append(received, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) {  // the TCP stream ended without close_notify
      ec = asio::ssl::error::stream_truncated;
      return step::failed;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return step::want_read;
    ec = last_errno();
    return step::failed;
  }
}

tls_socket::step tls_socket::write_records(std::string_view& rest, boost::system::error_code& ec) {
  for (;;) {
    if (const auto s = flush(ec); s != step::done) return s;
    if (rest.empty()) return step::done;
    // At most one record sealed ahead of the socket.
    const auto chunk = rest.substr(0, tls13::max_plaintext);
    if (!records_->write(chunk, out_)) {
      ec = asio::error::no_memory;
      return step::failed;
    }
    rest.remove_prefix(chunk.size());
  }
}

tls_socket::step tls_socket::flush(boost::system::error_code& ec) {
  while (!out_.empty()) {
    const long n = ::send(socket_.native_handle(), out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out_.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return step::want_write;
    ec = n < 0 ? last_errno() : asio::error::fault;
    return step::failed;
  }
  release(out_);
  return step::done;
}

void tls_socket::shutdown_send() {
  if (records_ && socket_.is_open()) {
    // One attempt, as below.
    boost::system::error_code ignored;
    if (records_->close_notify(out_)) flush(ignored);
  }
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
