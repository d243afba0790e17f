#include "protocol/v2.hpp"

#include <array>
#include <vector>

#include "protocol/errc.hpp"
#include "protocol/overloaded.hpp"
#include "protocol/wire.hpp"

namespace tlsrelay::v2 {
namespace {


constexpr std::array<std::pair<error_code, std::string_view>, 7> error_names{{
  {error_code::auth_failed, wire::err_auth_failed},
  {error_code::bad_request, wire::err_bad_request},
  {error_code::port_unavailable, wire::err_port_unavailable},
  {error_code::name_unavailable, wire::err_name_unavailable},
  {error_code::too_many_sessions, wire::err_too_many_sessions},
  {error_code::unsupported_version, wire::err_unsupported_version},
  {error_code::draining, wire::err_draining},
}};

// Fields separated by single spaces; an empty field (two spaces, a leading or
// trailing space) makes the line malformed.
bool split_fields(std::string_view line, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t start = 0;
  for (;;) {
    const auto space = line.find(' ', start);
    const auto field = line.substr(start, space == std::string_view::npos ? space : space - start);
    if (field.empty()) return false;
    out.push_back(field);
    if (space == std::string_view::npos) return true;
    start = space + 1;
  }
}

std::string line_of(std::string_view a, std::string_view b = {}, std::string_view c = {}) {
  std::string out(a);
  for (auto part : {b, c}) {
    if (part.empty()) continue;
    out += ' ';
    out += part;
  }
  out += wire::line_end;
  return out;
}

std::string key_value(std::string_view key, std::string_view value) {
  std::string out(key);
  out += '=';
  out += value;
  return out;
}

// Decimal digits without a leading zero (unless "0"), no overflow.
bool parse_decimal(std::string_view text, std::uint64_t& out) {
  if (text.empty() || text.size() > 20 || (text.size() > 1 && text[0] == '0')) return false;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    const std::uint64_t digit = static_cast<std::uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return false;
    value = value * 10 + digit;
  }
  out = value;
  return true;
}

bool is_hex32(std::string_view text) {
  connection_id ignored;
  return !parse_connection_id(text, ignored);
}

std::error_code parse_hello(const std::vector<std::string_view>& f, hello& out) {
  if (f.size() < 2) return protocol_errc::missing_argument;
  if (f[1] != "2") return protocol_errc::bad_version;
  hello h;
  bool seen_token = false, seen_name = false, seen_port = false;
  for (std::size_t i = 2; i < f.size(); ++i) {
    const auto eq = f[i].find('=');
    if (eq == std::string_view::npos) return protocol_errc::unknown_key;
    const auto key = f[i].substr(0, eq);
    const auto value = f[i].substr(eq + 1);
    if (key == wire::key_token) {
      if (seen_token) return protocol_errc::duplicate_key;
      if (!valid_token(value)) return protocol_errc::bad_value;
      seen_token = true;
      h.token.assign(value);
    } else if (key == wire::key_name) {
      if (seen_name) return protocol_errc::duplicate_key;
      if (!valid_name(value)) return protocol_errc::bad_value;
      seen_name = true;
      h.name.assign(value);
    } else if (key == wire::key_port) {
      if (seen_port) return protocol_errc::duplicate_key;
      if (parse_port(value, h.port)) return protocol_errc::bad_value;
      seen_port = true;
    } else {
      return protocol_errc::unknown_key;
    }
  }
  out = std::move(h);
  return {};
}

std::error_code expect_bare(const std::vector<std::string_view>& f) {
  return f.size() == 1 ? std::error_code{} : protocol_errc::unexpected_argument;
}

std::error_code parse_endpoint_field(const std::vector<std::string_view>& f, host_port& out) {
  if (f.size() < 2) return protocol_errc::missing_argument;
  if (f.size() > 2) return protocol_errc::unexpected_argument;
  return parse_host_port(f[1], out);
}

}  // namespace

bool valid_token(std::string_view token) {
  if (token.empty() || token.size() > max_token_bytes) return false;
  for (char c : token) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=' ||
                    c == '-';
    if (!ok) return false;
  }
  return true;
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > max_name_bytes || name.front() == '-') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string_view to_string(error_code code) {
  for (const auto& [c, name] : error_names)
    if (c == code) return name;
  return wire::err_bad_request;
}

std::string format_line(const server_message& msg) {
  return std::visit(
    overloaded{
      [](const hello& m) {
        std::string out(wire::hello);
        out += " 2";
        if (!m.token.empty()) out += ' ' + key_value(wire::key_token, m.token);
        if (!m.name.empty()) out += ' ' + key_value(wire::key_name, m.name);
        if (m.port != 0) out += ' ' + key_value(wire::key_port, std::to_string(m.port));
        out += wire::line_end;
        return out;
      },
      [](const ping&) { return line_of(wire::ping); },
      [](const pong&) { return line_of(wire::pong); },
    },
    msg);
}

std::string format_line(const relay_message& msg) {
  return std::visit(
    overloaded{
      [](const welcome& m) {
        auto line = line_of(wire::welcome, key_value(wire::key_session, m.session_secret),
                            key_value(wire::key_warm, std::to_string(m.warm_max)));
        if (m.proxy_header) {
          line.insert(line.size() - wire::line_end.size(),
                      ' ' + key_value(wire::key_proxy, wire::proxy_version_2));
        }
        return line;
      },
      [](const v1::public_listener& m) { return v1::format_line(m); },
      [](const v1::reverse_listener& m) { return v1::format_line(m); },
      [](const new_connection& m) {
        return line_of(wire::new_connection, to_hex(m.id), format_host_port(m.client));
      },
      [](const error& m) {
        // The text is for humans; line breaks would end the line early.
        std::string text = m.text.substr(0, max_error_text_bytes);
        for (char& c : text)
          if (c == '\r' || c == '\n') c = ' ';
        return line_of(wire::error, to_string(m.code), text);
      },
      [](const v1::no_available_listeners& m) { return v1::format_line(m); },
      [](const redirect& m) { return line_of(wire::redirect, format_host_port(m.relay)); },
      [](const ping&) { return line_of(wire::ping); },
      [](const pong&) { return line_of(wire::pong); },
    },
    msg);
}

std::string format_line(const accept& msg) { return line_of(wire::accept, to_hex(msg.id)); }

std::string format_line(const ready& msg) {
  return line_of(wire::ready, std::to_string(msg.serial), to_hex(msg.tag));
}

std::string format_line(const paired& msg) {
  return line_of(to_hex(msg.id), format_host_port(msg.client));
}

std::error_code parse_server_line(std::string_view line, server_message& out) {
  if (line.empty()) return protocol_errc::empty_line;
  std::vector<std::string_view> f;
  if (!split_fields(line, f)) return protocol_errc::unexpected_argument;
  if (f[0] == wire::hello) {
    hello h;
    if (auto ec = parse_hello(f, h)) return ec;
    out = std::move(h);
    return {};
  }
  if (f[0] == wire::ping || f[0] == wire::pong) {
    if (auto ec = expect_bare(f)) return ec;
    if (f[0] == wire::ping)
      out = ping{};
    else
      out = pong{};
    return {};
  }
  return protocol_errc::unknown_command;
}

std::error_code parse_relay_line(std::string_view line, relay_message& out) {
  if (line.empty()) return protocol_errc::empty_line;
  // `error` keeps its free text whole, spaces included.
  if (line.substr(0, wire::error.size()) == wire::error &&
      (line.size() == wire::error.size() || line[wire::error.size()] == ' ')) {
    if (line.size() <= wire::error.size() + 1) return protocol_errc::missing_argument;
    auto rest = line.substr(wire::error.size() + 1);
    const auto space = rest.find(' ');
    const auto code = rest.substr(0, space);
    const auto text = space == std::string_view::npos ? std::string_view{} : rest.substr(space + 1);
    for (const auto& [c, name] : error_names) {
      if (name != code) continue;
      // Only what format_line can write back: no more than the limit, no
      // line break (a CR can survive line splitting).
      if (text.size() > max_error_text_bytes || text.find_first_of("\r\n") != std::string_view::npos)
        return protocol_errc::bad_value;
      out = error{c, std::string(text)};
      return {};
    }
    return protocol_errc::bad_error_code;
  }
  std::vector<std::string_view> f;
  if (!split_fields(line, f)) return protocol_errc::unexpected_argument;
  const auto command = f[0];
  if (command == wire::welcome) {
    // session=<secret> first, then an optional warm=<N>, then an optional
    // proxy=2, in that order (one canonical form).
    if (f.size() < 2) return protocol_errc::missing_argument;
    if (f.size() > 4) return protocol_errc::unexpected_argument;
    const auto eq = f[1].find('=');
    if (eq == std::string_view::npos || f[1].substr(0, eq) != wire::key_session)
      return protocol_errc::unknown_key;
    const auto secret = f[1].substr(eq + 1);
    if (!is_hex32(secret)) return protocol_errc::bad_value;
    welcome w{std::string(secret), 0, false};
    std::size_t next = 2;
    const auto key_of = [&](std::size_t i) {
      const auto at = f[i].find('=');
      return at == std::string_view::npos ? std::string_view{} : f[i].substr(0, at);
    };
    const auto value_of = [&](std::size_t i) { return f[i].substr(f[i].find('=') + 1); };
    if (next < f.size() && key_of(next) == wire::key_warm) {
      std::uint64_t n = 0;
      if (!parse_decimal(value_of(next), n) || n > max_warm) return protocol_errc::bad_value;
      w.warm_max = static_cast<unsigned>(n);
      ++next;
    }
    if (next < f.size() && key_of(next) == wire::key_proxy) {
      if (value_of(next) != wire::proxy_version_2) return protocol_errc::bad_value;
      w.proxy_header = true;
      ++next;
    }
    if (next < f.size()) return protocol_errc::unknown_key;
    out = std::move(w);
    return {};
  }
  if (command == wire::new_connection) {
    if (f.size() != 3) return f.size() < 3 ? protocol_errc::missing_argument
                                           : protocol_errc::unexpected_argument;
    new_connection m;
    if (auto ec = parse_connection_id(f[1], m.id)) return ec;
    if (auto ec = parse_host_port(f[2], m.client)) return ec;
    out = std::move(m);
    return {};
  }
  if (command == wire::redirect) {
    redirect m;
    if (auto ec = parse_endpoint_field(f, m.relay)) return ec;
    out = std::move(m);
    return {};
  }
  if (command == wire::ping || command == wire::pong) {
    if (auto ec = expect_bare(f)) return ec;
    if (command == wire::ping)
      out = ping{};
    else
      out = pong{};
    return {};
  }
  // public_listener, reverse_listener, no_available_listeners: as in v1.
  v1::relay_message v1_msg;
  if (auto ec = v1::parse_line(line, v1_msg)) return ec;
  if (std::holds_alternative<v1::new_connection>(v1_msg)) return protocol_errc::missing_argument;
  std::visit(
    overloaded{
      [&](v1::public_listener& m) { out = std::move(m); },
      [&](v1::reverse_listener& m) { out = std::move(m); },
      [&](v1::no_available_listeners& m) { out = m; },
      [&](v1::new_connection&) {},
    },
    v1_msg);
  return {};
}

std::error_code parse_reverse_line(std::string_view line, reverse_line& out) {
  if (line.empty()) return protocol_errc::empty_line;
  std::vector<std::string_view> f;
  if (!split_fields(line, f)) return protocol_errc::unexpected_argument;
  if (f[0] == wire::accept) {
    if (f.size() != 2) return f.size() < 2 ? protocol_errc::missing_argument
                                           : protocol_errc::unexpected_argument;
    accept a;
    if (auto ec = parse_connection_id(f[1], a.id)) return ec;
    out = a;
    return {};
  }
  if (f[0] == wire::ready) {
    if (f.size() != 3) return f.size() < 3 ? protocol_errc::missing_argument
                                           : protocol_errc::unexpected_argument;
    ready r;
    if (!parse_decimal(f[1], r.serial) || r.serial == 0) return protocol_errc::bad_value;
    if (auto ec = parse_connection_id(f[2], r.tag)) return ec;
    out = r;
    return {};
  }
  return protocol_errc::unknown_command;
}

std::error_code parse_accept_line(std::string_view line, accept& out) {
  if (line.substr(0, line.find(' ')) != wire::accept)
    return line.empty() ? protocol_errc::empty_line : protocol_errc::unknown_command;
  reverse_line parsed;
  if (auto ec = parse_reverse_line(line, parsed)) return ec;
  if (!std::holds_alternative<accept>(parsed)) return protocol_errc::unknown_command;
  out = std::get<accept>(parsed);
  return {};
}

std::error_code parse_paired_line(std::string_view line, paired& out) {
  if (line.empty()) return protocol_errc::empty_line;
  std::vector<std::string_view> f;
  if (!split_fields(line, f)) return protocol_errc::unexpected_argument;
  if (f.size() != 2) return f.size() < 2 ? protocol_errc::missing_argument
                                         : protocol_errc::unexpected_argument;
  paired p;
  if (auto ec = parse_connection_id(f[0], p.id)) return ec;
  if (auto ec = parse_host_port(f[1], p.client)) return ec;
  out = std::move(p);
  return {};
}

}  // namespace tlsrelay::v2
