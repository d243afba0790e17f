#include "tests/ops/ops.hpp"

#include <poll.h>

#include <csignal>

#include <fstream>
#include <sstream>
#include <thread>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "protocol/hex.hpp"
#include "tests/support/child_process.hpp"

namespace tlsrelay::test {

std::size_t occurrences(const std::string& text, const std::string& needle) {
  std::size_t count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
    ++count;
  return count;
}

std::string last_line_with(const std::string& text, const std::string& needle) {
  std::istringstream lines(text);
  std::string found;
  for (std::string line; std::getline(lines, line);)
    if (line.find(needle) != std::string::npos) found = line;
  return found;
}

void replace_file(const std::filesystem::path& path, const std::string& text) {
  const auto tmp = path.string() + ".new";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw io_error("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

std::string reload(relay_process& relay, millis timeout) {
  const auto outcomes = [&relay] {
    const auto log = relay.stderr_text();
    return occurrences(log, "reloaded") + occurrences(log, "reload refused");
  };
  const auto before = outcomes();
  relay.signal(SIGHUP);
  const auto deadline = steady::now() + timeout;
  // The relay's log is the event awaited; it is polled because a child's
  // output has no other notification.
  while (outcomes() == before) {
    if (steady::now() > deadline)
      throw io_error("no reload outcome in the relay's log within " +
                     std::to_string(timeout.count()) + " ms after SIGHUP; log: " +
                     printable(relay.stderr_text(), 3000));
    std::this_thread::sleep_for(10ms);
  }
  std::istringstream lines(relay.stderr_text());
  std::string outcome;
  for (std::string line; std::getline(lines, line);)
    if (line.find("reloaded") != std::string::npos || line.find("reload refused") != std::string::npos)
      outcome = line;
  return outcome;
}

std::string presented_certificate_sha256(std::uint16_t port, millis timeout) {
  ignore_sigpipe();
  auto conn = tcp_conn::connect(port, timeout);
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        &SSL_CTX_free);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), &SSL_free);
  SSL_set_fd(ssl.get(), conn.fd());  // non-blocking: poll for what the handshake wants
  const auto deadline = steady::now() + timeout;
  for (;;) {
    const int done = SSL_connect(ssl.get());
    if (done == 1) break;
    const int why = SSL_get_error(ssl.get(), done);
    short wanted = 0;
    if (why == SSL_ERROR_WANT_READ) wanted = POLLIN;
    else if (why == SSL_ERROR_WANT_WRITE) wanted = POLLOUT;
    else {
      ERR_clear_error();
      throw io_error("TLS handshake with 127.0.0.1:" + std::to_string(port) + " failed");
    }
    if (wait_fd(conn.fd(), wanted, deadline) == 0)
      throw io_error("TLS handshake with 127.0.0.1:" + std::to_string(port) + " timed out");
  }
  X509* cert = SSL_get0_peer_certificate(ssl.get());
  if (cert == nullptr) throw io_error("the relay presented no certificate");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (X509_digest(cert, EVP_sha256(), digest, &length) != 1) throw io_error("X509_digest failed");
  return to_hex(std::string_view(reinterpret_cast<const char*>(digest), length));
}

command_result run_tlsrelay(std::vector<std::string> args, millis timeout) {
  child_process process(tlsrelay_binary(), std::move(args));
  command_result out;
  out.exit_code = process.wait_exit(timeout);
  out.stdout_text = process.stdout_text();
  out.stderr_text = process.stderr_text();
  return out;
}

std::vector<std::string> error_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("tlsrelay: error:", 0) == 0) lines.push_back(line);
  return lines;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error("cannot read " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace tlsrelay::test
