// Protocol v2: the native protocol, on the same control port as v1 and chosen
// by TLS ALPN "tlsrelay/2". The server speaks first, so nothing is handed out
// before it is authenticated:
//
//   server → relay   hello 2 [token=<T>] [name=<N>] [port=<P>]
//   relay → server   welcome session=<32 hex>            hello accepted
//   relay → server   public_listener <HOST>:<PORT>
//   relay → server   reverse_listener <HOST>:<PORT>
//   relay → server   new_connection <ID> <CLIENT-HOST>:<CLIENT-PORT>
//   either way       ping | pong
//   relay → server   error <code> <text>                 then the relay closes
//   relay → server   no_available_listeners | redirect <HOST>:<PORT>
//   reverse conn.    accept <ID>                          first line, then raw bytes
//
// <ID> is 128 random bits (connection_id), valid once and for a bounded time.
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
};

struct welcome {
  std::string session_secret;  // 32 hex digits
  friend bool operator==(const welcome& a, const welcome& b) {
    return a.session_secret == b.session_secret;
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

// -- server → relay (first line of a reverse connection) -------------------------------

struct accept {
  connection_id id;
  friend bool operator==(const accept& a, const accept& b) { return a.id == b.id; }
};

// The longest first line of a reverse connection, ending included: the relay
// reads no further than this before the pairing is decided.
inline constexpr std::size_t max_accept_line_bytes = 6 + 1 + 32 + 2;

std::string_view to_string(error_code code);

// Complete lines, "\r\n" included.
std::string format_line(const server_message& msg);
std::string format_line(const relay_message& msg);
std::string format_line(const accept& msg);

// Parse one line without its ending.
std::error_code parse_server_line(std::string_view line, server_message& out);
std::error_code parse_relay_line(std::string_view line, relay_message& out);
std::error_code parse_accept_line(std::string_view line, accept& out);

// Alphabets of hello values, shared by the parser and by whoever builds one.
bool valid_token(std::string_view token);  // 1..256 of [A-Za-z0-9._~+/=-]
bool valid_name(std::string_view name);    // 1..63 of [a-z0-9-], not starting with '-'

}  // namespace tlsrelay::v2
