// A subcommand's options read from a TOML config file (`serve --config FILE`).
//
// There is no second list of keys: every option of the subcommand that has a
// long name is a key of that name without the dashes (`--port-count 200` is
// `port-count = 200`, `--proxy-protocol` is `proxy-protocol = true`), so a
// new flag is a key the moment it exists. A value from the file goes through
// the same CLI11 conversion and validators as the flag would (ranges, member
// lists, files that must exist), so file and command line are checked alike.
// Flags on the command line win over the file.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace tlsrelay::cli {

// Option values by long name: what a command line gave (CLI11's results,
// as it received them).
using option_values = std::map<std::string, std::vector<std::string>>;

// What a config file set, by key, as the text handed to the option (compared
// between reloads to tell what changed). Keys overridden by a flag are not in it.
using file_values = std::map<std::string, std::string>;

// The options of the parsed subcommand `cmd` that were given on its command
// line, except those named in `except` (long names, e.g. "config", "help").
option_values values_given(const CLI::App& cmd, const std::set<std::string>& except);

// Applies `given` (from values_given), then the TOML file at `path` ("" for
// none) for every key not in `given`, to the options of `cmd`: a subcommand
// whose options are declared but that has not parsed anything, so each
// option's callback stores into its variable. Keys in `not_keys` (e.g.
// "config", "help", "version") are refused like unknown ones. Returns "" or
// one line naming the file, the line and the key at fault:
//   FILE:LINE: unknown key "prot" ...
//   FILE:LINE: key "port": expected an integer, found a string
//   FILE:LINE: key "port": 70000 is not allowed: Value 70000 not in range ...
// `from_file` receives the values taken from the file.
std::string apply_options(CLI::App& cmd, const option_values& given, const std::string& path,
                          const std::set<std::string>& not_keys, file_values& from_file);

// The whole file into `out`, or one line naming the file and what failed.
std::string read_whole_file(const std::string& path, std::string& out);

}  // namespace tlsrelay::cli
