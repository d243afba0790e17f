#include "protocol/first_line.hpp"

#include "protocol/proxy_header.hpp"

namespace tlsrelay {

first_line find_first_line(std::string_view seen, std::size_t max_line_bytes) {
  // Bytes past the maximum cannot be part of a valid line: looking at them
  // would make the answer depend on how large the caller's peek was.
  const auto window = seen.substr(0, max_line_bytes);
  const auto nl = window.find('\n');
  first_line out;
  if (nl == std::string_view::npos) {
    out.state = window.size() < max_line_bytes ? first_line::status::need_more
                                               : first_line::status::too_long;
    return out;
  }
  auto line = window.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  out.state = first_line::status::complete;
  out.line = line;
  out.take = nl + 1;
  return out;
}

std::size_t proxy_header_bytes(std::string_view fixed) {
  if (fixed.size() < proxy_v2::fixed_bytes) return 0;
  fixed = fixed.substr(0, proxy_v2::fixed_bytes);
  // decode() already checks everything the fixed part holds; on these 16
  // bytes alone it says need_more (or complete, for a header without
  // addresses) exactly when they start a header it would accept.
  if (proxy_v2::decode(fixed).status == proxy_v2::decode_status::invalid) return 0;
  const auto* p = reinterpret_cast<const unsigned char*>(fixed.data());
  return proxy_v2::fixed_bytes + (std::size_t{p[14]} << 8 | p[15]);
}

}  // namespace tlsrelay
