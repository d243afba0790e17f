// The content of the relay's `--tokens FILE`: who may open a v2 session, and
// with which names and public ports.
//
//   # comment                       (first non-blank character '#')
//   <token> [name=<N>]... [port=<P>]...
//
// One entry per line; blank lines and comment lines are ignored; fields are
// separated by spaces and tabs; a line may end in "\r\n". The token is the
// first field and uses the alphabet of v2::valid_token, names that of
// v2::valid_name, ports are 1..65535. An entry without name= may use any name,
// one without port= any port. A token on two lines is an error.
//
// Pure: the caller reads the file; this only parses its text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tlsrelay {

struct token_entry {
  std::string token;
  std::vector<std::string> names;     // empty: any name
  std::vector<std::uint16_t> ports;   // empty: any port
  std::size_t line = 0;               // 1-based line of the file

  friend bool operator==(const token_entry& a, const token_entry& b) {
    return a.token == b.token && a.names == b.names && a.ports == b.ports && a.line == b.line;
  }
};

// Returns "" and the entries in file order, or one message "line N: ..." saying
// what is wrong, and `out` untouched. A message never quotes the file's text:
// the token is a secret, and a mangled line may hold one anywhere.
std::string parse_token_file(std::string_view text, std::vector<token_entry>& out);

}  // namespace tlsrelay
