#include "cli/certs_command.hpp"


#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "cli/dev_pki.hpp"

namespace tlsrelay::cli {
namespace {

constexpr const char* default_pki_dir = "./relay_server_certs";

// The rule write_dev_pki applies; checking it while parsing makes a mistyped
// host a usage error that CLI11 reports with the flag's name.
std::string check_host(std::string& host) {
  if (is_certificate_host(host)) return {};
  return "\"" + host + "\" is neither a DNS name nor an IP address";
}

// write_dev_pki and write_client_certificate remove every file they wrote
// when they fail, so one of their files being there after a failure means it
// was there before: a refusal.
bool any_file_present(const std::filesystem::path& dir, const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    std::error_code ignored;  // unreadable counts as absent
    if (std::filesystem::exists(std::filesystem::symlink_status(dir / name, ignored))) return true;
  }
  return false;
}

// Exit code 1 for a failure, 2 for a refusal to overwrite (like a usage error).
int report_failure(const std::string& error, const std::filesystem::path& dir,
                   const std::vector<std::string>& files) {
  std::cerr << "tlsrelay: error: " << error << std::endl;
  return any_file_present(dir, files) ? 2 : 1;
}

int run_certs_init(const dev_pki_options& options) {
  if (const std::string error = write_dev_pki(options); !error.empty())
    return report_failure(error, options.dir, dev_pki_files());
  std::cout << "wrote development PKI to " << options.dir.string()
            << ": ca.crt.pem ca.key.pem (CA) server.crt.pem server.key.pem (relay) client.crt.pem "
               "client.key.pem (server side) cluster-ca.crt.pem cluster-ca.key.pem (cluster CA) "
               "node.crt.pem node.key.pem (relay node of a cluster)\n"
            << "ca.key.pem and cluster-ca.key.pem are signing keys: keep them secret; for "
               "production, move them offline or delete them (`certs client` needs ca.key.pem, "
               "`certs node` cluster-ca.key.pem to issue more certificates)"
            << std::endl;
  return 0;
}

int run_certs_client(const client_certificate_options& options) {
  const std::vector<std::string> files = client_certificate_files(options.name);
  if (const std::string error = write_client_certificate(options); !error.empty())
    return report_failure(error, options.dir, files);
  std::cout << "wrote client certificate " << (options.dir / files[0]).string() << " and key "
            << (options.dir / files[1]).string() << " (CN=" << options.name
            << ", clientAuth), signed by the CA in " << options.dir.string() << std::endl;
  return 0;
}

int run_certs_node(const node_certificate_options& options) {
  const std::vector<std::string> files = node_certificate_files(options.name);
  if (const std::string error = write_node_certificate(options); !error.empty())
    return report_failure(error, options.dir, files);
  std::cout << "wrote node certificate " << (options.dir / files[0]).string() << " and key "
            << (options.dir / files[1]).string() << " (CN=" << options.name
            << ", DNS:" << options.name << ", serverAuth and clientAuth), signed by the CA in "
            << options.dir.string() << std::endl;
  return 0;
}

void add_days_option(CLI::App& command, int& valid_days, const char* description) {
  command.add_option("--days", valid_days, description)
      ->type_name("N")
      ->check(CLI::Range(1, 36500))
      ->capture_default_str();
}

void add_init_command(CLI::App& certs, int& exit_code) {
  CLI::App* init = certs.add_subcommand(
      "init",
      "Create a development CA and, signed by it, the relay's and the server's certificates; "
      "and a cluster CA with a node's certificate");
  init->footer(
      "Files written to DIR:\n"
      "  ca.crt.pem                      the development CA, trusted by both sides\n"
      "  ca.key.pem                      the CA's signing key: whoever holds it can make\n"
      "                                  certificates the relay accepts. Keep it secret; for\n"
      "                                  production, move it offline or delete it\n"
      "  server.crt.pem, server.key.pem  the relay's certificate and key (serverAuth)\n"
      "  client.crt.pem, client.key.pem  the certificate and key of the server program\n"
      "                                  that connects to the relay's control port (clientAuth)\n"
      "  cluster-ca.crt.pem, .key.pem    the cluster CA: nodes accept only peers it signed (a\n"
      "                                  CA of its own, so that a server's certificate is no\n"
      "                                  node's); its key as secret as ca.key.pem\n"
      "  node.crt.pem, node.key.pem      a relay node of a cluster toward its peers (serverAuth\n"
      "                                  and clientAuth, under the cluster CA; CN and DNS name\n"
      "                                  tlsrelay-node, and the --host names)\n"
      "Private keys are unencrypted PKCS#8 PEM with mode 0600. `certs client DIR NAME` issues\n"
      "more server-program certificates with ca.key.pem, `certs node DIR NAME` more node\n"
      "certificates with cluster-ca.key.pem. Existing files are never overwritten: if any of the\n"
      "ten exists, "
      "nothing is written.");

  // Shared with the callback, which runs after parsing, when this frame is gone.
  struct init_arguments {
    std::string dir = default_pki_dir;
    std::vector<std::string> hosts;
    int valid_days = dev_pki_options{}.valid_days;
  };
  auto arguments = std::make_shared<init_arguments>();
  init->add_option("DIR", arguments->dir,
                   "directory for the ten PEM files; created (with parents) if missing")
      ->type_name("")
      ->capture_default_str();
  init->add_option("--host", arguments->hosts,
                   "name or IP address written into the relay certificate's subjectAltName; "
                   "repeatable; default: localhost, 127.0.0.1, ::1")
      ->type_name("NAME")
      ->allow_extra_args(false)  // `--host a DIR` leaves DIR positional
      ->check(CLI::Validator(check_host, "", "HOST"));
  add_days_option(*init, arguments->valid_days, "validity of each certificate, in days");

  init->callback([arguments, &exit_code] {
    dev_pki_options options;
    options.dir = arguments->dir;
    options.hosts = arguments->hosts;
    options.valid_days = arguments->valid_days;
    exit_code = run_certs_init(options);
  });
}

void add_client_command(CLI::App& certs, int& exit_code) {
  CLI::App* client = certs.add_subcommand(
      "client", "Issue one more server-program certificate (clientAuth) under the CA in DIR");
  client->footer(
      "Writes DIR/NAME.crt.pem and DIR/NAME.key.pem (mode 0600, unencrypted PKCS#8 PEM),\n"
      "signed with DIR/ca.key.pem and DIR/ca.crt.pem as `certs init` writes them. Each\n"
      "certificate is an identity of its own on the relay (its SHA-256 fingerprint).\n"
      "NAME: 1 to 63 of a-z, 0-9 and '-', not starting with '-'; ca, server and client are\n"
      "taken by `certs init`. Existing files are never overwritten.");

  // Shared with the callback, which runs after parsing, when this frame is gone.
  auto options = std::make_shared<client_certificate_options>();
  client->add_option("DIR", options->dir, "directory of a PKI made by `certs init`")
      ->type_name("")
      ->required();
  client->add_option("NAME", options->name, "the certificate's CN and the stem of its file names")
      ->type_name("")
      ->required()
      ->check(CLI::Validator([](std::string& name) { return check_client_name(name); }, "",
                             "NAME"));
  add_days_option(*client, options->valid_days, "validity of the certificate, in days");

  client->callback([options, &exit_code] { exit_code = run_certs_client(*options); });
}

void add_node_command(CLI::App& certs, int& exit_code) {
  CLI::App* node = certs.add_subcommand(
      "node",
      "Issue a relay node's certificate (serverAuth and clientAuth) under the cluster CA in DIR");
  node->footer(
      "Writes DIR/NAME.node.crt.pem and DIR/NAME.node.key.pem (mode 0600, unencrypted PKCS#8\n"
      "PEM), signed with DIR/cluster-ca.key.pem and DIR/cluster-ca.crt.pem as `certs init`\n"
      "writes them: CN\n"
      "NAME, subjectAltName DNS:NAME, usable both to accept peer nodes and to connect to them\n"
      "(mutual TLS between the nodes of a cluster). NAME: the node's DNS name (e.g. a\n"
      "StatefulSet pod's stable name), at most 64 characters, labels of a-z, 0-9 and '-'\n"
      "separated by '.'. Existing files are never overwritten.");

  // Shared with the callback, which runs after parsing, when this frame is gone.
  auto options = std::make_shared<node_certificate_options>();
  node->add_option("DIR", options->dir, "directory of a PKI made by `certs init`")
      ->type_name("")
      ->required();
  node->add_option("NAME", options->name,
                   "the node's DNS name: the certificate's CN and subjectAltName, and the stem "
                   "of its file names")
      ->type_name("")
      ->required()
      ->check(
          CLI::Validator([](std::string& name) { return check_node_name(name); }, "", "NAME"));
  add_days_option(*node, options->valid_days, "validity of the certificate, in days");

  node->callback([options, &exit_code] { exit_code = run_certs_node(*options); });
}

}  // namespace

void add_certs_command(CLI::App& app, int& exit_code) {
  CLI::App* certs =
      app.add_subcommand("certs",
                         "Manage the development PKI of the relay, its nodes and its servers");
  certs->require_subcommand(1);
  add_init_command(*certs, exit_code);
  add_client_command(*certs, exit_code);
  add_node_command(*certs, exit_code);
}

}  // namespace tlsrelay::cli
