// Shared by the operations tests: the relay's log as a user reads it, a
// reload as an operator does it (SIGHUP, then the log line that says how it
// went), the certificate a relay presents, and `tlsrelay` run as a command.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/relay_process.hpp"
#include "tests/support/socket_io.hpp"

namespace tlsrelay::test {

// How often `needle` occurs in `text`.
std::size_t occurrences(const std::string& text, const std::string& needle);

// The last line of `text` that contains `needle` ("" if none).
std::string last_line_with(const std::string& text, const std::string& needle);

// Replaces the file at `path` with `text` in one rename, so the relay never
// reads half of it.
void replace_file(const std::filesystem::path& path, const std::string& text);
// The whole file (throws io_error if it cannot be read).
std::string read_text(const std::filesystem::path& path);

// SIGHUP to the relay, then waits for the log line of that reload's outcome:
// "reloaded ..." or "reload refused ...", which it returns. Throws io_error
// with the log's tail if none comes within `timeout`.
std::string reload(relay_process& relay, millis timeout = default_timeout);

// Connects with TLS to 127.0.0.1:port (no certificate of ours, nothing
// verified) and returns the SHA-256 fingerprint (hex) of the certificate the
// relay presents, as fingerprint_sha256_hex() gives it for a file.
std::string presented_certificate_sha256(std::uint16_t port, millis timeout = default_timeout);

// `tlsrelay ARGS...` run to its end (killed after `timeout`).
struct command_result {
  std::optional<int> exit_code;  // nullopt: it did not end in time
  std::string stdout_text, stderr_text;
};
command_result run_tlsrelay(std::vector<std::string> args, millis timeout = default_timeout);

// The lines of `text` that start "tlsrelay: error:".
std::vector<std::string> error_lines(const std::string& text);

}  // namespace tlsrelay::test
