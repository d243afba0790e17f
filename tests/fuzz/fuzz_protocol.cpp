// libFuzzer target for the pure protocol layer (protocol/*.cpp).
//
// The input is a byte stream from a peer. It is fed to line_splitter in
// chunks whose sizes are derived from the input, and checked against a
// one-shot reference split; every line goes to v1::parse_line,
// parse_host_port, parse_port and the v2 parsers (server, relay, accept,
// reverse (`accept`/`ready`) and warm `<ID> <CLIENT>` lines), and whatever
// parses must format and parse back to an equal value. The whole input is
// also decoded as a PROXY v2 header (a complete one must encode and decode
// back to the same addresses), and read as a token file and as a state file
// (a state that parses must format and parse back equal). And TLS 1.3 records
// (protocol/tls13_records.hpp), under fixed secrets and the AEAD the first
// byte picks: the whole input as bytes from a peer without the keys, read in
// a loop until need_more or failed (never more consumed than given, never more
// than 2^14 bytes of data, progress on every record); the first 2^14 bytes
// sealed and opened back; and the input as a script for a client that has the
// keys (records of input-chosen inner types and contents, KeyUpdates, writes
// of ours), each record's outcome checked against RFC 8446's rules and our
// KeyUpdate answers and data opened with the client's copy of our keys. The
// input and each of its lines are also read as OpenSSL key log lines.
// Any mismatch aborts, which libFuzzer reports as a crash. Build and run:
// tests/fuzz/run.sh.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <variant>
#include <vector>

#include "protocol/connection_id.hpp"
#include "protocol/defaults.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/errc.hpp"
#include "protocol/hex.hpp"
#include "protocol/line_splitter.hpp"
#include "protocol/pool_layout.hpp"
#include "protocol/proxy_header.hpp"
#include "protocol/state_file.hpp"
#include "protocol/tls13_records.hpp"
#include "protocol/token_file.hpp"
#include "protocol/v1.hpp"
#include "protocol/v2.hpp"

namespace {

using namespace tlsrelay;
using status = line_splitter::status;

[[noreturn]] void fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "fuzz_protocol: check failed: %s\n  input: [", what);
  for (unsigned char c : detail) {
    if (c >= 0x20 && c < 0x7f && c != '\\')
      std::fputc(c, stderr);
    else
      std::fprintf(stderr, "\\x%02x", c);
  }
  std::fprintf(stderr, "]\n");
  std::abort();
}

#define FUZZ_CHECK(cond, detail)      \
  do {                                \
    if (!(cond)) fail(#cond, detail); \
  } while (0)

struct split_result {
  std::vector<std::string> lines;
  status last = status::need_more;
};

// What line_splitter must return for `in` whatever the chunking: lines end at
// '\n' with one '\r' before it removed; a line over `max` ends the stream, and
// so does an unterminated tail that even a final '\r' cannot bring to `max`.
split_result reference_split(std::string_view in, std::size_t max) {
  split_result r;
  for (;;) {
    const auto nl = in.find('\n');
    if (nl == std::string_view::npos) {
      r.last = (in.size() > max && in.size() - max > 1) ? status::too_long : status::need_more;
      return r;
    }
    auto line = in.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > max) {
      r.last = status::too_long;
      return r;
    }
    r.lines.emplace_back(line);
    in.remove_prefix(nl + 1);
  }
}

void drain(line_splitter& s, split_result& into) {
  for (;;) {
    const auto r = s.next();
    if (r.state != status::line) {
      into.last = r.state;
      return;
    }
    FUZZ_CHECK(r.line.find('\n') == std::string_view::npos, r.line);
    into.lines.emplace_back(r.line);
  }
}

// Chunk size at `off`, taken from the input itself: 1..64 bytes.
std::size_t chunk_at(std::string_view in, std::size_t off, unsigned salt) {
  const auto b = static_cast<unsigned char>(in[(off * 31 + salt) % in.size()]);
  return 1 + ((b ^ salt) % 64);
}

// Feeds `in` in input-derived chunks; drains after every append if `eager`,
// otherwise only once at the end.
split_result split_chunked(std::string_view in, std::size_t max, bool eager, unsigned salt) {
  line_splitter s(max);
  split_result out;
  std::size_t largest_chunk = 0;
  for (std::size_t off = 0; off < in.size();) {
    const auto chunk = in.substr(off, chunk_at(in, off, salt));
    off += chunk.size();
    if (chunk.size() > largest_chunk) largest_chunk = chunk.size();
    s.append(chunk);
    // Whatever the caller does between appends, the unterminated tail is
    // bounded: only complete lines may pile up in an undrained splitter.
    const auto fed = in.substr(0, off);
    const auto last_nl = fed.rfind('\n');
    const std::size_t complete = last_nl == std::string_view::npos ? 0 : last_nl + 1;
    FUZZ_CHECK(s.buffered() <= complete + max + 2, in);
    if (eager) {
      // Documented bound: the limit, a pending '\r', and one append.
      FUZZ_CHECK(s.buffered() <= max + 1 + largest_chunk, in);
      drain(s, out);
    }
  }
  drain(s, out);
  // too_long is final.
  if (out.last == status::too_long) {
    s.append("new_connection\r\n");
    FUZZ_CHECK(s.next().state == status::too_long, in);
  }
  return out;
}

void check_split(std::string_view in, std::size_t max) {
  const auto expected = reference_split(in, max);
  for (bool eager : {true, false}) {
    const auto got = split_chunked(in, max, eager, eager ? 0x5a : 0xc3);
    FUZZ_CHECK(got.last == expected.last, in);
    FUZZ_CHECK(got.lines == expected.lines, in);
  }
}

bool same_message(const v1::relay_message& a, const v1::relay_message& b) {
  if (a.index() != b.index()) return false;
  if (const auto* p = std::get_if<v1::public_listener>(&a))
    return p->endpoint == std::get<v1::public_listener>(b).endpoint;
  if (const auto* r = std::get_if<v1::reverse_listener>(&a))
    return r->endpoint == std::get<v1::reverse_listener>(b).endpoint;
  return true;
}

bool is_parse_error(const std::error_code& ec) {
  if (ec.category() != protocol_category()) return false;
  switch (static_cast<protocol_errc>(ec.value())) {
    case protocol_errc::empty_line:
    case protocol_errc::unknown_command:
    case protocol_errc::missing_argument:
    case protocol_errc::unexpected_argument:
    case protocol_errc::bad_endpoint:
    case protocol_errc::bad_port:
      return true;
    default:
      return false;
  }
}

void check_v1_line(std::string_view line) {
  v1::relay_message msg;
  const auto ec = v1::parse_line(line, msg);
  if (ec) {
    FUZZ_CHECK(is_parse_error(ec), line);
    return;
  }
  const auto text = v1::format_line(msg);
  // Exactly one line, ending in "\r\n", nothing else that ends a line.
  FUZZ_CHECK(text.size() >= 2 && text.compare(text.size() - 2, 2, "\r\n") == 0, text);
  const std::string_view body(text.data(), text.size() - 2);
  FUZZ_CHECK(body.find_first_of("\r\n") == std::string_view::npos, text);
  v1::relay_message back;
  FUZZ_CHECK(!v1::parse_line(body, back), text);
  FUZZ_CHECK(same_message(back, msg), text);
  FUZZ_CHECK(v1::format_line(back) == text, text);
  // The formatted line survives the splitter unchanged.
  line_splitter s(defaults::max_control_line_bytes);
  s.append(text);
  const auto r = s.next();
  if (body.size() <= defaults::max_control_line_bytes) {
    FUZZ_CHECK(r.state == status::line && r.line == body, text);
  }
}

void check_endpoint(std::string_view text) {
  host_port ep{"untouched", 4242};
  const auto ec = parse_host_port(text, ep);
  if (ec) {
    FUZZ_CHECK(ec == make_error_code(protocol_errc::bad_endpoint) ||
                 ec == make_error_code(protocol_errc::bad_port),
               text);
    FUZZ_CHECK((ep == host_port{"untouched", 4242}), text);
    return;
  }
  FUZZ_CHECK(!ep.host.empty() && ep.port != 0, text);
  const auto formatted = format_host_port(ep);
  host_port back;
  FUZZ_CHECK(!parse_host_port(formatted, back), formatted);
  FUZZ_CHECK(back == ep, formatted);
  FUZZ_CHECK(format_host_port(back) == formatted, formatted);
}

void check_port(std::string_view text) {
  std::uint16_t port = 0;
  if (parse_port(text, port)) return;
  FUZZ_CHECK(port != 0, text);
  FUZZ_CHECK(!text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos,
             text);
  // Same value as the decimal text, leading zeros aside.
  const auto digits = text.find_first_not_of('0');
  FUZZ_CHECK(digits != std::string_view::npos && text.substr(digits) == std::to_string(port), text);
}

// The first 6 bytes as (control port, port count). The count is often put
// near UINT_MAX, where control + count wraps in 32-bit arithmetic.
void check_pool(const std::uint8_t* data, std::size_t size) {
  if (size < 6) return;
  const unsigned control = (static_cast<unsigned>(data[0]) << 8 | data[1]) +
                           (data[2] & 1u) * 65536u;  // sometimes past 65535
  const unsigned low16 = static_cast<unsigned>(data[4]) << 8 | data[5];
  unsigned count = 0;
  switch (data[2] >> 6) {
    case 0: count = low16; break;
    case 1:
      count = static_cast<unsigned>(data[3]) << 24 | static_cast<unsigned>(data[2]) << 16 | low16;
      break;
    default: count = 0xffffffffu - low16; break;
  }
  pool_layout pool;
  const std::string_view raw(reinterpret_cast<const char*>(data), 6);
  if (pool_layout::make(control, count, pool)) return;
  FUZZ_CHECK(control >= 1 && control <= 65535, raw);
  FUZZ_CHECK(count >= 2 && count % 2 == 0, raw);
  FUZZ_CHECK(static_cast<std::uint64_t>(control) + count <= 65535, raw);
  FUZZ_CHECK(pool.control_port() == control, raw);
  FUZZ_CHECK(pool.pair_count() == count / 2, raw);
  FUZZ_CHECK(pool.reverse_port(0) == control + 1, raw);
  FUZZ_CHECK(pool.public_port(0) == control + count / 2 + 1, raw);
  FUZZ_CHECK(pool.public_port(pool.pair_count() - 1) == control + count, raw);
  FUZZ_CHECK(pool.last_port() == control + count, raw);
}

// -- protocol v2 ---------------------------------------------------------------------

bool is_v2_parse_error(const std::error_code& ec) {
  if (is_parse_error(ec)) return true;
  if (ec.category() != protocol_category()) return false;
  switch (static_cast<protocol_errc>(ec.value())) {
    case protocol_errc::bad_connection_id:
    case protocol_errc::bad_version:
    case protocol_errc::unknown_key:
    case protocol_errc::duplicate_key:
    case protocol_errc::bad_value:
    case protocol_errc::bad_error_code:
      return true;
    default:
      return false;
  }
}

// The v1 alternatives of v2::relay_message have no operator==.
bool same_relay(const v2::relay_message& a, const v2::relay_message& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
    [&](const auto& x) {
      using T = std::decay_t<decltype(x)>;
      const auto& y = std::get<T>(b);
      if constexpr (std::is_same_v<T, v1::public_listener> ||
                    std::is_same_v<T, v1::reverse_listener>)
        return x.endpoint == y.endpoint;
      else if constexpr (std::is_same_v<T, v1::no_available_listeners>)
        return true;
      else
        return x == y;
    },
    a);
}

// One line ending in "\r\n" and nothing else that ends a line; its body.
std::string_view body_of(const std::string& text) {
  FUZZ_CHECK(text.size() >= 2 && text.compare(text.size() - 2, 2, "\r\n") == 0, text);
  const std::string_view body(text.data(), text.size() - 2);
  FUZZ_CHECK(body.find_first_of("\r\n") == std::string_view::npos, text);
  return body;
}

v2::hello sentinel_hello() {
  v2::hello h;
  h.token = "sentinel";
  h.port = 4242;
  return h;
}

// The first line of a reverse connection: `accept <ID>` or `ready <SERIAL> <TAG>`.
void check_reverse_line(std::string_view line) {
  connection_id sentinel;
  sentinel.bytes.fill(0xa5);
  v2::reverse_line msg = v2::ready{4242, sentinel};
  if (const auto ec = v2::parse_reverse_line(line, msg)) {
    FUZZ_CHECK(is_v2_parse_error(ec), line);
    FUZZ_CHECK((msg == v2::reverse_line{v2::ready{4242, sentinel}}), line);
    return;
  }
  const auto text = std::visit([](const auto& m) { return v2::format_line(m); }, msg);
  // Whatever the relay accepts fits what its reader peeks.
  FUZZ_CHECK(text.size() <= v2::max_reverse_line_bytes, text);
  if (const auto* r = std::get_if<v2::ready>(&msg)) {
    FUZZ_CHECK(r->serial != 0, line);
  }
  v2::reverse_line back;
  FUZZ_CHECK(!v2::parse_reverse_line(body_of(text), back), text);
  FUZZ_CHECK(back == msg, text);
  FUZZ_CHECK(std::visit([](const auto& m) { return v2::format_line(m); }, back) == text, text);
  // parse_accept_line takes the accept lines of parse_reverse_line, and only those.
  v2::accept a{sentinel};
  const auto ec = v2::parse_accept_line(line, a);
  if (const auto* acc = std::get_if<v2::accept>(&msg)) {
    FUZZ_CHECK(!ec && a == *acc, line);
  } else {
    FUZZ_CHECK(ec == make_error_code(protocol_errc::unknown_command) && a.id == sentinel, line);
  }
}

// The first line the relay writes on a warm connection: `<ID> <CLIENT>`.
void check_paired_line(std::string_view line) {
  connection_id sentinel;
  sentinel.bytes.fill(0x3c);
  const v2::paired untouched{sentinel, {"sentinel", 4242}};
  v2::paired msg = untouched;
  if (const auto ec = v2::parse_paired_line(line, msg)) {
    FUZZ_CHECK(is_v2_parse_error(ec), line);
    FUZZ_CHECK(msg == untouched, line);
    return;
  }
  FUZZ_CHECK(!msg.client.host.empty() && msg.client.port != 0, line);
  const auto text = v2::format_line(msg);
  // The bound holds for every client the relay can name (an IP address).
  if (msg.client.host.size() <= 45) FUZZ_CHECK(text.size() <= v2::max_paired_line_bytes, text);
  v2::paired back;
  FUZZ_CHECK(!v2::parse_paired_line(body_of(text), back), text);
  FUZZ_CHECK(back == msg, text);
  FUZZ_CHECK(v2::format_line(back) == text, text);
}

void check_v2_line(std::string_view line) {
  {
    v2::server_message msg = sentinel_hello();
    if (const auto ec = v2::parse_server_line(line, msg)) {
      FUZZ_CHECK(is_v2_parse_error(ec), line);
      FUZZ_CHECK(msg == v2::server_message{sentinel_hello()}, line);
    } else {
      const auto text = v2::format_line(msg);
      FUZZ_CHECK(text.size() <= defaults::max_control_line_bytes, text);
      v2::server_message back;
      FUZZ_CHECK(!v2::parse_server_line(body_of(text), back), text);
      FUZZ_CHECK(back == msg, text);
      FUZZ_CHECK(v2::format_line(back) == text, text);
    }
  }
  {
    v2::relay_message msg = v2::pong{};
    if (const auto ec = v2::parse_relay_line(line, msg)) {
      FUZZ_CHECK(is_v2_parse_error(ec), line);
      FUZZ_CHECK(std::holds_alternative<v2::pong>(msg), line);
    } else {
      const auto text = v2::format_line(msg);
      v2::relay_message back;
      FUZZ_CHECK(!v2::parse_relay_line(body_of(text), back), text);
      FUZZ_CHECK(same_relay(back, msg), text);
      FUZZ_CHECK(v2::format_line(back) == text, text);
    }
  }
  {
    v2::relay_message msg = v2::pong{};
    if (!v2::parse_relay_line(line, msg)) {
      if (const auto* w = std::get_if<v2::welcome>(&msg)) {
        // warm=N is bounded, and the secret is exactly 32 hex digits.
        FUZZ_CHECK(w->warm_max <= v2::max_warm, line);
        connection_id secret;
        FUZZ_CHECK(!parse_connection_id(w->session_secret, secret), line);
      }
    }
  }
  check_reverse_line(line);
  check_paired_line(line);
  {
    connection_id sentinel;
    sentinel.bytes.fill(0x5a);
    v2::accept msg{sentinel};
    if (const auto ec = v2::parse_accept_line(line, msg)) {
      FUZZ_CHECK(is_v2_parse_error(ec), line);
      FUZZ_CHECK(msg.id == sentinel, line);
    } else {
      const auto text = v2::format_line(msg);
      FUZZ_CHECK(text.size() == v2::max_accept_line_bytes, text);
      v2::accept back;
      FUZZ_CHECK(!v2::parse_accept_line(body_of(text), back), text);
      FUZZ_CHECK(back == msg, text);
      FUZZ_CHECK(v2::format_line(back) == text, text);
    }
  }
}

// -- PROXY protocol v2 ---------------------------------------------------------------

// A header that decoded complete and not local encodes back to one that
// decodes to the same addresses, and that one is a fixed point.
void check_proxy_encoded(const proxy_v2::addresses& a, std::string_view in) {
  const auto header = proxy_v2::encode(a);
  FUZZ_CHECK(!header.empty(), in);
  FUZZ_CHECK(header.size() == proxy_v2::fixed_bytes + proxy_v2::tcp4_address_bytes ||
               header.size() == proxy_v2::fixed_bytes + proxy_v2::tcp6_address_bytes,
             in);
  const auto d = proxy_v2::decode(header);
  FUZZ_CHECK(d.status == proxy_v2::decode_status::complete, header);
  FUZZ_CHECK(d.header_bytes == header.size() && !d.local, header);
  FUZZ_CHECK(proxy_v2::encode(d.addr) == header, header);
  for (std::size_t n = 0; n < header.size(); ++n)
    FUZZ_CHECK(proxy_v2::decode(std::string_view(header).substr(0, n)).status ==
                 proxy_v2::decode_status::need_more,
               header);
}

void check_proxy(std::string_view in) {
  using proxy_v2::decode_status;
  const auto d = proxy_v2::decode(in);
  switch (d.status) {
    case decode_status::complete: {
      FUZZ_CHECK(d.header_bytes >= proxy_v2::fixed_bytes && d.header_bytes <= in.size() &&
                   d.header_bytes <= proxy_v2::max_header_bytes,
                 in);
      // Bytes after the header change nothing; one byte less needs more.
      const auto exact = proxy_v2::decode(in.substr(0, d.header_bytes));
      FUZZ_CHECK(exact.status == decode_status::complete, in);
      FUZZ_CHECK(exact.header_bytes == d.header_bytes && exact.local == d.local &&
                   exact.addr == d.addr,
                 in);
      FUZZ_CHECK(proxy_v2::decode(in.substr(0, d.header_bytes - 1)).status ==
                   decode_status::need_more,
                 in);
      if (d.local) {
        FUZZ_CHECK(d.addr == proxy_v2::addresses{}, in);
      } else {
        const auto again = proxy_v2::decode(proxy_v2::encode(d.addr));
        FUZZ_CHECK(again.status == decode_status::complete && again.addr == d.addr, in);
        check_proxy_encoded(d.addr, in);
      }
      break;
    }
    case decode_status::need_more:
      FUZZ_CHECK(d.header_bytes == 0 && in.size() < proxy_v2::max_header_bytes, in);
      break;
    case decode_status::invalid: {
      // More bytes cannot make an invalid start valid.
      FUZZ_CHECK(d.header_bytes == 0, in);
      std::string longer(in);
      longer.append(64, '\0');
      FUZZ_CHECK(proxy_v2::decode(longer).status == decode_status::invalid, in);
      break;
    }
  }
}

// Two lines of the input as addresses: whatever encode accepts decodes back.
void check_proxy_from_lines(const std::vector<std::string>& lines, std::string_view in) {
  if (lines.size() < 2) return;
  const auto port_a = static_cast<std::uint16_t>(in.size() * 257);
  const auto port_b = static_cast<std::uint16_t>(static_cast<unsigned char>(in[0]) << 8 | 7);
  const proxy_v2::addresses a{lines[0], port_a, lines[1], port_b};
  if (proxy_v2::encode(a).empty()) return;
  check_proxy_encoded(a, in);
}

// -- token and state files -------------------------------------------------------------

// Line `n` (1-based) of `text`, without "\r\n".
std::string_view line_number(std::string_view text, std::size_t n) {
  for (std::size_t i = 1; i < n; ++i) {
    const auto nl = text.find('\n');
    if (nl == std::string_view::npos) return {};
    text.remove_prefix(nl + 1);
  }
  auto line = text.substr(0, text.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// "line N: ..." with N in 1..lines of `text`; N, or 0 if malformed.
std::size_t message_line(const std::string& msg) {
  if (msg.compare(0, 5, "line ") != 0) return 0;
  std::size_t n = 0, i = 5;
  for (; i < msg.size() && msg[i] >= '0' && msg[i] <= '9' && i < 15; ++i)
    n = n * 10 + static_cast<std::size_t>(msg[i] - '0');
  if (i == 5 || msg.compare(i, 2, ": ") != 0) return 0;
  return n;
}

void check_token_file(std::string_view in) {
  std::vector<token_entry> out{token_entry{"sentinel", {}, {}, 7}};
  const auto err = parse_token_file(in, out);
  if (!err.empty()) {
    const auto n = message_line(err);
    FUZZ_CHECK(n >= 1, in);
    FUZZ_CHECK(err.find_first_of("\r\n") == std::string::npos, in);
    FUZZ_CHECK(out.size() == 1 && out[0].token == "sentinel", in);
    // The secret is never quoted: the first field of the line in error (its
    // token, if it has one) does not appear in the message. Short fields
    // could match the message's own words by chance.
    const auto line = line_number(in, n);
    const auto start = line.find_first_not_of(" \t");
    if (start != std::string_view::npos) {
      const auto field = line.substr(start, line.find_first_of(" \t", start) - start);
      if (field.size() >= 10) FUZZ_CHECK(err.find(field) == std::string::npos, in);
    }
    return;
  }
  std::set<std::string> tokens;
  std::size_t last_line = 0;
  for (const auto& e : out) {
    FUZZ_CHECK(v2::valid_token(e.token), in);
    FUZZ_CHECK(tokens.insert(e.token).second, in);
    FUZZ_CHECK(e.line > last_line, in);
    last_line = e.line;
    FUZZ_CHECK(line_number(in, e.line).find(e.token) != std::string_view::npos, in);
    std::set<std::string> names(e.names.begin(), e.names.end());
    FUZZ_CHECK(names.size() == e.names.size(), in);
    for (const auto& name : e.names) FUZZ_CHECK(v2::valid_name(name), in);
    std::set<std::uint16_t> ports(e.ports.begin(), e.ports.end());
    FUZZ_CHECK(ports.size() == e.ports.size() && !ports.count(0), in);
  }
}

void check_state(std::string_view in) {
  const reservation_record sentinel{"sentinel", 1, 2, ""};
  std::vector<reservation_record> out{sentinel};
  const auto err = parse_state(in, out);
  if (!err.empty()) {
    FUZZ_CHECK(message_line(err) >= 1, in);
    FUZZ_CHECK(err.find_first_of("\r\n") == std::string::npos, in);
    FUZZ_CHECK(out.size() == 1 && out[0] == sentinel, in);
    return;
  }
  std::set<std::string> names;
  std::set<std::uint16_t> ports;
  for (const auto& r : out) {
    FUZZ_CHECK(v2::valid_name(r.name) && names.insert(r.name).second, in);
    FUZZ_CHECK(r.public_port != 0 && ports.insert(r.public_port).second, in);
    FUZZ_CHECK(r.owner.empty() || r.owner.size() == owner_fingerprint_hex_digits, in);
  }
  const auto text = format_state(out);
  std::vector<reservation_record> back;
  FUZZ_CHECK(parse_state(text, back).empty(), text);
  FUZZ_CHECK(back == out, text);
  FUZZ_CHECK(format_state(back) == text, text);
}

// -- TLS 1.3 records -------------------------------------------------------------------

// The AEAD picked by the first input byte, and a fixed secret of its size:
// 0x11 bytes protect what the client sends, 0x22 bytes what the relay sends.
tls13::aead tls13_aead_of(std::string_view in) {
  return static_cast<tls13::aead>(static_cast<unsigned char>(in[0]) % 3);
}
std::string tls13_secret(tls13::aead kind, char fill) {
  return std::string(kind == tls13::aead::aes_256_gcm ? 48 : 32, fill);
}

std::size_t tls13_record_length(std::string_view header) {
  return std::size_t{static_cast<unsigned char>(header[3])} << 8 |
         static_cast<unsigned char>(header[4]);
}

// The whole input from a peer without the keys.
void check_tls13_stream(std::string_view in) {
  using kind = tls13::server_records::event::kind;
  const auto aead = tls13_aead_of(in);
  tls13::server_records records(aead, tls13_secret(aead, 0x11), tls13_secret(aead, 0x22));
  FUZZ_CHECK(records.ok(), in);
  std::vector<char> buffer(tls13::max_ciphertext);
  std::string out;
  std::string_view left = in;
  for (;;) {
    const auto e = records.read(left, buffer.data(), out);
    FUZZ_CHECK(e.consumed <= left.size(), in);
    FUZZ_CHECK(e.data.size() <= tls13::max_plaintext, in);
    if (e.what == kind::need_more) {
      // Only while no whole record is there.
      FUZZ_CHECK(e.consumed == 0, in);
      FUZZ_CHECK(left.size() < tls13::header_size ||
                   left.size() < tls13::header_size + tls13_record_length(left),
                 in);
      break;
    }
    if (e.what == kind::failed) {
      FUZZ_CHECK(!e.error.empty() && e.data.empty(), in);
      break;
    }
    FUZZ_CHECK(e.consumed >= tls13::header_size + 1 + tls13::tag_size, in);
    left.remove_prefix(e.consumed);
  }
}

// Up to 2^14 bytes of the input sealed as application data open back to
// exactly those bytes; cut short they need more, with a bit flipped they fail.
void check_tls13_round_trip(std::string_view in) {
  using opened = enum tls13::traffic_keys::opened::status;
  const auto aead = tls13_aead_of(in);
  const auto secret = tls13_secret(aead, 0x11);
  tls13::traffic_keys sealer(aead, secret);
  tls13::traffic_keys opener(aead, secret);
  FUZZ_CHECK(sealer.ok() && opener.ok(), in);
  const auto plaintext = in.substr(0, tls13::max_plaintext);
  std::string record;
  FUZZ_CHECK(sealer.seal(tls13::content_type::application_data, plaintext, record), in);
  FUZZ_CHECK(record.size() == tls13::header_size + plaintext.size() + 1 + tls13::tag_size, in);
  std::vector<char> buffer(tls13::max_ciphertext);
  FUZZ_CHECK(opener.open(std::string_view(record).substr(0, record.size() - 1), buffer.data())
                 .status == opened::need_more,
             in);
  std::string tampered = record;
  const std::size_t at =
    tls13::header_size + (in.size() * 131 + static_cast<unsigned char>(in.back())) %
                           (record.size() - tls13::header_size);
  tampered[at] = static_cast<char>(tampered[at] ^ (1 << (static_cast<unsigned char>(in[0]) >> 5)));
  const auto bad = opener.open(tampered, buffer.data());
  FUZZ_CHECK(bad.status == opened::bad && bad.error[0] != '\0', in);
  const auto r = opener.open(record, buffer.data());
  FUZZ_CHECK(r.status == opened::record, in);
  FUZZ_CHECK(r.type == tls13::content_type::application_data, in);
  FUZZ_CHECK(r.plaintext == plaintext, in);
  FUZZ_CHECK(r.consumed == record.size(), in);
}

// A key log line gives a secret only if it is one of the two application
// secret lines, and that secret is at most 48 bytes, spelled by its tail.
void check_tls13_key_log_line(std::string_view line) {
  const auto logged = tls13::application_secret_of(line);
  if (!logged) return;
  FUZZ_CHECK(line.substr(0, 24) == (logged->client ? "CLIENT_TRAFFIC_SECRET_0 "
                                                   : "SERVER_TRAFFIC_SECRET_0 "),
             line);
  const std::size_t digits = 2 * logged->secret.size();
  FUZZ_CHECK(!logged->secret.empty() && logged->secret.size() <= 48, line);
  FUZZ_CHECK(line.size() > 24 + digits && line[line.size() - digits - 1] == ' ', line);
  std::string tail(line.substr(line.size() - digits));
  for (auto& c : tail)
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  FUZZ_CHECK(to_hex(logged->secret) == tail, line);
}

// What server_records must make of a record its client sealed with the right
// keys, of inner content type `type` (never 0) carrying `p` (RFC 8446 §5.1,
// §6, §4.6.3, and the relay's refusal of split handshake messages).
enum class tls13_outcome { data, nothing, key_update, closed, failed };
tls13_outcome tls13_expected(std::uint8_t type, std::string_view p) {
  switch (type) {
    case 23: return tls13_outcome::data;
    case 21:
      if (p.size() != 2) return tls13_outcome::failed;
      if (p[1] == 0) return tls13_outcome::closed;
      if (p[1] == 90) return tls13_outcome::nothing;  // user_canceled
      return tls13_outcome::failed;
    case 22:
      if (p.size() == 5 && p.compare(0, 4, std::string_view("\x18\x00\x00\x01", 4)) == 0 &&
          (p[4] == 0 || p[4] == 1))
        return tls13_outcome::key_update;
      return tls13_outcome::failed;
    default: return tls13_outcome::failed;
  }
}

// The input as a script for a client that has the keys, at most 64 steps.
// Each step is one byte `op`, then (but for op % 8 == 5) a length byte and that
// many bytes of content; bit 7 of op multiplies the length by 16. op % 8:
//   0-2  application data
//   3    an alert: the content itself if bit 6 is set, else two bytes: level
//        1 or 2 (bit 3) and close_notify, user_canceled or the content's
//        first byte (bits 4-5)
//   4    handshake bytes
//   5    a KeyUpdate, request_update from bits 3-4 (2 and 3 are illegal)
//   6    inner content type `op` itself
//   7    a write of ours: the content 2^(bits 4-6) times over, up to 40000
//        bytes, so that writes of more than 2^14 bytes happen
void check_tls13_peer(std::string_view in) {
  using kind = tls13::server_records::event::kind;
  using opened = enum tls13::traffic_keys::opened::status;
  const auto aead = tls13_aead_of(in);
  const auto client_secret = tls13_secret(aead, 0x11);
  const auto server_secret = tls13_secret(aead, 0x22);
  tls13::server_records records(aead, client_secret, server_secret);
  tls13::traffic_keys client_sends(aead, client_secret);
  tls13::traffic_keys client_receives(aead, server_secret);
  FUZZ_CHECK(records.ok() && client_sends.ok() && client_receives.ok(), in);
  std::vector<char> buffer(tls13::max_ciphertext);
  std::vector<char> client_buffer(tls13::max_ciphertext);
  bool answered = false;  // our KeyUpdate went out since we last wrote data
  unsigned without_data = 0;  // records in a row that carried no data
  std::size_t pos = 1;
  for (int step = 0; step < 64 && pos < in.size(); ++step) {
    const auto op = static_cast<unsigned char>(in[pos++]);
    std::string content;
    if (op % 8 == 5) {
      content = std::string("\x18\x00\x00\x01", 4) + static_cast<char>(op >> 3 & 3);
    } else {
      std::size_t n = pos < in.size() ? static_cast<unsigned char>(in[pos++]) : 0;
      if (op & 0x80) n *= 16;
      content = std::string(in.substr(pos, n));
      pos += content.size();
    }
    if (op % 8 == 3 && !(op & 0x40)) {
      static constexpr char descriptions[] = {0, 90};  // close_notify, user_canceled
      const int pick = op >> 4 & 3;
      const char description = pick < 2 ? descriptions[pick] : content.empty() ? '\0' : content[0];
      content = {static_cast<char>(1 + (op >> 3 & 1)), description};
    }

    if (op % 8 == 7) {
      std::string repeated;
      for (int i = 0; i < 1 << (op >> 4 & 7) && repeated.size() + content.size() <= 40000; ++i)
        repeated += content;
      content = std::move(repeated);
      std::string out;
      FUZZ_CHECK(records.write(content, out), in);
      std::string got;
      std::string_view left = out;
      while (!left.empty()) {
        const auto r = client_receives.open(left, client_buffer.data());
        FUZZ_CHECK(r.status == opened::record, in);
        FUZZ_CHECK(r.type == tls13::content_type::application_data, in);
        FUZZ_CHECK(!r.plaintext.empty() && r.plaintext.size() <= tls13::max_plaintext, in);
        got.append(r.plaintext);
        left.remove_prefix(r.consumed);
      }
      FUZZ_CHECK(got == content, in);
      if (!content.empty()) answered = false;
      continue;
    }

    std::uint8_t type = 23;
    switch (op % 8) {
      case 3: type = 21; break;
      case 4: case 5: type = 22; break;
      case 6: type = op; break;
      default: break;
    }
    std::string record;
    FUZZ_CHECK(client_sends.seal(static_cast<tls13::content_type>(type), content, record), in);
    std::string out;
    const auto e = records.read(record, buffer.data(), out);
    FUZZ_CHECK(e.consumed <= record.size(), in);
    FUZZ_CHECK(e.data.size() <= tls13::max_plaintext, in);
    const auto expected = tls13_expected(type, content);
    // A peer may send only so many records in a row that carry no data.
    const bool no_data = (expected == tls13_outcome::data && content.empty()) ||
                         expected == tls13_outcome::nothing ||
                         expected == tls13_outcome::key_update;
    if (no_data && ++without_data > tls13::server_records::max_records_without_data) {
      FUZZ_CHECK(e.what == kind::failed && !e.error.empty() && e.data.empty(), in);
      return;  // the connection ends
    }
    if (expected == tls13_outcome::data && !content.empty()) without_data = 0;
    switch (expected) {
      case tls13_outcome::failed:
        FUZZ_CHECK(e.what == kind::failed && !e.error.empty() && out.empty(), in);
        return;  // the connection ends
      case tls13_outcome::data:
        FUZZ_CHECK(e.what == kind::data && e.data == content, in);
        break;
      case tls13_outcome::nothing: FUZZ_CHECK(e.what == kind::nothing, in); break;
      case tls13_outcome::closed: FUZZ_CHECK(e.what == kind::closed, in); break;
      case tls13_outcome::key_update: {
        FUZZ_CHECK(e.what == kind::nothing, in);
        FUZZ_CHECK(client_sends.update(), in);
        if (content[4] == 1 && !answered) {
          // One KeyUpdate (update_not_requested) under our current keys,
          // after which ours are the next generation.
          const auto r = client_receives.open(out, client_buffer.data());
          FUZZ_CHECK(r.status == opened::record && r.consumed == out.size(), in);
          FUZZ_CHECK(r.type == tls13::content_type::handshake, in);
          FUZZ_CHECK(r.plaintext == std::string_view("\x18\x00\x00\x01\x00", 5), in);
          FUZZ_CHECK(client_receives.update(), in);
          answered = true;
          out.clear();
        }
        break;
      }
    }
    FUZZ_CHECK(e.consumed == record.size() && e.error.empty() && out.empty(), in);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  if (in.empty()) return 0;

  // The relay's real limit, and a small one so too_long paths are reached
  // with short inputs (0 included: only empty lines fit).
  check_split(in, defaults::max_control_line_bytes);
  check_split(in, static_cast<unsigned char>(in[0]) % 48);

  const auto lines = reference_split(in, defaults::max_control_line_bytes).lines;
  for (const auto& line : lines) {
    check_v1_line(line);
    check_v2_line(line);
    check_endpoint(line);
    check_port(line);
    check_tls13_key_log_line(line);
  }
  // The raw input too, as if it were one line (it may hold '\r' and '\n').
  check_v1_line(in);
  check_v2_line(in);
  check_endpoint(in);
  check_pool(data, size);

  check_proxy(in);
  check_proxy_from_lines(lines, in);
  check_token_file(in);
  check_state(in);
  // Records after a good header, so mutations need not keep finding it.
  check_state(std::string(state_file_header) + "\n" + std::string(in));

  check_tls13_key_log_line(in);
  check_tls13_stream(in);
  check_tls13_round_trip(in);
  check_tls13_peer(in);
  return 0;
}
