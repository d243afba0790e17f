// `tlsrelay status`: what a running relay is doing, read from its admin
// endpoint (serve --admin): a table for people, or /status as it is (--json)
// for scripts; `--cluster` shows the nodes of its cluster instead.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace tlsrelay::cli {

// Adds `status` to `app`; stores the exit code in `exit_code`: 0 shown, 1 the
// relay unreachable or answering an error (one line on stderr), 2 usage,
// 3 (--cluster) the relay is not clustered.
void add_status_command(CLI::App& app, int& exit_code);
inline constexpr int status_exit_not_clustered = 3;

// The human table of a /status document; throws std::exception (e.g.
// nlohmann::json::exception) if `status_json` is not one.
std::string format_status_table(const std::string& status_json);

// The table of a /status document's "cluster" object: one row per node
// (this node marked "*"), then the redirects sent and the conflicts
// resolved. "" if the document has no "cluster" (the relay is not
// clustered); throws std::exception if `status_json` is not a /status
// document. Times are relative to the relay's own clock (started_unix_ms +
// uptime_seconds), not this machine's.
std::string format_cluster_table(const std::string& status_json);

// 1536 -> "1.5 KiB"; 3 -> "3 B".
std::string format_bytes(double bytes);
// 3723 -> "1h 02m"; 65 -> "1m 05s"; 4 -> "4s"; days shown as "2d 03h".
std::string format_duration(double seconds);
// The same without the space, for narrow columns: "1h02m", "3m12s", "4s", "2d03h".
std::string format_duration_compact(double seconds);

}  // namespace tlsrelay::cli
