// The fault-injection proxy itself (tests/support/fault_proxy): what each
// command does to the two peers of a proxied connection, seen from the
// peers' sockets. The target is a plain listening socket of the test.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <future>

#include <catch2/catch.hpp>

#include "tests/faults/faults.hpp"
#include "tests/support/fault_proxy.hpp"
#include "tests/support/test_data.hpp"

using namespace tlsrelay::test;

namespace {

// A listening socket on 127.0.0.1, port chosen by the kernel: the target.
struct target_listener {
  unique_fd fd = listen_on(0);
  std::uint16_t port() const {
    sockaddr_in bound{};
    socklen_t length = sizeof bound;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &length);
    return ntohs(bound.sin_port);
  }
  tcp_conn accept_one(millis timeout = default_timeout) {
    if (wait_fd(fd.get(), POLLIN, steady::now() + timeout) == 0)
      throw io_error("target: no connection within " + std::to_string(timeout.count()) + " ms");
    unique_fd conn(::accept4(fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!conn) throw io_error("target: accept4() failed");
    return tcp_conn(std::move(conn), "proxied peer");
  }
};

// A client connected through the proxy and the target's end of it.
struct proxied_pair {
  tcp_conn client, server;
};

proxied_pair connect_through(fault_proxy& proxy, target_listener& target) {
  proxied_pair p;
  p.client = tcp_conn::connect(proxy.port());
  p.server = target.accept_one();
  REQUIRE(proxy.wait_accepted(1));
  return p;
}

// Sends without blocking until the kernel accepts no more; the byte count.
// Throws past `limit`: a sender that never blocks is what this detects.
std::size_t send_until_blocked(tcp_conn& conn, std::size_t limit) {
  const std::string chunk = random_bytes(64 * 1024, 7);
  std::size_t sent = 0;
  while (sent < limit) {
    const ssize_t n = ::send(conn.fd(), chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return sent;
    if (n < 0 && errno == EINTR) continue;
    throw io_error("send() failed while filling the connection");
  }
  throw io_error("sent " + std::to_string(sent) + " bytes without ever blocking");
}

}  // namespace

TEST_CASE("fault proxy: bytes and EOF pass through both ways and are counted", "[fault_proxy]") {
  target_listener target;
  fault_proxy proxy(target.port());
  proxied_pair p = connect_through(proxy, target);
  tcp_conn& client = p.client;
  tcp_conn& server = p.server;
  CHECK(proxy.live() == 1);

  // More than the proxy's buffer each way, both ways at once.
  const std::string up = random_bytes(300 * 1024, 1), down = random_bytes(200 * 1024, 2);
  auto server_side = std::async(std::launch::async,
                                [&] { return server.exchange(down, up.size()); });
  const std::string client_got = client.exchange(up, down.size());
  CHECK(bytes_diff(up, server_side.get()) == "");
  CHECK(bytes_diff(down, client_got) == "");
  CHECK(proxy.forwarded(direction::upstream) == up.size());
  CHECK(proxy.forwarded(direction::downstream) == down.size());

  client.shutdown_write();
  CHECK(server.recv_until_eof() == "");
  server.send_all("after the client's EOF");
  server.close();
  CHECK(client.recv_until_eof() == "after the client's EOF");
  CHECK(proxy.wait_live(0));
  CHECK(proxy.accepted() == 1);
  CHECK(proxy.errors().empty());
}

TEST_CASE("fault proxy: a stalled direction makes its sender block until it is resumed",
          "[fault_proxy]") {
  target_listener target;
  fault_proxy proxy(target.port());
  proxied_pair p = connect_through(proxy, target);
  tcp_conn& client = p.client;
  tcp_conn& server = p.server;

  proxy.stall(direction::upstream);
  const std::size_t sent = send_until_blocked(client, 256 * 1024 * 1024);
  INFO("bytes the client could send before blocking: " << sent);
  CHECK(sent > 0);
  CHECK(proxy.forwarded(direction::upstream) == 0);
  // The other direction is not stalled.
  server.send_all("downstream still flows");
  CHECK(client.recv_exact(22) == "downstream still flows");

  proxy.resume(direction::upstream);
  const std::string received = server.recv_exact(sent, 10s);
  CHECK(received.size() == sent);
  CHECK(proxy.forwarded(direction::upstream) == sent);
  CHECK(proxy.errors().empty());
}

TEST_CASE("fault proxy: reset gives both peers ECONNRESET", "[fault_proxy]") {
  target_listener target;
  fault_proxy proxy(target.port());
  proxied_pair p = connect_through(proxy, target);
  tcp_conn& client = p.client;
  tcp_conn& server = p.server;
  client.send_all("before");
  CHECK(server.recv_exact(6) == "before");

  proxy.reset(0);
  CHECK(read_to_end(client).ending == stream_end::reset);
  CHECK(read_to_end(server).ending == stream_end::reset);
  CHECK(proxy.live() == 0);
  CHECK(proxy.errors().empty());
}

TEST_CASE("fault proxy: truncate delivers exactly K more bytes, then a reset", "[fault_proxy]") {
  target_listener target;
  fault_proxy proxy(target.port());
  proxied_pair p = connect_through(proxy, target);
  tcp_conn& client = p.client;
  tcp_conn& server = p.server;
  server.send_all("already through ");
  CHECK(client.recv_exact(16) == "already through ");

  constexpr std::size_t allowed = 100 * 1024 + 7;
  proxy.truncate(direction::downstream, allowed);
  const std::string payload = random_bytes(1024 * 1024, 3);
  auto sending = std::async(std::launch::async, [&] {
    try {
      server.send_all(payload, 5s);
    } catch (const io_error&) {
      // The reset ends the send early: expected.
    }
  });
  const auto got = read_to_end(client);
  sending.get();
  CHECK(got.ending == stream_end::reset);
  CHECK(bytes_diff(payload.substr(0, allowed), got.bytes) == "");
  CHECK(proxy.forwarded(direction::downstream) == 16 + allowed);
  CHECK(read_to_end(server).ending == stream_end::reset);
}

TEST_CASE("fault proxy: truncate ending in a cut delivers K bytes then EOF, the other way "
          "still works",
          "[fault_proxy]") {
  target_listener target;
  fault_proxy proxy(target.port());
  proxied_pair p = connect_through(proxy, target);
  tcp_conn& client = p.client;
  tcp_conn& server = p.server;

  proxy.truncate(direction::upstream, 5, truncate_end::cut);
  client.send_all("hello, and more the server never sees");
  CHECK(server.recv_until_eof() == "hello");
  server.send_all("reply");
  CHECK(client.recv_exact(5) == "reply");
  CHECK(proxy.errors().empty());
}

TEST_CASE("fault proxy: cut sends a clean EOF after what was already sent", "[fault_proxy]") {
  target_listener target;
  fault_proxy proxy(target.port());
  proxied_pair p = connect_through(proxy, target);
  tcp_conn& client = p.client;
  tcp_conn& server = p.server;
  client.send_all("last words");
  REQUIRE(proxy.wait_forwarded(direction::upstream, 10));

  proxy.cut(direction::upstream);
  CHECK(server.recv_until_eof() == "last words");
  server.send_all("the other way is open");
  CHECK(client.recv_exact(21) == "the other way is open");
}

TEST_CASE("fault proxy: delay holds bytes for the given time, a trickle delivers them whole",
          "[fault_proxy]") {
  target_listener target;
  fault_proxy proxy(target.port());
  proxied_pair p = connect_through(proxy, target);
  tcp_conn& client = p.client;
  tcp_conn& server = p.server;

  proxy.delay(direction::upstream, 150ms);
  auto sent_at = steady::now();
  client.send_all("late");
  CHECK(server.recv_exact(4) == "late");
  CHECK(steady::now() - sent_at >= 150ms);

  // One byte per 5 ms: 40 bytes cannot arrive in less than 39 gaps.
  proxy.delay(direction::upstream, 5ms, 1);
  const std::string line = "a line that arrives one byte at a time\r\n";
  sent_at = steady::now();
  client.send_all(line);
  CHECK(server.read_line() == line);
  CHECK(steady::now() - sent_at >= 5ms * (line.size() - 1));
  CHECK(proxy.errors().empty());
}
