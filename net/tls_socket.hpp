// The server end of TLS on an accepted TCP socket, with OpenSSL driven
// directly on the socket's descriptor: Asio only says when the descriptor is
// readable or writable, SSL_read/SSL_write/SSL_do_handshake do the I/O.
//
// Why not boost::asio::ssl::stream: it keeps two 17 KiB record buffers and a
// BIO pair (two more 17 KiB buffers once used) for every connection for as
// long as it lives; an idle control connection needs none of them. Here
// OpenSSL reads and writes the socket itself with SSL_MODE_RELEASE_BUFFERS,
// so a connection that is not moving bytes holds no record buffer, and bytes
// read are handed to the caller from one scratch buffer per thread instead
// of a buffer per connection.
//
// After a TLS 1.3 handshake the owner may go further (take_over_records):
// the SSL is freed and the records are protected by protocol/tls13_records
// with the traffic secrets OpenSSL exported during the handshake, so an idle
// connection holds ~200 bytes of TLS state instead of ~20 KB.
//
// One operation of each kind at a time (a handshake, then at most one read
// and one write in flight), all on one io thread. Completion handlers are
// never called from inside the function that starts the operation. The
// caller keeps the tls_socket alive until its handlers have run (they
// capture the owner's shared_ptr).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <openssl/ssl.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>

#include "protocol/tls13_records.hpp"

namespace tlsrelay::net {

class tls_socket {
public:
  using tcp = boost::asio::ip::tcp;

  // Server side, configured by `ctx` (see configure_relay_tls). ok() is false
  // when OpenSSL could not make the session (out of memory).
  tls_socket(tcp::socket socket, SSL_CTX* ctx);
  ~tls_socket();
  tls_socket(const tls_socket&) = delete;
  tls_socket& operator=(const tls_socket&) = delete;

  bool ok() const { return ssl_ != nullptr || records_ != nullptr; }
  // Null once take_over_records() succeeded.
  SSL* native_handle() const { return ssl_; }
  tcp::socket& lowest_layer() { return socket_; }

  // The key-log callback of every SSL_CTX whose connections may be taken
  // over (configure_relay_tls): keeps the two application traffic secrets of
  // the tls_socket that owns the SSL.
  static void keep_traffic_secrets(const SSL* ssl, const char* line);

  // Right after a successful handshake, before any read or write: frees
  // OpenSSL's state and protects records here from now on. False (OpenSSL
  // keeps the connection) for TLS 1.2, a suite other than AES-GCM or
  // ChaCha20-Poly1305, or secrets not exported. Either way the exported
  // secrets are dropped.
  bool take_over_records();
  // Why the last read failed on a record we refused (a bad tag, an alert),
  // for logs; empty otherwise.
  const std::string& record_error() const { return record_error_; }

  // handler(error_code) once the handshake is done or failed.
  template <class Handler>
  void async_handshake(Handler&& handler);

  // handler(error_code, std::string_view bytes): some bytes (at least one),
  // valid only during the call; asio::error::eof after the peer's
  // close_notify, asio::ssl::error::stream_truncated when the TCP stream
  // ended without one.
  template <class Handler>
  void async_read_some(Handler&& handler);

  // Writes all of `bytes` (which must stay valid until the handler runs);
  // handler(error_code, bytes written).
  template <class Handler>
  void async_write(std::string_view bytes, Handler&& handler);

  // No more bytes from us: close_notify if it can be sent without waiting,
  // then the TCP FIN. Reading goes on (the peer's EOF).
  void shutdown_send();
  void close();

private:
  enum class step { done, want_read, want_write, failed };

  // One non-blocking attempt each; `ec` is set when failed.
  step handshake_step(boost::system::error_code& ec);
  step read_step(std::string_view& bytes, boost::system::error_code& ec);
  step write_step(std::string_view& rest, boost::system::error_code& ec);
  // Why the last call failed, and clears the thread's OpenSSL error queue.
  boost::system::error_code failure(int ssl_result);
  // The same steps once records are ours (take_over_records).
  step read_records(std::string_view& bytes, boost::system::error_code& ec);
  step write_records(std::string_view& rest, boost::system::error_code& ec);
  // Sends what out_ holds; done when it is empty.
  step flush(boost::system::error_code& ec);
  bool has_pending() const;

  template <class Retry>
  void wait(step what, Retry&& retry);

  template <class Handler>
  void continue_handshake(Handler&& handler);
  template <class Handler>
  void continue_read(Handler&& handler);
  template <class Handler>
  void continue_write(std::string_view rest, std::size_t total, Handler&& handler);

  struct traffic_secrets;  // during the handshake only

  tcp::socket socket_;
  SSL* ssl_ = nullptr;
  std::unique_ptr<traffic_secrets> secrets_;
  std::unique_ptr<tls13::server_records> records_;
  // With records_: bytes received and not yet opened (a partial record, or
  // records after the one just handed out), and sealed records not yet sent.
  // Both are empty, without storage, while the connection is idle.
  std::string in_;
  std::string out_;
  std::string record_error_;
};

// -- implementation ---------------------------------------------------------

template <class Retry>
void tls_socket::wait(step what, Retry&& retry) {
  socket_.async_wait(what == step::want_read ? tcp::socket::wait_read : tcp::socket::wait_write,
                     std::forward<Retry>(retry));
}

template <class Handler>
void tls_socket::async_handshake(Handler&& handler) {
  // The client speaks first: wait for its bytes rather than try at once.
  wait(step::want_read, [this, handler = std::forward<Handler>(handler)](
                          const boost::system::error_code& ec) mutable {
    if (ec) return handler(ec);
    continue_handshake(std::move(handler));
  });
}

template <class Handler>
void tls_socket::continue_handshake(Handler&& handler) {
  boost::system::error_code ec;
  const auto s = handshake_step(ec);
  if (s == step::done || s == step::failed) return handler(ec);
  wait(s, [this, handler = std::forward<Handler>(handler)](
            const boost::system::error_code& ec) mutable {
    if (ec) return handler(ec);
    continue_handshake(std::move(handler));
  });
}

template <class Handler>
void tls_socket::async_read_some(Handler&& handler) {
  auto attempt = [this, handler = std::forward<Handler>(handler)](
                   const boost::system::error_code& ec) mutable {
    if (ec) return handler(ec, std::string_view());
    continue_read(std::move(handler));
  };
  // Bytes OpenSSL already holds (a record read with an earlier one) are
  // not announced by the socket: read them first.
  if (has_pending())
    boost::asio::post(socket_.get_executor(),
                      [attempt = std::move(attempt)]() mutable { attempt({}); });
  else
    wait(step::want_read, std::move(attempt));
}

template <class Handler>
void tls_socket::continue_read(Handler&& handler) {
  std::string_view bytes;
  boost::system::error_code ec;
  const auto s = read_step(bytes, ec);
  if (s == step::done || s == step::failed) return handler(ec, bytes);
  wait(s, [this, handler = std::forward<Handler>(handler)](
            const boost::system::error_code& ec) mutable {
    if (ec) return handler(ec, std::string_view());
    continue_read(std::move(handler));
  });
}

template <class Handler>
void tls_socket::async_write(std::string_view bytes, Handler&& handler) {
  boost::asio::post(socket_.get_executor(),
                    [this, bytes, handler = std::forward<Handler>(handler)]() mutable {
                      continue_write(bytes, bytes.size(), std::move(handler));
                    });
}

template <class Handler>
void tls_socket::continue_write(std::string_view rest, std::size_t total, Handler&& handler) {
  boost::system::error_code ec;
  const auto s = write_step(rest, ec);
  if (s == step::done || s == step::failed) return handler(ec, total - rest.size());
  wait(s, [this, rest, total, handler = std::forward<Handler>(handler)](
            const boost::system::error_code& ec) mutable {
    if (ec) return handler(ec, total - rest.size());
    continue_write(rest, total, std::move(handler));
  });
}

}  // namespace tlsrelay::net
