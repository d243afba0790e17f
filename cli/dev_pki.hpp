// The development PKI of `tlsrelay certs init`, in the file layout of the
// original tx_tlsrelay:
//
//   ca.crt.pem                      self-signed CA; its private key is discarded
//   server.crt.pem, server.key.pem  the relay (serverAuth, subjectAltName = hosts)
//   client.crt.pem, client.key.pem  the server program that connects to the
//                                   relay's control port (clientAuth)
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

// Writes ca.crt.pem, server.crt.pem, server.key.pem, client.crt.pem,
// client.key.pem into dir (keys mode 0600, unencrypted PKCS#8 PEM).
// Returns an empty string on success, otherwise one human-readable line naming
// the file or directory at fault. Refuses (returns an error naming the file) if
// ANY of the five files already exists, and then writes nothing at all. On any
// failure none of the five files is left behind.
std::string write_dev_pki(const dev_pki_options& options);

// True when `host` can go into the relay certificate: an IPv4 or IPv6
// address, or a DNS name (labels of letters, digits, '-', '_', '*').
bool is_certificate_host(const std::string& host);

}  // namespace tlsrelay::cli
