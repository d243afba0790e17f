// The byte pump of expose/connect in isolation: both directions, half-close
// passed on per direction (TCP FIN and TLS close_notify), a reset passed on
// as a reset, and buffers held only while bytes are in flight.
#include <poll.h>
#include <sys/socket.h>

#include <future>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/ssl.hpp>
#include <catch2/catch.hpp>

#include "client/stream_pump.hpp"
#include "client/tls.hpp"
#include "protocol/defaults.hpp"
#include "tests/client/client_test_support.hpp"
#include "tests/support/test_data.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;
using boost_ec = boost::system::error_code;

namespace {

// A test_client connected to a socket the test holds the other end of.
struct connected_pair {
  connected_pair(asio::io_context& io) : acceptor(io), inner(io) {
    const asio_tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acceptor.open(ep.protocol());
    acceptor.bind(ep);
    acceptor.listen();
    std::promise<void> accepted;
    acceptor.async_accept(inner, [&accepted](const boost_ec&) { accepted.set_value(); });
    outer = test_client::connect("127.0.0.1", acceptor.local_endpoint().port());
    REQUIRE(accepted.get_future().wait_for(default_timeout) == std::future_status::ready);
  }
  asio_tcp::acceptor acceptor;
  asio_tcp::socket inner;
  std::optional<test_client> outer;
};

std::size_t buffers_in_use() { return client::pump_buffers().in_use; }

// The TLS server end of `pair` (its inner socket), after a completed handshake
// with its outer test client; the context must outlive the stream.
std::pair<std::unique_ptr<client::tls_stream>, std::shared_ptr<asio::ssl::context>>
tls_server_over(connected_pair& pair, pki& keys) {
  std::string err;
  auto ctx = client::make_server_context({keys.file("server.crt.pem"), keys.file("server.key.pem")}, err);
  REQUIRE(ctx);
  auto server = std::make_unique<client::tls_stream>(std::move(pair.inner), *ctx);
  std::promise<boost_ec> handshaken;
  server->async_handshake(asio::ssl::stream_base::server,
                          [&handshaken](const boost_ec& ec) { handshaken.set_value(ec); });
  pair.outer->start_tls(keys.ca(), "127.0.0.1");
  auto hs = handshaken.get_future();
  REQUIRE(hs.wait_for(default_timeout) == std::future_status::ready);
  REQUIRE_FALSE(hs.get());
  return {std::move(server), std::move(ctx)};
}

}  // namespace

SCENARIO("pump: bytes both ways, and each direction ends on its own EOF", "[client][pump]") {
  io_thread io;
  connected_pair a(io.io()), b(io.io());
  pump_outcome done;
  client::start_pump(io.io().get_executor(), client::make_pump_end(std::move(a.inner)),
                     client::make_pump_end(std::move(b.inner)), 4096, done.callback());
  auto& x = *a.outer;
  auto& y = *b.outer;
  const auto big = random_bytes(1024 * 1024, 21);  // far beyond the 4 KiB buffers
  x.send_all("ping");
  CHECK(y.recv_exact(4) == "ping");
  y.send_all(big);
  CHECK(bytes_diff(big, x.recv_exact(big.size())) == "");
  WHEN("one side half-closes") {
    x.shutdown_write();
    THEN("the other reads EOF and can still answer, then its EOF arrives too") {
      CHECK(y.recv_until_eof() == "");
      y.send_all("late answer");
      CHECK(x.recv_exact(11) == "late answer");
      y.shutdown_write();
      CHECK(x.recv_until_eof() == "");
      REQUIRE(done.future.wait_for(default_timeout) == std::future_status::ready);
      const auto r = done.future.get();
      CHECK_FALSE(r.error);
      CHECK(r.a_to_b == 4);
      CHECK(r.b_to_a == big.size() + 11);
    }
  }
}

SCENARIO("pump: a reset on one side is passed on as a reset", "[client][pump]") {
  io_thread io;
  connected_pair a(io.io()), b(io.io());
  pump_outcome done;
  client::start_pump(io.io().get_executor(), client::make_pump_end(std::move(a.inner)),
                     client::make_pump_end(std::move(b.inner)), 4096, done.callback());
  a.outer->send_all("x");
  CHECK(b.outer->recv_exact(1) == "x");
  a.outer->reset();
  CHECK(b.outer->closed_within());
  REQUIRE(done.future.wait_for(default_timeout) == std::future_status::ready);
  CHECK(done.future.get().error);
}

SCENARIO("pump: TLS half-close: close_notify one way, data still flows the other way",
         "[client][pump][tls]") {
  pki keys;
  io_thread io;
  connected_pair a(io.io()), b(io.io());
  auto [server, ctx] = tls_server_over(a, keys);

  pump_outcome done;
  client::start_pump(io.io().get_executor(), client::make_pump_end(std::move(server), ctx),
                     client::make_pump_end(std::move(b.inner)), 4096, done.callback());
  auto& x = *a.outer;  // TLS client
  auto& y = *b.outer;  // plain
  x.send_all("secret");
  CHECK(y.recv_exact(6) == "secret");
  x.shutdown_write();  // close_notify, and nothing else
  CHECK(y.recv_until_eof() == "");
  const auto answer = random_bytes(200 * 1024, 4);
  y.send_all(answer);
  CHECK(bytes_diff(answer, x.recv_exact(answer.size())) == "");
  y.shutdown_write();  // the pump turns this into close_notify
  CHECK(x.recv_until_eof() == "");
  REQUIRE(done.future.wait_for(default_timeout) == std::future_status::ready);
  CHECK_FALSE(done.future.get().error);
}

SCENARIO("pump: idle pumps hold no buffers, and each still carries its bytes intact",
         "[client][pump]") {
  GIVEN("200 pumps between connected pairs, with expose's buffer size") {
    io_thread io;
    socket_pair_source listener(io.io());
    struct relayed {
      tcp_conn x, y;  // the test's ends: x -> a, pump, b -> y
      pump_outcome done;
    };
    std::vector<std::unique_ptr<relayed>> pumps;
    for (int i = 0; i < 200; ++i) {
      auto [x, a] = listener.connect();
      auto [y, b] = listener.connect();
      pumps.push_back(std::make_unique<relayed>());
      auto& p = *pumps.back();
      p.x = std::move(x);
      p.y = std::move(y);
      client::start_pump(io.io().get_executor(), client::make_pump_end(std::move(a)),
                         client::make_pump_end(std::move(b)), defaults::pump_buffer_bytes,
                         p.done.callback());
    }
    CHECK(buffers_in_use() == 0);  // waiting for a first byte takes none
    // Earlier tests in this process may have left buffers (of any size) idle.
    const std::size_t idle_before = client::pump_buffers().idle;

    WHEN("every pump carries distinct bytes both ways at once") {
      const std::size_t size = 20 * 1024;
      for (std::size_t i = 0; i < pumps.size(); ++i) {
        pumps[i]->x.send_all(random_bytes(size, 2 * i));
        pumps[i]->y.send_all(random_bytes(size, 2 * i + 1));
      }
      THEN("each end receives exactly what its peer sent") {
        for (std::size_t i = 0; i < pumps.size(); ++i) {
          INFO("pump " << i);
          CHECK(bytes_diff(random_bytes(size, 2 * i), pumps[i]->y.recv_exact(size)) == "");
          CHECK(bytes_diff(random_bytes(size, 2 * i + 1), pumps[i]->x.recv_exact(size)) == "");
        }
        AND_THEN("once quiet again no pump holds a buffer, and the pool keeps a bounded few") {
          CHECK(eventually([] { return buffers_in_use() == 0; }));
          // 400 directions had bytes in flight; of their buffers (all one
          // size) the pool kept no more than its bound.
          CHECK(client::pump_buffers().idle - idle_before <= client::pump_idle_buffers);
          for (auto& p : pumps) {
            p->x.shutdown_write();
            p->y.shutdown_write();
          }
          for (std::size_t i = 0; i < pumps.size(); ++i) {
            INFO("pump " << i);
            CHECK(pumps[i]->y.recv_until_eof() == "");
            CHECK(pumps[i]->x.recv_until_eof() == "");
            REQUIRE(pumps[i]->done.future.wait_for(default_timeout) == std::future_status::ready);
            const auto r = pumps[i]->done.future.get();
            CHECK_FALSE(r.error);
            CHECK(r.a_to_b == size);
            CHECK(r.b_to_a == size);
          }
          CHECK(buffers_in_use() == 0);
        }
      }
    }
  }
}

SCENARIO("pump: megabytes both ways at once arrive byte for byte, then each half-close",
         "[client][pump]") {
  io_thread io;
  socket_pair_source listener(io.io());
  auto xa = listener.connect();  // x: the test's end, a: the pump's
  auto yb = listener.connect();
  tcp_conn& x = xa.first;
  tcp_conn& y = yb.first;
  pump_outcome done;
  client::start_pump(io.io().get_executor(), client::make_pump_end(std::move(xa.second)),
                     client::make_pump_end(std::move(yb.second)), defaults::pump_buffer_bytes,
                     done.callback());
  const auto up = random_bytes(6 * 1024 * 1024, 41);    // x -> y
  const auto down = random_bytes(5 * 1024 * 1024, 42);  // y -> x
  const millis slow = 30s;                              // a sanitizer build on a busy machine
  // Each end sends everything then half-closes while it still receives.
  auto send_then_eof = [slow](tcp_conn& c, const std::string& data) {
    c.send_all(data, slow);
    c.shutdown_write();
  };
  auto x_sends = std::async(std::launch::async, send_then_eof, std::ref(x), std::cref(up));
  auto y_sends = std::async(std::launch::async, send_then_eof, std::ref(y), std::cref(down));
  auto x_gets = std::async(std::launch::async, [&x, slow] { return x.recv_until_eof(slow); });
  const std::string y_got = y.recv_until_eof(slow);
  REQUIRE(x_gets.wait_for(slow) == std::future_status::ready);
  const std::string x_got = x_gets.get();
  x_sends.get();
  y_sends.get();
  CHECK(bytes_diff(up, y_got) == "");
  CHECK(bytes_diff(down, x_got) == "");
  REQUIRE(done.future.wait_for(default_timeout) == std::future_status::ready);
  const auto r = done.future.get();
  CHECK_FALSE(r.error);
  CHECK(r.a_to_b == up.size());
  CHECK(r.b_to_a == down.size());
  CHECK(buffers_in_use() == 0);
}

SCENARIO("pump: a reset while bytes are in flight is passed on, and the buffer goes back",
         "[client][pump]") {
  io_thread io;
  socket_pair_source listener(io.io());
  auto xa = listener.connect();  // x: the test's end, a: the pump's
  auto yb = listener.connect();
  tcp_conn& x = xa.first;
  tcp_conn& y = yb.first;
  // Small kernel buffers toward y, so the pump soon holds bytes y does not take.
  yb.second.set_option(asio::socket_base::send_buffer_size(16 * 1024));
  const int small = 16 * 1024;
  REQUIRE(::setsockopt(y.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
  pump_outcome done;
  client::start_pump(io.io().get_executor(), client::make_pump_end(std::move(xa.second)),
                     client::make_pump_end(std::move(yb.second)), defaults::pump_buffer_bytes,
                     done.callback());
  const auto big = random_bytes(4 * 1024 * 1024, 43);
  auto x_sends = std::async(std::launch::async, [&x, &big] { x.send_all(big); });
  CHECK(bytes_diff(big.substr(0, 4096), y.recv_exact(4096)) == "");
  REQUIRE(eventually([] { return buffers_in_use() >= 1; }));  // stalled toward y

  const linger abortive{1, 0};  // close(2) sends RST
  REQUIRE(::setsockopt(y.fd(), SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive) == 0);
  y.close();
  THEN("the sender is reset, the pump reports the failure and holds no buffer") {
    // The reset reaches whichever of x's calls asks first (a sender that had
    // handed all its bytes to the kernel asks nothing); the other then finds
    // the socket closed (EOF, or a broken pipe). An orderly end would leave
    // the sender stuck and the receiver at EOF.
    std::string x_received = "EOF";
    try {
      x.recv_until_eof();
    } catch (const io_error& e) {
      x_received = e.what();
    }
    std::string x_sent = "everything sent";
    try {
      x_sends.get();
    } catch (const io_error& e) {
      x_sent = e.what();
    }
    INFO("receiving: " << x_received << "; sending: " << x_sent);
    CHECK((Catch::contains(x_received, "reset") || Catch::contains(x_sent, "reset")));
    REQUIRE(done.future.wait_for(default_timeout) == std::future_status::ready);
    const auto r = done.future.get();
    CHECK(r.error);
    CHECK(r.a_to_b < big.size());
    CHECK(eventually([] { return buffers_in_use() == 0; }));
  }
}

SCENARIO("pump: a TLS end holds one record-sized buffer while its read is pending, a plain end none",
         "[client][pump][tls]") {
  pki keys;
  io_thread io;
  connected_pair a(io.io()), b(io.io());
  auto [server, ctx] = tls_server_over(a, keys);

  pump_outcome done;
  client::start_pump(io.io().get_executor(), client::make_pump_end(std::move(server), ctx),
                     client::make_pump_end(std::move(b.inner)), defaults::pump_buffer_bytes,
                     done.callback());
  auto& x = *a.outer;  // TLS client
  auto& y = *b.outer;  // plain
  const auto up = random_bytes(1024 * 1024, 44);  // many TLS records
  auto y_gets = std::async(std::launch::async, [&y, &up] { return y.recv_exact(up.size()); });
  x.send_all(up);
  REQUIRE(y_gets.wait_for(default_timeout) == std::future_status::ready);
  CHECK(bytes_diff(up, y_gets.get()) == "");
  y.send_all("answer");
  CHECK(x.recv_exact(6) == "answer");
  CHECK(eventually([] { return buffers_in_use() == 1; }));  // the TLS read, pending

  x.shutdown_write();
  CHECK(y.recv_until_eof() == "");
  CHECK(eventually([] { return buffers_in_use() == 0; }));  // that read ended: EOF
  y.shutdown_write();
  CHECK(x.recv_until_eof() == "");
  REQUIRE(done.future.wait_for(default_timeout) == std::future_status::ready);
  CHECK_FALSE(done.future.get().error);
}
