// Moves bytes both ways between two streams until both directions have
// ended, as the relay does for a joined pair: bounded buffers (backpressure by
// not reading), EOF passed on as a half-close (shutdown(SHUT_WR), or
// close_notify on TLS), an error on either side passed on as a reset of the
// other. Used by client::pump_relayed for end-to-end TLS (and plain
// connections when asked to copy; they are spliced otherwise) and by
// `tlsrelay connect` (stdin/stdout <-> a connection).
//
// Buffers come from one bounded pool per process and are held only while
// bytes are in flight (pump/stage_pool's model): a direction whose source can
// report readability without reading (plain TCP) waits with no buffer, so an
// idle pump between two sockets holds none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include "client/tls.hpp"

namespace tlsrelay::client {

// One side of a pump. Reads and writes may overlap each other, never
// themselves. Every operation must complete on (and run its intermediate
// steps on) the strand given to use_strand(): wrap() binds a handler to it.
class pump_end {
 public:
  using strand_type = boost::asio::strand<boost::asio::any_io_executor>;
  using io_handler = std::function<void(const boost::system::error_code&, std::size_t)>;
  using done_handler = std::function<void(const boost::system::error_code&)>;

  virtual ~pump_end() = default;
  // Some bytes into `buffer`; an error that is_eof() accepts ends the input.
  virtual void async_read_some(boost::asio::mutable_buffer buffer, io_handler handler) = 0;
  // The most bytes one async_read_some can return (0: no limit): the pump's
  // buffer for this end is no larger.
  virtual std::size_t max_read_bytes() const { return 0; }
  // True if this end can wait until input is ready without taking any of it
  // (a plain socket). The pump then reads with async_wait_readable + read_some
  // and holds no buffer while the end is quiet. False (the default) for a
  // stream that may hold input of its own (TLS: decrypted bytes can sit in
  // OpenSSL while the socket stays quiet): the pump uses async_read_some.
  virtual bool can_wait_readable() const { return false; }
  // Completes when a read would not block: bytes, EOF or an error are ready.
  virtual void async_wait_readable(done_handler handler);
  // Never blocks: the bytes ready now, or would_block (wait again), or the
  // error (EOF, reset...) that ends the input.
  virtual std::size_t read_some(boost::asio::mutable_buffer buffer,
                                boost::system::error_code& ec);
  // All of `buffer`.
  virtual void async_write(boost::asio::const_buffer buffer, io_handler handler) = 0;
  // Tells the peer no more bytes come (TCP FIN, TLS close_notify).
  virtual void async_shutdown_send(done_handler handler) = 0;
  // True for an orderly end of input.
  virtual bool is_eof(const boost::system::error_code& ec) const;
  // The other side failed: end this one abruptly (TCP RST where possible).
  virtual void abort() = 0;
  // Both directions are over: release the descriptor(s).
  virtual void close() = 0;

  // Called by the pump before any operation.
  void use_strand(const strand_type& strand) { strand_.emplace(strand); }

 protected:
  template <class Handler>
  auto wrap(Handler&& handler) {
    return boost::asio::bind_executor(*strand_, std::forward<Handler>(handler));
  }
  std::optional<strand_type> strand_;
};

std::unique_ptr<pump_end> make_pump_end(boost::asio::ip::tcp::socket socket);
// Keeps `context` alive as long as the stream.
std::unique_ptr<pump_end> make_pump_end(std::unique_ptr<tls_stream> stream,
                                        std::shared_ptr<boost::asio::ssl::context> context);

struct pump_result {
  std::uint64_t a_to_b = 0;  // bytes delivered from a to b
  std::uint64_t b_to_a = 0;
  // The first failure (a reset, a broken pipe...), if the pump ended on one;
  // success when both directions ended with EOF.
  boost::system::error_code error;
  std::string error_where;  // "reading a", "writing b", ...
};

// Pumps until both directions are over, then closes both ends and calls
// `done` (on the pump's strand). `buffer_bytes` is the read-ahead per
// direction: the size of the buffer a direction takes from the pool while it
// has bytes in flight (smaller for an end with max_read_bytes()).
void start_pump(const boost::asio::any_io_executor& executor, std::unique_ptr<pump_end> a,
                std::unique_ptr<pump_end> b, std::size_t buffer_bytes,
                std::function<void(const pump_result&)> done);

// The buffers of every pump in this process (any thread).
struct pump_buffer_stats {
  std::size_t in_use = 0;  // held by a direction with bytes in flight (or a TLS read pending)
  std::size_t idle = 0;    // kept for reuse, at most pump_idle_buffers per buffer size
};
pump_buffer_stats pump_buffers();

// Idle buffers the pool keeps per buffer size: a burst of that many
// directions starting to move bytes takes no allocation; beyond it buffers are
// freed (for expose's 64 KiB buffers at most 4 MiB stays allocated for reuse).
inline constexpr std::size_t pump_idle_buffers = 64;

}  // namespace tlsrelay::client
