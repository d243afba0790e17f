#include "tests/e2e_v2/e2e_v2.hpp"

#include <signal.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

namespace tlsrelay::test {

relay_options v2_relay(unsigned port_count, std::vector<std::string> extra_args) {
  relay_options options;
  options.port_count = port_count;
  options.extra_args = std::move(extra_args);
  return options;
}

temp_file::temp_file(const std::string& name, const std::string& text)
    : dir_("tlsrelay-e2e-v2"), path_(dir_.path() / name) {
  if (text.empty()) return;
  std::ofstream out(path_, std::ios::binary);
  out << text;
  if (!out) throw io_error("cannot write " + path_.string());
}

std::string temp_file::read() const {
  std::ifstream in(path_, std::ios::binary);
  if (!in) return "";
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::unique_ptr<v2_test_server> v2_server_with_certificate(const relay_process& relay,
                                                           v2_test_server::options opt) {
  return std::make_unique<v2_test_server>(
      relay.port(), v2_test_server::with_certificate(relay.keys_dir()), std::move(opt));
}

std::unique_ptr<v2_test_server> v2_server_without_certificate(const relay_process& relay,
                                                              v2_test_server::options opt) {
  return std::make_unique<v2_test_server>(
      relay.port(), v2_test_server::without_certificate(relay.keys_dir()), std::move(opt));
}

v2::hello hello_with(std::string token, std::string name, std::uint16_t port) {
  v2::hello h;
  h.token = std::move(token);
  h.name = std::move(name);
  h.port = port;
  return h;
}

std::string answer_of(std::uint16_t port, millis timeout) {
  tcp_conn conn = tcp_conn::connect(port, timeout);
  return conn.recv_until_eof(timeout);
}

void wait_for_no_controller_linked(std::uint16_t port, millis timeout) {
  const auto deadline = steady::now() + timeout;
  int silent_closes = 0;
  for (;;) {
    const std::string answer = answer_of(port);
    if (answer == "no controller linked") return;
    if (!answer.empty())
      throw io_error("public port " + std::to_string(port) +
                     " answered " + printable(answer) + " instead of \"no controller linked\"");
    ++silent_closes;
    if (steady::now() >= deadline)
      throw io_error("public port " + std::to_string(port) + " still did not answer \"no "
                     "controller linked\" " + std::to_string(timeout.count()) +
                     " ms after its session ended (" + std::to_string(silent_closes) +
                     " connections closed without a byte)");
    std::this_thread::sleep_for(20ms);
  }
}

bool closed_within(tcp_conn& conn, millis timeout) {
  try {
    conn.expect_closed(timeout);
    return true;
  } catch (const io_error&) {
    return false;
  }
}

std::string error_code_of(const hello_answer& answer) {
  if (!answer.error) return "none";
  return std::string(v2::to_string(answer.error->code));
}

// -- hand_run_relay ----------------------------------------------------------------

hand_run_relay::hand_run_relay(std::vector<std::string> serve_args, millis start_timeout) {
  serve_args.insert(serve_args.begin(), "serve");
  if (std::find(serve_args.begin(), serve_args.end(), "--drain-timeout") == serve_args.end())
    serve_args.insert(serve_args.end(), {"--drain-timeout", "0"});
  process_ = std::make_unique<child_process>(tlsrelay_binary(), serve_args);
  if (auto line = process_->wait_stdout_line("tlsrelay: listening", start_timeout)) {
    listening_line_ = *line;
    return;
  }
  const auto code = process_->exit_code();
  const std::string text = process_->command_line() +
                           (code ? " exited with code " + std::to_string(*code)
                                 : " did not print \"tlsrelay: listening\" within " +
                                       std::to_string(start_timeout.count()) + " ms") +
                           "; stderr: " + printable(process_->stderr_text(), 4000);
  process_.reset();
  throw io_error(text);
}

hand_run_relay::~hand_run_relay() {
  if (!process_) return;
  if (std::uncaught_exceptions() > 0 || current_test_failing()) {
    const std::string err = process_->stderr_text();
    std::cerr << "---- tlsrelay (hand-run, pid " << process_->pid()
              << ") stderr, last 8 KiB ----\n"
              << (err.size() > 8192 ? "..." + err.substr(err.size() - 8192) : err)
              << "\n---- end of tlsrelay stderr ----" << std::endl;
  } else if (!verdict_) {
    report_failure("a hand-run tlsrelay was still running at the end of the test: stop() it");
  }
  process_.reset();
}

std::string hand_run_relay::stop() {
  if (verdict_) return *verdict_;
  std::vector<std::string> problems;
  const std::string who = "tlsrelay (hand-run, pid " + std::to_string(process_->pid()) + ")";
  if (const auto ended = process_->exit_code()) {
    problems.push_back(who + " had already ended with code " + std::to_string(*ended));
  } else {
    const auto sent_at = steady::now();
    process_->signal(SIGTERM);
    const auto code = process_->wait_exit(3000ms);
    const auto took = std::chrono::duration_cast<millis>(steady::now() - sent_at);
    if (!code) {
      process_->kill();
      problems.push_back(who + " did not exit within 3000 ms of SIGTERM (then SIGKILLed)");
    } else {
      if (*code != 0)
        problems.push_back(who + " ended with exit code " + std::to_string(*code) +
                           " after SIGTERM");
      if (took > 2000ms)
        problems.push_back(who + " took " + std::to_string(took.count()) +
                           " ms to exit after SIGTERM (promised: at most 2000 ms)");
    }
  }
  if (const auto report = find_sanitizer_output(process_->stderr_text()); !report.empty())
    problems.push_back(who + " wrote sanitizer output:\n" + report);
  std::string verdict;
  for (const auto& p : problems) verdict += (verdict.empty() ? "" : "\n") + p;
  verdict_ = verdict;
  return verdict;
}

refused_start run_serve_expecting_refusal(std::vector<std::string> serve_args) {
  serve_args.insert(serve_args.begin(), "serve");
  child_process relay(tlsrelay_binary(), serve_args);
  refused_start out;
  out.exit_code = relay.wait_exit(5000ms);
  out.stdout_text = relay.stdout_text();
  out.stderr_text = relay.stderr_text();
  return out;
}

}  // namespace tlsrelay::test
