#include <csignal>
#include <cstdio>

#include <CLI/CLI.hpp>

#include "cli/certs_command.hpp"
#include "cli/connect_command.hpp"
#include "cli/expose_command.hpp"
#include "cli/serve_command.hpp"
#include "cli/status_command.hpp"

int main(int argc, char** argv) {
  // Peers may vanish while we write to them; that is an error code, not a signal.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"tlsrelay: a TCP/TLS relay for servers behind NAT (compatible with tx_tlsrelay)",
               "tlsrelay"};
  app.require_subcommand(1);
  int exit_code = 0;
  tlsrelay::cli::add_serve_command(app, exit_code);
  tlsrelay::cli::add_certs_command(app, exit_code);
  tlsrelay::cli::add_expose_command(app, exit_code);
  tlsrelay::cli::add_connect_command(app, exit_code);
  tlsrelay::cli::add_status_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11 names the offending flag; usage errors exit 2 like the rest.
    std::fprintf(stderr, "tlsrelay: error: %s\nRun with --help for the options.\n", e.what());
    return 2;
  }
  return exit_code;
}
