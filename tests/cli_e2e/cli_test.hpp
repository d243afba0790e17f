// Running `tlsrelay expose` and `tlsrelay connect` as a user would, against a
// real relay and a local echo service played by the test.
#pragma once

#include <optional>
#include <thread>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/client/client_test_support.hpp"
#include "tests/support/child_process.hpp"
#include "tests/support/relay_process.hpp"

namespace tlsrelay::test {

// `tlsrelay ARGS...` as a child process (stdin /dev/null).
inline std::unique_ptr<child_process> run_tlsrelay(std::vector<std::string> args) {
  return std::make_unique<child_process>(tlsrelay_binary(), std::move(args));
}

// `tlsrelay ARGS... < stdin_file`.
inline std::unique_ptr<child_process> run_tlsrelay_with_stdin(const std::filesystem::path& stdin_file,
                                                              std::vector<std::string> args) {
  // exec: the child process is tlsrelay itself, not a shell around it.
  std::string script = "exec \"$0\"";
  for (std::size_t i = 0; i < args.size(); ++i) script += " \"$" + std::to_string(i + 2) + "\"";
  script += " < \"$1\"";
  std::vector<std::string> sh_args = {"-c", script, tlsrelay_binary(), stdin_file.string()};
  sh_args.insert(sh_args.end(), args.begin(), args.end());
  return std::make_unique<child_process>("/bin/sh", std::move(sh_args));
}

// The public address from expose's line `tlsrelay: exposing LOCAL on HOST:PORT`.
inline std::optional<host_port> exposed_address(const std::string& line) {
  const auto at = line.rfind(" on ");
  if (at == std::string::npos) return std::nullopt;
  host_port out;
  if (parse_host_port(line.substr(at + 4), out)) return std::nullopt;
  return out;
}

// Waits for the exposing line; fails the test with expose's stderr if none.
inline host_port wait_exposed(child_process& expose, millis timeout = default_timeout) {
  const auto line = expose.wait_stdout_line("tlsrelay: exposing", timeout);
  INFO("expose stderr: " << expose.stderr_text());
  REQUIRE(line.has_value());
  const auto address = exposed_address(*line);
  REQUIRE(address.has_value());
  return *address;
}

// The exit code of a child that must end within `timeout` (-1 if it did not).
inline int exit_code_within(child_process& child, millis timeout = default_timeout) {
  const auto code = child.wait_exit(timeout);
  return code ? *code : -1;
}

// Waits until `text` occurs `n` times in what the child wrote to stderr (a
// log line it writes when something happened). child_process offers no
// wake-up on stderr, so this looks every 20 ms until the deadline.
inline bool wait_stderr_count(const child_process& child, const std::string& text, std::size_t n,
                              millis timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    const std::string err = child.stderr_text();
    std::size_t count = 0;
    for (auto at = err.find(text); at != std::string::npos; at = err.find(text, at + 1)) ++count;
    if (count >= n) return true;
    if (steady::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

// SIGTERM, then the exit code.
inline int terminate(child_process& child, millis timeout = default_timeout) {
  child.signal(SIGTERM);
  return exit_code_within(child, timeout);
}

}  // namespace tlsrelay::test
