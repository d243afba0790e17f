// The byte pump of expose/connect in isolation: both directions, half-close
// passed on per direction (TCP FIN and TLS close_notify), a reset passed on
// as a reset.
#include <future>

#include <boost/asio/ssl.hpp>
#include <catch2/catch.hpp>

#include "client/stream_pump.hpp"
#include "client/tls.hpp"
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

struct pump_outcome {
  std::promise<client::pump_result> promise;
  std::future<client::pump_result> future = promise.get_future();
  std::function<void(const client::pump_result&)> callback() {
    return [this](const client::pump_result& r) { promise.set_value(r); };
  }
};

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
  std::string err;
  auto ctx = client::make_server_context({keys.file("server.crt.pem"), keys.file("server.key.pem")}, err);
  REQUIRE(ctx);
  auto server = std::make_unique<client::tls_stream>(std::move(a.inner), *ctx);
  std::promise<boost_ec> handshaken;
  server->async_handshake(asio::ssl::stream_base::server,
                          [&handshaken](const boost_ec& ec) { handshaken.set_value(ec); });
  a.outer->start_tls(keys.ca(), "127.0.0.1");
  auto hs = handshaken.get_future();
  REQUIRE(hs.wait_for(default_timeout) == std::future_status::ready);
  REQUIRE_FALSE(hs.get());

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
