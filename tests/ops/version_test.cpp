// `--version` on `tlsrelay` and on every subcommand, however deep (found in
// the help texts, so a new subcommand is covered): one line
// `tlsrelay <version> (<commit>)`, exit code 0, nothing on stderr.
#include <regex>
#include <sstream>

#include "tests/e2e/e2e.hpp"
#include "tests/ops/ops.hpp"

using namespace tlsrelay::test;

namespace {

// The subcommands listed under "Subcommands:" in `tlsrelay PATH... --help`.
std::vector<std::string> subcommands_of(const std::vector<std::string>& path) {
  auto args = path;
  args.push_back("--help");
  const auto help = run_tlsrelay(args);
  REQUIRE(help.exit_code == 0);
  std::vector<std::string> names;
  std::istringstream lines(help.stdout_text);
  bool in_list = false;
  static const std::regex entry(R"(^\s+([a-z][a-z0-9-]*)(\s.*)?$)");
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("Subcommands:", 0) == 0) {
      in_list = true;
      continue;
    }
    std::smatch m;
    if (!in_list) continue;
    if (!std::regex_match(line, m, entry)) break;
    names.push_back(m[1]);
  }
  return names;
}

// Every command path: {}, {"serve"}, {"certs"}, {"certs", "init"}, ...
void collect(const std::vector<std::string>& path, std::vector<std::vector<std::string>>& out) {
  out.push_back(path);
  for (const auto& name : subcommands_of(path)) {
    auto deeper = path;
    deeper.push_back(name);
    collect(deeper, out);
  }
}

}  // namespace

TEST_CASE("version: --version on tlsrelay and every subcommand prints the version and commit",
          "[ops][version]") {
  std::vector<std::vector<std::string>> paths;
  collect({}, paths);
  // The help was read: the launcher, its four subcommands at least, and certs' two.
  REQUIRE(paths.size() >= 7);
  const std::regex expected("tlsrelay " + std::regex_replace(std::string(TLSRELAY_EXPECTED_VERSION),
                                                             std::regex(R"(\.)"), R"(\.)") +
                            R"( \(([0-9a-f]{4,40}|unknown)\)\n)");
  for (const auto& path : paths) {
    std::string shown = "tlsrelay";
    for (const auto& name : path) shown += " " + name;
    DYNAMIC_SECTION(shown << " --version") {
      auto args = path;
      args.push_back("--version");
      const auto result = run_tlsrelay(args);
      INFO("stdout: " << printable(result.stdout_text) << "\nstderr: "
                      << printable(result.stderr_text));
      CHECK(result.exit_code == 0);
      CHECK(std::regex_match(result.stdout_text, expected));
      CHECK(result.stderr_text.empty());
    }
  }
}
