#include "cli/certs_command.hpp"


#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <system_error>

#include "cli/dev_pki.hpp"

namespace tlsrelay::cli {
namespace {

constexpr const char* default_pki_dir = "./relay_server_certs";
constexpr const char* pki_file_names[] = {"ca.crt.pem", "server.crt.pem", "server.key.pem",
                                          "client.crt.pem", "client.key.pem"};

// The rule write_dev_pki applies; checking it while parsing makes a mistyped
// host a usage error that CLI11 reports with the flag's name.
std::string check_host(std::string& host) {
  if (is_certificate_host(host)) return {};
  return "\"" + host + "\" is neither a DNS name nor an IP address";
}

// write_dev_pki removes every file it wrote when it fails, so one of the five
// files being there after a failure means it was there before: a refusal.
bool pki_files_present(const std::filesystem::path& dir) {
  for (const char* name : pki_file_names) {
    std::error_code ignored;  // unreadable counts as absent
    if (std::filesystem::exists(std::filesystem::symlink_status(dir / name, ignored))) return true;
  }
  return false;
}

int run_certs_init(const dev_pki_options& options) {
  const std::string error = write_dev_pki(options);
  if (!error.empty()) {
    std::cerr << "tlsrelay: error: " << error << std::endl;
    return pki_files_present(options.dir) ? 2 : 1;
  }
  std::cout << "wrote development PKI to " << options.dir.string()
            << ": ca.crt.pem server.crt.pem server.key.pem (relay) client.crt.pem client.key.pem "
               "(server side)"
            << std::endl;
  return 0;
}

}  // namespace

void add_certs_command(CLI::App& app, int& exit_code) {
  CLI::App* certs =
      app.add_subcommand("certs", "Manage the development PKI of the relay and its server");
  certs->require_subcommand(1);

  CLI::App* init = certs->add_subcommand(
      "init", "Create a development CA and, signed by it, the relay's and the server's certificates");
  init->footer(
      "Files written to DIR:\n"
      "  ca.crt.pem                      the development CA, trusted by both sides\n"
      "  server.crt.pem, server.key.pem  the relay's certificate and key (serverAuth)\n"
      "  client.crt.pem, client.key.pem  the certificate and key of the server program\n"
      "                                  that connects to the relay's control port (clientAuth)\n"
      "Private keys are unencrypted PKCS#8 PEM with mode 0600. The CA's private key is\n"
      "discarded after signing; for new certificates, run init with a new DIR. Existing\n"
      "files are never overwritten: if any of the five exists, nothing is written.");

  // Shared with the callback, which runs after parsing, when this frame is gone.
  struct init_arguments {
    std::string dir = default_pki_dir;
    std::vector<std::string> hosts;
    int valid_days = dev_pki_options{}.valid_days;
  };
  auto arguments = std::make_shared<init_arguments>();
  init->add_option("DIR", arguments->dir,
                   "directory for the five PEM files; created (with parents) if missing")
      ->type_name("")
      ->capture_default_str();
  init->add_option("--host", arguments->hosts,
                   "name or IP address written into the relay certificate's subjectAltName; "
                   "repeatable; default: localhost, 127.0.0.1, ::1")
      ->type_name("NAME")
      ->allow_extra_args(false)  // `--host a DIR` leaves DIR positional
      ->check(CLI::Validator(check_host, "", "HOST"));
  init->add_option("--days", arguments->valid_days, "validity of each certificate, in days")
      ->type_name("N")
      ->check(CLI::Range(1, 36500))
      ->capture_default_str();

  init->callback([arguments, &exit_code] {
    dev_pki_options options;
    options.dir = arguments->dir;
    options.hosts = arguments->hosts;
    options.valid_days = arguments->valid_days;
    exit_code = run_certs_init(options);
  });
}

}  // namespace tlsrelay::cli
