// A relay cluster on one machine, for end-to-end tests: every node a real
// `tlsrelay serve` child process on its own loopback address (127.0.0.2,
// 127.0.0.3, ...), all of them on the same ports, as the nodes of a
// StatefulSet would be. A node can be killed, signalled and started again
// with the same command line. Every wait has a deadline.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/endpoint.hpp"
#include "tests/support/child_process.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/relay_process.hpp"

namespace tlsrelay::test {

// The node addresses the tests use, in order ("a" on the first, ...).
inline const std::vector<std::string> node_addresses = {"127.0.0.2", "127.0.0.3", "127.0.0.4",
                                                        "127.0.0.5"};

// A development PKI whose relay certificate names every node address (and
// localhost), so that expose verifies each node it is sent to by address.
std::unique_ptr<pki> cluster_pki();

// The ports every node of one test uses, each on its own address: control
// P, pool P+1 .. P+max_port_count, cluster P+max_port_count+1, admin
// P+max_port_count+2.
struct cluster_ports {
  static constexpr unsigned max_port_count = 6;
  std::uint16_t control = 0;
  std::uint16_t cluster() const { return static_cast<std::uint16_t>(control + max_port_count + 1); }
  std::uint16_t admin() const { return static_cast<std::uint16_t>(control + max_port_count + 2); }
};

// Ports free on every one of node_addresses right now, outside the kernel's
// ephemeral range. Throws io_error after many attempts.
cluster_ports pick_cluster_ports();

struct node_options {
  std::string name;      // --node-name
  std::string address;   // --listen, --myhost, and the host of --cluster-listen and --admin
  unsigned port_count = 2;            // --port-count (at most cluster_ports::max_port_count)
  std::vector<std::string> peers;     // node addresses given as --peer (their cluster port)
  std::string peer_timeout = "1";     // --peer-timeout, seconds
  std::string drain_timeout = "0";    // --drain-timeout
  std::vector<std::string> extra;     // appended (e.g. --node-cert)
};

// Options of the node `name` on node_addresses[address], with the node
// addresses of `peers` (indexes into node_addresses) as --peer.
node_options node(std::string name, std::size_t address, std::vector<std::size_t> peers = {},
                  unsigned port_count = 2);

class cluster_node {
 public:
  // Starts the node (see start()).
  cluster_node(const std::filesystem::path& keys, cluster_ports ports, node_options options);
  // SIGKILLs a node still running (its own PID). If the test is failing,
  // prints the tail of its log (every run).
  ~cluster_node();
  cluster_node(const cluster_node&) = delete;
  cluster_node& operator=(const cluster_node&) = delete;

  // Runs the command line (again, after kill() or stop()) and waits for
  // `tlsrelay: listening`. Throws io_error with its stderr if it does not.
  void start();
  // SIGKILL, reaped: a crash, as the other nodes see it.
  void kill();
  // SIGTERM; "" if it exited 0 within 3 s with no sanitizer output, else
  // what went wrong.
  std::string stop();
  void signal(int sig);
  std::optional<int> wait_exit(millis timeout);
  bool running() const;

  const std::string& name() const { return options_.name; }
  const std::string& address() const { return options_.address; }
  const cluster_ports& ports() const { return ports_; }
  // "ADDRESS:P", what expose is given as --relay and a redirect names.
  std::string control_text() const;
  host_port control() const { return {options_.address, ports_.control}; }
  // Pair i's public port (the same number on every node of a test).
  std::uint16_t public_port(unsigned pair) const {
    return static_cast<std::uint16_t>(ports_.control + options_.port_count / 2 + 1 + pair);
  }

  // What the node wrote to stderr, over every run.
  std::string log() const;
  // Whether the log holds `text` at least `times` times within `timeout`.
  bool wait_for_log(std::string_view text, millis timeout, std::size_t times = 1) const;

  // GET `path` from the node's admin endpoint.
  http_reply admin_get(const std::string& path, millis timeout = default_timeout) const;
  // GET /status, parsed; throws io_error unless it answers 200 with JSON.
  nlohmann::json status() const;
  // GET /metrics; throws io_error unless it answers 200.
  std::string metrics() const;

 private:
  std::vector<std::string> command_line() const;

  std::filesystem::path keys_;
  cluster_ports ports_;
  node_options options_;
  std::unique_ptr<child_process> process_;
  std::string earlier_log_;  // stderr of the runs before this one
};

// Polls `condition` every 50 ms until it holds or `timeout` passes: for
// state a node shows only when asked (its /status). Exceptions from the
// condition count as "not yet".
bool eventually(const std::function<bool()>& condition, millis timeout);

// name -> state ("up", "draining", "down") of every member a /status lists.
std::map<std::string, std::string> member_states(const nlohmann::json& status);

// Whether `node`'s /status lists exactly `expected` (name -> state) within
// `timeout`; `last` gets the last member list seen, for messages.
bool wait_members(const cluster_node& node, const std::map<std::string, std::string>& expected,
                  millis timeout, std::string* last = nullptr);

// "a=up b=down" for messages.
std::string describe_members(const std::map<std::string, std::string>& members);

// The value of the Prometheus sample `series` (e.g.
// `tlsrelay_redirects_total{reason="full"}`) in a /metrics text; nullopt if
// it is absent.
std::optional<double> metric_value(const std::string& metrics, const std::string& series);

// `tlsrelay expose 127.0.0.1:<local_port> --relay SEED... -k KEYS ARGS...`.
std::unique_ptr<child_process> start_expose(std::uint16_t local_port,
                                            const std::vector<std::string>& seeds,
                                            const std::filesystem::path& keys,
                                            const std::vector<std::string>& args = {});

// The line expose prints for a public address on `node_address` (it prints
// one whenever the address changes): the host:port it names. nullopt if none
// within `timeout`.
std::optional<host_port> wait_exposed_on(child_process& expose, std::uint16_t local_port,
                                         const std::string& node_address, millis timeout);

// Prints what a child wrote to stderr if the test is failing when it goes
// out of scope (declare it after the child).
class log_on_failure {
 public:
  log_on_failure(const child_process& child, std::string label)
      : child_(child), label_(std::move(label)) {}
  ~log_on_failure();
  log_on_failure(const log_on_failure&) = delete;
  log_on_failure& operator=(const log_on_failure&) = delete;

 private:
  const child_process& child_;
  std::string label_;
};

// Waits until `text` occurs `n` times in the child's stderr.
bool wait_stderr(const child_process& child, std::string_view text, millis timeout,
                 std::size_t n = 1);

}  // namespace tlsrelay::test

// The last word on a node a test started: SIGTERM, exit 0 within 3 s, no
// sanitizer output (a Catch2 CHECK).
#define CHECK_NODE_STOPS_CLEANLY(node)                 \
  do {                                                 \
    const std::string node_problems = (node).stop();   \
    CHECK(node_problems == "");                        \
  } while (false)
