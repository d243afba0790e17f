// Shared by the protocol v2 end-to-end scenarios: the relay is the real
// `tlsrelay` process, the v2 server (tests/support/v2_test_server) and the
// clients are played by the test over loopback.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/e2e/e2e.hpp"
#include "tests/support/child_process.hpp"
#include "tests/support/v2_test_server.hpp"

namespace tlsrelay::test {

// A relay with `port_count` ports and these extra `serve` flags.
relay_options v2_relay(unsigned port_count, std::vector<std::string> extra_args = {});

// A file with `text` in a temporary directory of its own (a --tokens or
// --state file), removed with it.
class temp_file {
 public:
  explicit temp_file(const std::string& name, const std::string& text = {});
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  // The current contents ("" if the file does not exist).
  std::string read() const;

 private:
  temp_dir dir_;
  std::filesystem::path path_;
};

// A v2 server connected to the relay (TLS done, nothing sent yet).
std::unique_ptr<v2_test_server> v2_server_with_certificate(const relay_process& relay,
                                                           v2_test_server::options opt = {});
std::unique_ptr<v2_test_server> v2_server_without_certificate(const relay_process& relay,
                                                              v2_test_server::options opt = {});

v2::hello hello_with(std::string token = {}, std::string name = {}, std::uint16_t port = 0);

// Connects to the public port 127.0.0.1:port and returns everything it gets
// before EOF.
std::string answer_of(std::uint16_t port, millis timeout = default_timeout);

// A port whose pair just lost its session answers `no controller linked`
// once the relay has noticed; until then a connection to it is closed
// without a byte. Retries until `timeout`; throws io_error if other bytes
// arrive or the port never says it.
void wait_for_no_controller_linked(std::uint16_t port, millis timeout = 3000ms);

// Whether the relay ended `conn` (EOF or reset, no byte) within `timeout`.
bool closed_within(tcp_conn& conn, millis timeout);

// The error code of a hello_answer as text ("none" if it was no error).
std::string error_code_of(const hello_answer& answer);

// `tlsrelay serve ARGS...` run with exactly these arguments, for what
// relay_process cannot express (a given --port, a --listen other than
// 127.0.0.1: CLI11 refuses a flag given twice, so relay_options::extra_args
// cannot override them). Ready when constructed: it has printed
// `tlsrelay: listening` (else io_error with its stderr). Without a
// --drain-timeout among the arguments it gets --drain-timeout 0 (stop() wants
// the quick exit).
class hand_run_relay {
 public:
  explicit hand_run_relay(std::vector<std::string> serve_args, millis start_timeout = 10000ms);
  // SIGKILL if still running; the tail of its stderr if the test is failing.
  ~hand_run_relay();
  hand_run_relay(const hand_run_relay&) = delete;
  hand_run_relay& operator=(const hand_run_relay&) = delete;

  // As relay_process::stop(): SIGTERM, exit code 0 within 2 s, no sanitizer
  // output. "" if all is well, else what went wrong.
  std::string stop();
  std::string stderr_text() const { return process_->stderr_text(); }
  const std::string& listening_line() const { return listening_line_; }

 private:
  std::unique_ptr<child_process> process_;
  std::string listening_line_;
  std::optional<std::string> verdict_;
};

// What `tlsrelay serve ARGS...` did when it was expected to refuse to start.
struct refused_start {
  std::optional<int> exit_code;  // nullopt: still running after 5 s (then killed)
  std::string stdout_text, stderr_text;
};
refused_start run_serve_expecting_refusal(std::vector<std::string> serve_args);

}  // namespace tlsrelay::test
