// A relay played by the test (a TLS server on 127.0.0.1 with its own
// reverse port) that follows a script: what it answers to the server's first
// line, what it records of each line and reverse connection. For tests of the
// listener and of its control channel against what a real relay would rarely
// or never say.
#pragma once

#include <openssl/ssl.h>

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include "client/tls.hpp"
#include "tests/client/client_test_support.hpp"

namespace tlsrelay::test {

// ALPN selection callback of a relay that speaks tlsrelay/2.
int select_v2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
              unsigned inlen, void*);

// A relay that follows a script: after the server's first line it sends
// `on_hello` (with {reverse} replaced by its reverse address), then reads and
// records every line, answering nothing more unless told.
class scripted_relay {
 public:
  using boost_ec = boost::system::error_code;

  struct script {
    bool alpn = true;
    std::vector<std::string> on_hello;
    bool close_after = false;
    // false: the control port is bound but refuses connections (a node that
    // is down) until start_listening().
    bool listening = true;
    // true: `on_hello` is sent right after the TLS handshake, before any line
    // from the server (a v1 relay speaks first).
    bool speak_first = false;
  };

  scripted_relay(asio::io_context& io, const pki& keys, script s)
      : st_(std::make_shared<state>(io, std::move(s))) {
    std::string err;
    st_->ctx = client::make_server_context(
      {keys.file("server.crt.pem"), keys.file("server.key.pem")}, err);
    if (!st_->ctx) throw io_error(err);
    if (st_->plan.alpn) SSL_CTX_set_alpn_select_cb(st_->ctx->native_handle(), select_v2, nullptr);
    for (auto* acceptor : {&st_->control, &st_->reverse}) {
      const asio_tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
      acceptor->open(ep.protocol());
      acceptor->bind(ep);
      if (acceptor == &st_->reverse || st_->plan.listening) acceptor->listen();
    }
    asio::post(io, [st = st_] {
      if (st->plan.listening) accept_control(st);
      accept_reverse(st);
    });
  }
  ~scripted_relay() {
    asio::post(st_->io, [st = st_] {
      boost_ec ignored;
      st->control.close(ignored);
      st->reverse.close(ignored);
      for (auto& s : st->streams) s->next_layer().close(ignored);
      for (auto& s : st->reverse_sockets) s->close(ignored);
    });
  }

  std::uint16_t port() const { return st_->control.local_endpoint().port(); }
  host_port address() const { return {"127.0.0.1", port()}; }

  // A relay created with `listening = false` comes up on its port.
  void start_listening() {
    asio::post(st_->io, [st = st_] {
      st->control.listen();
      accept_control(st);
    });
  }
  // What it answers to the next hello (for scripts that name each other).
  void set_on_hello(std::vector<std::string> lines) {
    // Runs on the io thread before any connection made after this call.
    asio::post(st_->io, [st = st_, lines = std::move(lines)] { st->plan.on_hello = lines; });
  }
  // Ends every control connection (as a node that crashed); it still accepts new ones.
  void drop_sessions() {
    asio::post(st_->io, [st = st_] {
      boost_ec ignored;
      for (auto& s : st->streams) s->next_layer().close(ignored);
    });
  }
  std::uint16_t reverse_port() const { return st_->reverse.local_endpoint().port(); }

  // Waits for a line (control connection, any session) equal to `line`.
  bool wait_line(const std::string& line, millis timeout = default_timeout) const {
    std::unique_lock lock(st_->mutex);
    return st_->changed.wait_for(lock, timeout, [&] {
      return std::find(st_->lines.begin(), st_->lines.end(), line) != st_->lines.end();
    });
  }
  std::vector<std::string> lines() const {
    std::lock_guard lock(st_->mutex);
    return st_->lines;
  }
  // The first line of the next reverse connection.
  std::optional<std::string> wait_reverse_line(millis timeout = default_timeout) const {
    std::unique_lock lock(st_->mutex);
    if (!st_->changed.wait_for(lock, timeout, [&] { return !st_->reverse_lines.empty(); }))
      return std::nullopt;
    return st_->reverse_lines.front();
  }
  // Sends `line` (\r\n added) on the newest control connection.
  void send(const std::string& line) {
    asio::post(st_->io, [st = st_, line] {
      if (st->streams.empty()) return;
      auto stream = st->streams.back();
      auto text = std::make_shared<std::string>(line + "\r\n");
      asio::async_write(*stream, asio::buffer(*text), [stream, text](const boost_ec&, std::size_t) {});
    });
  }

 private:
  struct state {
    state(asio::io_context& io, script s)
        : io(io), control(io), reverse(io), plan(std::move(s)) {}
    asio::io_context& io;
    asio_tcp::acceptor control, reverse;
    scripted_relay::script plan;
    std::shared_ptr<asio::ssl::context> ctx;
    std::vector<std::shared_ptr<client::tls_stream>> streams;
    std::vector<std::shared_ptr<asio_tcp::socket>> reverse_sockets;
    mutable std::mutex mutex;
    mutable std::condition_variable changed;
    std::vector<std::string> lines, reverse_lines;
  };

  static void record(const std::shared_ptr<state>& st, std::vector<std::string> state::*list,
                     std::string line) {
    {
      std::lock_guard lock(st->mutex);
      (st.get()->*list).push_back(std::move(line));
    }
    st->changed.notify_all();
  }

  static void accept_control(std::shared_ptr<state> st) {
    st->control.async_accept([st](const boost_ec& ec, asio_tcp::socket s) {
      if (ec) return;
      auto stream = std::make_shared<client::tls_stream>(std::move(s), *st->ctx);
      st->streams.push_back(stream);
      stream->async_handshake(asio::ssl::stream_base::server, [st, stream](const boost_ec& ec) {
        if (ec) return;
        if (st->plan.speak_first) send_script(st, stream);
        read_lines(st, stream, std::make_shared<asio::streambuf>(), !st->plan.speak_first);
      });
      accept_control(st);
    });
  }

  // Sends the script's lines ({reverse}: its reverse address).
  static void send_script(const std::shared_ptr<state>& st,
                          const std::shared_ptr<client::tls_stream>& stream) {
    std::string out;
    for (auto l : st->plan.on_hello) {
      const auto at = l.find("{reverse}");
      if (at != std::string::npos)
        l.replace(at, 9, "127.0.0.1:" + std::to_string(st->reverse.local_endpoint().port()));
      out += l + "\r\n";
    }
    auto text = std::make_shared<std::string>(out);
    asio::async_write(*stream, asio::buffer(*text), [st, stream, text](const boost_ec&,
                                                                      std::size_t) {
      if (st->plan.close_after) {
        boost_ec ignored;
        stream->next_layer().close(ignored);
      }
    });
  }

  static void read_lines(std::shared_ptr<state> st, std::shared_ptr<client::tls_stream> stream,
                         std::shared_ptr<asio::streambuf> buf, bool first) {
    asio::async_read_until(*stream, *buf, "\r\n", [st, stream, buf, first](const boost_ec& ec,
                                                                           std::size_t n) {
      if (ec) return;
      std::string line(asio::buffers_begin(buf->data()), asio::buffers_begin(buf->data()) + n - 2);
      buf->consume(n);
      record(st, &state::lines, line);
      if (first) send_script(st, stream);
      read_lines(st, stream, buf, false);
    });
  }

  static void accept_reverse(std::shared_ptr<state> st) {
    st->reverse.async_accept([st](const boost_ec& ec, asio_tcp::socket s) {
      if (ec) return;
      auto socket = std::make_shared<asio_tcp::socket>(std::move(s));
      st->reverse_sockets.push_back(socket);
      auto buf = std::make_shared<asio::streambuf>();
      asio::async_read_until(*socket, *buf, "\r\n", [st, socket, buf](const boost_ec& ec,
                                                                     std::size_t n) {
        if (ec) return;
        std::string line(asio::buffers_begin(buf->data()), asio::buffers_begin(buf->data()) + n);
        record(st, &state::reverse_lines, line);
      });
      accept_reverse(st);
    });
  }

  std::shared_ptr<state> st_;
};

}  // namespace tlsrelay::test
