// libFuzzer target for everything that reads the first bytes of a reverse or
// warm connection: protocol/first_line.hpp (the peeked first line, the length
// of a PROXY v2 header from its fixed part), the v2 first-line parsers
// (parse_reverse_line, parse_accept_line, parse_paired_line) and the PROXY v2
// decoder and encoder.
//
// The input is what a peer sends. Checked:
//  * find_first_line, with the relay's and the warm connection's maxima and a
//    small input-derived one, against a reference, whatever the size of the
//    peek and however the bytes are split across arrivals (every split in
//    two, input-derived chunks, and a reader that takes partial lines out as
//    the client does): same answer, and exactly the line is taken.
//  * a complete line that parses formats to a canonical text that parses back
//    equal, formats the same again, and is found whole by the reader.
//  * the PROXY v2 decoder on the input and on what follows a first line, at
//    every length: need_more → complete/invalid, never back; proxy_header_bytes
//    agrees with decode; a header built from input bytes decodes and encodes
//    back.
// A failed check prints the input and traps (__builtin_trap), which libFuzzer
// reports as a crash. Build and run: tests/fuzz/run.sh.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>

#include "protocol/connection_id.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/errc.hpp"
#include "protocol/first_line.hpp"
#include "protocol/proxy_header.hpp"
#include "protocol/v2.hpp"

namespace {

using namespace tlsrelay;
using status = first_line::status;
using proxy_v2::decode_status;

[[noreturn]] void fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "fuzz_first_lines: check failed: %s\n  input: [", what);
  for (unsigned char c : detail) {
    if (c >= 0x20 && c < 0x7f && c != '\\')
      std::fputc(c, stderr);
    else
      std::fprintf(stderr, "\\x%02x", c);
  }
  std::fprintf(stderr, "]\n");
  __builtin_trap();
}

#define FUZZ_CHECK(cond, detail)      \
  do {                                \
    if (!(cond)) fail(#cond, detail); \
  } while (0)

bool same(const first_line& a, const first_line& b) {
  return a.state == b.state && a.take == b.take && a.line == b.line;
}

// -- the first line --------------------------------------------------------------------

// What find_first_line must answer, written the plain way: byte by byte.
first_line reference(std::string_view seen, std::size_t max) {
  first_line r;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    if (i == max) {
      r.state = status::too_long;
      return r;
    }
    if (seen[i] == '\n') {
      r.state = status::complete;
      r.take = i + 1;
      r.line = seen.substr(0, i);
      if (i > 0 && seen[i - 1] == '\r') r.line = seen.substr(0, i - 1);
      return r;
    }
  }
  r.state = seen.size() >= max ? status::too_long : status::need_more;
  return r;
}

void check_shape(const first_line& r, std::string_view seen, std::size_t max) {
  switch (r.state) {
    case status::complete:
      FUZZ_CHECK(r.take >= 1 && r.take <= max && r.take <= seen.size(), seen);
      FUZZ_CHECK(seen[r.take - 1] == '\n', seen);
      FUZZ_CHECK(seen.substr(0, r.take - 1).find('\n') == std::string_view::npos, seen);
      // A view of the start of what was seen, ending at most one '\r' early.
      FUZZ_CHECK(r.line.data() == seen.data(), seen);
      FUZZ_CHECK(r.line.size() == r.take - 1 || (r.line.size() == r.take - 2 &&
                                                 seen[r.take - 2] == '\r'),
                 seen);
      break;
    case status::need_more:
      FUZZ_CHECK(r.take == 0 && r.line.empty(), seen);
      FUZZ_CHECK(seen.size() < max && seen.find('\n') == std::string_view::npos, seen);
      break;
    case status::too_long:
      FUZZ_CHECK(r.take == 0 && r.line.empty(), seen);
      FUZZ_CHECK(seen.size() >= max, seen);
      FUZZ_CHECK(seen.substr(0, max).find('\n') == std::string_view::npos, seen);
      break;
  }
}

// A peer's bytes arriving in pieces; a reader that peeks at most `max` bytes
// of what has arrived and takes exactly the line (the relay's way). Ends on the
// first answer other than need_more, or when the bytes run out. `cuts` are the
// arrival boundaries, in increasing order.
void check_peeking_reader(std::string_view in, std::size_t max, const first_line& expected,
                          const std::size_t* cuts, std::size_t n_cuts) {
  std::size_t arrived = 0;
  first_line r;
  auto arrive_until = [&](std::size_t end) {
    arrived = std::min(end, in.size());
    const auto peeked = in.substr(0, std::min(arrived, max));  // a peek of `max` bytes
    r = find_first_line(peeked, max);
  };
  arrive_until(0);  // asked before any byte (a maximum of 0 is too long already)
  for (std::size_t i = 0; i < n_cuts && r.state == status::need_more; ++i) {
    const std::size_t cut = cuts[i];
    if (cut <= arrived) continue;
    arrive_until(cut);
    if (r.state != status::need_more) break;
  }
  if (r.state == status::need_more && arrived < in.size()) arrive_until(in.size());
  FUZZ_CHECK(same(r, expected), in);
  // Only bytes that have arrived are taken; the rest stays for whoever comes next.
  if (r.state == status::complete) FUZZ_CHECK(r.take <= arrived, in);
}

// The client's way today: bytes without a line end are taken out as they come
// (so a peek never sees the same bytes twice) and the reader is asked about
// what was taken plus what a peek shows; then only the rest of the line is
// taken. The answer must be the same.
void check_taking_reader(std::string_view in, std::size_t max, const first_line& expected,
                         unsigned salt) {
  std::string taken;
  std::size_t pos = 0;  // bytes of `in` that have arrived
  for (;;) {
    // Input-derived arrival: 1..16 more bytes.
    if (pos < in.size()) {
      const auto b = static_cast<unsigned char>(in[(pos * 7 + salt) % in.size()]);
      pos = std::min(in.size(), pos + 1 + (b ^ salt) % 16);
    }
    // A peek into the room left in a buffer of `max` bytes.
    const auto room = max - std::min(max, taken.size());
    const auto peeked = in.substr(taken.size(), std::min(room, pos - taken.size()));
    const std::string seen = taken + std::string(peeked);
    const auto r = find_first_line(seen, max);
    if (r.state == status::need_more && pos < in.size()) {
      FUZZ_CHECK(seen.find('\n') == std::string::npos, in);
      taken = seen;  // take the partial line
      continue;
    }
    FUZZ_CHECK(r.state == expected.state && r.take == expected.take && r.line == expected.line, in);
    if (r.state == status::complete) FUZZ_CHECK(r.take >= taken.size(), in);
    return;
  }
}

void check_first_line(std::string_view in, std::size_t max) {
  const auto r = find_first_line(in, max);
  check_shape(r, in, max);
  FUZZ_CHECK(same(r, reference(in, max)), in);
  // A peek of exactly the maximum answers the same as a larger one.
  FUZZ_CHECK(same(find_first_line(in.substr(0, max), max), r), in);

  // Every split in two arrivals (k bytes, then the rest): what the first peek
  // shows is the prefix of k bytes, and its answer is need_more or already the
  // final one, never another; after the rest, it is the final one (above).
  // Past max + 1 bytes nothing changes (checked above too).
  const std::size_t last = std::min(in.size(), max + 1);
  bool decided = false;
  for (std::size_t k = 0; k <= last; ++k) {
    const auto p = find_first_line(in.substr(0, k), max);
    if (p.state == status::need_more) {
      FUZZ_CHECK(!decided, in);
    } else {
      decided = true;
      FUZZ_CHECK(same(p, r), in);
    }
  }
  FUZZ_CHECK(decided || r.state == status::need_more, in);
  // Input-derived arrivals of 1..8 bytes.
  std::size_t cut_list[128];
  std::size_t n_cuts = 0, at = 0;
  while (at < in.size() && n_cuts < 128) {
    at += 1 + static_cast<unsigned char>(in[(at * 13) % in.size()]) % 8;
    cut_list[n_cuts++] = at;
  }
  check_peeking_reader(in, max, r, cut_list, n_cuts);
  if (max > 0) check_taking_reader(in, max, r, 0x3c);
}

// -- the parsers of first lines -----------------------------------------------------------

bool is_parse_error(const std::error_code& ec) {
  if (ec.category() != protocol_category()) return false;
  switch (static_cast<protocol_errc>(ec.value())) {
    case protocol_errc::empty_line:
    case protocol_errc::unknown_command:
    case protocol_errc::missing_argument:
    case protocol_errc::unexpected_argument:
    case protocol_errc::bad_endpoint:
    case protocol_errc::bad_port:
    case protocol_errc::bad_connection_id:
    case protocol_errc::bad_value:
      return true;
    default:
      return false;
  }
}

// One line ending in "\r\n" with nothing else that ends a line; its body.
std::string_view body_of(const std::string& text) {
  FUZZ_CHECK(text.size() >= 2 && text.compare(text.size() - 2, 2, "\r\n") == 0, text);
  const std::string_view body(text.data(), text.size() - 2);
  FUZZ_CHECK(body.find_first_of("\r\n") == std::string_view::npos, text);
  return body;
}

// The canonical text, followed by whatever comes next on the connection, is
// found whole by the reader with the named maximum.
void check_found_whole(const std::string& text, std::size_t max, std::string_view next) {
  const std::string seen = text + std::string(next);  // r.line views it
  const auto r = find_first_line(seen, max);
  FUZZ_CHECK(r.state == status::complete && r.take == text.size() && r.line == body_of(text),
             text);
}

void check_reverse(std::string_view line, std::string_view next) {
  connection_id sentinel;
  sentinel.bytes.fill(0xa5);
  const v2::reverse_line untouched = v2::ready{4242, sentinel};
  v2::reverse_line msg = untouched;
  const auto ec = v2::parse_reverse_line(line, msg);
  v2::accept acc{sentinel};
  const auto acc_ec = v2::parse_accept_line(line, acc);
  if (ec) {
    FUZZ_CHECK(is_parse_error(ec) && msg == untouched, line);
    FUZZ_CHECK(acc_ec && acc.id == sentinel, line);
    return;
  }
  const auto text = std::visit([](const auto& m) { return v2::format_line(m); }, msg);
  FUZZ_CHECK(text.size() <= v2::max_reverse_line_bytes, text);
  v2::reverse_line back;
  FUZZ_CHECK(!v2::parse_reverse_line(body_of(text), back) && back == msg, text);
  FUZZ_CHECK(std::visit([](const auto& m) { return v2::format_line(m); }, back) == text, text);
  check_found_whole(text, v2::max_reverse_line_bytes, next);
  // parse_accept_line takes the accept lines, and only those.
  if (const auto* a = std::get_if<v2::accept>(&msg)) {
    FUZZ_CHECK(!acc_ec && acc == *a, line);
    FUZZ_CHECK(text.size() == v2::max_accept_line_bytes && v2::format_line(acc) == text, text);
  } else {
    FUZZ_CHECK(acc_ec == make_error_code(protocol_errc::unknown_command) && acc.id == sentinel,
               line);
    FUZZ_CHECK(std::get<v2::ready>(msg).serial != 0, line);
  }
}

void check_paired(std::string_view line, std::string_view next) {
  connection_id sentinel;
  sentinel.bytes.fill(0x3c);
  const v2::paired untouched{sentinel, {"sentinel", 4242}};
  v2::paired msg = untouched;
  if (const auto ec = v2::parse_paired_line(line, msg)) {
    FUZZ_CHECK(is_parse_error(ec) && msg == untouched, line);
    return;
  }
  FUZZ_CHECK(!msg.client.host.empty() && msg.client.port != 0, line);
  const auto text = v2::format_line(msg);
  v2::paired back;
  FUZZ_CHECK(!v2::parse_paired_line(body_of(text), back) && back == msg, text);
  FUZZ_CHECK(v2::format_line(back) == text, text);
  // Every client the relay names without a zone (an IP address, at most 45
  // characters) fits the warm connection's maximum.
  if (msg.client.host.size() <= 45) FUZZ_CHECK(text.size() <= v2::max_paired_line_bytes, text);
  if (text.size() <= v2::max_paired_line_bytes)
    check_found_whole(text, v2::max_paired_line_bytes, next);
}

// -- PROXY v2 -------------------------------------------------------------------------------

void check_proxy(std::string_view in) {
  const auto d = proxy_v2::decode(in);
  const auto expected = proxy_header_bytes(in);
  if (in.size() < proxy_v2::fixed_bytes) {
    FUZZ_CHECK(expected == 0, in);
    FUZZ_CHECK(d.status != decode_status::complete, in);
  } else if (expected == 0) {
    FUZZ_CHECK(d.status == decode_status::invalid, in);
  } else {
    FUZZ_CHECK(expected >= proxy_v2::fixed_bytes && expected <= proxy_v2::max_header_bytes, in);
    FUZZ_CHECK(d.status == (in.size() >= expected ? decode_status::complete
                                                  : decode_status::need_more),
               in);
    if (d.status == decode_status::complete) FUZZ_CHECK(d.header_bytes == expected, in);
    // The fixed part alone says the same.
    FUZZ_CHECK(proxy_header_bytes(in.substr(0, proxy_v2::fixed_bytes)) == expected, in);
  }
  if (d.status == decode_status::complete) {
    FUZZ_CHECK(d.header_bytes <= in.size(), in);
    if (d.local) {
      FUZZ_CHECK(d.addr == proxy_v2::addresses{}, in);
    } else {
      const auto header = proxy_v2::encode(d.addr);
      FUZZ_CHECK(header.size() == proxy_v2::fixed_bytes + proxy_v2::tcp4_address_bytes ||
                   header.size() == proxy_v2::fixed_bytes + proxy_v2::tcp6_address_bytes,
                 in);
      const auto again = proxy_v2::decode(header);
      FUZZ_CHECK(again.status == decode_status::complete && again.addr == d.addr &&
                   again.header_bytes == header.size() && !again.local,
                 header);
      FUZZ_CHECK(proxy_header_bytes(header) == header.size(), header);
    }
  }
  // Every length, as the bytes arrive: need_more, then the final answer.
  const std::size_t last = std::min<std::size_t>(in.size(), 256);
  decode_status prev = decode_status::need_more;
  for (std::size_t k = 0; k <= last; ++k) {
    const auto p = proxy_v2::decode(in.substr(0, k));
    if (prev != decode_status::need_more) {
      FUZZ_CHECK(p.status == prev, in);
    }
    if (p.status == decode_status::complete) {
      FUZZ_CHECK(d.status == decode_status::complete && p.header_bytes == d.header_bytes &&
                   p.local == d.local && p.addr == d.addr,
                 in);
    }
    if (p.status == decode_status::invalid) FUZZ_CHECK(d.status == decode_status::invalid, in);
    prev = p.status;
  }
}

// A header made from input bytes (family, addresses, ports, a TLV tail):
// decode must take it whole and encode its addresses back to the same header.
void check_built_proxy(std::string_view in) {
  if (in.size() < 2) return;
  const auto flags = static_cast<unsigned char>(in[0]);
  const bool v6 = flags & 1;
  const std::size_t address_bytes =
    v6 ? proxy_v2::tcp6_address_bytes : proxy_v2::tcp4_address_bytes;
  std::string material(in.substr(1));
  while (material.size() < address_bytes) material += material;  // never empty: in has 2+ bytes
  const std::size_t tlv_bytes = (flags >> 1) % 8;
  const auto build = [&](std::size_t length) {
    std::string h(proxy_v2::signature.begin(), proxy_v2::signature.end());
    h += static_cast<char>(proxy_v2::cmd_proxy);
    h += static_cast<char>(v6 ? proxy_v2::family_tcp6 : proxy_v2::family_tcp4);
    h += static_cast<char>(length >> 8);
    h += static_cast<char>(length & 0xff);
    h += material.substr(0, address_bytes);
    return h;
  };
  const auto bare = build(address_bytes);
  const auto header = build(address_bytes + tlv_bytes) + material.substr(0, tlv_bytes);
  const auto d = proxy_v2::decode(header + std::string(in));
  FUZZ_CHECK(d.status == decode_status::complete && !d.local, header);
  FUZZ_CHECK(d.header_bytes == header.size(), header);
  FUZZ_CHECK(proxy_header_bytes(header) == header.size(), header);
  const auto encoded = proxy_v2::encode(d.addr);
  const auto mapped = [](std::string_view a) {
    return a.substr(0, 12) == std::string_view("\0\0\0\0\0\0\0\0\0\0\xff\xff", 12);
  };
  // Two IPv4-mapped IPv6 addresses are written back as IPv4; anything else
  // comes back byte for byte, without the TLVs.
  const auto addrs = std::string_view(bare).substr(proxy_v2::fixed_bytes);
  if (v6 && mapped(addrs.substr(0, 16)) && mapped(addrs.substr(16, 16))) {
    FUZZ_CHECK(encoded.size() == proxy_v2::fixed_bytes + proxy_v2::tcp4_address_bytes, header);
  } else {
    FUZZ_CHECK(encoded == bare, header);
  }
  const auto back = proxy_v2::decode(encoded);
  FUZZ_CHECK(back.status == decode_status::complete && back.addr == d.addr, header);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  // The relay's maximum, the warm connection's, and a small one from the input
  // so that too_long is reached with short inputs (0 included).
  const std::size_t small = in.empty() ? 0 : static_cast<unsigned char>(in[0]) % 80;
  for (std::size_t max : {v2::max_reverse_line_bytes, v2::max_paired_line_bytes, small})
    check_first_line(in, max);

  // The relay reading a reverse connection: its first line, then the client's bytes.
  const auto reverse = find_reverse_line(in);
  if (reverse.state == status::complete) check_reverse(reverse.line, in.substr(reverse.take));
  // The server reading a warm connection: the relay's line, then maybe a PROXY header.
  const auto paired = find_paired_line(in);
  if (paired.state == status::complete) {
    check_paired(paired.line, in.substr(paired.take));
    check_proxy(in.substr(paired.take));
  }
  // The raw input as one line, and as the start of a PROXY header.
  check_reverse(in, {});
  check_paired(in, {});
  check_proxy(in);
  check_built_proxy(in);
  return 0;
}
