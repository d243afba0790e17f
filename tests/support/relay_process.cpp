#include "tests/support/relay_process.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iostream>
#include <random>
#include <regex>
#include <system_error>

namespace tlsrelay::test {
namespace {

std::atomic<bool (*)()> failure_probe{nullptr};

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

}  // namespace

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
  child_process certs(tlsrelay_binary(), args);
  const auto code = certs.wait_exit(30s);
  if (code != 0)
    throw io_error(certs.command_line() + " " +
                   (code ? "exited with code " + std::to_string(*code) : "did not finish in 30 s") +
                   "; stderr: " + printable(certs.stderr_text(), 2000));
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
  if (process_ && (std::uncaught_exceptions() > 0 || current_test_failing())) {
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

void relay_process::start() {
  std::string failures;
  for (int attempt = 0; attempt < 8; ++attempt) {
    port_ = pick_free_port_range(options_.port_count);
    std::vector<std::string> args = {"serve",
                                     "--listen", "127.0.0.1",
                                     "--port", std::to_string(port_),
                                     "--port-count", std::to_string(options_.port_count),
                                     "--keys", keys_dir_.string(),
                                     "--log-level", options_.log_level,
                                     "--data-path", options_.data_path};
    if (options_.myhost) {
      args.push_back("--myhost");
      args.push_back(*options_.myhost);
    }
    args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
    process_ = std::make_unique<child_process>(tlsrelay_binary(), args);

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
    if (*code == 2 && names_port_in(err, port_, port_ + options_.port_count)) {
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

}  // namespace tlsrelay::test
