#include "tests/support/http_client.hpp"

namespace tlsrelay::test {

http_reply http_request(std::uint16_t port, const std::string& method, const std::string& path,
                        const std::vector<std::string>& headers, millis timeout) {
  auto conn = tcp_conn::connect(port, timeout);
  std::string request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" +
                        std::to_string(port) + "\r\nConnection: close\r\n";
  for (const auto& h : headers) request += h + "\r\n";
  if (method == "POST") request += "Content-Length: 0\r\n";
  request += "\r\n";
  conn.send_all(request, timeout);
  const auto answer = conn.recv_until_eof(timeout);
  const auto head_end = answer.find("\r\n\r\n");
  const auto line_end = answer.find("\r\n");
  if (answer.compare(0, 9, "HTTP/1.1 ") != 0 || head_end == std::string::npos)
    throw io_error("not an HTTP answer from 127.0.0.1:" + std::to_string(port) + path + ": " +
                   printable(answer));
  http_reply reply;
  reply.status = std::stoi(answer.substr(9, 3));
  reply.headers = answer.substr(line_end + 2, head_end - line_end - 2);
  reply.body = answer.substr(head_end + 4);
  return reply;
}

}  // namespace tlsrelay::test
