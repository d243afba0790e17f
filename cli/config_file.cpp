#include "cli/config_file.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <toml++/toml.h>

namespace tlsrelay::cli {
namespace {

// What a value must be in the file, from the option's CLI11 type.
enum class value_kind { flag, integer, number, text };

value_kind kind_of(const CLI::Option& opt) {
  // A flag takes no value on the command line; in the file it is a boolean.
  if (opt.get_expected_max() == 0) return value_kind::flag;
  auto type = opt.get_type_name();  // e.g. "UINT", "FLOAT", "TEXT:FILE", "TEXT:{a,b}"
  type = type.substr(0, type.find(':'));
  if (type == "INT" || type == "UINT") return value_kind::integer;
  if (type == "FLOAT") return value_kind::number;
  return value_kind::text;
}

const char* describe(value_kind kind) {
  switch (kind) {
    case value_kind::flag: return "true or false";
    case value_kind::integer: return "an integer";
    case value_kind::number: return "a number";
    case value_kind::text: return "a string (in quotes)";
  }
  return "?";
}

const char* describe(toml::node_type type) {
  switch (type) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a floating-point number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

// Enough digits that the option reads back exactly the number in the file.
std::string format_number(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

// The value as the text CLI11 would have received after the flag, or "" with
// `error` set when its TOML type does not fit the option.
std::string value_text(const toml::node& node, value_kind kind, std::string& error) {
  switch (kind) {
    case value_kind::flag:
      if (auto b = node.value_exact<bool>()) return *b ? "true" : "false";
      break;
    case value_kind::integer:
      if (auto i = node.value_exact<std::int64_t>()) return std::to_string(*i);
      break;
    case value_kind::number:
      if (auto i = node.value_exact<std::int64_t>()) return std::to_string(*i);
      if (auto d = node.value_exact<double>()) {
        if (!std::isfinite(*d)) {
          error = "expected a finite number, found " + format_number(*d);
          return {};
        }
        return format_number(*d);
      }
      break;
    case value_kind::text:
      if (auto s = node.value_exact<std::string>()) return *s;
      break;
  }
  error = std::string("expected ") + describe(kind) + ", found " + describe(node.type());
  return {};
}

// CLI11's message without the option name it starts with ("--port: ...").
std::string without_option_name(const std::string& what, const CLI::Option& opt) {
  for (const auto& prefix : {opt.get_name() + ": ", "--" + opt.get_lnames().front() + ": "})
    if (what.rfind(prefix, 0) == 0) return what.substr(prefix.size());
  return what;
}

// The option whose long name is `key`, or nullptr.
CLI::Option* option_named(CLI::App& cmd, const std::string& key) {
  for (CLI::Option* opt : cmd.get_options()) {
    const auto& names = opt->get_lnames();
    if (std::find(names.begin(), names.end(), key) != names.end()) return opt;
  }
  return nullptr;
}

// Hands `values` to `opt` and runs its validators and callback; "" or CLI11's reason.
std::string set_option(CLI::Option& opt, const std::vector<std::string>& values) {
  try {
    opt.clear();
    opt.add_result(values);
    opt.run_callback();
  } catch (const CLI::Error& e) {
    return without_option_name(e.what(), opt);
  }
  return {};
}


// Every key of the file is checked, also those a flag overrides: a broken
// file is broken whatever the command line says, and must not surprise
// whoever drops the flag later.
std::string apply_file(CLI::App& cmd, const option_values& given, const std::string& path,
                       const std::set<std::string>& not_keys, file_values& from_file) {
  if (path.empty()) return {};
  std::string text;
  if (auto err = read_whole_file(path, text); !err.empty()) return "--config " + err;
  toml::table table;
  try {
    table = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    return path + ":" + std::to_string(e.source().begin.line) + ": not valid TOML: " +
           std::string(e.description());
  }
  // In the file's order (a table iterates by key): the first fault is named.
  std::vector<std::pair<const toml::key*, const toml::node*>> entries;
  for (auto&& [key, node] : table) entries.emplace_back(&key, &node);
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.first->source().begin.line < b.first->source().begin.line;
  });
  for (const auto& [key, node] : entries) {
    const std::string name(key->str());
    const auto where = path + ":" + std::to_string(key->source().begin.line) + ": ";
    CLI::Option* opt = not_keys.count(name) ? nullptr : option_named(cmd, name);
    if (opt == nullptr || opt->get_lnames().front() != name)
      return where + "unknown key \"" + name +
             "\" (the keys are the long flags of `" + cmd.get_name() + " --help` without the "
             "dashes" + (not_keys.count(name) ? "; this one is for the command line only)" : ")");
    const auto kind = kind_of(*opt);
    std::string type_error;
    // A repeatable flag takes an array (or one value); every other one value.
    std::vector<std::string> values;
    std::vector<std::string> element_where;  // of each array element: FILE:LINE:
    const bool repeatable = opt->get_expected_max() > 1;
    if (const auto* array = node->as_array(); array && repeatable) {
      for (const auto& element : *array) {
        element_where.push_back(path + ":" + std::to_string(element.source().begin.line) + ": ");
        values.push_back(value_text(element, kind, type_error));
        if (!type_error.empty())
          return element_where.back() + "key \"" + name + "\": an element: " + type_error;
      }
    } else {
      values.push_back(value_text(*node, kind, type_error));
      if (!type_error.empty())
        return where + "key \"" + name + "\": " + type_error +
               (repeatable ? " or an array of them" : "");
    }
    std::string shown;
    for (const auto& v : values) shown += (shown.empty() ? "" : ", ") + v;
    if (auto err = set_option(*opt, values); !err.empty()) {
      // An array's element at fault is named with its own line.
      for (std::size_t i = 0; i < element_where.size(); ++i)
        if (auto one = set_option(*opt, {values[i]}); !one.empty())
          return element_where[i] + "key \"" + name + "\": element " + values[i] +
                 " is not allowed: " + one;
      return where + "key \"" + name + "\": " + shown + " is not allowed: " + err;
    }
    if (!given.count(name)) from_file[name] = shown;  // else the flag is in force
  }
  return {};
}

}  // namespace

std::string read_whole_file(const std::string& path, std::string& out) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return path + ": is a directory";
  std::ifstream in(path, std::ios::binary);
  if (!in) return path + ": cannot be read (" + std::strerror(errno) + ")";
  std::ostringstream text;
  text << in.rdbuf();
  out = text.str();
  return {};
}

option_values values_given(const CLI::App& cmd, const std::set<std::string>& except) {
  option_values given;
  for (const CLI::Option* opt : cmd.get_options()) {
    const auto& names = opt->get_lnames();
    if (names.empty() || opt->count() == 0 || except.count(names.front())) continue;
    given[names.front()] = opt->results();
  }
  return given;
}

std::string apply_options(CLI::App& cmd, const option_values& given, const std::string& path,
                          const std::set<std::string>& not_keys, file_values& from_file) {
  from_file.clear();
  if (auto err = apply_file(cmd, given, path, not_keys, from_file); !err.empty()) return err;
  // Then the command line, over the file.
  for (const auto& [name, values] : given) {
    CLI::Option* opt = option_named(cmd, name);
    if (opt == nullptr) return "--" + name + ": not an option";
    if (auto err = set_option(*opt, values); !err.empty()) return "--" + name + ": " + err;
  }
  return {};
}

}  // namespace tlsrelay::cli
