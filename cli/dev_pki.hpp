// The development PKI of `tlsrelay certs init` and `tlsrelay certs client`, in
// the file layout of the original tx_tlsrelay plus the CA's key:
//
//   ca.crt.pem                      self-signed CA
//   ca.key.pem                      the CA's signing key: whoever holds it can
//                                   issue identities the relay accepts; keep it
//                                   secret, and offline (or deleted) in production
//   server.crt.pem, server.key.pem  the relay (serverAuth, subjectAltName = hosts)
//   client.crt.pem, client.key.pem  the server program that connects to the
//                                   relay's control port (clientAuth)
//   NAME.crt.pem, NAME.key.pem      further server programs, one identity each
//                                   (clientAuth, CN=NAME), from `certs client`
//   cluster-ca.crt.pem, .key.pem    the cluster CA (self-signed): nodes accept only
//                                   peers it signed, so a server's certificate from
//                                   ca.crt.pem makes nobody a node
//   node.crt.pem, node.key.pem      a relay node of a cluster, toward its peers
//                                   (serverAuth and clientAuth, CN=tlsrelay-node,
//                                   under the cluster CA)
//   NAME.node.crt.pem, .key.pem     further nodes, one identity each (both usages,
//                                   CN=NAME, DNS:NAME), from `certs node`
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace tlsrelay::cli {

struct dev_pki_options {
  std::filesystem::path dir;  // target directory, created if missing (with parents)
  // Go into the relay certificate's subjectAltName; IPs as IP:, names as DNS:.
  // Default when empty: localhost, 127.0.0.1, ::1
  std::vector<std::string> hosts;
  int valid_days = 825;
};

// Writes ca.crt.pem, ca.key.pem, server.crt.pem, server.key.pem,
// client.crt.pem, client.key.pem, node.crt.pem, node.key.pem into dir (keys
// mode 0600, unencrypted PKCS#8 PEM). The node certificate names
// DNS:tlsrelay-node and the relay's hosts. Returns an empty string on
// success, otherwise one human-readable line naming the file or directory at
// fault. Refuses (returns an error naming the file) if ANY of the eight files
// already exists, and then writes nothing at all. On any failure none of the
// eight files is left behind.
std::string write_dev_pki(const dev_pki_options& options);

// The eight files write_dev_pki writes.
std::vector<std::string> dev_pki_files();

struct client_certificate_options {
  std::filesystem::path dir;  // a PKI written by write_dev_pki: ca.crt.pem, ca.key.pem
  std::string name;           // see check_client_name
  int valid_days = 825;
};

// Issues one more clientAuth certificate, CN=name, signed by dir/ca.key.pem
// and dir/ca.crt.pem, into dir as name.crt.pem and name.key.pem (key mode
// 0600, unencrypted PKCS#8 PEM). Returns an empty string on success, otherwise
// one line naming the file at fault. Refuses if either file already exists,
// and then writes nothing; on any failure neither file is left behind.
std::string write_client_certificate(const client_certificate_options& options);

// The files write_client_certificate writes for `name`, in that order.
std::vector<std::string> client_certificate_files(const std::string& name);

struct node_certificate_options {
  std::filesystem::path dir;  // a PKI written by write_dev_pki: ca.crt.pem, ca.key.pem
  std::string name;           // see check_node_name
  int valid_days = 825;
};

// Issues a relay node's certificate (serverAuth and clientAuth, CN=name,
// subjectAltName DNS:name), signed by dir/ca.key.pem and dir/ca.crt.pem, into
// dir as name.node.crt.pem and name.node.key.pem (key mode 0600). Returns ""
// on success, otherwise one line naming the file at fault. Refuses if either
// file already exists, and then writes nothing; on any failure neither file
// is left behind.
std::string write_node_certificate(const node_certificate_options& options);

// The files write_node_certificate writes for `name`, in that order.
std::vector<std::string> node_certificate_files(const std::string& name);

// "" when `name` can name a node: a DNS name of at most 64 characters, labels
// of a-z, 0-9 and '-' (not at either end) separated by '.'. Otherwise why not,
// quoting the name.
std::string check_node_name(const std::string& name);

// "" when `name` can name a client certificate: 1 to 63 of a-z, 0-9 and '-',
// not starting with '-', and not a name of write_dev_pki's files (ca, server,
// client). Otherwise why not, quoting the name.
std::string check_client_name(const std::string& name);

// True when `host` can go into the relay certificate: an IPv4 or IPv6
// address, or a DNS name (labels of letters, digits, '-', '_', '*').
bool is_certificate_host(const std::string& host);

}  // namespace tlsrelay::cli
