// configure_relay_tls on a keys directory written by `tlsrelay certs init`
// (cli::write_dev_pki), and on the ways such a directory can be broken: each
// error must name the file at fault, or the --keys flag.
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include <boost/asio/ssl/context.hpp>
#include <catch2/catch.hpp>

#include "cli/dev_pki.hpp"
#include "net/tls_context.hpp"

namespace {

namespace fs = std::filesystem;
namespace ssl = boost::asio::ssl;
using tlsrelay::net::configure_relay_tls;

// A fresh directory under the system temp dir, removed with its contents.
class scratch_dir {
 public:
  scratch_dir() {
    std::random_device random;
    std::ostringstream name;
    name << "tlsrelay-net-test-" << std::hex << random() << random();
    path_ = fs::temp_directory_path() / name.str();
    fs::create_directories(path_);
  }
  ~scratch_dir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A keys directory as `tlsrelay certs init DIR` writes it.
fs::path make_keys(const fs::path& dir) {
  tlsrelay::cli::dev_pki_options options;
  options.dir = dir;
  const auto error = tlsrelay::cli::write_dev_pki(options);
  INFO("write_dev_pki: " << error);
  REQUIRE(error.empty());
  return dir;
}

std::string configure(const fs::path& keys) {
  ssl::context ctx(ssl::context::tls_server);
  return configure_relay_tls(ctx, keys);
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Runs a TLS handshake between `server` (configured by configure_relay_tls)
// and a client over an in-memory BIO pair. Returns whether the server side
// completed it.
bool server_handshake_succeeds(SSL_CTX* server_ctx, SSL_CTX* client_ctx) {
  SSL* server = SSL_new(server_ctx);
  SSL* client = SSL_new(client_ctx);
  BIO* server_bio = nullptr;
  BIO* client_bio = nullptr;
  REQUIRE(BIO_new_bio_pair(&server_bio, 0, &client_bio, 0) == 1);
  SSL_set_bio(server, server_bio, server_bio);
  SSL_set_bio(client, client_bio, client_bio);
  SSL_set_accept_state(server);
  SSL_set_connect_state(client);
  bool server_done = false;
  bool failed = false;
  for (int round = 0; round < 100 && !server_done && !failed; ++round) {
    const int c = SSL_do_handshake(client);
    if (c != 1 && SSL_get_error(client, c) != SSL_ERROR_WANT_READ) failed = true;
    const int s = SSL_do_handshake(server);
    if (s == 1)
      server_done = true;
    else if (SSL_get_error(server, s) != SSL_ERROR_WANT_READ)
      failed = true;
  }
  SSL_free(client);
  SSL_free(server);
  return server_done && !failed;
}

}  // namespace

TEST_CASE("configure_relay_tls accepts the keys of `tlsrelay certs init`", "[net][tls]") {
  scratch_dir scratch;
  const auto keys = make_keys(scratch.path() / "keys");
  ssl::context ctx(ssl::context::tls_server);
  const auto error = configure_relay_tls(ctx, keys);
  INFO("error: " << error);
  REQUIRE(error.empty());

  SSL_CTX* native = ctx.native_handle();
  CHECK(SSL_CTX_get0_certificate(native) != nullptr);
  CHECK(SSL_CTX_check_private_key(native) == 1);
  CHECK(SSL_CTX_get_min_proto_version(native) == TLS1_2_VERSION);
  // Mutual TLS: a server program without a certificate is refused.
  CHECK(SSL_CTX_get_verify_mode(native) == (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT));

  // A handshake with the client certificate from the same directory works,
  // one without a client certificate does not.
  SSL_CTX* with_cert = SSL_CTX_new(TLS_client_method());
  REQUIRE(SSL_CTX_load_verify_locations(with_cert, (keys / "ca.crt.pem").c_str(), nullptr) == 1);
  REQUIRE(SSL_CTX_use_certificate_chain_file(with_cert, (keys / "client.crt.pem").c_str()) == 1);
  REQUIRE(SSL_CTX_use_PrivateKey_file(with_cert, (keys / "client.key.pem").c_str(), SSL_FILETYPE_PEM) == 1);
  SSL_CTX_set_verify(with_cert, SSL_VERIFY_PEER, nullptr);
  CHECK(server_handshake_succeeds(native, with_cert));
  SSL_CTX_free(with_cert);

  SSL_CTX* without_cert = SSL_CTX_new(TLS_client_method());
  REQUIRE(SSL_CTX_load_verify_locations(without_cert, (keys / "ca.crt.pem").c_str(), nullptr) == 1);
  SSL_CTX_set_verify(without_cert, SSL_VERIFY_PEER, nullptr);
  CHECK_FALSE(server_handshake_succeeds(native, without_cert));
  SSL_CTX_free(without_cert);
}

TEST_CASE("configure_relay_tls names --keys when the keys directory is missing", "[net][tls]") {
  scratch_dir scratch;
  const auto missing = scratch.path() / "no-such-keys";
  const auto error = configure(missing);
  INFO("error: " << error);
  CHECK_FALSE(error.empty());
  CHECK(contains(error, "--keys"));
  CHECK(contains(error, missing.string()));
  CHECK_FALSE(contains(error, "\n"));
}

TEST_CASE("configure_relay_tls names a missing file", "[net][tls]") {
  const std::string file = GENERATE("ca.crt.pem", "server.crt.pem", "server.key.pem");
  INFO("removed: " << file);
  scratch_dir scratch;
  const auto keys = make_keys(scratch.path() / "keys");
  REQUIRE(fs::remove(keys / file));
  const auto error = configure(keys);
  INFO("error: " << error);
  CHECK_FALSE(error.empty());
  CHECK(contains(error, (keys / file).string()));
  CHECK_FALSE(contains(error, "\n"));
}

TEST_CASE("configure_relay_tls names server.key.pem when it is a directory", "[net][tls]") {
  scratch_dir scratch;
  const auto keys = make_keys(scratch.path() / "keys");
  REQUIRE(fs::remove(keys / "server.key.pem"));
  REQUIRE(fs::create_directory(keys / "server.key.pem"));
  const auto error = configure(keys);
  INFO("error: " << error);
  CHECK_FALSE(error.empty());
  CHECK(contains(error, (keys / "server.key.pem").string()));
  CHECK_FALSE(contains(error, "\n"));
}

TEST_CASE("configure_relay_tls names server.key.pem when the key is from another PKI", "[net][tls]") {
  scratch_dir scratch;
  const auto keys = make_keys(scratch.path() / "keys");
  const auto other = make_keys(scratch.path() / "other");
  fs::copy_file(other / "server.key.pem", keys / "server.key.pem", fs::copy_options::overwrite_existing);
  const auto error = configure(keys);
  INFO("error: " << error);
  CHECK_FALSE(error.empty());
  CHECK(contains(error, (keys / "server.key.pem").string()));
  CHECK_FALSE(contains(error, "\n"));
}

TEST_CASE("configure_relay_tls names a file that is not PEM", "[net][tls]") {
  const std::string file = GENERATE("ca.crt.pem", "server.crt.pem", "server.key.pem");
  INFO("garbled: " << file);
  scratch_dir scratch;
  const auto keys = make_keys(scratch.path() / "keys");
  std::ofstream(keys / file, std::ios::trunc) << "this is not PEM\n";
  const auto error = configure(keys);
  INFO("error: " << error);
  CHECK_FALSE(error.empty());
  CHECK(contains(error, (keys / file).string()));
  CHECK_FALSE(contains(error, "\n"));
}
