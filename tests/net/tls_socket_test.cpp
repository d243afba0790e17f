// net::tls_socket (OpenSSL driven directly on the control connection's
// socket) against an ordinary OpenSSL client over real loopback TCP: the
// handshake with ALPN and client certificates as configure_relay_tls sets
// them up, bytes both ways, close_notify, a TCP end without one, and a write
// larger than the socket buffers; each with OpenSSL keeping the records and
// with the relay taking them over after the handshake (take_over_records),
// and then KeyUpdates, a TLS 1.2 client, and records a hostile client forges.
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <filesystem>
#include <future>
#include <memory>
#include <random>
#include <sstream>
#include <string>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <catch2/catch.hpp>

#include "cli/dev_pki.hpp"
#include "net/tls_context.hpp"
#include "net/tls_socket.hpp"
#include "protocol/wire.hpp"
#include "tests/net/peer_io.hpp"

namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
using namespace tlsrelay::test;
using tlsrelay::net::tls_socket;

class keys_dir {
 public:
  keys_dir() {
    std::random_device random;
    std::ostringstream name;
    name << "tlsrelay-tls-socket-test-" << std::hex << random() << random();
    path_ = fs::temp_directory_path() / name.str();
    tlsrelay::cli::dev_pki_options options;
    options.dir = path_ / "keys";
    const auto error = tlsrelay::cli::write_dev_pki(options);
    INFO("write_dev_pki: " << error);
    REQUIRE(error.empty());
  }
  ~keys_dir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  keys_dir(const keys_dir&) = delete;
  keys_dir& operator=(const keys_dir&) = delete;
  fs::path keys() const { return path_ / "keys"; }

 private:
  fs::path path_;
};

struct ctx_free {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct ssl_free {
  void operator()(SSL* s) const { SSL_free(s); }
};
using client_ctx = std::unique_ptr<SSL_CTX, ctx_free>;
using client_ssl = std::unique_ptr<SSL, ssl_free>;

// A server program's TLS client: verifies the relay against ca.crt.pem and,
// when `with_certificate`, presents client.crt.pem.
client_ctx make_client_ctx(const fs::path& keys, bool with_certificate) {
  client_ctx ctx(SSL_CTX_new(TLS_client_method()));
  REQUIRE(ctx);
  REQUIRE(SSL_CTX_load_verify_locations(ctx.get(), (keys / "ca.crt.pem").c_str(), nullptr) == 1);
  if (with_certificate) {
    REQUIRE(SSL_CTX_use_certificate_chain_file(ctx.get(), (keys / "client.crt.pem").c_str()) == 1);
    REQUIRE(SSL_CTX_use_PrivateKey_file(ctx.get(), (keys / "client.key.pem").c_str(),
                                        SSL_FILETYPE_PEM) == 1);
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  return ctx;
}

// The test's end is driven with blocking calls bounded by socket timeouts.
void make_blocking_with_timeout(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  REQUIRE(::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0);
  timeval tv{5, 0};
  REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0);
}

// One relay-side tls_socket on the io thread, and the client on the test's.
struct fixture {
  keys_dir dir;
  asio::ssl::context server_ctx{asio::ssl::context::tls_server};
  io_thread io;
  unique_fd peer;
  std::unique_ptr<tls_socket> server;
  client_ssl client;

  explicit fixture(std::optional<int> buffer_bytes = std::nullopt) {
    REQUIRE(tlsrelay::net::configure_relay_tls(server_ctx, dir.keys()).empty());
    auto pair = make_tcp_pair(io.io(), buffer_bytes);
    peer = std::move(pair.peer);
    make_blocking_with_timeout(peer.get());
    server = std::make_unique<tls_socket>(std::move(pair.side), server_ctx.native_handle());
    REQUIRE(server->ok());
  }
  ~fixture() {
    io.run([this] { server.reset(); });
  }

  // Starts the server's handshake; the future holds its outcome.
  std::future<boost::system::error_code> start_handshake() {
    auto done = std::make_shared<std::promise<boost::system::error_code>>();
    auto result = done->get_future();
    REQUIRE(io.run([this, done] {
      server->async_handshake([done](const boost::system::error_code& ec) { done->set_value(ec); });
    }));
    return result;
  }

  // The client's handshake (blocking); true when it succeeded.
  bool client_handshake(SSL_CTX* ctx, bool offer_v2) {
    client.reset(SSL_new(ctx));
    REQUIRE(client);
    SSL_set_fd(client.get(), peer.get());
    if (offer_v2) {
      const std::string alpn = std::string(1, static_cast<char>(tlsrelay::wire::alpn_v2.size())) +
                               std::string(tlsrelay::wire::alpn_v2);
      REQUIRE(SSL_set_alpn_protos(client.get(), reinterpret_cast<const unsigned char*>(alpn.data()),
                                  static_cast<unsigned>(alpn.size())) == 0);
    }
    ERR_clear_error();
    return SSL_connect(client.get()) == 1;
  }

  // After the handshake: the relay protects the records itself from now on.
  void take_over_records() {
    bool taken = false;
    REQUIRE(io.run([this, &taken] { taken = server->take_over_records(); }));
    REQUIRE(taken);
  }
  void maybe_take_over_records(bool take_over) {
    if (take_over) take_over_records();
  }

  // Starts one server write of `bytes` (kept alive by the caller); the future
  // holds (error, bytes written).
  std::future<std::pair<boost::system::error_code, std::size_t>> start_write(const std::string& bytes) {
    auto wrote = std::make_shared<std::promise<std::pair<boost::system::error_code, std::size_t>>>();
    auto written = wrote->get_future();
    REQUIRE(io.run([this, &bytes, wrote] {
      server->async_write(bytes, [wrote](const boost::system::error_code& ec, std::size_t n) {
        wrote->set_value({ec, n});
      });
    }));
    return written;
  }

  // Starts one server read; the future holds (error, bytes).
  std::future<std::pair<boost::system::error_code, std::string>> start_read() {
    auto done = std::make_shared<std::promise<std::pair<boost::system::error_code, std::string>>>();
    auto result = done->get_future();
    REQUIRE(io.run([this, done] {
      server->async_read_some([done](const boost::system::error_code& ec, std::string_view bytes) {
        done->set_value({ec, std::string(bytes)});
      });
    }));
    return result;
  }

  // Reads on the client until `size` bytes or the end; the bytes read.
  std::string client_read(std::size_t size, int* last_error = nullptr) {
    std::string got;
    std::string chunk(16384, '\0');
    while (got.size() < size) {
      std::size_t n = 0;
      const int r = SSL_read_ex(client.get(), chunk.data(), chunk.size(), &n);
      if (r != 1) {
        if (last_error) *last_error = SSL_get_error(client.get(), r);
        break;
      }
      got.append(chunk.data(), n);
    }
    return got;
  }
};

template <class T>
T get_within(std::future<T>& f, std::chrono::seconds timeout = 10s) {
  REQUIRE(f.wait_for(timeout) == std::future_status::ready);
  return f.get();
}

}  // namespace

SCENARIO("a control connection's TLS runs on its socket with ALPN and a client certificate",
         "[net][tls][tls_socket]") {
  GIVEN("a relay-side tls_socket and a v2 server program presenting client.crt.pem") {
    fixture f;
    auto handshake = f.start_handshake();
    auto ctx = make_client_ctx(f.dir.keys(), true);
    REQUIRE(f.client_handshake(ctx.get(), true));
    const auto ec = get_within(handshake);
    INFO("handshake: " << ec.message());
    REQUIRE_FALSE(ec);

    THEN("the relay sees ALPN tlsrelay/2, TLS 1.3 and a verified certificate") {
      CHECK(tlsrelay::net::negotiated_protocol(f.server->native_handle()) == 2);
      CHECK(SSL_version(f.server->native_handle()) == TLS1_3_VERSION);
      CHECK(SSL_get0_peer_certificate(f.server->native_handle()) != nullptr);
      CHECK(SSL_get_verify_result(f.server->native_handle()) == X509_V_OK);
      AND_THEN("once the relay takes the records over, OpenSSL's SSL is gone") {
        f.take_over_records();
        CHECK(f.server->native_handle() == nullptr);
        CHECK(f.server->ok());
      }
    }

    // Every exchange below, with OpenSSL keeping the records and with the relay's own.
    const bool take_over = GENERATE(false, true);
    CAPTURE(take_over);
    f.maybe_take_over_records(take_over);

    WHEN("the server program sends a line and the relay answers") {
      auto read = f.start_read();
      const std::string hello = "hello 2 name=x\r\n";
      REQUIRE(SSL_write(f.client.get(), hello.data(), static_cast<int>(hello.size())) ==
              static_cast<int>(hello.size()));
      const auto [read_ec, bytes] = get_within(read);
      CHECK_FALSE(read_ec);
      CHECK(bytes == hello);

      const std::string answer = "public_listener 127.0.0.1:12101\r\n";
      auto written = f.start_write(answer);
      const auto [write_ec, n] = get_within(written);
      CHECK_FALSE(write_ec);
      CHECK(n == answer.size());
      THEN("the server program reads the answer, then close_notify after shutdown_send") {
        CHECK(f.client_read(answer.size()) == answer);
        REQUIRE(f.io.run([&f] { f.server->shutdown_send(); }));
        int last_error = 0;
        CHECK(f.client_read(1, &last_error).empty());
        CHECK(last_error == SSL_ERROR_ZERO_RETURN);
      }
    }

    WHEN("the server program sends close_notify") {
      auto read = f.start_read();
      REQUIRE(SSL_shutdown(f.client.get()) >= 0);
      THEN("the relay's read ends with eof") {
        CHECK(get_within(read).first == asio::error::eof);
      }
    }

    WHEN("the server program's TCP connection ends without close_notify") {
      auto read = f.start_read();
      ::shutdown(f.peer.get(), SHUT_WR);
      THEN("the relay's read ends with stream_truncated") {
        CHECK(get_within(read).first == asio::ssl::error::stream_truncated);
      }
    }

    WHEN("the relay closes the connection while a read waits") {
      auto read = f.start_read();
      REQUIRE(f.io.run([&f] { f.server->close(); }));
      THEN("the read ends with an error and the server program sees the end") {
        CHECK(get_within(read).first);
        int last_error = 0;
        CHECK(f.client_read(1, &last_error).empty());
        CHECK(last_error != 0);
      }
    }
  }
}

TEST_CASE("a v1 server program offering no ALPN gets protocol 1 from tls_socket",
          "[net][tls][tls_socket]") {
  fixture f;
  auto handshake = f.start_handshake();
  auto ctx = make_client_ctx(f.dir.keys(), true);
  REQUIRE(f.client_handshake(ctx.get(), false));
  REQUIRE_FALSE(get_within(handshake));
  CHECK(tlsrelay::net::negotiated_protocol(f.server->native_handle()) == 1);
}

TEST_CASE("tls_socket refuses a server program without a client certificate",
          "[net][tls][tls_socket]") {
  fixture f;
  auto handshake = f.start_handshake();
  auto ctx = make_client_ctx(f.dir.keys(), false);
  // TLS 1.3: the client may finish before the relay judges its (absent)
  // certificate; the relay's side is what counts.
  f.client_handshake(ctx.get(), false);
  const auto ec = get_within(handshake);
  CHECK(ec);
  CHECK(ec.category() == asio::error::get_ssl_category());
}

TEST_CASE("tls_socket writes 4 MiB through 16 KiB socket buffers in order",
          "[net][tls][tls_socket]") {
  fixture f(16384);
  auto handshake = f.start_handshake();
  auto ctx = make_client_ctx(f.dir.keys(), true);
  REQUIRE(f.client_handshake(ctx.get(), false));
  REQUIRE_FALSE(get_within(handshake));
  const bool take_over = GENERATE(false, true);
  CAPTURE(take_over);
  f.maybe_take_over_records(take_over);

  const auto raw = pattern(4 * 1024 * 1024, 7);
  const std::string payload(raw.begin(), raw.end());
  auto written = f.start_write(payload);
  // The write cannot finish before the client reads: it waits for writability.
  const std::string got = f.client_read(payload.size());
  const auto [ec, n] = get_within(written);
  CHECK_FALSE(ec);
  CHECK(n == payload.size());
  REQUIRE(got.size() == payload.size());
  CHECK(got == payload);
}

namespace {

// A fixture whose handshake is done (a v2 server program with its
// certificate) and whose records the relay has taken over.
struct taken_over : fixture {
  taken_over() {
    auto handshake = start_handshake();
    ctx = make_client_ctx(dir.keys(), true);
    REQUIRE(client_handshake(ctx.get(), true));
    REQUIRE_FALSE(get_within(handshake));
    take_over_records();
  }
  // Sends bytes on the TCP connection as they are, past the client's TLS.
  void send_raw(const std::string& bytes) {
    REQUIRE(::send(peer.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
            static_cast<long>(bytes.size()));
  }
  // The records the client writes for `text`, caught on their way instead of
  // sent: the test then sends them as it likes.
  std::string client_records(const std::string& text) {
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
    unique_fd capture_in(pair[0]), capture_out(pair[1]);
    SSL_set_fd(client.get(), capture_in.get());
    REQUIRE(SSL_write(client.get(), text.data(), static_cast<int>(text.size())) ==
            static_cast<int>(text.size()));
    std::string records(text.size() + 256, '\0');
    const long n = ::recv(capture_out.get(), records.data(), records.size(), MSG_DONTWAIT);
    REQUIRE(n > 0);
    records.resize(static_cast<std::size_t>(n));
    SSL_set_fd(client.get(), peer.get());
    return records;
  }
  client_ctx ctx;
};

void client_write(SSL* ssl, const std::string& bytes) {
  REQUIRE(SSL_write(ssl, bytes.data(), static_cast<int>(bytes.size())) ==
          static_cast<int>(bytes.size()));
}

}  // namespace

TEST_CASE("tls_socket answers a server program's KeyUpdates once the records are the relay's",
          "[net][tls][tls_socket]") {
  taken_over f;
  const int request = GENERATE(SSL_KEY_UPDATE_REQUESTED, SSL_KEY_UPDATE_NOT_REQUESTED);
  CAPTURE(request);
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    REQUIRE(SSL_key_update(f.client.get(), request) == 1);
    const std::string line = "heartbeat " + std::to_string(round) + "\r\n";
    // SSL_write sends the KeyUpdate first, then the line under the next keys.
    client_write(f.client.get(), line);
    auto read = f.start_read();
    const auto [ec, bytes] = get_within(read);
    INFO(ec.message() << " " << f.server->record_error());
    REQUIRE_FALSE(ec);
    CHECK(bytes == line);
    // The answer goes back under the relay's next keys when asked for one:
    // the client only reads it if both ends agree on them.
    const std::string answer = "ok " + std::to_string(round) + "\r\n";
    auto written = f.start_write(answer);
    CHECK_FALSE(get_within(written).first);
    CHECK(f.client_read(answer.size()) == answer);
  }
}

TEST_CASE("tls_socket keeps a TLS 1.2 server program's records in OpenSSL",
          "[net][tls][tls_socket]") {
  fixture f;
  auto handshake = f.start_handshake();
  auto ctx = make_client_ctx(f.dir.keys(), true);
  REQUIRE(SSL_CTX_set_max_proto_version(ctx.get(), TLS1_2_VERSION) == 1);
  REQUIRE(f.client_handshake(ctx.get(), false));
  REQUIRE_FALSE(get_within(handshake));
  bool taken = true;
  REQUIRE(f.io.run([&f, &taken] { taken = f.server->take_over_records(); }));
  CHECK_FALSE(taken);
  REQUIRE(f.server->native_handle() != nullptr);
  CHECK(SSL_version(f.server->native_handle()) == TLS1_2_VERSION);
  auto read = f.start_read();
  client_write(f.client.get(), "hello\r\n");
  CHECK(get_within(read) == std::make_pair(boost::system::error_code(), std::string("hello\r\n")));
}

TEST_CASE("tls_socket takes over nothing before the handshake", "[net][tls][tls_socket]") {
  fixture f;
  bool taken = true;
  REQUIRE(f.io.run([&f, &taken] { taken = f.server->take_over_records(); }));
  CHECK_FALSE(taken);
  CHECK(f.server->native_handle() != nullptr);
}

TEST_CASE("tls_socket ends a connection on a record a hostile server program forged",
          "[net][tls][tls_socket]") {
  taken_over f;
  // Each is what a peer without the traffic keys can put on the wire.
  const auto [what, bytes] = GENERATE(table<std::string, std::string>({
    {"a record of random bytes under a valid header",
     std::string("\x17\x03\x03\x00\x40", 5) + std::string(64, '\x5a')},
    {"a header announcing more than 2^14 + 256 bytes", std::string("\x17\x03\x03\x50\x00", 5)},
    {"a record too short to hold a tag", std::string("\x17\x03\x03\x00\x08", 5) + std::string(8, '\1')},
    {"an unprotected handshake record", std::string("\x16\x03\x03\x00\x05\x18\x00\x00\x01\x01", 10)},
    {"an unprotected alert", std::string("\x15\x03\x03\x00\x02\x01\x00", 7)},
    {"a change_cipher_spec", std::string("\x14\x03\x03\x00\x01\x01", 6)},
  }));
  CAPTURE(what);
  auto read = f.start_read();
  f.send_raw(bytes);
  const auto [ec, got] = get_within(read);
  CHECK(ec == boost::system::errc::protocol_error);
  CHECK(got.empty());
  CHECK_FALSE(f.server->record_error().empty());
}

TEST_CASE("tls_socket refuses a record replayed on its connection", "[net][tls][tls_socket]") {
  taken_over f;
  // The first line goes through, the same bytes again do not (the sequence
  // number moved on).
  const std::string record = f.client_records("once\r\n");
  auto first = f.start_read();
  f.send_raw(record);
  CHECK(get_within(first) == std::make_pair(boost::system::error_code(), std::string("once\r\n")));
  auto second = f.start_read();
  f.send_raw(record);
  const auto [ec, got] = get_within(second);
  CHECK(ec == boost::system::errc::protocol_error);
  CHECK(got.empty());
  CHECK(f.server->record_error().find("bad_record_mac") != std::string::npos);
}

TEST_CASE("tls_socket ends a connection that streams KeyUpdates and never data",
          "[net][tls][tls_socket]") {
  taken_over f;
  // Each KeyUpdate costs the relay an AEAD and two HMACs and hands its owner
  // nothing: more than 32 in a row end the connection.
  const int updates = static_cast<int>(tlsrelay::tls13::server_records::max_records_without_data) + 8;
  for (int i = 0; i < updates; ++i) {
    REQUIRE(SSL_key_update(f.client.get(), SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
    REQUIRE(SSL_do_handshake(f.client.get()) == 1);  // sends it
  }
  auto read = f.start_read();
  const auto [ec, got] = get_within(read);
  CHECK(ec == boost::system::errc::protocol_error);
  CHECK(got.empty());
  CHECK(f.server->record_error().find("without data") != std::string::npos);
}

TEST_CASE("tls_socket takes a record trickled byte by byte whole, and only once whole",
          "[net][tls][tls_socket]") {
  taken_over f;
  const std::string line = "hello 2 name=slow\r\n";
  const std::string record = f.client_records(line);
  auto read = f.start_read();
  for (std::size_t i = 0; i + 1 < record.size(); ++i) {
    f.send_raw(record.substr(i, 1));
    // Nothing is handed on from a partial record (a short look: a read
    // finished early would show here).
    REQUIRE(read.wait_for(1ms) == std::future_status::timeout);
  }
  f.send_raw(record.substr(record.size() - 1));
  CHECK(get_within(read) == std::make_pair(boost::system::error_code(), line));
}
