// The real `tlsrelay` daemon, run as a child process on ports chosen at run
// time, with its own development PKI in a temporary directory.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/child_process.hpp"
#include "tests/support/socket_io.hpp"

namespace tlsrelay::test {

namespace fs = std::filesystem;

// The tlsrelay executable: $TLSRELAY_BINARY if set, else the one the build
// produced (compile definition TLSRELAY_BINARY).
std::string tlsrelay_binary();

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class temp_dir {
 public:
  explicit temp_dir(const std::string& label = "tlsrelay-test");
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A development PKI made by `tlsrelay certs init` in its own temporary
// directory: ca.crt.pem, ca.key.pem (CA), server.crt.pem, server.key.pem
// (relay side), client.crt.pem, client.key.pem (server side). Two pki
// objects are two unrelated CAs ("a foreign PKI").
class pki {
 public:
  explicit pki(std::vector<std::string> hosts = {});
  // The keys directory (pass to --keys).
  const fs::path& dir() const { return dir_; }
  fs::path file(const std::string& name) const { return dir_ / name; }
  fs::path ca() const { return file("ca.crt.pem"); }
  fs::path client_cert() const { return file("client.crt.pem"); }
  fs::path client_key() const { return file("client.key.pem"); }
  // `tlsrelay certs client <dir> <name>`: one more server-program
  // certificate under this CA (CN=name, clientAuth), another identity than
  // client_cert(). Returns {certificate, key}: dir/name.crt.pem and
  // dir/name.key.pem. Throws io_error with the tool's stderr if it fails
  // (name taken or malformed) or takes more than 30 s.
  std::pair<fs::path, fs::path> issue_client(const std::string& name);

 private:
  temp_dir tmp_;
  fs::path dir_;
};

// Lowercase hex of the SHA-256 of the DER of the first certificate in the PEM
// file at `certificate`: the identity a relay sees in a server's client
// certificate. Throws io_error naming the file if it cannot be read.
std::string fingerprint_sha256_hex(const fs::path& certificate);

// Sanitizer output (AddressSanitizer, LeakSanitizer, UndefinedBehaviorSanitizer,
// ThreadSanitizer) in what a process wrote to stderr: "" if there is none, else
// an excerpt that starts at the line where it begins.
std::string find_sanitizer_output(const std::string& stderr_text);

// A base port P such that every port P .. P+count is bindable on 127.0.0.1
// right now; outside the kernel's ephemeral range, so outgoing connections
// of other tests cannot take one. Throws io_error after many attempts.
std::uint16_t pick_free_port_range(unsigned count);

struct relay_options {
  std::string listen = "127.0.0.1";    // --listen (another 127.0.0.0/8 address for a second node)
  // --port: this one, tried once (nodes of a cluster on two addresses with
  // the same ports); default: a free range found at run time.
  std::optional<std::uint16_t> port;
  unsigned port_count = 4;             // --port-count
  std::string data_path = "splice";    // --data-path
  // --io-threads; 0: not given (one per core). Two by default, so that every
  // test runs the relay's threads apart, on any machine.
  unsigned io_threads = 2;
  std::string log_level = "info";      // --log-level; "": not given (a --config file decides)
  std::optional<std::string> myhost;   // --myhost, default: the relay's own
  std::vector<std::string> extra_args; // appended to the command line
  // --drain-timeout. "0": SIGTERM stops at once, pairs still open or not,
  // which is what stop() checks (exit within 2 s). A test of the drain gives
  // its own (then it ends the relay itself: signal + wait_exit).
  std::string drain_timeout = "0";
  // A program that runs the relay's command line, with its own arguments
  // first (e.g. {"prlimit", "--nofile=256:256", "--"}); it must exec the
  // relay so that pid() is the relay's. Empty: the relay is run directly.
  std::vector<std::string> launcher;
  millis start_timeout = 10000ms;      // until `tlsrelay: listening`
};

// `tlsrelay serve --listen 127.0.0.1 --port P --port-count N ...`, started
// on a free range (another range is tried if the relay reports a port of it
// taken; not with relay_options::port) and ready: it has printed
// `tlsrelay: listening`.
class relay_process {
 public:
  // With a PKI of its own.
  explicit relay_process(relay_options options = {});
  // With the keys directory of an existing PKI (must outlive the relay).
  relay_process(const fs::path& keys_dir, relay_options options);
  // The safety net for a test that ended early (exception, failed REQUIRE):
  // SIGKILL if still running (its own PID only), reap; if the test is
  // failing, the tail of the relay's stderr is printed to help diagnose.
  // A test that ended normally must have stopped the relay with stop()
  // (CHECK_RELAY_STOPS_CLEANLY in tests/e2e/e2e.hpp) or ended it itself;
  // otherwise the test is failed (see set_failure_reporter) with the outcome
  // of a stop() made here. A relay that the test ended itself must not have
  // written sanitizer output either.
  ~relay_process();
  relay_process(const relay_process&) = delete;
  relay_process& operator=(const relay_process&) = delete;

  // The control port P.
  std::uint16_t port() const { return port_; }
  unsigned port_count() const { return options_.port_count; }
  unsigned pair_count() const { return options_.port_count / 2; }
  // Pair i is (reverse P+1+i, public P+N/2+1+i).
  std::uint16_t reverse_port(unsigned pair) const;
  std::uint16_t public_port(unsigned pair) const;

  const fs::path& keys_dir() const { return keys_dir_; }
  const std::string& listening_line() const { return listening_line_; }
  pid_t pid() const { return process_->pid(); }
  std::string stderr_text() const { return process_->stderr_text(); }
  // Whether the relay's log (stderr) holds `text` (at least `times` times)
  // within `timeout`: a line is written a moment after what it reports could
  // be seen on a socket.
  bool wait_for_log(std::string_view text, millis timeout = 3000ms, std::size_t times = 1) const;
  std::string stdout_text() const { return process_->stdout_text(); }

  // How a test that started a relay ends it: SIGTERM, as an operator would,
  // with whatever servers and clients still connected (with the default
  // --drain-timeout 0 of relay_options: no drain). Returns what went
  // wrong, "" if nothing: the relay must exit within 2 s (it is given 3 s,
  // then SIGKILLed) with exit code 0, and its stderr must hold no sanitizer
  // output (find_sanitizer_output). A relay that had already exited is a
  // problem too. Later calls return the first verdict.
  std::string stop();
  // For a test that ends the relay itself (signal + wait_exit): sanitizer
  // output in its stderr so far, "" if none.
  std::string sanitizer_output() const;

  void signal(int sig) { process_->signal(sig); }
  std::optional<int> wait_exit(millis timeout) { return process_->wait_exit(timeout); }
  bool running() const { return process_->running(); }

 private:
  void start();
  // The destructor's check of a passing test that did not stop the relay.
  void report_unchecked_ending();

  relay_options options_;
  std::unique_ptr<pki> own_pki_;
  fs::path keys_dir_;
  std::uint16_t port_ = 0;
  std::string listening_line_;
  std::unique_ptr<child_process> process_;
  std::optional<std::string> stop_verdict_;  // set by stop()
  mutable bool sanitizer_checked_ = false;   // sanitizer_output() was called
};

// Lets the test framework tell the support library whether the running test
// has failed (the support library itself does not depend on Catch2).
void set_failure_probe(bool (*probe)());
bool current_test_failing();

// Lets the test framework receive failures that the support library finds
// on its own (a relay_process destroyed at the end of a passing test that
// did not stop it). Without a reporter they are printed to stderr.
void set_failure_reporter(void (*reporter)(const std::string& message));
void report_failure(const std::string& message);

}  // namespace tlsrelay::test
