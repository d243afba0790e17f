#include "tests/cluster/cluster.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <fstream>
#include <iostream>
#include <random>
#include <regex>
#include <thread>

#include "tests/support/v2_test_server.hpp"

namespace tlsrelay::test {
namespace {

std::string tail(const std::string& text, std::size_t max) {
  return text.size() <= max ? text : "..." + text.substr(text.size() - max);
}

std::size_t occurrences(const std::string& text, std::string_view what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Whether a listening socket can be had on address:port now (it is closed again).
bool bindable(const std::string& address, std::uint16_t port) {
  unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (::inet_pton(AF_INET, address.c_str(), &sa.sin_addr) != 1) return false;
  return ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0 &&
         ::listen(fd.get(), 1) == 0;
}

}  // namespace

std::unique_ptr<pki> cluster_pki() {
  std::vector<std::string> hosts = {"localhost", "127.0.0.1"};
  hosts.insert(hosts.end(), node_addresses.begin(), node_addresses.end());
  return std::make_unique<pki>(hosts);
}

cluster_ports pick_cluster_ports() {
  // Outside the ephemeral range, so that no outgoing connection (of ours or
  // of another test) holds one of them.
  unsigned eph_low = 32768, eph_high = 60999;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> eph_low >> eph_high;
  const unsigned span = cluster_ports::max_port_count + 2;
  std::vector<std::pair<unsigned, unsigned>> windows;
  if (eph_low > 10000 + span + 1) windows.push_back({10000, eph_low - span - 1});
  if (eph_high + 1 + span < 65535) windows.push_back({eph_high + 1, 65535 - span});
  if (windows.empty()) windows.push_back({1024, 65535 - span});
  std::mt19937 rng(std::random_device{}());
  for (int attempt = 0; attempt < 200; ++attempt) {
    const auto& [first, last] = windows[rng() % windows.size()];
    const unsigned base = std::uniform_int_distribution<unsigned>(first, last)(rng);
    bool free = true;
    for (const auto& address : node_addresses)
      for (unsigned p = base; p <= base + span && free; ++p)
        free = bindable(address, static_cast<std::uint16_t>(p));
    if (free) return {static_cast<std::uint16_t>(base)};
  }
  throw io_error("no range of " + std::to_string(span + 1) +
                 " ports free on every node address after 200 attempts");
}

node_options node(std::string name, std::size_t address, std::vector<std::size_t> peers,
                  unsigned port_count) {
  node_options o;
  o.name = std::move(name);
  o.address = node_addresses.at(address);
  o.port_count = port_count;
  for (const auto p : peers) o.peers.push_back(node_addresses.at(p));
  return o;
}

cluster_node::cluster_node(const std::filesystem::path& keys, cluster_ports ports,
                           node_options options)
    : keys_(keys), ports_(ports), options_(std::move(options)) {
  if (options_.port_count > cluster_ports::max_port_count)
    throw io_error("node " + options_.name + ": --port-count " +
                   std::to_string(options_.port_count) + " overlaps the cluster port");
  start();
}

cluster_node::~cluster_node() {
  if (std::uncaught_exceptions() > 0 || current_test_failing())
    std::cerr << "---- node " << options_.name << " (" << control_text()
              << ") stderr, last 8 KiB ----\n"
              << tail(log(), 8192) << "\n---- end of node " << options_.name << " ----"
              << std::endl;
  process_.reset();  // SIGKILL if running, reap
}

std::vector<std::string> cluster_node::command_line() const {
  const auto& a = options_.address;
  std::vector<std::string> args = {
    "serve",
    "--listen", a,
    "--myhost", a,
    "--port", std::to_string(ports_.control),
    "--port-count", std::to_string(options_.port_count),
    "--keys", keys_.string(),
    "--admin", a + ":" + std::to_string(ports_.admin()),
    "--cluster-listen", a + ":" + std::to_string(ports_.cluster()),
    "--node-name", options_.name,
    "--peer-timeout", options_.peer_timeout,
    "--drain-timeout", options_.drain_timeout,
  };
  for (const auto& peer : options_.peers) {
    args.push_back("--peer");
    args.push_back(peer + ":" + std::to_string(ports_.cluster()));
  }
  args.insert(args.end(), options_.extra.begin(), options_.extra.end());
  return args;
}

void cluster_node::start() {
  if (process_) {
    if (process_->running())
      throw io_error("node " + options_.name + ": start() while it still runs");
    earlier_log_ += process_->stderr_text();
  }
  process_ = std::make_unique<child_process>(tlsrelay_binary(), command_line());
  if (process_->wait_stdout_line("tlsrelay: listening", 10000ms)) return;
  const auto code = process_->exit_code();
  throw io_error(process_->command_line() + " did not start (" +
                 (code ? "exit code " + std::to_string(*code) : std::string("no listening line")) +
                 "); stderr: " + printable(tail(process_->stderr_text(), 3000), 3000));
}

void cluster_node::kill() { process_->kill(); }

std::string cluster_node::stop() {
  const std::string who =
    "node " + options_.name + " (pid " + std::to_string(process_->pid()) + ")";
  std::string problems;
  if (const auto ended = process_->exit_code()) {
    problems = who + " had already ended with code " + std::to_string(*ended);
  } else {
    process_->signal(SIGTERM);
    const auto code = process_->wait_exit(3000ms);
    if (!code) {
      process_->kill();
      problems = who + " did not exit within 3 s of SIGTERM";
    } else if (*code != 0) {
      problems = who + " exited with code " + std::to_string(*code) + " after SIGTERM";
    }
  }
  if (auto report = find_sanitizer_output(process_->stderr_text()); !report.empty())
    problems += (problems.empty() ? "" : "\n") + who + " wrote sanitizer output:\n" + report;
  return problems;
}

void cluster_node::signal(int sig) { process_->signal(sig); }

std::optional<int> cluster_node::wait_exit(millis timeout) { return process_->wait_exit(timeout); }

bool cluster_node::running() const { return process_->running(); }

std::string cluster_node::control_text() const {
  return options_.address + ":" + std::to_string(ports_.control);
}

std::string cluster_node::log() const {
  return earlier_log_ + (process_ ? process_->stderr_text() : std::string());
}

bool cluster_node::wait_for_log(std::string_view text, millis timeout, std::size_t times) const {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    if (occurrences(log(), text) >= times) return true;
    if (steady::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

http_reply cluster_node::admin_get(const std::string& path, millis timeout) const {
  auto conn = tcp_connect_to(options_.address, ports_.admin(), timeout);
  const std::string where = options_.address + ":" + std::to_string(ports_.admin());
  conn.send_all("GET " + path + " HTTP/1.1\r\nHost: " + where + "\r\nConnection: close\r\n\r\n",
                timeout);
  const auto answer = conn.recv_until_eof(timeout);
  const auto line_end = answer.find("\r\n");
  const auto head_end = answer.find("\r\n\r\n");
  if (answer.compare(0, 9, "HTTP/1.1 ") != 0 || head_end == std::string::npos)
    throw io_error("not an HTTP answer from " + where + path + ": " + printable(answer));
  http_reply reply;
  reply.status = std::stoi(answer.substr(9, 3));
  reply.headers = answer.substr(line_end + 2, head_end - line_end - 2);
  reply.body = answer.substr(head_end + 4);
  return reply;
}

nlohmann::json cluster_node::status() const {
  const auto reply = admin_get("/status");
  if (reply.status != 200)
    throw io_error("node " + options_.name + ": GET /status answered " +
                   std::to_string(reply.status) + ": " + printable(reply.body, 300));
  auto doc = nlohmann::json::parse(reply.body, nullptr, false);
  if (doc.is_discarded())
    throw io_error("node " + options_.name +
                   ": /status is not JSON: " + printable(reply.body, 300));
  return doc;
}

std::string cluster_node::metrics() const {
  const auto reply = admin_get("/metrics");
  if (reply.status != 200)
    throw io_error("node " + options_.name + ": GET /metrics answered " +
                   std::to_string(reply.status));
  return reply.body;
}

bool eventually(const std::function<bool()>& condition, millis timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    try {
      if (condition()) return true;
    } catch (const std::exception&) {
      // Not answering yet (e.g. a node still starting): try again.
    }
    if (steady::now() >= deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
}

std::map<std::string, std::string> member_states(const nlohmann::json& status) {
  std::map<std::string, std::string> out;
  for (const auto& m : status.at("cluster").at("members"))
    out[m.at("name").get<std::string>()] = m.at("state").get<std::string>();
  return out;
}

std::string describe_members(const std::map<std::string, std::string>& members) {
  std::string out;
  for (const auto& [name, state] : members) out += (out.empty() ? "" : " ") + name + "=" + state;
  return out.empty() ? "(none)" : out;
}

bool wait_members(const cluster_node& node, const std::map<std::string, std::string>& expected,
                  millis timeout, std::string* last) {
  return eventually(
    [&] {
      const auto seen = member_states(node.status());
      if (last) *last = describe_members(seen);
      return seen == expected;
    },
    timeout);
}

std::optional<double> metric_value(const std::string& metrics, const std::string& series) {
  std::size_t start = 0;
  while (start < metrics.size()) {
    auto end = metrics.find('\n', start);
    if (end == std::string::npos) end = metrics.size();
    const std::string_view line(metrics.data() + start, end - start);
    if (line.size() > series.size() && line.substr(0, series.size()) == series &&
        line[series.size()] == ' ')
      return std::stod(std::string(line.substr(series.size() + 1)));
    start = end + 1;
  }
  return std::nullopt;
}

std::unique_ptr<child_process> start_expose(std::uint16_t local_port,
                                            const std::vector<std::string>& seeds,
                                            const std::filesystem::path& keys,
                                            const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"expose", "127.0.0.1:" + std::to_string(local_port)};
  for (const auto& seed : seeds) {
    argv.push_back("--relay");
    argv.push_back(seed);
  }
  argv.push_back("-k");
  argv.push_back(keys.string());
  argv.insert(argv.end(), args.begin(), args.end());
  return std::make_unique<child_process>(tlsrelay_binary(), std::move(argv));
}

std::optional<host_port> wait_exposed_on(child_process& expose, std::uint16_t local_port,
                                         const std::string& node_address, millis timeout) {
  const std::string prefix =
    "tlsrelay: exposing 127.0.0.1:" + std::to_string(local_port) + " on " + node_address + ":";
  const auto line = expose.wait_stdout_line(prefix, timeout);
  if (!line) return std::nullopt;
  host_port out;
  if (parse_host_port(line->substr(line->rfind(' ') + 1), out)) return std::nullopt;
  return out;
}

log_on_failure::~log_on_failure() {
  if (std::uncaught_exceptions() > 0 || current_test_failing())
    std::cerr << "---- " << label_ << " (" << child_.command_line() << ") stderr, last 8 KiB ----\n"
              << tail(child_.stderr_text(), 8192) << "\n---- end of " << label_ << " ----"
              << std::endl;
}

bool wait_stderr(const child_process& child, std::string_view text, millis timeout,
                 std::size_t n) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    if (occurrences(child.stderr_text(), text) >= n) return true;
    if (steady::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

}  // namespace tlsrelay::test
