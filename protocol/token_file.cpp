#include "protocol/token_file.hpp"

#include <algorithm>
#include <unordered_map>

#include "protocol/endpoint.hpp"
#include "protocol/v2.hpp"
#include "protocol/wire.hpp"

namespace tlsrelay {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::vector<std::string_view> split_blanks(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_blank(line[i])) ++i;
    const std::size_t start = i;
    while (i < line.size() && !is_blank(line[i])) ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

std::string at_line(std::size_t line, std::string_view what) {
  std::string out = "line " + std::to_string(line) + ": ";
  out += what;
  return out;
}

// The value of `key=value` if `field` is that key, else false.
bool value_of(std::string_view field, std::string_view key, std::string_view& value) {
  if (field.size() <= key.size() || field.substr(0, key.size()) != key ||
      field[key.size()] != '=')
    return false;
  value = field.substr(key.size() + 1);
  return true;
}

}  // namespace

std::string parse_token_file(std::string_view text, std::vector<token_entry>& out) {
  std::vector<token_entry> entries;
  std::unordered_map<std::string_view, std::size_t> line_of_token;  // views into `text`
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    const auto fields = split_blanks(line);
    if (fields.empty() || fields.front().front() == '#') continue;

    token_entry e;
    e.line = line_no;
    const auto token = fields.front();
    if (!v2::valid_token(token))
      return at_line(line_no, "the token is not 1..256 of A-Z a-z 0-9 . _ ~ + / = -");
    const auto [it, fresh] = line_of_token.emplace(token, line_no);
    if (!fresh)
      return at_line(line_no, "repeats the token of line " + std::to_string(it->second));
    e.token.assign(token);

    for (std::size_t i = 1; i < fields.size(); ++i) {
      const std::string field_no = "field " + std::to_string(i + 1);
      std::string_view value;
      if (value_of(fields[i], wire::key_name, value)) {
        if (!v2::valid_name(value))
          return at_line(line_no, field_no +
                                    ": name= wants 1..63 of a-z 0-9 -, not starting with -");
        if (std::find(e.names.begin(), e.names.end(), value) != e.names.end())
          return at_line(line_no, field_no + ": the same name= twice");
        e.names.emplace_back(value);
      } else if (value_of(fields[i], wire::key_port, value)) {
        std::uint16_t port = 0;
        if (parse_port(value, port))
          return at_line(line_no, field_no + ": port= wants a number in 1..65535");
        if (std::find(e.ports.begin(), e.ports.end(), port) != e.ports.end())
          return at_line(line_no, field_no + ": the same port= twice");
        e.ports.push_back(port);
      } else {
        return at_line(line_no, field_no + ": neither name=NAME nor port=PORT");
      }
    }
    entries.push_back(std::move(e));
  }
  out = std::move(entries);
  return {};
}

}  // namespace tlsrelay
