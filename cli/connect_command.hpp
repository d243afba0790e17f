// `tlsrelay connect`: joins stdin/stdout to a TCP or TLS connection (like nc
// or openssl s_client), e.g. to reach a service through a relay's public port.
#pragma once

#include <CLI/CLI.hpp>

namespace tlsrelay::cli {

// Adds `connect` to `app`; running it blocks until the peer closes and stores
// the exit code (see exit_code in cli/expose_command.hpp) in `exit_code`.
void add_connect_command(CLI::App& app, int& exit_code);

}  // namespace tlsrelay::cli
