// deploy/tlsrelay.toml, the example an operator starts from: it documents
// every flag that `tlsrelay serve --help` shows (read from the help text, so
// a new flag without its entry fails here), with the default the help shows,
// and the relay starts with it as it is and with every entry uncommented.
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "net/relay_network.hpp"
#include "tests/e2e_v2/e2e_v2.hpp"
#include "tests/ops/ops.hpp"

using namespace tlsrelay::test;
using Catch::Matchers::Contains;

namespace {

const std::filesystem::path example_file =
  std::filesystem::path(TLSRELAY_SOURCE_DIR) / "deploy" / "tlsrelay.toml";

// serve's long flags as `serve --help` lists them, with the default it shows
// ("" for none): "  --port UINT:INT in [1 - 65535]=12000", "  -k,--keys TEXT=./x".
std::map<std::string, std::string> flags_in_help() {
  const auto help = run_tlsrelay({"serve", "--help"});
  REQUIRE(help.exit_code == 0);
  std::map<std::string, std::string> flags;
  static const std::regex option(R"(^\s+(?:-\w,)?--([a-z0-9-]+)(?:\s+(\S[^=]*?)?(?:=(\S+))?)?(?:\s{2,}.*)?$)");
  std::istringstream lines(help.stdout_text);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_match(line, m, option)) flags[m[1]] = m[3];
  }
  return flags;
}

// The example's entries, commented out (`# key = value`) or not, by key:
// their value as written.
struct entry {
  std::string value;
  bool active = false;
};
std::map<std::string, entry> entries_in(const std::string& text) {
  std::map<std::string, entry> entries;
  static const std::regex setting(R"(^(#\s*)?([a-z0-9-]+)\s*=\s*(.*?)\s*$)");
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_match(line, m, setting)) entries[m[2]] = {m[3], !m[1].matched};
  }
  return entries;
}

// Keys of the command line only, not of the file.
const std::set<std::string> not_keys = {"help", "version", "config"};
// Defaults that depend on the machine: the file shows this one's (a 2-CPU
// machine's), --help the running machine's.
const std::set<std::string> machine_dependent = {"io-threads"};

}  // namespace

TEST_CASE("deploy/tlsrelay.toml lists every flag of serve --help with its default",
          "[ops][config]") {
  const auto flags = flags_in_help();
  // The help was read at all: a few flags every relay has.
  REQUIRE(flags.count("port"));
  REQUIRE(flags.count("tokens"));
  REQUIRE(flags.count("config"));
  const auto entries = entries_in(read_text(example_file));
  for (const auto& [flag, help_default] : flags) {
    if (not_keys.count(flag)) continue;
    INFO("--" << flag << " (default in --help: \"" << help_default << "\")");
    REQUIRE(entries.count(flag) == 1);
    const auto& e = entries.at(flag);
    // A commented entry shows the default; an active one is the packaged
    // setting and says the default in its comment.
    if (machine_dependent.count(flag)) {
      CHECK(help_default == std::to_string(tlsrelay::net::default_io_threads()));
    } else if (!help_default.empty() && !e.active) {
      auto value = e.value;
      if (value.size() >= 2 && value.front() == '"') value = value.substr(1, value.size() - 2);
      CHECK(value == help_default);
    }
  }
}

TEST_CASE("the relay starts with deploy/tlsrelay.toml, as it is and with every entry "
          "uncommented", "[ops][config]") {
  const auto text = read_text(example_file);
  const auto flags = flags_in_help();
  // Every documented value, uncommented, must load with its type and check;
  // except the paths of an installed relay, which do not exist here (tokens
  // must), the admin endpoint's example port (a fixed port: the test runs on
  // free ones only), the cluster's (a fixed port, peers and node certificates
  // that are not here), and the entries of flags this build does not have.
  const std::set<std::string> left_commented = {"tokens", "state", "admin", "admin-token",
                                                "cluster-listen", "peer", "node-name",
                                                "node-cert", "node-key", "cluster-ca"};
  std::string uncommented;
  static const std::regex commented(R"(^#\s*([a-z0-9-]+)(\s*=.*)$)");
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_match(line, m, commented) && flags.count(m[1]) && !left_commented.count(m[1]))
      line = std::string(m[1]) + std::string(m[2]);
    uncommented += line + "\n";
  }
  REQUIRE(entries_in(uncommented).at("port").active);

  for (const auto& [label, contents] : {std::pair<std::string, std::string>{"as it is", text},
                                        {"uncommented", uncommented}}) {
    DYNAMIC_SECTION(label) {
      const temp_file config("tlsrelay.toml", contents);
      // The ports, the listen address and the keys directory of this test
      // come as flags, which win over the file.
      relay_options options = relay_with(4);
      options.extra_args = {"--config", config.str()};
      relay_process relay(options);
      auto server = connect_server(relay);
      server->serve_echo();
      auto client = tcp_conn::connect(relay.public_port(0));
      CHECK(client.exchange("through the example config", 26) == "through the example config");
      CHECK_RELAY_STOPS_CLEANLY(relay);
    }
  }
}
