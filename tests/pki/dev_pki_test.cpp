// The development PKI of `tlsrelay certs init`: what it writes, what the
// certificates mean to OpenSSL, and that a relay and its server can actually
// authenticate each other with them (and nobody else can).
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
#include <vector>

#include "cli/certs_command.hpp"
#include "cli/dev_pki.hpp"
#include "cli/openssl_ptr.hpp"

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

const std::vector<std::string> pki_file_names{"ca.crt.pem", "server.crt.pem", "server.key.pem",
                                              "client.crt.pem", "client.key.pem"};

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

TEST_CASE("certs init writes a CA and two certificates that chain to it", "[pki]") {
  scratch_dir scratch;
  const fs::path pki = scratch.path() / "nested" / "pki";

  REQUIRE(write_dev_pki({pki, {}, 825}).empty());

  // Exactly the five files: no CA key, no temporary leftovers.
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

  const x509_ptr relay = load_certificate(scratch.path() / "server.crt.pem");
  const x509_ptr server_side = load_certificate(scratch.path() / "client.crt.pem");
  const pkey_ptr relay_key = load_private_key(scratch.path() / "server.key.pem");
  const pkey_ptr server_side_key = load_private_key(scratch.path() / "client.key.pem");

  CHECK(X509_check_private_key(relay.get(), relay_key.get()) == 1);
  CHECK(X509_check_private_key(server_side.get(), server_side_key.get()) == 1);
  CHECK(X509_check_private_key(relay.get(), server_side_key.get()) == 0);
  ERR_clear_error();

  for (const char* name : {"server.key.pem", "client.key.pem"}) {
    INFO(name);
    CHECK(permission_bits(scratch.path() / name) == 0600);
    CHECK(read_file(scratch.path() / name).rfind("-----BEGIN PRIVATE KEY-----\n", 0) == 0);
  }
  for (EVP_PKEY* key : {relay_key.get(), server_side_key.get()}) {
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
    const x509_ptr cert = load_certificate(scratch.path() / name);
    CHECK(X509_cmp_current_time(X509_get0_notBefore(cert.get())) < 0);
    int days = 0;
    int seconds = 0;
    REQUIRE(ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(cert.get())) == 1);
    const long remaining = days * 86400L + seconds;
    CHECK(remaining > 30 * 86400L - 600);
    CHECK(remaining <= 30 * 86400L);
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
                           Catch::Contains("./relay_server_certs"));
}
