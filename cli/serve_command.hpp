// `tlsrelay serve`: the relay daemon.
#pragma once

#include <CLI/CLI.hpp>

namespace tlsrelay::cli {

// Adds the `serve` subcommand to `app`; running it blocks until SIGINT or
// SIGTERM and stores the exit code in `exit_code` (0 clean stop, 2 bad flag,
// key file or port).
void add_serve_command(CLI::App& app, int& exit_code);

}  // namespace tlsrelay::cli
