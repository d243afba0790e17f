#include "cli/dev_pki.hpp"
#include "cli/openssl_ptr.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <system_error>
#include <utility>

namespace tlsrelay::cli {
namespace {

using asn1_string_ptr = openssl_ptr<ASN1_STRING, &ASN1_STRING_free>;
using bignum_ptr = openssl_ptr<BIGNUM, &BN_free>;
using extension_ptr = openssl_ptr<X509_EXTENSION, &X509_EXTENSION_free>;
using general_name_ptr = openssl_ptr<GENERAL_NAME, &GENERAL_NAME_free>;
using general_names_ptr = openssl_ptr<GENERAL_NAMES, &GENERAL_NAMES_free>;

constexpr const char* ca_cert_file = "ca.crt.pem";
constexpr const char* ca_key_file = "ca.key.pem";
constexpr const char* relay_cert_file = "server.crt.pem";
constexpr const char* relay_key_file = "server.key.pem";
constexpr const char* server_side_cert_file = "client.crt.pem";
constexpr const char* server_side_key_file = "client.key.pem";
// Node certificates have a CA of their own: a server's client certificate
// from ca.crt.pem must not make its holder a node of the cluster.
constexpr const char* cluster_ca_cert_file = "cluster-ca.crt.pem";
constexpr const char* cluster_ca_key_file = "cluster-ca.key.pem";
constexpr const char* node_cert_file = "node.crt.pem";
constexpr const char* node_key_file = "node.key.pem";
constexpr const char* cert_suffix = ".crt.pem";
constexpr const char* key_suffix = ".key.pem";
constexpr const char* node_cert_suffix = ".node.crt.pem";
constexpr const char* node_key_suffix = ".node.key.pem";
// The names of write_dev_pki's own files, so never a NAME for certs client.
constexpr const char* reserved_client_names[] = {"ca", "server", "client", "cluster-ca"};
// One DNS label: also fits the 64-character limit of a certificate's CN.
constexpr std::size_t max_client_name_length = 63;
// A node's name is a DNS name (a peer's stable name, e.g. a StatefulSet pod's);
// the CN limits it to 64 characters.
constexpr std::size_t max_node_name_length = 64;
constexpr std::size_t max_dns_label_length = 63;

// notBefore lies this far in the past so that a peer whose clock is a little
// behind still accepts certificates issued a moment ago.
constexpr long clock_skew_seconds = 60 * 60;
// Keeps notAfter well inside what X.509 time fields can express.
constexpr int max_valid_days = 36500;

struct certificate_profile {
  const char* file_name;  // names the certificate in error messages
  const char* common_name;
  const char* basic_constraints;
  const char* key_usage;
  const char* extended_key_usage;  // nullptr: none
};

constexpr certificate_profile ca_profile{ca_cert_file, "tlsrelay development CA",
                                         "critical,CA:TRUE,pathlen:0",
                                         "critical,keyCertSign,cRLSign", nullptr};
constexpr certificate_profile cluster_ca_profile{cluster_ca_cert_file,
                                                 "tlsrelay development cluster CA",
                                                 "critical,CA:TRUE,pathlen:0",
                                                 "critical,keyCertSign,cRLSign", nullptr};
constexpr certificate_profile relay_profile{relay_cert_file, "tlsrelay relay", "critical,CA:FALSE",
                                            "critical,digitalSignature", "serverAuth"};
constexpr certificate_profile server_side_profile{server_side_cert_file, "tlsrelay server",
                                                  "critical,CA:FALSE", "critical,digitalSignature",
                                                  "clientAuth"};
// A relay node of a cluster both accepts its peers and connects to them over
// mutually authenticated TLS: one certificate for both ends.
constexpr certificate_profile node_profile{node_cert_file, "tlsrelay-node", "critical,CA:FALSE",
                                           "critical,digitalSignature",
                                           "serverAuth,clientAuth"};

// One subjectAltName entry of the relay certificate.
struct alt_name {
  int type;           // GEN_DNS or GEN_IPADD
  std::string value;  // the DNS name, or the address in network byte order
};

// One output file, with its contents built in memory first so that nothing
// touches the disk until every certificate has been issued.
struct pki_file {
  pki_file(const std::filesystem::path& dir, std::string file_name, bool private_key)
      : name(std::move(file_name)), path((dir / name).string()), is_private_key(private_key) {}
  pki_file(const pki_file&) = delete;
  pki_file& operator=(const pki_file&) = delete;
  ~pki_file() {
    // Private keys should not outlive the process in freed heap memory.
    if (is_private_key) OPENSSL_cleanse(contents.data(), contents.size());
  }

  std::string name;
  std::string path;  // in the target directory
  bool is_private_key;
  std::string contents;
};

std::string system_reason(int error) { return std::generic_category().message(error); }

// The most specific reason OpenSSL recorded; empties the queue so that later,
// unrelated failures are not blamed on it.
std::string openssl_reason() {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  if (const char* reason = ERR_reason_error_string(code)) return reason;
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

bool is_dns_name(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t label_length = 0;
  for (const char c : name) {
    if (c == '.') {
      if (label_length == 0) return false;
      label_length = 0;
      continue;
    }
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '*';
    if (!allowed || ++label_length > 63) return false;
  }
  return label_length > 0;
}

std::string parse_hosts(const std::vector<std::string>& hosts, std::vector<alt_name>& names) {
  static const std::vector<std::string> default_hosts{"localhost", "127.0.0.1", "::1"};
  for (const std::string& host : hosts.empty() ? default_hosts : hosts) {
    unsigned char address[16];
    if (::inet_pton(AF_INET, host.c_str(), address) == 1) {
      names.push_back({GEN_IPADD, std::string(reinterpret_cast<const char*>(address), 4)});
    } else if (::inet_pton(AF_INET6, host.c_str(), address) == 1) {
      names.push_back({GEN_IPADD, std::string(reinterpret_cast<const char*>(address), 16)});
    } else if (is_dns_name(host)) {
      names.push_back({GEN_DNS, host});
    } else {
      return "invalid host \"" + host +
             "\" for the relay certificate: expected a DNS name or an IP address";
    }
  }
  return {};
}

// Everything but the extensions; `issuer` null means self-signed.
x509_ptr new_certificate(const char* common_name, EVP_PKEY* subject_key, X509* issuer,
                         int valid_days) {
  x509_ptr certificate(X509_new());
  bignum_ptr serial(BN_new());
  if (!certificate || !serial) return nullptr;
  X509* cert = certificate.get();
  X509_NAME* subject = X509_get_subject_name(cert);
  const bool ok =
      X509_set_version(cert, X509_VERSION_3) == 1 &&
      BN_rand(serial.get(), 128, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) == 1 &&
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert)) != nullptr &&
      X509_gmtime_adj(X509_getm_notBefore(cert), -clock_skew_seconds) != nullptr &&
      X509_time_adj_ex(X509_getm_notAfter(cert), valid_days, 0, nullptr) != nullptr &&
      X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name), -1, -1,
                                 0) == 1 &&
      X509_set_issuer_name(cert, issuer != nullptr ? X509_get_subject_name(issuer) : subject) ==
          1 &&
      X509_set_pubkey(cert, subject_key) == 1;
  if (!ok) return nullptr;
  return certificate;
}

bool add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX context{};
  X509V3_set_ctx(&context, issuer, cert, nullptr, nullptr, 0);
  extension_ptr extension(X509V3_EXT_conf_nid(nullptr, &context, nid, value));
  return extension && X509_add_ext(cert, extension.get(), -1) == 1;
}

// Built from structures rather than a "DNS:a,IP:b" config string, so no host
// text is ever parsed as configuration.
bool add_subject_alt_names(X509* cert, const std::vector<alt_name>& names) {
  general_names_ptr general_names(GENERAL_NAMES_new());
  if (!general_names) return false;
  for (const alt_name& name : names) {
    general_name_ptr general_name(GENERAL_NAME_new());
    asn1_string_ptr value(name.type == GEN_DNS ? ASN1_IA5STRING_new() : ASN1_OCTET_STRING_new());
    if (!general_name || !value ||
        ASN1_STRING_set(value.get(), name.value.data(), static_cast<int>(name.value.size())) != 1)
      return false;
    GENERAL_NAME_set0_value(general_name.get(), name.type, value.release());
    if (sk_GENERAL_NAME_push(general_names.get(), general_name.get()) == 0) return false;
    general_name.release();  // owned by general_names now
  }
  return X509_add1_ext_i2d(cert, NID_subject_alt_name, general_names.get(), 0,
                           X509V3_ADD_DEFAULT) == 1;
}

struct issued_certificate {
  pkey_ptr key;
  x509_ptr certificate;
};

// A fresh P-256 key and a certificate for it, signed by `issuer`'s key or,
// when `issuer` is null, by its own key.
bool issue(const certificate_profile& profile, const std::vector<alt_name>& alt_names,
           const issued_certificate* issuer, int valid_days, issued_certificate& issued) {
  issued.key.reset(EVP_EC_gen("P-256"));
  if (!issued.key) return false;
  X509* issuer_cert = issuer != nullptr ? issuer->certificate.get() : nullptr;
  issued.certificate = new_certificate(profile.common_name, issued.key.get(), issuer_cert,
                                       valid_days);
  if (!issued.certificate) return false;
  X509* cert = issued.certificate.get();
  X509* signer_cert = issuer_cert != nullptr ? issuer_cert : cert;
  EVP_PKEY* signer_key = issuer != nullptr ? issuer->key.get() : issued.key.get();
  // subjectKeyIdentifier goes before authorityKeyIdentifier: a self-signed
  // certificate's authority key id is copied from its own subject key id.
  return add_extension(cert, signer_cert, NID_basic_constraints, profile.basic_constraints) &&
         add_extension(cert, signer_cert, NID_key_usage, profile.key_usage) &&
         (profile.extended_key_usage == nullptr ||
          add_extension(cert, signer_cert, NID_ext_key_usage, profile.extended_key_usage)) &&
         (alt_names.empty() || add_subject_alt_names(cert, alt_names)) &&
         add_extension(cert, signer_cert, NID_subject_key_identifier, "hash") &&
         add_extension(cert, signer_cert, NID_authority_key_identifier, "keyid:always") &&
         X509_sign(cert, signer_key, EVP_sha256()) > 0;
}

// What `write` put into a fresh memory BIO, or "" if it failed.
template <typename Write>
std::string pem_text(const BIO_METHOD* method, Write write) {
  bio_ptr bio(BIO_new(method));
  if (!bio || !write(bio.get())) return {};
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  if (size <= 0) return {};
  return std::string(data, static_cast<std::size_t>(size));
}

std::string certificate_pem(X509* cert) {
  return pem_text(BIO_s_mem(), [cert](BIO* bio) { return PEM_write_bio_X509(bio, cert) == 1; });
}

std::string private_key_pem(EVP_PKEY* key) {
  // A secure-memory BIO wipes its buffer when freed.
  return pem_text(BIO_s_secmem(), [key](BIO* bio) {
    return PEM_write_bio_PKCS8PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  });
}

// Temporary and published files of one publish() call. Unless committed, all
// of them are removed again, so a failure never leaves a partial PKI.
class staged_files {
 public:
  staged_files() { created_.reserve(16); }
  staged_files(const staged_files&) = delete;
  staged_files& operator=(const staged_files&) = delete;
  ~staged_files() {
    if (committed_) return;
    for (const std::string& path : created_) ::unlink(path.c_str());
  }
  void add(std::string path) { created_.push_back(std::move(path)); }
  void commit() { committed_ = true; }

 private:
  std::vector<std::string> created_;
  bool committed_ = false;
};

// Writes `file` to a new, uniquely named file next to `file.path` and returns
// its name in `temp_path`. mkostemp creates it readable by the owner only, so
// a private key is never readable by others, not even briefly.
std::string write_temporary(const pki_file& file, staged_files& staged, std::string& temp_path) {
  std::string pattern =
      (std::filesystem::path(file.path).parent_path() / ("." + file.name + ".tmp-XXXXXX"))
          .string();
  const int fd = ::mkostemp(pattern.data(), O_CLOEXEC);
  if (fd < 0) return "cannot write " + file.path + ": " + system_reason(errno);
  temp_path = pattern;
  staged.add(temp_path);

  int error = 0;
  // Certificates are public. Keys get exactly 0600 whatever the umask.
  if (::fchmod(fd, file.is_private_key ? 0600 : 0644) != 0) error = errno;
  const char* data = file.contents.data();
  std::size_t left = file.contents.size();
  while (error == 0 && left > 0) {
    const ssize_t written = ::write(fd, data, left);
    if (written < 0) {
      if (errno != EINTR) error = errno;
      continue;
    }
    data += written;
    left -= static_cast<std::size_t>(written);
  }
  if (error == 0 && ::fsync(fd) != 0) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error != 0) return "cannot write " + file.path + ": " + system_reason(error);
  return {};
}

// Renames `from` to `to` unless `to` exists, so that a file which appeared
// after the up-front check is refused like one that was there before.
// Returns 0 or an errno value (EEXIST: `to` exists).
int rename_without_replacing(const std::string& from, const std::string& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return errno;
  // Some file systems lack RENAME_NOREPLACE; link() never replaces either.
  if (::link(from.c_str(), to.c_str()) != 0) return errno;
  ::unlink(from.c_str());
  return 0;
}

// `what` says what is not being overwritten and how to get on.
std::string refusal(const std::string& existing_path, const char* what) {
  return existing_path + " already exists; not overwriting " + what;
}

// Refuses if any of `files` exists (or cannot be checked), before anything
// is issued or written.
template <std::size_t N>
std::string check_absent(const std::array<pki_file, N>& files, const char* what) {
  for (const pki_file& file : files) {
    struct stat status;
    if (::lstat(file.path.c_str(), &status) == 0) return refusal(file.path, what);
    // ENOTDIR: the directory is no directory, which creating it reports.
    if (errno != ENOENT && errno != ENOTDIR)
      return "cannot check " + file.path + ": " + system_reason(errno);
  }
  return {};
}

// Writes every file to a temporary name, then renames each to its own name
// without replacing anything; on any failure none of `files` is left behind.
template <std::size_t N>
std::string publish(const std::filesystem::path& dir, const std::array<pki_file, N>& files,
                    const char* what) {
  for (const pki_file& file : files)
    if (file.contents.empty())
      return "cannot encode " + file.name + ": " + openssl_reason();

  std::error_code dir_error;
  std::filesystem::create_directories(dir, dir_error);
  if (dir_error) return "cannot create directory " + dir.string() + ": " + dir_error.message();

  staged_files staged;
  std::array<std::string, N> temp_paths;
  for (std::size_t i = 0; i < N; ++i) {
    std::string error = write_temporary(files[i], staged, temp_paths[i]);
    if (!error.empty()) return error;
  }
  for (std::size_t i = 0; i < N; ++i) {
    if (const int error = rename_without_replacing(temp_paths[i], files[i].path); error != 0)
      return error == EEXIST ? refusal(files[i].path, what)
                             : "cannot write " + files[i].path + ": " + system_reason(error);
    staged.add(files[i].path);
  }
  staged.commit();
  return {};
}

std::string check_valid_days(int valid_days) {
  if (valid_days >= 1 && valid_days <= max_valid_days) return {};
  return "certificate validity of " + std::to_string(valid_days) + " days is outside 1.." +
         std::to_string(max_valid_days);
}

constexpr const char* pki_refusal =
    "a PKI (remove its ten files or choose another directory)";

std::string write_dev_pki_files(const dev_pki_options& options) {
  if (options.dir.empty()) return "no target directory given for the development PKI";
  if (std::string error = check_valid_days(options.valid_days); !error.empty()) return error;
  std::vector<alt_name> alt_names;
  if (std::string error = parse_hosts(options.hosts, alt_names); !error.empty()) return error;

  const std::filesystem::path& dir = options.dir;
  std::array<pki_file, 10> files{{{dir, ca_cert_file, false},
                                  {dir, ca_key_file, true},
                                  {dir, relay_cert_file, false},
                                  {dir, relay_key_file, true},
                                  {dir, server_side_cert_file, false},
                                  {dir, server_side_key_file, true},
                                  {dir, cluster_ca_cert_file, false},
                                  {dir, cluster_ca_key_file, true},
                                  {dir, node_cert_file, false},
                                  {dir, node_key_file, true}}};
  if (std::string error = check_absent(files, pki_refusal); !error.empty()) return error;

  ERR_clear_error();
  issued_certificate ca, relay, server_side, cluster_ca, node;
  if (!issue(ca_profile, {}, nullptr, options.valid_days, ca))
    return std::string("cannot create ") + ca_profile.file_name + ": " + openssl_reason();
  if (!issue(relay_profile, alt_names, &ca, options.valid_days, relay))
    return std::string("cannot create ") + relay_profile.file_name + ": " + openssl_reason();
  if (!issue(server_side_profile, {}, &ca, options.valid_days, server_side))
    return std::string("cannot create ") + server_side_profile.file_name + ": " +
           openssl_reason();
  if (!issue(cluster_ca_profile, {}, nullptr, options.valid_days, cluster_ca))
    return std::string("cannot create ") + cluster_ca_profile.file_name + ": " + openssl_reason();
  // Its own name, then the relay's hosts: a node answers on the relay's addresses.
  std::vector<alt_name> node_names{{GEN_DNS, node_profile.common_name}};
  node_names.insert(node_names.end(), alt_names.begin(), alt_names.end());
  if (!issue(node_profile, node_names, &cluster_ca, options.valid_days, node))
    return std::string("cannot create ") + node_profile.file_name + ": " + openssl_reason();

  files[0].contents = certificate_pem(ca.certificate.get());
  // Kept so that certs client can issue more identities under this CA.
  files[1].contents = private_key_pem(ca.key.get());
  files[2].contents = certificate_pem(relay.certificate.get());
  files[3].contents = private_key_pem(relay.key.get());
  files[4].contents = certificate_pem(server_side.certificate.get());
  files[5].contents = private_key_pem(server_side.key.get());
  files[6].contents = certificate_pem(cluster_ca.certificate.get());
  // Kept so that certs node can issue more node certificates.
  files[7].contents = private_key_pem(cluster_ca.key.get());
  files[8].contents = certificate_pem(node.certificate.get());
  files[9].contents = private_key_pem(node.key.get());
  return publish(dir, files, pki_refusal);
}

// Opens `path` for an OpenSSL PEM reader; 0 or an errno value.
int open_for_reading(const std::string& path, bio_ptr& bio) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  bio.reset(BIO_new_fd(fd, BIO_CLOSE));
  if (bio) return 0;
  ::close(fd);
  return ENOMEM;
}

// Fails instead of prompting on the terminal for an encrypted key's password.
int no_password(char*, int, int, void*) { return -1; }

// The CA certificate and key of the PKI in `dir`, checked to belong together.
std::string load_ca(const std::filesystem::path& dir, issued_certificate& ca,
                    const char* cert_file = ca_cert_file, const char* key_file = ca_key_file) {
  const std::string cert_path = (dir / cert_file).string();
  const std::string key_path = (dir / key_file).string();
  bio_ptr bio;
  if (const int error = open_for_reading(cert_path, bio); error != 0)
    return "cannot read " + cert_path + ": " + system_reason(error);
  ca.certificate.reset(PEM_read_bio_X509(bio.get(), nullptr, no_password, nullptr));
  if (!ca.certificate)
    return "cannot read " + cert_path + " as a PEM certificate: " + openssl_reason();
  if (X509_check_ca(ca.certificate.get()) == 0)
    return cert_path + " is not a CA certificate";

  if (const int error = open_for_reading(key_path, bio); error == ENOENT)
    return key_path +
           " does not exist: the PKI was made by an older tlsrelay, which did not keep the CA's "
           "key, or the key was moved away";
  else if (error != 0)
    return "cannot read " + key_path + ": " + system_reason(error);
  ca.key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr));
  if (!ca.key)
    return "cannot read " + key_path + " as an unencrypted PEM private key: " + openssl_reason();
  if (X509_check_private_key(ca.certificate.get(), ca.key.get()) != 1) {
    ERR_clear_error();
    return key_path + " does not match " + cert_path + ": it is not this CA's key";
  }
  return {};
}

// One more certificate, CN=name, under the CA of the PKI in `dir`, written as
// `cert_file` and `key_file` there; `what` names it in a refusal.
std::string write_issued_files(const std::filesystem::path& dir, const std::string& name,
                               certificate_profile profile, const std::vector<alt_name>& alt_names,
                               const std::string& cert_file, const std::string& key_file,
                               int valid_days, const std::string& what, bool cluster = false) {
  const std::string refusal_text =
      what + " (choose another NAME, or remove " + cert_file + " and " + key_file + ")";
  std::array<pki_file, 2> files{{{dir, cert_file, false}, {dir, key_file, true}}};
  if (std::string error = check_absent(files, refusal_text.c_str()); !error.empty())
    return error;

  ERR_clear_error();
  issued_certificate ca, issued;
  if (std::string error = cluster ? load_ca(dir, ca, cluster_ca_cert_file, cluster_ca_key_file)
                                  : load_ca(dir, ca);
      !error.empty())
    return error;
  profile.file_name = files[0].name.c_str();
  profile.common_name = name.c_str();
  if (!issue(profile, alt_names, &ca, valid_days, issued))
    return "cannot create " + files[0].name + ": " + openssl_reason();

  files[0].contents = certificate_pem(issued.certificate.get());
  files[1].contents = private_key_pem(issued.key.get());
  return publish(dir, files, refusal_text.c_str());
}

std::string write_client_files(const client_certificate_options& options) {
  if (options.dir.empty()) return "no PKI directory given for the client certificate";
  if (std::string error = check_client_name(options.name); !error.empty()) return error;
  if (std::string error = check_valid_days(options.valid_days); !error.empty()) return error;
  // The same clientAuth profile as client.crt.pem.
  return write_issued_files(options.dir, options.name, server_side_profile, {},
                            options.name + cert_suffix, options.name + key_suffix,
                            options.valid_days, "a client certificate");
}

std::string write_node_files(const node_certificate_options& options) {
  if (options.dir.empty()) return "no PKI directory given for the node certificate";
  if (std::string error = check_node_name(options.name); !error.empty()) return error;
  if (std::string error = check_valid_days(options.valid_days); !error.empty()) return error;
  return write_issued_files(options.dir, options.name, node_profile, {{GEN_DNS, options.name}},
                            options.name + node_cert_suffix, options.name + node_key_suffix,
                            options.valid_days, "a node certificate", true);
}

// `text` with anything but printable ASCII as \xNN, so that an error stays
// one readable line.
std::string printable(const std::string& text) {
  std::string out;
  for (const unsigned char c : text) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
      out += escaped;
    }
  }
  return out;
}

}  // namespace

std::string write_dev_pki(const dev_pki_options& options) {
  try {
    return write_dev_pki_files(options);
  } catch (const std::exception& e) {  // in practice std::bad_alloc
    return "cannot write the development PKI to " + options.dir.string() + ": " + e.what();
  }
}

std::string write_client_certificate(const client_certificate_options& options) {
  try {
    return write_client_files(options);
  } catch (const std::exception& e) {  // in practice std::bad_alloc
    return "cannot write a client certificate to " + options.dir.string() + ": " + e.what();
  }
}

std::string write_node_certificate(const node_certificate_options& options) {
  try {
    return write_node_files(options);
  } catch (const std::exception& e) {  // in practice std::bad_alloc
    return "cannot write a node certificate to " + options.dir.string() + ": " + e.what();
  }
}

std::vector<std::string> dev_pki_files() {
  return {ca_cert_file,          ca_key_file,          relay_cert_file,      relay_key_file,
          server_side_cert_file, server_side_key_file, cluster_ca_cert_file, cluster_ca_key_file,
          node_cert_file,        node_key_file};
}

std::vector<std::string> node_certificate_files(const std::string& name) {
  return {name + node_cert_suffix, name + node_key_suffix};
}

std::string check_node_name(const std::string& name) {
  const auto label_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  };
  bool ok = !name.empty() && name.size() <= max_node_name_length;
  std::size_t label_start = 0;
  for (std::size_t i = 0; ok && i <= name.size(); ++i) {
    if (i < name.size() && name[i] != '.') {
      ok = label_char(name[i]);
      continue;
    }
    // The end of a label: 1 to 63 characters, not starting or ending with '-'.
    ok = i > label_start && i - label_start <= max_dns_label_length &&
         name[label_start] != '-' && name[i - 1] != '-';
    label_start = i + 1;
  }
  if (ok) return {};
  return "\"" + printable(name) + "\" is not a node name: expected a DNS name of at most " +
         std::to_string(max_node_name_length) +
         " characters, labels of 1 to " + std::to_string(max_dns_label_length) +
         " of a-z, 0-9 and '-' (not at either end) separated by '.'";
}

std::vector<std::string> client_certificate_files(const std::string& name) {
  return {name + cert_suffix, name + key_suffix};
}

std::string check_client_name(const std::string& name) {
  const auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  };
  if (name.empty() || name.size() > max_client_name_length || name.front() == '-' ||
      !std::all_of(name.begin(), name.end(), allowed))
    return "\"" + printable(name) + "\" is not a client name: expected 1 to " +
           std::to_string(max_client_name_length) + " of a-z, 0-9 and '-', not starting with '-'";
  for (const char* reserved : reserved_client_names)
    if (name == reserved)
      return "\"" + name + "\" is taken by the files of certs init (" + name + cert_suffix +
             "); choose another client name";
  return {};
}

bool is_certificate_host(const std::string& host) {
  unsigned char address[16];
  return ::inet_pton(AF_INET, host.c_str(), address) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), address) == 1 || is_dns_name(host);
}

}  // namespace tlsrelay::cli
