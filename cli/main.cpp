#include <csignal>
#include <cstdio>

#include <CLI/CLI.hpp>

#include "cli/certs_command.hpp"
#include "cli/connect_command.hpp"
#include "cli/expose_command.hpp"
#include "cli/serve_command.hpp"
#include "cli/version.hpp"

namespace {

// `--version` on the launcher and on every subcommand, however deep: an
// operator asks whichever command is at hand.
void add_version_flags(CLI::App& app) {
  app.set_version_flag("--version", tlsrelay::cli::version_line(),
                       "Print the version and git commit, then exit");
  for (CLI::App* sub : app.get_subcommands([](CLI::App* s) { return !s->get_name().empty(); }))
    add_version_flags(*sub);  // (unnamed ones are option groups)
}

}  // namespace
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
  add_version_flags(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11 names the offending flag; usage errors exit 2 like the rest.
    std::fprintf(stderr, "tlsrelay: error: %s\nRun with --help for the options.\n", e.what());
    return 2;
  }
  return exit_code;
}
