#include "protocol/v1.hpp"

#include "protocol/errc.hpp"
#include "protocol/overloaded.hpp"
#include "protocol/wire.hpp"

namespace tlsrelay::v1 {
namespace {


std::string with_argument(std::string_view command, const host_port& ep) {
  std::string out(command);
  out += ' ';
  out += format_host_port(ep);
  out += wire::line_end;
  return out;
}

std::string bare(std::string_view command) {
  std::string out(command);
  out += wire::line_end;
  return out;
}

}  // namespace

std::string format_line(const relay_message& msg) {
  return std::visit(
    overloaded{
      [](const public_listener& m) { return with_argument(wire::public_listener, m.endpoint); },
      [](const reverse_listener& m) { return with_argument(wire::reverse_listener, m.endpoint); },
      [](const new_connection&) { return bare(wire::new_connection); },
      [](const no_available_listeners&) { return bare(wire::no_available_listeners); },
    },
    msg);
}

std::error_code parse_line(std::string_view line, relay_message& out) {
  if (line.empty()) return protocol_errc::empty_line;
  const auto space = line.find(' ');
  const auto command = line.substr(0, space);
  const bool has_argument = space != std::string_view::npos;
  const auto argument = has_argument ? line.substr(space + 1) : std::string_view{};

  const bool is_public = command == wire::public_listener;
  if (is_public || command == wire::reverse_listener) {
    if (!has_argument || argument.empty()) return protocol_errc::missing_argument;
    host_port ep;
    if (auto ec = parse_host_port(argument, ep)) return ec;
    if (is_public)
      out = public_listener{std::move(ep)};
    else
      out = reverse_listener{std::move(ep)};
    return {};
  }
  if (command == wire::new_connection || command == wire::no_available_listeners) {
    if (has_argument) return protocol_errc::unexpected_argument;
    if (command == wire::new_connection)
      out = new_connection{};
    else
      out = no_available_listeners{};
    return {};
  }
  return protocol_errc::unknown_command;
}

}  // namespace tlsrelay::v1
