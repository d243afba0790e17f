#include "tests/support/tls_client.hpp"

#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace tlsrelay::test {
namespace {

// Drains OpenSSL's error queue into one readable string.
std::string queued_openssl_errors() {
  std::string text;
  while (const unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    if (!text.empty()) text += "; ";
    text += buf;
  }
  return text;
}

// `saved_errno`: errno right after the failed SSL call (SSL_get_error may change it).
std::string describe_ssl_error(int ssl_error, int saved_errno) {
  switch (ssl_error) {
    case SSL_ERROR_ZERO_RETURN: return "closed by the relay (close_notify)";
    case SSL_ERROR_SYSCALL: {
      const std::string queued = queued_openssl_errors();
      if (!queued.empty()) return "TLS error: " + queued;
      return saved_errno == 0 ? "closed by the relay (EOF without close_notify)"
                              : std::string("connection failed: ") + std::strerror(saved_errno);
    }
    case SSL_ERROR_SSL: return "TLS error: " + queued_openssl_errors();
    default: return "TLS error code " + std::to_string(ssl_error);
  }
}

// One SSL call: its result and, if it did not succeed, SSL_get_error and the
// errno it left (SSL_get_error may change errno).
struct ssl_outcome {
  int result = 0;
  int error = SSL_ERROR_NONE;
  int saved_errno = 0;
  bool wants_io() const { return error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE; }
};

template <class Call>
ssl_outcome call_ssl(SSL* ssl, Call call) {
  ERR_clear_error();
  errno = 0;
  ssl_outcome out;
  out.result = call();
  if (out.result > 0) return out;
  out.saved_errno = errno;
  out.error = SSL_get_error(ssl, out.result);
  return out;
}

// Waits until the socket can do what OpenSSL asked for; false on the deadline.
bool wait_for(int fd, const ssl_outcome& o, steady::time_point deadline) {
  return wait_fd(fd, o.error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline) != 0;
}

}  // namespace

tls_identity tls_identity::from_keys_dir(const std::filesystem::path& dir) {
  return {dir / "ca.crt.pem", dir / "client.crt.pem", dir / "client.key.pem"};
}

tls_client_conn::tls_client_conn(const std::string& host, std::uint16_t port,
                                 const tls_identity& identity, std::string_view alpn,
                                 millis timeout)
    : peer_(host_port_text(host, port)) {
  ignore_sigpipe();
  ctx_.reset(SSL_CTX_new(TLS_client_method()));
  if (!ctx_) throw io_error("SSL_CTX_new: " + queued_openssl_errors());
  SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_2_VERSION);
  // The relay is trusted because the CA signed it, as in the original.
  SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_load_verify_locations(ctx_.get(), identity.ca_file.c_str(), nullptr) != 1)
    throw io_error("cannot load CA " + identity.ca_file.string() + ": " + queued_openssl_errors());
  if (identity.cert_file) {
    if (SSL_CTX_use_certificate_chain_file(ctx_.get(), identity.cert_file->c_str()) != 1)
      throw io_error("cannot load " + identity.cert_file->string() + ": " +
                     queued_openssl_errors());
    const auto key = identity.key_file.value_or(*identity.cert_file);
    if (SSL_CTX_use_PrivateKey_file(ctx_.get(), key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx_.get()) != 1)
      throw io_error("cannot load key " + key.string() + ": " + queued_openssl_errors());
  }
  if (!alpn.empty()) {
    // Wire format: one length byte, then the protocol name.
    std::string protos(1, static_cast<char>(alpn.size()));
    protos += alpn;
    if (SSL_CTX_set_alpn_protos(ctx_.get(), reinterpret_cast<const unsigned char*>(protos.data()),
                                static_cast<unsigned>(protos.size())) != 0)
      throw io_error("SSL_CTX_set_alpn_protos: " + queued_openssl_errors());
  }
  fd_ = tcp_connect_to(host, port, timeout).release();
  ssl_.reset(SSL_new(ctx_.get()));
  if (!ssl_ || SSL_set_fd(ssl_.get(), fd_.get()) != 1)
    throw io_error("SSL_new: " + queued_openssl_errors());
}

tls_client_conn::~tls_client_conn() { close(); }

void tls_client_conn::note_closed(const std::string& reason) {
  closed_ = true;
  close_reason_ = reason;
}

bool tls_client_conn::handshake(millis timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    ssl_outcome o;
    {
      std::lock_guard lock(mutex_);
      if (closed_) return false;
      o = call_ssl(ssl_.get(), [&] { return SSL_connect(ssl_.get()); });
      if (o.result == 1) return true;
      if (!o.wants_io()) {
        note_closed("TLS handshake failed: " + describe_ssl_error(o.error, o.saved_errno));
        return false;
      }
    }
    if (!wait_for(fd_.get(), o, deadline))
      throw io_error("TLS handshake with the control port " + peer_ + " did not finish within " +
                     std::to_string(timeout.count()) + " ms");
  }
}

std::string tls_client_conn::alpn_selected() const {
  std::lock_guard lock(mutex_);
  const unsigned char* proto = nullptr;
  unsigned length = 0;
  SSL_get0_alpn_selected(ssl_.get(), &proto, &length);
  return proto ? std::string(reinterpret_cast<const char*>(proto), length) : std::string();
}

bool tls_client_conn::fill(steady::time_point deadline, millis timeout, const char* waiting_for) {
  char chunk[16 * 1024];
  for (;;) {
    ssl_outcome o;
    {
      std::lock_guard lock(mutex_);
      if (closed_) return false;
      o = call_ssl(ssl_.get(), [&] { return SSL_read(ssl_.get(), chunk, sizeof chunk); });
      if (o.result > 0) {
        buf_.append(chunk, static_cast<std::size_t>(o.result));
        return true;
      }
      if (!o.wants_io()) {
        std::string reason = describe_ssl_error(o.error, o.saved_errno);
        if (!buf_.empty())
          reason += " (after " + std::to_string(buf_.size()) +
                    " bytes not ending a line: " + printable(buf_) + ")";
        note_closed(reason);
        return false;
      }
    }
    if (!wait_for(fd_.get(), o, deadline))
      throw io_error("control connection to " + peer_ + ": waiting for " + waiting_for +
                     ", nothing arrived within " + std::to_string(timeout.count()) +
                     " ms; pending bytes: " + printable(buf_));
  }
}

std::optional<std::string> tls_client_conn::read_line(millis timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    if (const auto end = buf_.find("\r\n"); end != std::string::npos) {
      std::string line = buf_.substr(0, end);
      buf_.erase(0, end + 2);
      return line;
    }
    if (!fill(deadline, timeout, "a control line")) return std::nullopt;
  }
}

std::string tls_client_conn::read_until_closed(millis timeout) {
  const auto deadline = steady::now() + timeout;
  while (fill(deadline, timeout, "the relay to close the connection")) {
  }
  std::string all = std::move(buf_);
  buf_.clear();
  return all;
}

void tls_client_conn::write(std::string_view bytes, millis timeout) {
  const auto deadline = steady::now() + timeout;
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssl_outcome o;
    {
      std::lock_guard lock(mutex_);
      if (!fd_) throw io_error("control connection to " + peer_ + ": write after close");
      o = call_ssl(ssl_.get(), [&] {
        return SSL_write(ssl_.get(), bytes.data() + done, static_cast<int>(bytes.size() - done));
      });
      if (o.result > 0) {
        done += static_cast<std::size_t>(o.result);
        continue;
      }
      if (!o.wants_io())
        throw io_error("control connection to " + peer_ + ": writing " + printable(bytes) +
                       " failed: " + describe_ssl_error(o.error, o.saved_errno));
    }
    if (!wait_for(fd_.get(), o, deadline))
      throw io_error("control connection to " + peer_ + ": writing " + printable(bytes) +
                     " did not finish within " + std::to_string(timeout.count()) + " ms");
  }
}

void tls_client_conn::close() {
  std::lock_guard lock(mutex_);
  if (fd_ && ssl_ && !closed_) {
    ERR_clear_error();
    SSL_shutdown(ssl_.get());  // non-blocking, best effort: one close_notify
    ERR_clear_error();
  }
  if (!closed_) note_closed("closed by the test");
  fd_.reset();
}

void tls_client_conn::interrupt() {
  std::lock_guard lock(mutex_);
  if (fd_) ::shutdown(fd_.get(), SHUT_RDWR);
}

bool tls_client_conn::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

std::string tls_client_conn::close_reason() const {
  std::lock_guard lock(mutex_);
  return close_reason_;
}

}  // namespace tlsrelay::test
