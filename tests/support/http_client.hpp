// A minimal HTTP/1.1 client for tests of the admin endpoint: one request on
// a fresh loopback connection (Connection: close), the whole answer read
// until EOF, every step under the deadline.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tests/support/socket_io.hpp"

namespace tlsrelay::test {

struct http_reply {
  int status = 0;        // e.g. 200
  std::string headers;   // the header lines as received (status line excluded)
  std::string body;
};

// `method` `path` to 127.0.0.1:port with the extra `headers` ("Name: value"
// each). Throws io_error if the connection fails, times out or the answer is
// not HTTP.
http_reply http_request(std::uint16_t port, const std::string& method, const std::string& path,
                        const std::vector<std::string>& headers = {},
                        millis timeout = default_timeout);

inline http_reply http_get(std::uint16_t port, const std::string& path,
                           const std::vector<std::string>& headers = {},
                           millis timeout = default_timeout) {
  return http_request(port, "GET", path, headers, timeout);
}

}  // namespace tlsrelay::test
