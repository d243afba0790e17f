#include "client/stream_pump.hpp"

#include <array>
#include <vector>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>

namespace tlsrelay::client {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost_ec = boost::system::error_code;

// An abortive close: SO_LINGER 0 makes close(2) send RST, so the peer sees a
// reset rather than a clean end of a stream that was cut short.
void reset_socket(tcp::socket& socket) {
  boost_ec ignored;
  if (!socket.is_open()) return;
  socket.set_option(asio::socket_base::linger(true, 0), ignored);
  socket.close(ignored);
}

class tcp_end final : public pump_end {
 public:
  explicit tcp_end(tcp::socket socket) : socket_(std::move(socket)) {}
  void async_read_some(asio::mutable_buffer buffer, io_handler handler) override {
    socket_.async_read_some(buffer, wrap(std::move(handler)));
  }
  void async_write(asio::const_buffer buffer, io_handler handler) override {
    asio::async_write(socket_, buffer, wrap(std::move(handler)));
  }
  void async_shutdown_send(done_handler handler) override {
    boost_ec ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    asio::post(*strand_, [h = std::move(handler), ec] { h(ec); });
  }
  void abort() override { reset_socket(socket_); }
  void close() override {
    boost_ec ignored;
    socket_.close(ignored);
  }

 private:
  tcp::socket socket_;
};

class tls_end final : public pump_end {
 public:
  tls_end(std::unique_ptr<tls_stream> stream, std::shared_ptr<asio::ssl::context> context)
      : context_(std::move(context)), stream_(std::move(stream)) {}
  void async_read_some(asio::mutable_buffer buffer, io_handler handler) override {
    stream_->async_read_some(buffer, wrap(std::move(handler)));
  }
  void async_write(asio::const_buffer buffer, io_handler handler) override {
    asio::async_write(*stream_, buffer, wrap(std::move(handler)));
  }
  void async_shutdown_send(done_handler handler) override {
    async_send_close_notify(*stream_, wrap(std::move(handler)));
  }
  bool is_eof(const boost_ec& ec) const override { return is_tls_eof(ec); }
  void abort() override { reset_socket(stream_->next_layer()); }
  void close() override {
    boost_ec ignored;
    stream_->next_layer().close(ignored);
  }

 private:
  std::shared_ptr<asio::ssl::context> context_;  // outlives stream_
  std::unique_ptr<tls_stream> stream_;
};

class pump : public std::enable_shared_from_this<pump> {
 public:
  pump(const asio::any_io_executor& ex, std::unique_ptr<pump_end> a, std::unique_ptr<pump_end> b,
       std::size_t buffer_bytes, std::function<void(const pump_result&)> done)
      : strand_(asio::make_strand(ex)), done_(std::move(done)) {
    ends_[0] = std::move(a);
    ends_[1] = std::move(b);
    ends_[0]->use_strand(strand_);
    ends_[1]->use_strand(strand_);
    for (auto& d : dirs_) d.buffer.resize(buffer_bytes == 0 ? 1 : buffer_bytes);
  }

  void start() {
    asio::dispatch(strand_, [self = shared_from_this()] {
      self->read(0);
      self->read(1);
    });
  }

 private:
  struct direction {
    std::vector<char> buffer;
    bool finished = false;
  };

  // Direction `from` moves bytes from ends_[from] to ends_[1 - from].
  void read(int from) {
    ends_[from]->async_read_some(
      asio::buffer(dirs_[from].buffer),
      [self = shared_from_this(), from](const boost_ec& ec, std::size_t n) {
        self->on_read(from, ec, n);
      });
  }

  void on_read(int from, const boost_ec& ec, std::size_t n) {
    if (failed_) return finish(from);
    const int to = 1 - from;
    if (ec && n == 0) {
      if (ends_[from]->is_eof(ec)) {
        ends_[to]->async_shutdown_send(
          [self = shared_from_this(), from](const boost_ec&) { self->finish(from); });
        return;
      }
      fail(ec, from == 0 ? "reading a" : "reading b");
      return finish(from);
    }
    ends_[to]->async_write(
      asio::buffer(dirs_[from].buffer.data(), n),
      [self = shared_from_this(), from](const boost_ec& ec, std::size_t n) {
        self->on_written(from, ec, n);
      });
  }

  void on_written(int from, const boost_ec& ec, std::size_t n) {
    (from == 0 ? result_.a_to_b : result_.b_to_a) += n;
    if (failed_) return finish(from);
    if (ec) {
      fail(ec, from == 0 ? "writing b" : "writing a");
      return finish(from);
    }
    read(from);
  }

  // An error on one side: the other is reset, and both directions stop.
  void fail(const boost_ec& ec, const char* where) {
    if (failed_) return;
    failed_ = true;
    result_.error = ec;
    result_.error_where = where;
    ends_[0]->abort();
    ends_[1]->abort();
  }

  void finish(int from) {
    if (dirs_[from].finished) return;
    dirs_[from].finished = true;
    if (!dirs_[0].finished || !dirs_[1].finished) return;
    ends_[0]->close();
    ends_[1]->close();
    if (done_) done_(result_);
  }

  pump_end::strand_type strand_;
  std::unique_ptr<pump_end> ends_[2];
  direction dirs_[2];
  bool failed_ = false;
  pump_result result_;
  std::function<void(const pump_result&)> done_;
};

}  // namespace

bool pump_end::is_eof(const boost_ec& ec) const { return ec == asio::error::eof; }

std::unique_ptr<pump_end> make_pump_end(tcp::socket socket) {
  return std::make_unique<tcp_end>(std::move(socket));
}

std::unique_ptr<pump_end> make_pump_end(std::unique_ptr<tls_stream> stream,
                                        std::shared_ptr<asio::ssl::context> context) {
  return std::make_unique<tls_end>(std::move(stream), std::move(context));
}

void start_pump(const asio::any_io_executor& executor, std::unique_ptr<pump_end> a,
                std::unique_ptr<pump_end> b, std::size_t buffer_bytes,
                std::function<void(const pump_result&)> done) {
  auto p = std::make_shared<pump>(executor, std::move(a), std::move(b), buffer_bytes,
                                  std::move(done));
  p->start();
}

}  // namespace tlsrelay::client
