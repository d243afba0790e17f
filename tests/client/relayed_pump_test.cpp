// client::pump_relayed in isolation: a relayed connection (made here from a
// loopback socket, as the listener would hand it over) pumped into a local
// socket. The test holds the client's end (x) and the local service's end (y)
// and drives them with deadline-bound POSIX calls. Plain connections are
// spliced (and, selectable, copied); the io_context runs on two threads, so
// the pump's strand is exercised too.
#include <poll.h>
#include <sys/socket.h>

#include <future>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/ssl.hpp>
#include <catch2/catch.hpp>

#include "client/relayed_pump.hpp"
#include "client/tls.hpp"
#include "protocol/defaults.hpp"
#include "tests/client/client_test_support.hpp"
#include "tests/support/test_data.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;
using boost_ec = boost::system::error_code;
using client::relayed_pump_path;

namespace {

const char* name(relayed_pump_path p) { return p == relayed_pump_path::splice ? "splice" : "copy"; }

// An io_context run by two threads (an application's thread pool).
class io_pool {
 public:
  io_pool() : work_(asio::make_work_guard(io_)) {
    for (auto& t : threads_) t = std::thread([this] { io_.run(); });
  }
  ~io_pool() {
    work_.reset();
    io_.stop();
    for (auto& t : threads_) t.join();
  }
  asio::io_context& io() { return io_; }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread threads_[2];
};

std::size_t stages_in_use() {
  const auto s = client::relayed_pump_stages();
  return s.pipes_in_use + s.buffers_in_use;
}

int socket_buffer(int fd, int option) {
  int bytes = 0;
  socklen_t len = sizeof bytes;
  ::getsockopt(fd, SOL_SOCKET, option, &bytes, &len);
  return bytes;
}

void set_buffers(int fd, int bytes) {
  for (int option : {SO_SNDBUF, SO_RCVBUF})
    REQUIRE(::setsockopt(fd, SOL_SOCKET, option, &bytes, sizeof bytes) == 0);
}

// Whatever one end observed reading to the end: "EOF", or the error.
std::string read_outcome(tcp_conn& c) {
  try {
    const auto rest = c.recv_until_eof();
    return rest.empty() ? "EOF" : "EOF after " + std::to_string(rest.size()) + " bytes";
  } catch (const io_error& e) {
    return e.what();
  }
}

// x ==client's end== a =pump_relayed= b ==local end== y
struct relayed_rig {
  explicit relayed_rig(asio::io_context& io) : listener(io) {
    auto xa = listener.connect();
    auto yb = listener.connect();
    x = std::move(xa.first);
    y = std::move(yb.first);
    a = std::move(xa.second);
    b = std::move(yb.second);
  }
  void start(relayed_pump_path path) {
    client::relayed_connection conn(std::move(*a), std::nullopt, "");
    client::pump_relayed(std::move(conn), std::move(*b), done.callback(), {path});
  }
  socket_pair_source listener;
  tcp_conn x, y;
  std::optional<asio_tcp::socket> a, b;
  pump_outcome done;
};

}  // namespace

SCENARIO("relayed pump: megabytes both ways at once arrive byte for byte, then each half-close",
         "[client][relayed_pump]") {
  const auto path = GENERATE(relayed_pump_path::splice, relayed_pump_path::copy);
  INFO("path: " << name(path));
  io_pool io;
  relayed_rig rig(io.io());
  rig.start(path);
  const auto up = random_bytes(8 * 1024 * 1024, 51);  // 128 pipes' worth
  const auto down = random_bytes(6 * 1024 * 1024, 52);
  auto y_side = std::async(std::launch::async,
                           [&] { return rig.y.exchange(down, up.size(), 20 * default_timeout); });
  const auto x_got = rig.x.exchange(up, down.size(), 20 * default_timeout);
  REQUIRE(y_side.wait_for(default_timeout) == std::future_status::ready);
  CHECK(bytes_diff(up, y_side.get()) == "");
  CHECK(bytes_diff(down, x_got) == "");

  WHEN("the client half-closes first") {
    rig.x.shutdown_write();
    THEN("the local end reads EOF and can still answer, then its EOF reaches the client") {
      CHECK(rig.y.recv_until_eof() == "");
      rig.y.send_all("late answer");
      CHECK(rig.x.recv_exact(11) == "late answer");
      rig.y.shutdown_write();
      CHECK(rig.x.recv_until_eof() == "");
      REQUIRE(rig.done.future.wait_for(default_timeout) == std::future_status::ready);
      const auto r = rig.done.future.get();
      INFO("error " << r.error.message() << " (" << r.error_where << ")");
      CHECK_FALSE(r.error);
      CHECK(r.a_to_b == up.size());
      CHECK(r.b_to_a == down.size() + 11);
    }
  }
  WHEN("the local end half-closes first") {
    rig.y.shutdown_write();
    THEN("the client reads EOF and can still send, then its EOF reaches the local end") {
      CHECK(rig.x.recv_until_eof() == "");
      rig.x.send_all("more");
      CHECK(rig.y.recv_exact(4) == "more");
      rig.x.shutdown_write();
      CHECK(rig.y.recv_until_eof() == "");
      REQUIRE(rig.done.future.wait_for(default_timeout) == std::future_status::ready);
      const auto r = rig.done.future.get();
      CHECK_FALSE(r.error);
      CHECK(r.a_to_b == up.size() + 4);
      CHECK(r.b_to_a == down.size());
    }
  }
  CHECK(eventually([] { return stages_in_use() == 0; }));
}

SCENARIO("relayed pump: a reset on either side is passed on as a reset", "[client][relayed_pump]") {
  const auto path = GENERATE(relayed_pump_path::splice, relayed_pump_path::copy);
  INFO("path: " << name(path));
  io_pool io;
  relayed_rig rig(io.io());
  rig.start(path);
  rig.x.send_all("hello");
  CHECK(rig.y.recv_exact(5) == "hello");
  rig.y.send_all("world!");
  CHECK(rig.x.recv_exact(6) == "world!");

  const linger abortive{1, 0};  // close(2) sends RST
  tcp_conn* survivor = nullptr;
  std::string failed_side;
  SECTION("the client resets") {
    REQUIRE(::setsockopt(rig.x.fd(), SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive) == 0);
    rig.x.close();
    survivor = &rig.y;
    failed_side = "reading a";
  }
  SECTION("the local service resets") {
    REQUIRE(::setsockopt(rig.y.fd(), SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive) == 0);
    rig.y.close();
    survivor = &rig.x;
    failed_side = "reading b";
  }
  REQUIRE(survivor != nullptr);
  // A reset, not an orderly EOF that would pass a cut stream off as complete.
  CHECK_THAT(read_outcome(*survivor), Catch::Contains("reset"));
  REQUIRE(rig.done.future.wait_for(default_timeout) == std::future_status::ready);
  const auto r = rig.done.future.get();
  INFO("error " << r.error.message());
  CHECK(r.error);
  CHECK(r.error_where == failed_side);
  CHECK(r.a_to_b == 5);
  CHECK(r.b_to_a == 6);
  CHECK(eventually([] { return stages_in_use() == 0; }));
}

SCENARIO("relayed pump: a local service that stops reading holds the client back with one pipe",
         "[client][relayed_pump]") {
  io_pool io;
  relayed_rig rig(io.io());
  // Small kernel buffers on all four sockets, so what may sit between x's
  // send() and y's recv() is small enough to tell read-ahead from buffering.
  for (int fd : {rig.x.fd(), rig.y.fd(), rig.a->native_handle(), rig.b->native_handle()})
    set_buffers(fd, 16 * 1024);
  rig.start(relayed_pump_path::splice);
  int kernel_bytes = 0;
  for (int fd : {rig.x.fd(), rig.y.fd()})
    for (int option : {SO_SNDBUF, SO_RCVBUF}) kernel_bytes += socket_buffer(fd, option);
  // The pump's two sockets, seen from the kernel as the peers': the same sizes.
  kernel_bytes *= 2;
  const std::size_t bound = static_cast<std::size_t>(kernel_bytes) +
                            2 * defaults::pump_buffer_bytes + 128 * 1024;

  // y reads nothing. x sends until no byte has been taken for 500 ms.
  const auto data = random_bytes(16 * 1024 * 1024, 53);
  std::size_t accepted = 0;
  auto last_progress = steady::now();
  const auto deadline = steady::now() + 4 * default_timeout;
  while (accepted < data.size() && steady::now() - last_progress < 500ms) {
    REQUIRE(steady::now() < deadline);
    const auto n = ::send(rig.x.fd(), data.data() + accepted, data.size() - accepted,
                          MSG_NOSIGNAL);
    if (n > 0) {
      accepted += static_cast<std::size_t>(n);
      last_progress = steady::now();
      continue;
    }
    REQUIRE((n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)));
    wait_fd(rig.x.fd(), POLLOUT, steady::now() + 50ms);
  }
  INFO("accepted " << accepted << " bytes before send blocked; bound " << bound);
  REQUIRE(accepted < data.size());
  CHECK(accepted < bound);
  // One direction has bytes in flight: one pipe, full; no buffer.
  const auto stalled = client::relayed_pump_stages();
  CHECK(stalled.pipes_in_use == 1);
  CHECK(stalled.buffers_in_use == 0);
  CHECK(rig.done.future.wait_for(0ms) == std::future_status::timeout);  // alive

  // Now y reads: every accepted byte arrives, in order, and the pipe goes back.
  rig.x.shutdown_write();
  CHECK(bytes_diff(data.substr(0, accepted), rig.y.recv_until_eof(2 * default_timeout)) == "");
  rig.y.shutdown_write();
  CHECK(rig.x.recv_until_eof() == "");
  REQUIRE(rig.done.future.wait_for(default_timeout) == std::future_status::ready);
  const auto r = rig.done.future.get();
  CHECK_FALSE(r.error);
  CHECK(r.a_to_b == accepted);
  CHECK(eventually([] { return stages_in_use() == 0; }));
}

SCENARIO("relayed pump: end-to-end TLS is copied, after the PROXY header",
         "[client][relayed_pump][tls]") {
  pki keys;
  io_pool io;
  // The client's side: a TLS client (the test's) and its accepted socket.
  asio_tcp::acceptor acceptor(io.io());
  const asio_tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  acceptor.open(ep.protocol());
  acceptor.bind(ep);
  acceptor.listen();
  asio_tcp::socket inner(io.io());
  std::promise<void> accepted;
  acceptor.async_accept(inner, [&accepted](const boost_ec&) { accepted.set_value(); });
  auto outer = test_client::connect("127.0.0.1", acceptor.local_endpoint().port());
  REQUIRE(accepted.get_future().wait_for(default_timeout) == std::future_status::ready);
  std::string err;
  auto ctx = client::make_server_context(
    {keys.file("server.crt.pem"), keys.file("server.key.pem")}, err);
  REQUIRE(ctx);
  auto tls = std::make_unique<client::tls_stream>(std::move(inner), *ctx);
  std::promise<boost_ec> handshaken;
  tls->async_handshake(asio::ssl::stream_base::server,
                       [&handshaken](const boost_ec& ec) { handshaken.set_value(ec); });
  outer.start_tls(keys.ca(), "127.0.0.1");
  auto hs = handshaken.get_future();
  REQUIRE(hs.wait_for(default_timeout) == std::future_status::ready);
  REQUIRE_FALSE(hs.get());

  // The local side.
  socket_pair_source listener(io.io());
  auto yb = listener.connect();
  tcp_conn& y = yb.first;
  const std::string header = "PROXY-HEADER-AS-THE-RELAY-SENT-IT";
  client::relayed_connection conn(std::move(tls), ctx, std::nullopt, "", header);
  pump_outcome done;
  client::pump_relayed(std::move(conn), std::move(yb.second), done.callback());

  CHECK(y.recv_exact(header.size()) == header);
  const auto up = random_bytes(512 * 1024, 54);
  outer.send_all(up);
  CHECK(bytes_diff(up, y.recv_exact(up.size())) == "");
  y.send_all("reply");
  CHECK(outer.recv_exact(5) == "reply");
  outer.shutdown_write();
  CHECK(y.recv_until_eof() == "");
  y.shutdown_write();
  CHECK(outer.recv_until_eof() == "");
  REQUIRE(done.future.wait_for(default_timeout) == std::future_status::ready);
  const auto r = done.future.get();
  INFO("error " << r.error.message() << " (" << r.error_where << ")");
  CHECK_FALSE(r.error);
  CHECK(r.a_to_b == up.size());
  CHECK(r.b_to_a == 5);
  CHECK(client::relayed_pump_stages().pipes_in_use == 0);  // TLS takes no pipe
}
