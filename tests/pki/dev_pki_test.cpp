// The development PKI of `tlsrelay certs init`, `certs client` and `certs node`:
// what they write, what the certificates mean to OpenSSL, and that a relay and
// its servers can actually authenticate each other with them (and nobody else
// can).
#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "cli/certs_command.hpp"
#include "cli/dev_pki.hpp"
#include "cli/openssl_ptr.hpp"
#include "protocol/hex.hpp"
#include "tests/support/child_process.hpp"
#include "tests/support/relay_process.hpp"

namespace fs = std::filesystem;
using tlsrelay::cli::dev_pki_options;
using tlsrelay::cli::write_dev_pki;

namespace {

using tlsrelay::cli::bio_ptr;
using tlsrelay::cli::openssl_ptr;
using tlsrelay::cli::pkey_ptr;
using tlsrelay::cli::x509_ptr;
using ssl_ctx_ptr = openssl_ptr<SSL_CTX, &SSL_CTX_free>;
using ssl_ptr = openssl_ptr<SSL, &SSL_free>;
using store_ctx_ptr = openssl_ptr<X509_STORE_CTX, &X509_STORE_CTX_free>;
using store_ptr = openssl_ptr<X509_STORE, &X509_STORE_free>;

const std::vector<std::string> pki_file_names{"ca.crt.pem",     "ca.key.pem",
                                              "server.crt.pem", "server.key.pem",
                                              "client.crt.pem", "client.key.pem",
                                              "cluster-ca.crt.pem", "cluster-ca.key.pem",
                                              "node.crt.pem",   "node.key.pem"};

// A fresh directory under the system temp dir, removed with everything in it.
class scratch_dir {
 public:
  scratch_dir() {
    std::random_device random;
    std::ostringstream name;
    name << "tlsrelay-pki-test-" << std::hex << random() << random();
    path_ = fs::temp_directory_path() / name.str();
    fs::create_directory(path_);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  ~scratch_dir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

void write_file(const fs::path& path, const std::string& contents) {
  std::ofstream(path, std::ios::binary) << contents;
}

std::set<std::string> directory_entries(const fs::path& dir) {
  std::set<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir))
    names.insert(entry.path().filename().string());
  return names;
}

x509_ptr load_certificate(const fs::path& path) {
  bio_ptr bio(BIO_new_file(path.c_str(), "r"));
  REQUIRE(bio);
  x509_ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  REQUIRE(cert);
  return cert;
}

pkey_ptr load_private_key(const fs::path& path) {
  bio_ptr bio(BIO_new_file(path.c_str(), "r"));
  REQUIRE(bio);
  pkey_ptr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  REQUIRE(key);
  return key;
}

// X509_V_OK, or why `cert` does not verify for `purpose` against `ca` alone.
int verify_against(X509* ca, X509* cert, int purpose) {
  store_ptr store(X509_STORE_new());
  store_ctx_ptr context(X509_STORE_CTX_new());
  REQUIRE(store);
  REQUIRE(context);
  REQUIRE(X509_STORE_add_cert(store.get(), ca) == 1);
  REQUIRE(X509_STORE_CTX_init(context.get(), store.get(), cert, nullptr) == 1);
  REQUIRE(X509_STORE_CTX_set_purpose(context.get(), purpose) == 1);
  const int verified = X509_verify_cert(context.get());
  const int error = X509_STORE_CTX_get_error(context.get());
  ERR_clear_error();
  if (verified == 1) return X509_V_OK;
  return error != X509_V_OK ? error : X509_V_ERR_UNSPECIFIED;
}

std::string common_name(X509* cert) {
  char name[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, name, sizeof name);
  return name;
}

bool extension_is_critical(X509* cert, int nid) {
  const int index = X509_get_ext_by_NID(cert, nid, -1);
  REQUIRE(index >= 0);
  return X509_EXTENSION_get_critical(X509_get_ext(cert, index)) == 1;
}

// Valid already, and for `days` from now (less the time the test took).
void check_valid_from_now_for(X509* cert, int days) {
  CHECK(X509_cmp_current_time(X509_get0_notBefore(cert)) < 0);
  int remaining_days = 0;
  int remaining_seconds = 0;
  REQUIRE(ASN1_TIME_diff(&remaining_days, &remaining_seconds, nullptr, X509_get0_notAfter(cert)) ==
          1);
  const long remaining = remaining_days * 86400L + remaining_seconds;
  CHECK(remaining > days * 86400L - 600);
  CHECK(remaining <= days * 86400L);
}

mode_t permission_bits(const fs::path& path) {
  struct stat status {};
  REQUIRE(::stat(path.c_str(), &status) == 0);
  return status.st_mode & 07777;
}

// -- TLS between the relay (TLS server) and its server program (TLS client) --

struct tls_identity {
  fs::path certificate;
  fs::path key;
  fs::path trusted_ca;
};

tls_identity relay_identity(const fs::path& pki) {
  return {pki / "server.crt.pem", pki / "server.key.pem", pki / "ca.crt.pem"};
}

tls_identity server_side_identity(const fs::path& pki) {
  return {pki / "client.crt.pem", pki / "client.key.pem", pki / "ca.crt.pem"};
}

ssl_ctx_ptr tls_context(const SSL_METHOD* method, const tls_identity& identity, int verify_mode) {
  ssl_ctx_ptr context(SSL_CTX_new(method));
  REQUIRE(context);
  REQUIRE(SSL_CTX_set_min_proto_version(context.get(), TLS1_3_VERSION) == 1);
  REQUIRE(SSL_CTX_use_certificate_chain_file(context.get(), identity.certificate.c_str()) == 1);
  REQUIRE(SSL_CTX_use_PrivateKey_file(context.get(), identity.key.c_str(), SSL_FILETYPE_PEM) ==
          1);
  REQUIRE(SSL_CTX_load_verify_locations(context.get(), identity.trusted_ca.c_str(), nullptr) ==
          1);
  SSL_CTX_set_verify(context.get(), verify_mode, nullptr);
  return context;
}

enum class progress { pending, done, failed };

progress handshake_step(SSL* ssl) {
  const int result = SSL_do_handshake(ssl);
  if (result == 1) return progress::done;
  const int error = SSL_get_error(ssl, result);
  return error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE ? progress::pending
                                                                        : progress::failed;
}

// Sends `message` from one side and reads it on the other.
bool deliver(SSL* from, SSL* to, const std::string& message) {
  if (SSL_write(from, message.data(), static_cast<int>(message.size())) !=
      static_cast<int>(message.size()))
    return false;
  char buffer[64];
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int received = SSL_read(to, buffer, sizeof buffer);
    if (received > 0) return std::string(buffer, static_cast<std::size_t>(received)) == message;
    if (SSL_get_error(to, received) != SSL_ERROR_WANT_READ) return false;
  }
  return false;
}

struct handshake_outcome {
  bool authenticated = false;  // both handshakes done and data flowed both ways
  int protocol_version = 0;
  long relay_verify_result = X509_V_OK;        // the relay's view of the server program
  long server_side_verify_result = X509_V_OK;  // the server program's view of the relay
  x509_ptr relay_peer;  // the certificate the relay received, null if none
};

// Runs a TLS handshake over an in-memory BIO pair. The server program
// expects the relay to be `relay_address` (an IP address or a DNS name).
handshake_outcome relay_handshake(const tls_identity& relay, const tls_identity& server_side,
                                  const std::string& relay_address) {
  ssl_ctx_ptr relay_context =
      tls_context(TLS_server_method(), relay, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
  ssl_ctx_ptr server_side_context = tls_context(TLS_client_method(), server_side, SSL_VERIFY_PEER);
  ssl_ptr relay_ssl(SSL_new(relay_context.get()));
  ssl_ptr server_side_ssl(SSL_new(server_side_context.get()));
  REQUIRE(relay_ssl);
  REQUIRE(server_side_ssl);
  X509_VERIFY_PARAM* expected_peer = SSL_get0_param(server_side_ssl.get());
  if (X509_VERIFY_PARAM_set1_ip_asc(expected_peer, relay_address.c_str()) != 1) {
    ERR_clear_error();
    REQUIRE(SSL_set1_host(server_side_ssl.get(), relay_address.c_str()) == 1);
  }

  BIO* relay_bio = nullptr;
  BIO* server_side_bio = nullptr;
  REQUIRE(BIO_new_bio_pair(&relay_bio, 0, &server_side_bio, 0) == 1);
  SSL_set_bio(relay_ssl.get(), relay_bio, relay_bio);
  SSL_set_bio(server_side_ssl.get(), server_side_bio, server_side_bio);
  SSL_set_accept_state(relay_ssl.get());
  SSL_set_connect_state(server_side_ssl.get());

  progress relay_progress = progress::pending;
  progress server_side_progress = progress::pending;
  for (int round = 0; round < 32; ++round) {
    if (server_side_progress == progress::pending)
      server_side_progress = handshake_step(server_side_ssl.get());
    if (relay_progress == progress::pending) relay_progress = handshake_step(relay_ssl.get());
    if (relay_progress == progress::failed || server_side_progress == progress::failed) break;
    if (relay_progress == progress::done && server_side_progress == progress::done) break;
  }

  handshake_outcome outcome;
  outcome.relay_verify_result = SSL_get_verify_result(relay_ssl.get());
  outcome.server_side_verify_result = SSL_get_verify_result(server_side_ssl.get());
  // In TLS 1.3 the client finishes before the relay has judged its
  // certificate, so only data flowing both ways proves mutual acceptance.
  outcome.authenticated = relay_progress == progress::done &&
                          server_side_progress == progress::done &&
                          deliver(server_side_ssl.get(), relay_ssl.get(), "ready") &&
                          deliver(relay_ssl.get(), server_side_ssl.get(), "paired");
  outcome.protocol_version = SSL_version(relay_ssl.get());
  outcome.relay_peer.reset(SSL_get1_peer_certificate(relay_ssl.get()));
  ERR_clear_error();
  return outcome;
}

// -- the CLI as main() runs it -------------------------------------------------

struct cli_result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

cli_result run_tlsrelay(std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), "tlsrelay");
  std::vector<const char*> argv;
  for (const std::string& argument : arguments) argv.push_back(argument.c_str());

  CLI::App app{"tlsrelay under test", "tlsrelay"};
  app.require_subcommand(1);
  cli_result result;
  int exit_code = 0;
  tlsrelay::cli::add_certs_command(app, exit_code);

  std::ostringstream out;
  std::ostringstream err;
  std::streambuf* const saved_out = std::cout.rdbuf(out.rdbuf());
  std::streambuf* const saved_err = std::cerr.rdbuf(err.rdbuf());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    exit_code = app.exit(e, out, err) == 0 ? 0 : 2;  // as main() does
  }
  std::cout.rdbuf(saved_out);
  std::cerr.rdbuf(saved_err);
  result.exit_code = exit_code;
  result.out = out.str();
  result.err = err.str();
  return result;
}

}  // namespace

TEST_CASE("certs init writes a CA and three certificates that chain to it", "[pki]") {
  scratch_dir scratch;
  const fs::path pki = scratch.path() / "nested" / "pki";

  REQUIRE(write_dev_pki({pki, {}, 825}).empty());

  // Exactly the ten files: no temporary leftovers.
  CHECK(directory_entries(pki) ==
        std::set<std::string>(pki_file_names.begin(), pki_file_names.end()));

  const x509_ptr ca = load_certificate(pki / "ca.crt.pem");
  const x509_ptr relay = load_certificate(pki / "server.crt.pem");
  const x509_ptr server_side = load_certificate(pki / "client.crt.pem");

  SECTION("the CA is a self-signed CA:TRUE certificate that may sign certificates and CRLs") {
    CHECK(X509_check_issued(ca.get(), ca.get()) == X509_V_OK);
    CHECK(X509_verify(ca.get(), X509_get0_pubkey(ca.get())) == 1);
    CHECK(X509_check_ca(ca.get()) == 1);
    CHECK(extension_is_critical(ca.get(), NID_basic_constraints));
    const uint32_t usage = X509_get_key_usage(ca.get());
    CHECK((usage & KU_KEY_CERT_SIGN) != 0);
    CHECK((usage & KU_CRL_SIGN) != 0);
  }

  SECTION("the relay certificate verifies as an SSL server, not as a client") {
    CHECK(verify_against(ca.get(), relay.get(), X509_PURPOSE_SSL_SERVER) == X509_V_OK);
    CHECK(verify_against(ca.get(), relay.get(), X509_PURPOSE_SSL_CLIENT) ==
          X509_V_ERR_INVALID_PURPOSE);
    CHECK(common_name(relay.get()) == "tlsrelay relay");
    CHECK(X509_check_ca(relay.get()) == 0);
  }

  SECTION("the server-side certificate verifies as an SSL client, not as a server") {
    CHECK(verify_against(ca.get(), server_side.get(), X509_PURPOSE_SSL_CLIENT) == X509_V_OK);
    CHECK(verify_against(ca.get(), server_side.get(), X509_PURPOSE_SSL_SERVER) ==
          X509_V_ERR_INVALID_PURPOSE);
    CHECK(common_name(server_side.get()) == "tlsrelay server");
    CHECK(X509_check_ca(server_side.get()) == 0);
  }

  SECTION("certificates are ECDSA-SHA256 with distinct 128-bit serial numbers") {
    std::set<std::string> serials;
    for (X509* cert : {ca.get(), relay.get(), server_side.get()}) {
      CHECK(X509_get_signature_nid(cert) == NID_ecdsa_with_SHA256);
      openssl_ptr<BIGNUM, &BN_free> serial(
          ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
      REQUIRE(serial);
      CHECK(BN_num_bits(serial.get()) == 128);
      char* hex = BN_bn2hex(serial.get());
      REQUIRE(hex != nullptr);
      serials.insert(hex);
      OPENSSL_free(hex);
      CHECK(X509_get0_subject_key_id(cert) != nullptr);
      CHECK(X509_get0_authority_key_id(cert) != nullptr);
    }
    CHECK(serials.size() == 3);
  }
}

TEST_CASE("each private key is a 0600 P-256 PKCS#8 key matching its certificate", "[pki]") {
  scratch_dir scratch;
  REQUIRE(write_dev_pki({scratch.path(), {}, 825}).empty());

  const x509_ptr ca = load_certificate(scratch.path() / "ca.crt.pem");
  const x509_ptr relay = load_certificate(scratch.path() / "server.crt.pem");
  const x509_ptr server_side = load_certificate(scratch.path() / "client.crt.pem");
  const pkey_ptr ca_key = load_private_key(scratch.path() / "ca.key.pem");
  const pkey_ptr relay_key = load_private_key(scratch.path() / "server.key.pem");
  const pkey_ptr server_side_key = load_private_key(scratch.path() / "client.key.pem");

  CHECK(X509_check_private_key(ca.get(), ca_key.get()) == 1);
  CHECK(X509_check_private_key(relay.get(), relay_key.get()) == 1);
  CHECK(X509_check_private_key(server_side.get(), server_side_key.get()) == 1);
  CHECK(X509_check_private_key(relay.get(), server_side_key.get()) == 0);
  CHECK(X509_check_private_key(ca.get(), relay_key.get()) == 0);
  ERR_clear_error();

  for (const char* name : {"ca.key.pem", "server.key.pem", "client.key.pem"}) {
    INFO(name);
    CHECK(permission_bits(scratch.path() / name) == 0600);
    CHECK(read_file(scratch.path() / name).rfind("-----BEGIN PRIVATE KEY-----\n", 0) == 0);
  }
  for (EVP_PKEY* key : {ca_key.get(), relay_key.get(), server_side_key.get()}) {
    CHECK(EVP_PKEY_is_a(key, "EC") == 1);
    char group[64] = {};
    REQUIRE(EVP_PKEY_get_group_name(key, group, sizeof group, nullptr) == 1);
    CHECK(std::string(group) == "prime256v1");
  }
}

TEST_CASE("the relay certificate names exactly the requested hosts", "[pki]") {
  scratch_dir scratch;

  SECTION("given hosts, names and IPv4 and IPv6 addresses") {
    REQUIRE(write_dev_pki({scratch.path(), {"relay.example", "10.0.0.1", "2001:db8::7"}, 825})
                .empty());
    const x509_ptr relay = load_certificate(scratch.path() / "server.crt.pem");
    CHECK(X509_check_host(relay.get(), "relay.example", 0, 0, nullptr) == 1);
    CHECK(X509_check_ip_asc(relay.get(), "10.0.0.1", 0) == 1);
    CHECK(X509_check_ip_asc(relay.get(), "2001:db8::7", 0) == 1);
    CHECK(X509_check_host(relay.get(), "localhost", 0, 0, nullptr) == 0);
    CHECK(X509_check_ip_asc(relay.get(), "127.0.0.1", 0) == 0);
  }

  SECTION("no hosts: localhost, 127.0.0.1 and ::1") {
    REQUIRE(write_dev_pki({scratch.path(), {}, 825}).empty());
    const x509_ptr relay = load_certificate(scratch.path() / "server.crt.pem");
    CHECK(X509_check_host(relay.get(), "localhost", 0, 0, nullptr) == 1);
    CHECK(X509_check_ip_asc(relay.get(), "127.0.0.1", 0) == 1);
    CHECK(X509_check_ip_asc(relay.get(), "::1", 0) == 1);
    CHECK(X509_check_host(relay.get(), "relay.example", 0, 0, nullptr) == 0);
  }
}

TEST_CASE("the validity period is the requested number of days from now", "[pki]") {
  scratch_dir scratch;
  REQUIRE(write_dev_pki({scratch.path(), {}, 30}).empty());

  for (const char* name : {"ca.crt.pem", "server.crt.pem", "client.crt.pem"}) {
    INFO(name);
    check_valid_from_now_for(load_certificate(scratch.path() / name).get(), 30);
  }
}

TEST_CASE("an existing file is never overwritten and nothing else is written", "[pki]") {
  scratch_dir scratch;
  const std::string existing = GENERATE(from_range(pki_file_names));
  const fs::path existing_path = scratch.path() / existing;
  write_file(existing_path, "precious\n");

  const std::string error = write_dev_pki({scratch.path(), {}, 825});

  CHECK_THAT(error, Catch::Contains(existing_path.string()));
  CHECK(read_file(existing_path) == "precious\n");
  CHECK(directory_entries(scratch.path()) == std::set<std::string>{existing});
}

TEST_CASE("an unusable target directory is named in the error", "[pki]") {
  scratch_dir scratch;
  const fs::path regular_file = scratch.path() / "plain";
  write_file(regular_file, "not a directory\n");

  SECTION("a directory below a regular file") {
    const fs::path target = regular_file / "pki";
    const std::string error = write_dev_pki({target, {}, 825});
    CHECK_THAT(error, Catch::Contains(target.string()));
  }
  SECTION("a regular file as the directory") {
    const std::string error = write_dev_pki({regular_file, {}, 825});
    CHECK_THAT(error, Catch::Contains(regular_file.string()));
  }
  CHECK(directory_entries(scratch.path()) == std::set<std::string>{"plain"});
  CHECK(read_file(regular_file) == "not a directory\n");
}

TEST_CASE("bad hosts and validity periods are refused before anything is written", "[pki]") {
  scratch_dir scratch;
  const fs::path target = scratch.path() / "pki";
  CHECK_THAT(write_dev_pki({target, {"relay.example", "not a host"}, 825}),
             Catch::Contains("not a host"));
  CHECK_THAT(write_dev_pki({target, {}, 0}), Catch::Contains("0 days"));
  CHECK_FALSE(fs::exists(target));
}

TEST_CASE("the relay and its server authenticate each other over TLS 1.3", "[pki][tls]") {
  scratch_dir scratch;
  REQUIRE(write_dev_pki({scratch.path(), {}, 825}).empty());

  for (const char* relay_address : {"127.0.0.1", "localhost", "::1"}) {
    INFO("relay address " << relay_address);
    const handshake_outcome outcome = relay_handshake(
        relay_identity(scratch.path()), server_side_identity(scratch.path()), relay_address);
    CHECK(outcome.authenticated);
    CHECK(outcome.protocol_version == TLS1_3_VERSION);
    CHECK(outcome.relay_verify_result == X509_V_OK);
    CHECK(outcome.server_side_verify_result == X509_V_OK);
  }
}

TEST_CASE("the relay rejects a server certificate from another development PKI", "[pki][tls]") {
  scratch_dir scratch;
  const fs::path ours = scratch.path() / "ours";
  const fs::path theirs = scratch.path() / "theirs";
  REQUIRE(write_dev_pki({ours, {}, 825}).empty());
  REQUIRE(write_dev_pki({theirs, {}, 825}).empty());

  // The intruder trusts our CA, so only the relay's check can stop it.
  tls_identity intruder = server_side_identity(theirs);
  intruder.trusted_ca = ours / "ca.crt.pem";
  const handshake_outcome outcome =
      relay_handshake(relay_identity(ours), intruder, "127.0.0.1");

  CHECK_FALSE(outcome.authenticated);
  CHECK(outcome.relay_verify_result != X509_V_OK);
  CHECK(outcome.server_side_verify_result == X509_V_OK);
}

TEST_CASE("the relay's own certificate does not pass as a server certificate", "[pki][tls]") {
  scratch_dir scratch;
  REQUIRE(write_dev_pki({scratch.path(), {}, 825}).empty());

  // serverAuth only: whoever stole the relay's key cannot log in as its server.
  const handshake_outcome outcome =
      relay_handshake(relay_identity(scratch.path()), relay_identity(scratch.path()), "localhost");

  CHECK_FALSE(outcome.authenticated);
  CHECK(outcome.relay_verify_result == X509_V_ERR_INVALID_PURPOSE);
}

TEST_CASE("the server program rejects a relay not named in its certificate", "[pki][tls]") {
  scratch_dir scratch;
  REQUIRE(write_dev_pki({scratch.path(), {"relay.example"}, 825}).empty());

  CHECK(relay_handshake(relay_identity(scratch.path()), server_side_identity(scratch.path()),
                        "relay.example")
            .authenticated);
  const handshake_outcome outcome = relay_handshake(
      relay_identity(scratch.path()), server_side_identity(scratch.path()), "other.example");
  CHECK_FALSE(outcome.authenticated);
  CHECK(outcome.server_side_verify_result == X509_V_ERR_HOSTNAME_MISMATCH);
}

TEST_CASE("certs init reports success, refusal and failure with exit codes 0, 2 and 1",
          "[pki][cli]") {
  scratch_dir scratch;
  const fs::path target = scratch.path() / "certs";

  const cli_result first =
      run_tlsrelay({"certs", "init", "--host", "relay.example", target.string(), "--host",
                    "10.0.0.1", "--days", "90"});
  CHECK(first.exit_code == 0);
  CHECK(first.err.empty());
  CHECK_THAT(first.out, Catch::StartsWith("wrote development PKI to " + target.string() + ": "));
  CHECK_THAT(first.out, Catch::Contains("ca.key.pem and cluster-ca.key.pem are signing keys: keep them secret"));
  const x509_ptr relay = load_certificate(target / "server.crt.pem");
  CHECK(X509_check_host(relay.get(), "relay.example", 0, 0, nullptr) == 1);
  CHECK(X509_check_ip_asc(relay.get(), "10.0.0.1", 0) == 1);
  const std::string relay_pem_before = read_file(target / "server.crt.pem");

  const cli_result second = run_tlsrelay({"certs", "init", target.string()});
  CHECK(second.exit_code == 2);
  CHECK(second.out.empty());
  CHECK_THAT(second.err, Catch::StartsWith("tlsrelay: error: ") &&
                             Catch::Contains((target / "ca.crt.pem").string()));
  CHECK(std::count(second.err.begin(), second.err.end(), '\n') == 1);
  CHECK(read_file(target / "server.crt.pem") == relay_pem_before);

  const fs::path under_file = target / "ca.crt.pem" / "more";
  const cli_result unwritable = run_tlsrelay({"certs", "init", under_file.string()});
  CHECK(unwritable.exit_code == 1);
  CHECK_THAT(unwritable.err, Catch::StartsWith("tlsrelay: error: ") &&
                                 Catch::Contains(under_file.string()));
  CHECK(std::count(unwritable.err.begin(), unwritable.err.end(), '\n') == 1);
}

TEST_CASE("certs init treats bad arguments as usage errors", "[pki][cli]") {
  scratch_dir scratch;
  const std::string target = (scratch.path() / "certs").string();

  CHECK(run_tlsrelay({"certs"}).exit_code == 2);
  CHECK(run_tlsrelay({"certs", "init", target, "--host", "not a host"}).exit_code == 2);
  CHECK(run_tlsrelay({"certs", "init", target, "--days", "0"}).exit_code == 2);
  CHECK(run_tlsrelay({"certs", "init", target, "--days", "many"}).exit_code == 2);
  CHECK_FALSE(fs::exists(target));

  const cli_result help = run_tlsrelay({"certs", "init", "--help"});
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.out, Catch::Contains("--host") && Catch::Contains("subjectAltName") &&
                           Catch::Contains("./relay_server_certs") &&
                           Catch::Contains("ca.key.pem") && Catch::Contains("Keep it secret") &&
                           Catch::Contains("certs client DIR NAME"));
}

// -- certs client: more server programs under one CA -------------------------

namespace {

using test_pki = tlsrelay::test::pki;

// `tlsrelay ARGS...` as the real program, as an operator runs it; exit code
// -1 if it did not finish within 30 s.
cli_result run_tlsrelay_program(std::vector<std::string> arguments) {
  tlsrelay::test::child_process tool(tlsrelay::test::tlsrelay_binary(), std::move(arguments));
  cli_result result;
  result.exit_code = tool.wait_exit(std::chrono::seconds(30)).value_or(-1);
  result.out = tool.stdout_text();
  result.err = tool.stderr_text();
  return result;
}

// The SHA-256 of `cert`'s DER, computed otherwise than fingerprint_sha256_hex.
std::string der_sha256_hex(X509* cert) {
  unsigned char* der = nullptr;
  const int length = i2d_X509(cert, &der);
  REQUIRE(length > 0);
  unsigned char digest[32];
  const int hashed = EVP_Digest(der, static_cast<std::size_t>(length), digest, nullptr,
                                EVP_sha256(), nullptr);
  OPENSSL_free(der);
  REQUIRE(hashed == 1);
  return tlsrelay::to_hex(std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

tls_identity named_identity(const fs::path& pki, const std::string& name) {
  return {pki / (name + ".crt.pem"), pki / (name + ".key.pem"), pki / "ca.crt.pem"};
}

// One line on stderr, `tlsrelay: error: ...`, that contains `text`.
void check_one_error_line(const cli_result& result, const std::string& text) {
  INFO("stderr: " << result.err);
  CHECK(result.out.empty());
  CHECK_THAT(result.err, Catch::StartsWith("tlsrelay: error: ") && Catch::Contains(text));
  CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
}

}  // namespace

TEST_CASE("certs client issues another identity under the same CA", "[pki][cli]") {
  test_pki keys;
  const auto [cert_path, key_path] = keys.issue_client("web-2");
  CHECK(cert_path == keys.file("web-2.crt.pem"));
  CHECK(key_path == keys.file("web-2.key.pem"));

  const x509_ptr ca = load_certificate(keys.ca());
  const x509_ptr first = load_certificate(keys.client_cert());
  const x509_ptr second = load_certificate(cert_path);
  const pkey_ptr second_key = load_private_key(key_path);

  CHECK(verify_against(ca.get(), second.get(), X509_PURPOSE_SSL_CLIENT) == X509_V_OK);
  CHECK(verify_against(ca.get(), second.get(), X509_PURPOSE_SSL_SERVER) ==
        X509_V_ERR_INVALID_PURPOSE);
  CHECK((X509_get_extended_key_usage(second.get()) & XKU_SSL_CLIENT) != 0);
  CHECK(common_name(second.get()) == "web-2");
  CHECK(X509_check_ca(second.get()) == 0);
  CHECK(X509_get_signature_nid(second.get()) == NID_ecdsa_with_SHA256);

  CHECK(X509_check_private_key(second.get(), second_key.get()) == 1);
  CHECK(permission_bits(key_path) == 0600);
  CHECK(read_file(key_path).rfind("-----BEGIN PRIVATE KEY-----\n", 0) == 0);

  // Another identity: another key, another fingerprint, another serial.
  CHECK(EVP_PKEY_eq(X509_get0_pubkey(first.get()), X509_get0_pubkey(second.get())) != 1);
  const std::string first_fingerprint = tlsrelay::test::fingerprint_sha256_hex(keys.client_cert());
  const std::string second_fingerprint = tlsrelay::test::fingerprint_sha256_hex(cert_path);
  CHECK(first_fingerprint.size() == 64);
  CHECK(first_fingerprint.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(second_fingerprint != first_fingerprint);
  CHECK(tlsrelay::test::fingerprint_sha256_hex(cert_path) == second_fingerprint);
  CHECK(second_fingerprint == der_sha256_hex(second.get()));
  CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(first.get()),
                         X509_get0_serialNumber(second.get())) != 0);
  ERR_clear_error();

  // The PKI itself is untouched.
  std::set<std::string> expected(pki_file_names.begin(), pki_file_names.end());
  expected.insert({"web-2.crt.pem", "web-2.key.pem"});
  CHECK(directory_entries(keys.dir()) == expected);
}

TEST_CASE("certs client honours --days and reports what it wrote", "[pki][cli]") {
  test_pki keys;
  const cli_result result =
      run_tlsrelay_program({"certs", "client", keys.dir().string(), "api", "--days", "30"});
  CHECK(result.exit_code == 0);
  CHECK(result.err.empty());
  CHECK_THAT(result.out, Catch::StartsWith("wrote client certificate " +
                                           keys.file("api.crt.pem").string() + " and key " +
                                           keys.file("api.key.pem").string()));
  check_valid_from_now_for(load_certificate(keys.file("api.crt.pem")).get(), 30);
}

TEST_CASE("the relay accepts a certificate from certs client over TLS 1.3", "[pki][tls]") {
  test_pki keys;
  keys.issue_client("second");

  const handshake_outcome outcome = relay_handshake(
      relay_identity(keys.dir()), named_identity(keys.dir(), "second"), "127.0.0.1");
  CHECK(outcome.authenticated);
  CHECK(outcome.protocol_version == TLS1_3_VERSION);
  CHECK(outcome.relay_verify_result == X509_V_OK);
  CHECK(outcome.server_side_verify_result == X509_V_OK);
  // The relay sees the new certificate, not the one certs init made.
  REQUIRE(outcome.relay_peer);
  CHECK(X509_cmp(outcome.relay_peer.get(), load_certificate(keys.file("second.crt.pem")).get()) ==
        0);
  CHECK(X509_cmp(outcome.relay_peer.get(), load_certificate(keys.client_cert()).get()) != 0);
}

TEST_CASE("certs client never overwrites a file and then writes nothing", "[pki][cli]") {
  test_pki keys;
  const std::string dir = keys.dir().string();

  SECTION("a name issued before") {
    keys.issue_client("web");
    const std::string pem_before = read_file(keys.file("web.crt.pem"));
    const std::string key_before = read_file(keys.file("web.key.pem"));
    const cli_result again = run_tlsrelay_program({"certs", "client", dir, "web"});
    CHECK(again.exit_code == 2);
    check_one_error_line(again, keys.file("web.crt.pem").string() + " already exists");
    CHECK(read_file(keys.file("web.crt.pem")) == pem_before);
    CHECK(read_file(keys.file("web.key.pem")) == key_before);
  }
  SECTION("either of the two files alone") {
    const std::string existing = GENERATE(as<std::string>{}, "web.crt.pem", "web.key.pem");
    write_file(keys.file(existing), "precious\n");
    const std::set<std::string> before = directory_entries(keys.dir());
    const cli_result result = run_tlsrelay_program({"certs", "client", dir, "web"});
    CHECK(result.exit_code == 2);
    check_one_error_line(result, keys.file(existing).string());
    CHECK(read_file(keys.file(existing)) == "precious\n");
    CHECK(directory_entries(keys.dir()) == before);
  }
}

TEST_CASE("certs client refuses a NAME that is malformed or taken by certs init", "[pki][cli]") {
  test_pki keys;
  const std::set<std::string> before = directory_entries(keys.dir());
  const std::string name = GENERATE(as<std::string>{}, "", "-web", "Web", "web.1", "a/b", "web_1",
                                    "caf\xc3\xa9", std::string(64, 'a'), "ca", "server", "client");
  INFO("NAME \"" << name << "\"");

  // After `--`, "-web" is an argument, not an unknown flag.
  const cli_result result =
      run_tlsrelay_program({"certs", "client", keys.dir().string(), "--", name});
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.err, Catch::StartsWith("tlsrelay: error: ") && Catch::Contains("NAME"));
  if (name.find('\xc3') == std::string::npos)
    CHECK_THAT(result.err, Catch::Contains("\"" + name + "\""));
  CHECK(directory_entries(keys.dir()) == before);
}

TEST_CASE("certs client accepts names up to 63 characters of a-z, 0-9 and '-'", "[pki][cli]") {
  test_pki keys;
  for (const std::string& name : {std::string("0"), std::string("web-2-b"), std::string(63, 'z')}) {
    INFO("NAME \"" << name << "\"");
    CHECK(run_tlsrelay_program({"certs", "client", keys.dir().string(), name}).exit_code == 0);
    CHECK(common_name(load_certificate(keys.file(name + ".crt.pem")).get()) == name);
  }
}

TEST_CASE("certs client names the CA file it cannot use and writes nothing", "[pki][cli]") {
  scratch_dir scratch;
  const fs::path dir = scratch.path() / "pki";
  REQUIRE(write_dev_pki({dir, {}, 825}).empty());
  const fs::path ca_key = dir / "ca.key.pem";
  const fs::path ca_cert = dir / "ca.crt.pem";
  fs::path target = dir;
  std::vector<std::string> expected;  // in the one error line

  SECTION("no ca.key.pem: made by an older version, or the key was moved away") {
    fs::remove(ca_key);
    expected = {ca_key.string() + " does not exist", "older tlsrelay", "moved away"};
  }
  SECTION("the key of another CA") {
    const fs::path other = scratch.path() / "other";
    REQUIRE(write_dev_pki({other, {}, 825}).empty());
    fs::remove(ca_key);
    fs::copy_file(other / "ca.key.pem", ca_key);
    expected = {ca_key.string() + " does not match " + ca_cert.string()};
  }
  SECTION("a ca.key.pem that is no key") {
    write_file(ca_key, "not a key\n");
    expected = {"cannot read " + ca_key.string()};
  }
  SECTION("a ca.key.pem that cannot be read (a directory)") {
    fs::remove(ca_key);
    fs::create_directory(ca_key);
    expected = {"cannot read " + ca_key.string()};
  }
  SECTION("a ca.crt.pem that is no certificate") {
    write_file(ca_cert, "not a certificate\n");
    expected = {"cannot read " + ca_cert.string()};
  }
  SECTION("a CA certificate that is no CA") {
    fs::remove(ca_cert);
    fs::copy_file(dir / "client.crt.pem", ca_cert);
    expected = {ca_cert.string() + " is not a CA certificate"};
  }
  SECTION("a directory that holds no PKI") {
    target = scratch.path() / "empty";
    fs::create_directory(target);
    expected = {"cannot read " + (target / "ca.crt.pem").string()};
  }

  const std::set<std::string> before = directory_entries(target);
  const cli_result result = run_tlsrelay_program({"certs", "client", target.string(), "web"});
  CHECK(result.exit_code == 1);
  for (const std::string& text : expected) check_one_error_line(result, text);
  CHECK(directory_entries(target) == before);
}

TEST_CASE("certs client treats missing arguments as usage errors", "[pki][cli]") {
  test_pki keys;
  CHECK(run_tlsrelay_program({"certs", "client"}).exit_code == 2);
  CHECK(run_tlsrelay_program({"certs", "client", keys.dir().string()}).exit_code == 2);
  CHECK(run_tlsrelay_program({"certs", "client", keys.dir().string(), "web", "--days", "0"})
            .exit_code == 2);
  CHECK_FALSE(fs::exists(keys.file("web.crt.pem")));

  const cli_result help = run_tlsrelay_program({"certs", "client", "--help"});
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.out, Catch::Contains("NAME.crt.pem") && Catch::Contains("ca.key.pem") &&
                           Catch::Contains("--days"));
}

// -- node certificates: the relay nodes of a cluster ---------------------------

namespace {

// `openssl verify -CAfile CA -purpose PURPOSE CERT`: what an operator would
// check, by another implementation than the library's own calls. True if it
// says OK (exit 0).
bool openssl_verifies(const fs::path& ca, const fs::path& cert, const std::string& purpose) {
  tlsrelay::test::child_process openssl(
      "openssl", {"verify", "-CAfile", ca.string(), "-purpose", purpose, cert.string()});
  const int code = openssl.wait_exit(std::chrono::seconds(30)).value_or(-1);
  INFO("openssl verify -purpose " << purpose << " " << cert.string() << ": "
                                  << openssl.stdout_text() << openssl.stderr_text());
  CHECK(code != -1);
  return code == 0 && openssl.stdout_text().find(": OK") != std::string::npos;
}

bool names_dns(X509* cert, const std::string& name) {
  return X509_check_host(cert, name.c_str(), name.size(), X509_CHECK_FLAG_NO_WILDCARDS,
                         nullptr) == 1;
}

}  // namespace

TEST_CASE("certs init writes a node certificate for both TLS ends of a cluster link, under a "
          "cluster CA of its own",
          "[pki][node]") {
  scratch_dir scratch;
  REQUIRE(write_dev_pki({scratch.path(), {"relay.example", "10.0.0.1"}, 825}).empty());
  const fs::path ca_path = scratch.path() / "cluster-ca.crt.pem";
  // The servers' CA did not sign it, and the cluster CA signed no server.
  CHECK_FALSE(openssl_verifies(scratch.path() / "ca.crt.pem", scratch.path() / "node.crt.pem",
                               "sslclient"));
  CHECK_FALSE(openssl_verifies(ca_path, scratch.path() / "client.crt.pem", "sslclient"));
  const fs::path node_path = scratch.path() / "node.crt.pem";

  CHECK(openssl_verifies(ca_path, node_path, "sslserver"));
  CHECK(openssl_verifies(ca_path, node_path, "sslclient"));

  const x509_ptr ca = load_certificate(ca_path);
  const x509_ptr node = load_certificate(node_path);
  const pkey_ptr node_key = load_private_key(scratch.path() / "node.key.pem");
  CHECK(verify_against(ca.get(), node.get(), X509_PURPOSE_SSL_SERVER) == X509_V_OK);
  CHECK(verify_against(ca.get(), node.get(), X509_PURPOSE_SSL_CLIENT) == X509_V_OK);
  const uint32_t usages = X509_get_extended_key_usage(node.get());
  CHECK((usages & XKU_SSL_SERVER) != 0);
  CHECK((usages & XKU_SSL_CLIENT) != 0);
  CHECK(common_name(node.get()) == "tlsrelay-node");
  CHECK(X509_check_ca(node.get()) == 0);
  // Its own name and the relay's hosts.
  CHECK(names_dns(node.get(), "tlsrelay-node"));
  CHECK(names_dns(node.get(), "relay.example"));
  CHECK(X509_check_ip_asc(node.get(), "10.0.0.1", 0) == 1);
  CHECK(X509_check_private_key(node.get(), node_key.get()) == 1);
  CHECK(permission_bits(scratch.path() / "node.key.pem") == 0600);
  ERR_clear_error();
}

TEST_CASE("two nodes of one PKI authenticate each other over TLS 1.3, either way round",
          "[pki][node][tls]") {
  scratch_dir scratch;
  REQUIRE(write_dev_pki({scratch.path(), {}, 825}).empty());
  const auto issued = run_tlsrelay({"certs", "node", scratch.path().string(), "relay-1"});
  REQUIRE(issued.exit_code == 0);
  const tls_identity init_node{scratch.path() / "node.crt.pem", scratch.path() / "node.key.pem",
                               scratch.path() / "cluster-ca.crt.pem"};
  const tls_identity named_node{scratch.path() / "relay-1.node.crt.pem",
                                scratch.path() / "relay-1.node.key.pem",
                                scratch.path() / "cluster-ca.crt.pem"};
  const handshake_outcome one_way = relay_handshake(init_node, named_node, "tlsrelay-node");
  CHECK(one_way.authenticated);
  CHECK(one_way.relay_verify_result == X509_V_OK);
  const handshake_outcome other_way = relay_handshake(named_node, init_node, "relay-1");
  CHECK(other_way.authenticated);
  CHECK(other_way.server_side_verify_result == X509_V_OK);
}

TEST_CASE("certs node issues NAME.node.crt.pem for both purposes, named NAME", "[pki][node][cli]") {
  test_pki keys;
  const cli_result result = run_tlsrelay_program(
      {"certs", "node", keys.dir().string(), "relay-0.relay.default.svc", "--days", "30"});
  INFO("stderr: " << result.err);
  REQUIRE(result.exit_code == 0);
  const fs::path cert_path = keys.file("relay-0.relay.default.svc.node.crt.pem");
  const fs::path key_path = keys.file("relay-0.relay.default.svc.node.key.pem");
  CHECK_THAT(result.out, Catch::StartsWith("wrote node certificate " + cert_path.string() +
                                           " and key " + key_path.string()));

  const fs::path cluster_ca = keys.file("cluster-ca.crt.pem");
  CHECK(openssl_verifies(cluster_ca, cert_path, "sslserver"));
  CHECK(openssl_verifies(cluster_ca, cert_path, "sslclient"));
  CHECK_FALSE(openssl_verifies(keys.ca(), cert_path, "sslclient"));
  const x509_ptr cert = load_certificate(cert_path);
  CHECK(common_name(cert.get()) == "relay-0.relay.default.svc");
  CHECK(names_dns(cert.get(), "relay-0.relay.default.svc"));
  CHECK_FALSE(names_dns(cert.get(), "tlsrelay-node"));
  CHECK(X509_check_ca(cert.get()) == 0);
  check_valid_from_now_for(cert.get(), 30);
  CHECK(X509_check_private_key(cert.get(), load_private_key(key_path).get()) == 1);
  CHECK(permission_bits(key_path) == 0600);
  CHECK(read_file(key_path).rfind("-----BEGIN PRIVATE KEY-----\n", 0) == 0);
  ERR_clear_error();

  // Nothing else written or touched.
  std::set<std::string> expected(pki_file_names.begin(), pki_file_names.end());
  expected.insert({cert_path.filename().string(), key_path.filename().string()});
  CHECK(directory_entries(keys.dir()) == expected);
}

TEST_CASE("certs node never overwrites a file and then writes nothing", "[pki][node][cli]") {
  test_pki keys;
  const std::string dir = keys.dir().string();

  SECTION("a name issued before") {
    REQUIRE(run_tlsrelay_program({"certs", "node", dir, "relay-1"}).exit_code == 0);
    const std::string pem_before = read_file(keys.file("relay-1.node.crt.pem"));
    const std::string key_before = read_file(keys.file("relay-1.node.key.pem"));
    const cli_result again = run_tlsrelay_program({"certs", "node", dir, "relay-1"});
    CHECK(again.exit_code == 2);
    check_one_error_line(again, keys.file("relay-1.node.crt.pem").string() + " already exists");
    CHECK(read_file(keys.file("relay-1.node.crt.pem")) == pem_before);
    CHECK(read_file(keys.file("relay-1.node.key.pem")) == key_before);
  }
  SECTION("either of the two files alone") {
    const std::string existing =
        GENERATE(as<std::string>{}, "relay-1.node.crt.pem", "relay-1.node.key.pem");
    write_file(keys.file(existing), "precious\n");
    const std::set<std::string> before = directory_entries(keys.dir());
    const cli_result result = run_tlsrelay_program({"certs", "node", dir, "relay-1"});
    CHECK(result.exit_code == 2);
    check_one_error_line(result, keys.file(existing).string());
    CHECK(read_file(keys.file(existing)) == "precious\n");
    CHECK(directory_entries(keys.dir()) == before);
  }
}

TEST_CASE("certs node without the cluster CA's key fails clearly and writes nothing",
          "[pki][node][cli]") {
  scratch_dir scratch;
  const fs::path dir = scratch.path() / "pki";
  REQUIRE(write_dev_pki({dir, {}, 825}).empty());
  fs::remove(dir / "cluster-ca.key.pem");
  const std::set<std::string> before = directory_entries(dir);

  const cli_result result = run_tlsrelay_program({"certs", "node", dir.string(), "relay-1"});
  CHECK(result.exit_code == 1);
  check_one_error_line(result, (dir / "cluster-ca.key.pem").string() + " does not exist");
  CHECK(directory_entries(dir) == before);
}

TEST_CASE("certs node refuses malformed names and missing arguments as usage errors",
          "[pki][node][cli]") {
  test_pki keys;
  const std::set<std::string> before = directory_entries(keys.dir());
  const std::string name =
      GENERATE(as<std::string>{}, "", "-relay", "relay-", "Relay", "relay_1", "relay..a", ".relay",
               "relay.", "a/b", std::string(64, 'a'), std::string(33, 'a') + "." + std::string(31, 'a'));
  INFO("NAME \"" << name << "\"");
  const cli_result result =
      run_tlsrelay_program({"certs", "node", keys.dir().string(), "--", name});
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.err, Catch::StartsWith("tlsrelay: error: ") && Catch::Contains("NAME"));
  CHECK(directory_entries(keys.dir()) == before);
}

TEST_CASE("certs node without NAME is a usage error, and --help describes it",
          "[pki][node][cli]") {
  test_pki keys;
  CHECK(run_tlsrelay_program({"certs", "node", keys.dir().string()}).exit_code == 2);
  const cli_result help = run_tlsrelay_program({"certs", "node", "--help"});
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.out, Catch::Contains("NAME.node.crt.pem") && Catch::Contains("serverAuth") &&
                           Catch::Contains("clientAuth") && Catch::Contains("ca.key.pem"));
  const cli_result init_help = run_tlsrelay_program({"certs", "init", "--help"});
  CHECK_THAT(init_help.out, Catch::Contains("node.crt.pem") && Catch::Contains("certs node"));
}
