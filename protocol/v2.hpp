// Protocol v2: the native protocol, on the same control port as v1 and chosen
// by TLS ALPN "tlsrelay/2". The server speaks first, so nothing is handed out
// before it is authenticated:
//
//   server → relay   hello 2 [token=<T>] [name=<N>] [port=<P>]
//   relay → server   welcome session=<32 hex> warm=<N> [proxy=2]   hello accepted
//   relay → server   public_listener <HOST>:<PORT>
//   relay → server   reverse_listener <HOST>:<PORT>
//   relay → server   new_connection <ID> <CLIENT-HOST>:<CLIENT-PORT>
//   either way       ping | pong
//   relay → server   error <code> <text>                 then the relay closes
//                    (`error draining`: the relay shuts down; come back later)
//   relay → server   no_available_listeners | redirect <HOST>:<PORT>
//   reverse conn.    accept <ID>                          first line, then raw bytes
//   warm reverse     ready <SERIAL> <TAG>                 opened ahead of demand
//   relay → warm     <ID> <CLIENT-HOST>:<CLIENT-PORT>     when a client is paired with it
//
// <ID> is 128 random bits (connection_id), valid once and for a bounded time.
// A warm connection proves it belongs to the session with a ticket derived
// from the session secret (protocol/warm_ticket.hpp), never the secret itself:
// reverse connections are plain TCP, and a secret seen there must not let a
// sniffer open warm connections of its own.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>

#include "protocol/connection_id.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/v1.hpp"

namespace tlsrelay::v2 {

inline constexpr unsigned version = 2;
inline constexpr std::size_t max_token_bytes = 256;
inline constexpr std::size_t max_name_bytes = 63;
inline constexpr std::size_t max_error_text_bytes = 200;

// -- server → relay (control connection) -------------------------------------------

struct hello {
  std::string token;       // empty: none given
  std::string name;        // empty: no reservation asked for
  std::uint16_t port = 0;  // 0: any public port
  friend bool operator==(const hello& a, const hello& b) {
    return a.token == b.token && a.name == b.name && a.port == b.port;
  }
};
struct ping {
  friend bool operator==(const ping&, const ping&) { return true; }
};
struct pong {
  friend bool operator==(const pong&, const pong&) { return true; }
};

using server_message = std::variant<hello, ping, pong>;

// -- relay → server (control connection) ---------------------------------------------

enum class error_code {
  auth_failed,          // bad or missing token / certificate
  bad_request,          // a line the relay cannot accept
  port_unavailable,     // port=P is not in the pool or is taken
  name_unavailable,     // name=N is reserved for another token
  too_many_sessions,    // the token's session limit is reached
  unsupported_version,  // hello with a version the relay does not speak
  draining,             // the relay is shutting down: reconnect later with the same hello
};

struct welcome {
  std::string session_secret;  // 32 hex digits
  unsigned warm_max = 0;       // warm reverse connections the relay keeps; 0: none
  bool proxy_header = false;   // reverse connections start with a PROXY v2 header
  friend bool operator==(const welcome& a, const welcome& b) {
    return a.session_secret == b.session_secret && a.warm_max == b.warm_max &&
           a.proxy_header == b.proxy_header;
  }
};
struct new_connection {
  connection_id id;
  host_port client;
  friend bool operator==(const new_connection& a, const new_connection& b) {
    return a.id == b.id && a.client == b.client;
  }
};
struct error {
  error_code code = error_code::bad_request;
  std::string text;  // for humans; may be empty; no line breaks
  friend bool operator==(const error& a, const error& b) {
    return a.code == b.code && a.text == b.text;
  }
};
struct redirect {
  host_port relay;
  friend bool operator==(const redirect& a, const redirect& b) { return a.relay == b.relay; }
};

using relay_message =
  std::variant<welcome, v1::public_listener, v1::reverse_listener, new_connection, error,
               v1::no_available_listeners, redirect, ping, pong>;

// The most warm connections a welcome may announce.
inline constexpr unsigned max_warm = 1024;

// -- server → relay (first line of a reverse connection) -------------------------------

// For the waiting client `id` (announced by new_connection).
struct accept {
  connection_id id;
  friend bool operator==(const accept& a, const accept& b) { return a.id == b.id; }
};

// A warm connection, opened ahead of demand. `serial` counts up from 1 per
// session; `tag` is warm_ticket::tag(secret, serial).
struct ready {
  std::uint64_t serial = 0;
  connection_id tag;
  friend bool operator==(const ready& a, const ready& b) {
    return a.serial == b.serial && a.tag == b.tag;
  }
};

using reverse_line = std::variant<accept, ready>;

// `accept <ID>`, ending included.
inline constexpr std::size_t max_accept_line_bytes = 6 + 1 + 32 + 2;
// The longest first line of any reverse connection (`ready` with a 20-digit
// serial is 61 bytes), ending included: the relay reads no further than this
// before the pairing is decided.
inline constexpr std::size_t max_reverse_line_bytes = 64;

// -- relay → server (first line on a warm connection) -----------------------------------

struct paired {
  connection_id id;
  host_port client;
  friend bool operator==(const paired& a, const paired& b) {
    return a.id == b.id && a.client == b.client;
  }
};

// The longest `paired` line, ending included: 32 + 1 + "[v6]:port" (at most 47).
inline constexpr std::size_t max_paired_line_bytes = 96;

std::string_view to_string(error_code code);

// Complete lines, "\r\n" included.
std::string format_line(const server_message& msg);
std::string format_line(const relay_message& msg);
std::string format_line(const accept& msg);
std::string format_line(const ready& msg);
std::string format_line(const paired& msg);

// Parse one line without its ending.
std::error_code parse_server_line(std::string_view line, server_message& out);
std::error_code parse_relay_line(std::string_view line, relay_message& out);
std::error_code parse_accept_line(std::string_view line, accept& out);
std::error_code parse_reverse_line(std::string_view line, reverse_line& out);
std::error_code parse_paired_line(std::string_view line, paired& out);

// Alphabets of hello values, shared by the parser and by whoever builds one.
bool valid_token(std::string_view token);  // 1..256 of [A-Za-z0-9._~+/=-]
bool valid_name(std::string_view name);    // 1..63 of [a-z0-9-], not starting with '-'

}  // namespace tlsrelay::v2
