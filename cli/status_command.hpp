// `tlsrelay status`: what a running relay is doing, read from its admin
// endpoint (serve --admin): a table for people, or /status as it is (--json)
// for scripts.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace tlsrelay::cli {

// Adds `status` to `app`; stores the exit code in `exit_code`: 0 shown, 1 the
// relay unreachable or answering an error (one line on stderr), 2 usage.
void add_status_command(CLI::App& app, int& exit_code);

// The human table of a /status document; throws std::exception (e.g.
// nlohmann::json::exception) if `status_json` is not one.
std::string format_status_table(const std::string& status_json);

// 1536 -> "1.5 KiB"; 3 -> "3 B".
std::string format_bytes(double bytes);
// 3723 -> "1h 02m"; 65 -> "1m 05s"; 4 -> "4s"; days shown as "2d 03h".
std::string format_duration(double seconds);

}  // namespace tlsrelay::cli
