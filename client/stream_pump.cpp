#include "client/stream_pump.hpp"

#include <algorithm>
#include <mutex>
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

// A plaintext TLS record carries at most 16 KiB (RFC 8446 5.1) and OpenSSL's
// SSL_read returns the bytes of one record at a time (without read
// pipelining, which we do not enable): a larger buffer for a TLS source would
// never be filled, so a TLS direction takes this much, a quarter of the
// default pump buffer, which matters because it holds it while a read is
// pending (TLS cannot wait for readability without reading).
constexpr std::size_t tls_record_bytes = 16 * 1024;
// Buffer sizes the pool keeps idle buffers of (expose uses two: the pump
// buffer and a TLS record); a buffer of any further size is freed when given
// back, so the pool stays bounded whatever sizes callers ask for.
constexpr std::size_t pooled_sizes = 4;

// The process's pump buffers: taken when a direction has bytes to move, given
// back once they are written. One mutex (uncontended with one io thread) so a
// pump may run on any thread, and give back on another than it took on.
class buffer_pool {
 public:
  // Never destroyed: a pump still alive when statics are torn down (an
  // io_context outliving main) can still give its buffers back.
  static buffer_pool& instance() {
    static auto* pool = new buffer_pool;
    return *pool;
  }

  std::unique_ptr<char[]> take(std::size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++in_use_;
      if (auto* c = find(bytes); c && !c->idle.empty()) {
        auto b = std::move(c->idle.back());
        c->idle.pop_back();
        --idle_;
        return b;
      }
    }
    return std::unique_ptr<char[]>(new char[bytes]);  // uninitialised: it is read into
  }

  void give_back(std::unique_ptr<char[]> buffer, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    --in_use_;
    size_class* c = find(bytes);
    if (!c && classes_.size() < pooled_sizes) {
      classes_.push_back({bytes, {}});
      c = &classes_.back();
      c->idle.reserve(pump_idle_buffers);  // push_back below never allocates
    }
    if (c && c->idle.size() < pump_idle_buffers) {
      c->idle.push_back(std::move(buffer));
      ++idle_;
    }
    // else `buffer` is freed as the lock is released
  }

  pump_buffer_stats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return {in_use_, idle_};
  }

 private:
  struct size_class {
    std::size_t bytes;
    std::vector<std::unique_ptr<char[]>> idle;
  };
  buffer_pool() { classes_.reserve(pooled_sizes); }
  size_class* find(std::size_t bytes) {
    for (auto& c : classes_)
      if (c.bytes == bytes) return &c;
    return nullptr;
  }

  mutable std::mutex mutex_;
  std::vector<size_class> classes_;
  std::size_t in_use_ = 0;
  std::size_t idle_ = 0;
};

// A direction's buffer: empty, or taken from the pool until release().
class pooled_buffer {
 public:
  pooled_buffer() = default;
  pooled_buffer(const pooled_buffer&) = delete;
  pooled_buffer& operator=(const pooled_buffer&) = delete;
  ~pooled_buffer() { release(); }

  void take(std::size_t bytes) {
    if (data_) return;
    data_ = buffer_pool::instance().take(bytes);
    bytes_ = bytes;
  }
  void release() {
    if (data_) buffer_pool::instance().give_back(std::move(data_), bytes_);
  }
  asio::mutable_buffer get() const { return {data_.get(), bytes_}; }

 private:
  std::unique_ptr<char[]> data_;
  std::size_t bytes_ = 0;
};

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
  explicit tcp_end(tcp::socket socket) : socket_(std::move(socket)) {
    // read_some must never block the io thread (async operations are not
    // affected: Asio runs them non-blocking anyway).
    boost_ec ignored;
    socket_.non_blocking(true, ignored);
  }
  void async_read_some(asio::mutable_buffer buffer, io_handler handler) override {
    socket_.async_read_some(buffer, wrap(std::move(handler)));
  }
  bool can_wait_readable() const override { return true; }
  void async_wait_readable(done_handler handler) override {
    socket_.async_wait(tcp::socket::wait_read, wrap(std::move(handler)));
  }
  std::size_t read_some(asio::mutable_buffer buffer, boost_ec& ec) override {
    return socket_.read_some(buffer, ec);
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
  std::size_t max_read_bytes() const override { return tls_record_bytes; }
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
    for (int from : {0, 1}) {
      ends_[from]->use_strand(strand_);
      std::size_t bytes = std::max<std::size_t>(buffer_bytes, 1);
      if (const std::size_t most = ends_[from]->max_read_bytes(); most > 0)
        bytes = std::min(bytes, most);
      dirs_[from].buffer_bytes = bytes;
    }
  }

  void start() {
    asio::dispatch(strand_, [self = shared_from_this()] {
      self->read(0);
      self->read(1);
    });
  }

 private:
  struct direction {
    pooled_buffer buffer;  // taken only while bytes are in flight
    std::size_t buffer_bytes = 0;
    bool finished = false;
  };

  // Direction `from` moves bytes from ends_[from] to ends_[1 - from].
  void read(int from) {
    direction& d = dirs_[from];
    if (ends_[from]->can_wait_readable()) {
      d.buffer.release();  // nothing in flight: waiting costs no buffer
      ends_[from]->async_wait_readable([self = shared_from_this(), from](const boost_ec& ec) {
        self->on_readable(from, ec);
      });
      return;
    }
    // The end may hold input of its own: a read must be pending, with a buffer.
    d.buffer.take(d.buffer_bytes);
    ends_[from]->async_read_some(
      d.buffer.get(), [self = shared_from_this(), from](const boost_ec& ec, std::size_t n) {
        self->on_read(from, ec, n);
      });
  }

  void on_readable(int from, const boost_ec& ec) {
    if (failed_) return finish(from);
    if (ec) return on_read(from, ec, 0);  // the wait itself failed: as a read error
    read_ready(from);
  }

  // Reads what ends_[from] has now (it reported readable, or just had a chunk
  // delivered): while bytes keep coming the buffer is kept and no wait is
  // needed; once none are left it goes back to the pool and read() waits.
  void read_ready(int from) {
    direction& d = dirs_[from];
    d.buffer.take(d.buffer_bytes);
    boost_ec ec;
    const std::size_t n = ends_[from]->read_some(d.buffer.get(), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again ||
        ec == asio::error::interrupted)
      return read(from);
    on_read(from, ec, n);
  }

  void on_read(int from, const boost_ec& ec, std::size_t n) {
    if (failed_) return finish(from);
    const int to = 1 - from;
    if (ec && n == 0) {
      dirs_[from].buffer.release();
      if (ends_[from]->is_eof(ec)) {
        ends_[to]->async_shutdown_send(
          [self = shared_from_this(), from](const boost_ec&) { self->finish(from); });
        return;
      }
      fail(ec, from == 0 ? "reading a" : "reading b");
      return finish(from);
    }
    ends_[to]->async_write(
      asio::buffer(dirs_[from].buffer.get(), n),
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
    if (ends_[from]->can_wait_readable()) return read_ready(from);
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
    dirs_[from].buffer.release();
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

// Only called when can_wait_readable(), which an end overrides along with these.
void pump_end::async_wait_readable(done_handler handler) {
  asio::post(*strand_, [h = std::move(handler)] { h(asio::error::operation_not_supported); });
}

std::size_t pump_end::read_some(asio::mutable_buffer, boost_ec& ec) {
  ec = asio::error::operation_not_supported;
  return 0;
}

pump_buffer_stats pump_buffers() { return buffer_pool::instance().stats(); }

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
