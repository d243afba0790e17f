// `tlsrelay expose`: offers a local TCP service on a public port of a relay
// (the server side, run for a program that knows nothing of the relay), and
// the exit codes it shares with `tlsrelay connect`.
#pragma once

#include <system_error>

#include <CLI/CLI.hpp>

namespace tlsrelay::cli {

// Exit codes of expose and connect.
namespace exit_code {
inline constexpr int ok = 0;           // stopped by SIGINT/SIGTERM; connect: peer closed
inline constexpr int other = 1;        // anything else (protocol error, reset...)
inline constexpr int usage = 2;        // bad flag values, unusable files
inline constexpr int unreachable = 3;  // relay / host unreachable
inline constexpr int tls = 4;          // TLS handshake or certificate verification failed
inline constexpr int auth = 5;         // the relay refused our token or certificate
inline constexpr int refused = 6;      // pool full, port or name unavailable, too many sessions
}  // namespace exit_code

// The exit code for a failed first connection attempt (a client_errc).
int exit_code_for(std::error_code ec);

// Adds `expose` to `app`; running it blocks until SIGINT/SIGTERM (or a failed
// first connection) and stores the exit code in `exit_code`.
void add_expose_command(CLI::App& app, int& exit_code);

}  // namespace tlsrelay::cli
