// Shared by the admin endpoint scenarios: a relay started with
// `--admin 127.0.0.1:0` prints the address it chose; these read it and talk
// to it.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e_v2/e2e_v2.hpp"
#include "tests/support/http_client.hpp"

namespace tlsrelay::test {

// serve flags for an admin endpoint on a free loopback port.
inline std::vector<std::string> with_admin(std::vector<std::string> more = {}) {
  std::vector<std::string> args{"--admin", "127.0.0.1:0"};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// The port of the relay's admin endpoint, from its stdout line
// `tlsrelay: admin endpoint on http://127.0.0.1:<PORT> ...` (printed before
// `tlsrelay: listening`, so it is there once the relay is ready).
inline std::uint16_t admin_port_of(const relay_process& relay) {
  const std::string marker = "admin endpoint on http://127.0.0.1:";
  const auto text = relay.stdout_text();
  const auto at = text.find(marker);
  if (at == std::string::npos) throw io_error("no admin endpoint line in: " + printable(text));
  return static_cast<std::uint16_t>(std::stoul(text.substr(at + marker.size())));
}

inline std::string admin_url_of(const relay_process& relay) {
  return "http://127.0.0.1:" + std::to_string(admin_port_of(relay));
}

// The value of the sample written exactly as `sample` (name and labels as the
// relay writes them) in a text exposition, or nullopt.
inline std::optional<double> sample_value(const std::string& text, const std::string& sample) {
  const std::string key = "\n" + sample + " ";
  const auto at = ("\n" + text).find(key);
  if (at == std::string::npos) return std::nullopt;
  return std::stod(text.substr(at + key.size() - 1));
}

// GET /metrics, required to answer 200; its body.
inline std::string scrape(std::uint16_t admin_port) {
  const auto reply = http_get(admin_port, "/metrics");
  INFO("GET /metrics: " << reply.status << " " << printable(reply.body));
  REQUIRE(reply.status == 200);
  return reply.body;
}

// Scrapes until `done` holds for the exposition text or `timeout` passes;
// returns the last scrape. (The relay counts an outcome when its actor
// learns it, a moment after the test's peer sees it.)
template <class Pred>
std::string scrape_until(std::uint16_t admin_port, Pred done, millis timeout = 5000ms) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    auto text = scrape(admin_port);
    if (done(text) || steady::now() >= deadline) return text;
    std::this_thread::sleep_for(50ms);  // between scrapes of a poll with a deadline
  }
}

// What a tool run to completion did.
struct tool_run {
  std::optional<int> exit_code;  // nullopt: still running at the deadline (then killed)
  std::string stdout_text, stderr_text;
};

inline tool_run run_tool(const std::string& program, std::vector<std::string> args,
                         millis timeout = 20000ms) {
  child_process tool(program, std::move(args));
  tool_run out;
  out.exit_code = tool.wait_exit(timeout);
  out.stdout_text = tool.stdout_text();
  out.stderr_text = tool.stderr_text();
  return out;
}

inline tool_run run_tlsrelay(std::vector<std::string> args, millis timeout = 20000ms) {
  return run_tool(tlsrelay_binary(), std::move(args), timeout);
}

}  // namespace tlsrelay::test
