// `tlsrelay certs init [DIR] [--host NAME]...`: a development PKI in the
// original's layout.
#pragma once

#include <CLI/CLI.hpp>

namespace tlsrelay::cli {

// Adds the `certs` subcommand to `app`; running it stores the process exit
// code in `exit_code` (0 success, 2 bad usage or refusal, 1 other failure).
void add_certs_command(CLI::App& app, int& exit_code);

}  // namespace tlsrelay::cli
