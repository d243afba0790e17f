#include "tests/support/relay_process.hpp"

#include <signal.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iostream>
#include <random>
#include <regex>
#include <system_error>
#include <thread>

#include "cli/openssl_ptr.hpp"
#include "protocol/hex.hpp"

namespace tlsrelay::test {
namespace {

std::atomic<bool (*)()> failure_probe{nullptr};
std::atomic<void (*)(const std::string&)> failure_reporter{nullptr};

// The daemon promises to exit within this long after SIGTERM; stop() waits
// a little longer so that "late" and "hung" read differently.
constexpr millis promised_stop_time = 2000ms;
constexpr millis stop_grace = 3000ms;

std::mt19937& rng() {
  thread_local std::mt19937 engine(std::random_device{}() ^
                                   static_cast<unsigned>(::getpid()));
  return engine;
}

// The kernel's ephemeral (outgoing) port range; defaults if unreadable.
std::pair<unsigned, unsigned> ephemeral_range() {
  unsigned low = 32768, high = 60999;
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  in >> low >> high;
  return {low, high};
}

// Whether a `tlsrelay: error:` line of `stderr_text` names one of the ports
// first..last as a whole number.
bool names_port_in(const std::string& stderr_text, unsigned first, unsigned last) {
  static const std::regex error_line("tlsrelay: error:[^\n]*");
  static const std::regex number("\\d+");
  for (std::sregex_iterator line(stderr_text.begin(), stderr_text.end(), error_line), end;
       line != end; ++line) {
    const std::string text = line->str();
    for (std::sregex_iterator it(text.begin(), text.end(), number); it != end; ++it) {
      if (it->length() > 5) continue;
      const unsigned long value = std::stoul(it->str());
      if (value >= first && value <= last) return true;
    }
  }
  return false;
}

std::string tail(const std::string& text, std::size_t max) {
  return text.size() <= max ? text : "..." + text.substr(text.size() - max);
}

std::string describe_exit(int code) {
  std::string text = "exit code " + std::to_string(code);
  if (code > 128) text += " (signal " + std::to_string(code - 128) + ")";
  return text;
}

// `tlsrelay ARGS...` for a PKI: must exit 0 within 30 s without sanitizer
// output, else io_error with its stderr.
void run_certs(std::vector<std::string> args) {
  child_process certs(tlsrelay_binary(), std::move(args));
  const auto code = certs.wait_exit(30s);
  if (code != 0)
    throw io_error(certs.command_line() + " " +
                   (code ? "exited with code " + std::to_string(*code) : "did not finish in 30 s") +
                   "; stderr: " + printable(certs.stderr_text(), 2000));
  if (const auto report = find_sanitizer_output(certs.stderr_text()); !report.empty())
    throw io_error(certs.command_line() + " wrote sanitizer output:\n" + report);
}

}  // namespace

std::string find_sanitizer_output(const std::string& stderr_text) {
  // What ASan, LSan, UBSan and TSan print first: `==PID==ERROR: AddressSanitizer:
  // ...`, `==PID==ERROR: LeakSanitizer: detected memory leaks`, `file:line:
  // col: runtime error: ...`, `SUMMARY: UndefinedBehaviorSanitizer: ...`,
  // `WARNING: ThreadSanitizer: data race (pid=...)` (a warning, not an ERROR).
  static const char* const markers[] = {"runtime error:", "AddressSanitizer", "LeakSanitizer",
                                        "UndefinedBehaviorSanitizer", "ThreadSanitizer",
                                        "ERROR: "};
  std::size_t first = std::string::npos;
  for (const char* marker : markers) first = std::min(first, stderr_text.find(marker));
  if (first == std::string::npos) return "";
  const std::size_t line_start = stderr_text.rfind('\n', first);
  const std::size_t start = line_start == std::string::npos ? 0 : line_start + 1;
  constexpr std::size_t max_excerpt = 3000;
  std::string excerpt = stderr_text.substr(start, max_excerpt);
  if (const std::size_t rest = stderr_text.size() - start; rest > max_excerpt)
    excerpt += "\n... (" + std::to_string(rest - max_excerpt) + " more bytes)";
  return excerpt;
}

std::string tlsrelay_binary() {
  if (const char* env = std::getenv("TLSRELAY_BINARY"); env && *env) return env;
#ifdef TLSRELAY_BINARY
  return TLSRELAY_BINARY;
#else
  throw io_error("the tlsrelay binary is unknown: set TLSRELAY_BINARY");
#endif
}

temp_dir::temp_dir(const std::string& label) {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/" + label + "-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr)
    throw io_error("mkdtemp(" + pattern + "): " + std::error_code(errno, std::generic_category()).message());
  path_ = pattern;
}

temp_dir::~temp_dir() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

pki::pki(std::vector<std::string> hosts) : tmp_("tlsrelay-pki"), dir_(tmp_.path() / "keys") {
  std::vector<std::string> args = {"certs", "init", dir_.string()};
  for (auto& h : hosts) {
    args.push_back("--host");
    args.push_back(std::move(h));
  }
  run_certs(std::move(args));
}

std::pair<fs::path, fs::path> pki::issue_client(const std::string& name) {
  run_certs({"certs", "client", dir_.string(), name});
  return {file(name + ".crt.pem"), file(name + ".key.pem")};
}

std::string fingerprint_sha256_hex(const fs::path& certificate) {
  const cli::bio_ptr bio(BIO_new_file(certificate.c_str(), "r"));
  const cli::x509_ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  const bool ok = cert && X509_digest(cert.get(), EVP_sha256(), digest, &length) == 1;
  ERR_clear_error();
  if (!ok) throw io_error("cannot read a PEM certificate from " + certificate.string());
  return to_hex(std::string_view(reinterpret_cast<const char*>(digest), length));
}

std::uint16_t pick_free_port_range(unsigned count) {
  const auto [eph_low, eph_high] = ephemeral_range();
  // Candidate bases: [10000, eph_low) and (eph_high, 65535], whole range fitting.
  std::vector<std::pair<unsigned, unsigned>> windows;
  if (eph_low > 10000 + count + 1) windows.push_back({10000, eph_low - count - 1});
  if (eph_high + 1 + count < 65535) windows.push_back({eph_high + 1, 65535 - count});
  if (windows.empty()) windows.push_back({1024, 65535 - count});
  for (int attempt = 0; attempt < 200; ++attempt) {
    const auto& [first, last] = windows[rng()() % windows.size()];
    const unsigned base = std::uniform_int_distribution<unsigned>(first, last)(rng());
    bool all_free = true;
    for (unsigned p = base; p <= base + count && all_free; ++p)
      all_free = static_cast<bool>(listen_on(static_cast<std::uint16_t>(p)));
    if (all_free) return static_cast<std::uint16_t>(base);
  }
  throw io_error("no range of " + std::to_string(count + 1) +
                 " free ports found on 127.0.0.1 after 200 attempts");
}

relay_process::relay_process(relay_options options)
    : options_(std::move(options)), own_pki_(std::make_unique<pki>()), keys_dir_(own_pki_->dir()) {
  start();
}

relay_process::relay_process(const fs::path& keys_dir, relay_options options)
    : options_(std::move(options)), keys_dir_(keys_dir) {
  start();
}

relay_process::~relay_process() {
  if (!process_) return;
  // A test that ended normally must have checked how the relay ends. (A
  // failure reporter may throw, e.g. Catch2 run with --abort: not out of a
  // destructor.)
  if (std::uncaught_exceptions() == 0 && !current_test_failing() && !stop_verdict_) {
    try {
      report_unchecked_ending();
    } catch (...) {
    }
  }
  if (std::uncaught_exceptions() > 0 || current_test_failing()) {
    std::cerr << "---- tlsrelay (pid " << process_->pid() << ", control port " << port_
              << ") stderr, last 8 KiB ----\n"
              << tail(process_->stderr_text(), 8192) << "\n---- end of tlsrelay stderr ----"
              << std::endl;
  }
  process_.reset();  // SIGKILL if running, reap
}

std::uint16_t relay_process::reverse_port(unsigned pair) const {
  return static_cast<std::uint16_t>(port_ + 1 + pair);
}

std::uint16_t relay_process::public_port(unsigned pair) const {
  return static_cast<std::uint16_t>(port_ + pair_count() + 1 + pair);
}

void relay_process::report_unchecked_ending() {
  const std::string who = "tlsrelay (pid " + std::to_string(process_->pid()) +
                          ", control port " + std::to_string(port_) + ")";
  if (process_->running()) {
    const std::string verdict = stop();
    report_failure(who + " was still running at the end of the test: end every test that "
                   "starts a relay with CHECK_RELAY_STOPS_CLEANLY(relay). Stopped now: " +
                   (verdict.empty() ? std::string("it stops cleanly") : verdict));
  } else if (!sanitizer_checked_) {
    if (const auto report = sanitizer_output(); !report.empty())
      report_failure(who + " ended during the test and wrote sanitizer output:\n" + report);
  }
}

std::string relay_process::sanitizer_output() const {
  sanitizer_checked_ = true;
  return find_sanitizer_output(process_->stderr_text());
}

std::string relay_process::stop() {
  if (stop_verdict_) return *stop_verdict_;
  const std::string who = "tlsrelay (pid " + std::to_string(process_->pid()) +
                          ", control port " + std::to_string(port_) + ")";
  std::vector<std::string> problems;
  if (const auto ended = process_->exit_code()) {
    problems.push_back(who + " had already ended (" + describe_exit(*ended) +
                       ") when the test came to stop it");
  } else {
    const auto sent_at = steady::now();
    process_->signal(SIGTERM);
    const auto code = process_->wait_exit(stop_grace);
    const auto took = std::chrono::duration_cast<millis>(steady::now() - sent_at);
    if (!code) {
      process_->kill();
      problems.push_back(who + " did not exit within " + std::to_string(stop_grace.count()) +
                         " ms of SIGTERM (then SIGKILLed)");
    } else {
      if (*code != 0)
        problems.push_back(who + " ended with " + describe_exit(*code) + " after SIGTERM");
      if (took > promised_stop_time)
        problems.push_back(who + " took " + std::to_string(took.count()) +
                           " ms to exit after SIGTERM (promised: at most " +
                           std::to_string(promised_stop_time.count()) + " ms)");
    }
  }
  const std::string err = process_->stderr_text();
  sanitizer_checked_ = true;
  // (The rest of its stderr is printed by the destructor of a failing test.)
  if (const auto report = find_sanitizer_output(err); !report.empty())
    problems.push_back(who + " wrote sanitizer output:\n" + report);
  std::string verdict;
  for (const auto& p : problems) verdict += (verdict.empty() ? "" : "\n") + p;
  stop_verdict_ = verdict;
  return verdict;
}

void relay_process::start() {
  std::string failures;
  const int attempts = options_.port ? 1 : 8;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    port_ = options_.port ? *options_.port : pick_free_port_range(options_.port_count);
    std::vector<std::string> args = {"serve",
                                     "--listen", options_.listen,
                                     "--port", std::to_string(port_),
                                     "--port-count", std::to_string(options_.port_count),
                                     "--keys", keys_dir_.string(),
                                     "--data-path", options_.data_path,
                                     "--drain-timeout", options_.drain_timeout};
    if (!options_.log_level.empty()) {
      args.push_back("--log-level");
      args.push_back(options_.log_level);
    }
    if (options_.io_threads > 0) {
      args.push_back("--io-threads");
      args.push_back(std::to_string(options_.io_threads));
    }
    if (options_.myhost) {
      args.push_back("--myhost");
      args.push_back(*options_.myhost);
    }
    args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
    if (options_.launcher.empty()) {
      process_ = std::make_unique<child_process>(tlsrelay_binary(), args);
    } else {
      std::vector<std::string> launched(options_.launcher.begin() + 1, options_.launcher.end());
      launched.push_back(tlsrelay_binary());
      launched.insert(launched.end(), args.begin(), args.end());
      process_ = std::make_unique<child_process>(options_.launcher.front(), launched);
    }

    if (auto line = process_->wait_stdout_line("tlsrelay: listening", options_.start_timeout)) {
      listening_line_ = *line;
      return;
    }
    const auto code = process_->exit_code();
    const std::string err = process_->stderr_text();
    if (!code) {
      const std::string command = process_->command_line();
      process_.reset();
      throw io_error(command + " did not print \"tlsrelay: listening\" within " +
                     std::to_string(options_.start_timeout.count()) +
                     " ms; stderr: " + printable(tail(err, 4000), 4000));
    }
    // Someone took a port of our range between the probe and the relay's
    // bind: exit 2 naming that port. Try another range.
    if (*code == 2 && !options_.port && names_port_in(err, port_, port_ + options_.port_count)) {
      failures += "\n  range " + std::to_string(port_) + ": " + tail(err, 300);
      continue;
    }
    throw io_error(process_->command_line() + " exited with code " + std::to_string(*code) +
                   " before listening; stderr: " + printable(tail(err, 4000), 4000));
  }
  throw io_error("tlsrelay could not bind a free port range in 8 attempts:" + failures);
}

void set_failure_probe(bool (*probe)()) { failure_probe = probe; }

bool current_test_failing() {
  const auto probe = failure_probe.load();
  return probe != nullptr && probe();
}

void set_failure_reporter(void (*reporter)(const std::string& message)) {
  failure_reporter = reporter;
}

void report_failure(const std::string& message) {
  if (const auto reporter = failure_reporter.load()) {
    reporter(message);
  } else {
    std::cerr << "TEST FAILURE (no failure reporter installed): " << message << std::endl;
  }
}

bool relay_process::wait_for_log(std::string_view text, millis timeout, std::size_t times) const {
  const auto deadline = steady::now() + timeout;
  const auto count = [text](const std::string& log) {
    std::size_t n = 0;
    for (auto at = log.find(text); at != std::string::npos; at = log.find(text, at + 1))
      ++n;
    return n;
  };
  for (;;) {
    if (count(process_->stderr_text()) >= times) return true;
    if (steady::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

}  // namespace tlsrelay::test
