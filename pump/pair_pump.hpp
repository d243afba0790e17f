// pair_pump: moves bytes both ways between two TCP sockets, `a` and `b`,
// until both directions have ended. The relay uses it for a joined pair
// (a = the client, b = the reverse connection); the client library for a
// plain relayed connection and a local socket (client/relayed_pump.hpp).
// It depends on nothing of either: no actors, no relay state. What its user
// wants to know comes back through a pump_meter (bytes as they go) and the
// done handler (how it ended).
//
// Each direction reads at most one stage (a pipe for splice(2), a buffer for
// the copy path) ahead of the slower side: nothing more is read until the
// stage is delivered, so memory per pair is bounded whatever a peer does, and
// a slow reader slows its writer through TCP flow control. Stages come from
// a stage_pool only while bytes are in flight: an idle pair holds its two
// sockets and nothing else. An EOF is passed
// on as shutdown(SHUT_WR) once the stage is empty (half-close); a reset or a
// write error resets both sockets, so no byte is silently lost. A pair that
// moves no byte for the idle timeout, or that moves none for the half-close
// timeout once one direction has ended (haproxy's `timeout client-fin`: a
// transfer still flowing is not cut), is reset: a peer that vanished
// must not hold its pair forever, and the reset tells the other peer that the
// stream did not end but was cut.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include "pump/stage_pool.hpp"

namespace tlsrelay::pump {

// How a pair's bytes are moved.
enum class data_path {
  splice,  // splice(2) through a pipe per direction, bytes never enter user space
  copy,    // recv/send through a buffer per direction (also the fallback)
};

// Liveness bounds of a pair; zero turns one off.
struct timeouts {
  std::chrono::milliseconds idle{0};        // no byte either way for this long
  std::chrono::milliseconds half_close{0};  // one direction ended, the other not
};

// Why a pump ended.
enum class end_reason {
  closed,              // both directions ended with an EOF, passed on
  reset,               // a peer reset or broke its connection; both were reset
  idle_timeout,        // no byte either way for timeouts::idle
  half_close_timeout,  // one direction ended, then no byte for timeouts::half_close
  cut,                 // close() or reset() by the pump's owner
};

enum class direction { a_to_b, b_to_a };

// Told of the pump's bytes as they are delivered (the relay's byte counters).
// Called on the pump's executor.
class pump_meter {
public:
  virtual ~pump_meter() = default;
  // `bytes` more were written to the receiving socket of `dir`.
  virtual void delivered(direction dir, std::uint64_t bytes) = 0;
  // The pump ended, having delivered these in all; called before the done
  // handler.
  virtual void ended(std::uint64_t a_to_b, std::uint64_t b_to_a) = 0;
};

class pair_pump : public std::enable_shared_from_this<pair_pump> {
public:
  using tcp = boost::asio::ip::tcp;
  using executor_type = boost::asio::any_io_executor;
  struct totals {
    std::uint64_t a_to_b = 0;  // bytes read from a (all delivered to b unless `reset`)
    std::uint64_t b_to_a = 0;
    bool reset = false;  // ended by a reset rather than two EOFs
    end_reason end = end_reason::closed;  // why it ended (reset is set for all but closed)
    // A reset's cause: the failed call's error (connection_reset, broken_pipe,
    // timed_out for a timeout, operation_aborted for close()/reset()), and
    // where: "reading a", "writing b", "idle timeout", ... ("" if none).
    boost::system::error_code error;
    std::string error_where;
  };
  using done_handler = std::function<void(const totals&)>;

  // Every handler of the pump runs on `executor`: the sockets' own when one
  // thread runs their io_context (the relay), or a strand over it when
  // several do. `stages` must outlive the pump.
  pair_pump(executor_type executor, tcp::socket a, tcp::socket b, data_path path,
            stage_pool& stages, done_handler on_done, timeouts limits = {},
            std::unique_ptr<pump_meter> meter = nullptr);
  ~pair_pump();

  // On the pump's executor, as close() and reset(). `prepared`: both sockets
  // are non-blocking with TCP_NODELAY already (accept4 with SOCK_NONBLOCK
  // from a listener with TCP_NODELAY, which accepted sockets inherit on
  // Linux), so the pump spares the two syscalls per socket.
  void start(bool prepared = false);
  // Closes both sockets now; the done handler still runs.
  // Both are reset if any byte read from one peer is still undelivered.
  void close();
  // Resets both sockets now (the owner stops): the peers learn that the
  // stream was cut, not ended. The done handler still runs.
  void reset();

  // Moves the pump to `io`, whose one thread runs it from then on (the relay
  // spreads busy pairs over its io threads). Called on the pump's executor;
  // false, and nothing done, if the pump has finished. Its descriptors are
  // re-registered with `io`, handlers already queued on the old executor find
  // the pump moved and do nothing, and no byte moves until resume() is called
  // on `io`'s thread. The descriptors, the stages and every byte in flight
  // stay as they are.
  bool rehome(boost::asio::io_context& io);
  void resume();

  // splice, unless the pump fell back to copy for want of a pipe.
  data_path path() const { return path_; }
  // Changes with rehome(): read it on the pump's thread only.
  executor_type executor() { return timer_.get_executor(); }

private:
  struct flow {
    tcp::socket* from = nullptr;
    tcp::socket* to = nullptr;
    direction dir = direction::a_to_b;
    bool eof = false;                // `from` sent FIN
    bool done = false;               // FIN passed on to `to`
    stage_pool::pipe_ends pipe;      // splice path: the stage is a pipe, while in flight
    std::unique_ptr<char[]> buffer;  // copy path: the stage is a buffer, while in flight
    std::size_t staged_offset = 0;
    std::size_t staged = 0;  // bytes read from `from`, not yet written to `to`
    std::uint64_t bytes = 0;      // read from `from`
    std::uint64_t delivered = 0;  // written to `to`
  };

  void pump(flow& d);
  bool moved_since(std::uint32_t epoch) const {
    return moves_.load(std::memory_order_relaxed) != epoch;
  }
  long stage_in(flow& d);   // read from d.from into the stage; -1/errno on error
  long stage_out(flow& d);  // write from the stage to d.to; -1/errno on error
  void await(flow& d, tcp::socket& socket, tcp::socket::wait_type what);
  void finish(bool reset, end_reason why, boost::system::error_code error = {},
              const char* where = "");
  // The one timer of the pair, set for the earliest deadline; moving bytes
  // does not touch it (it checks the time of the last byte when it fires).
  void arm_timer();
  void on_timer();
  // One direction has ended and the half-close timeout applies.
  bool half_closed() const;
  // Since when a half-closed pair has been quiet: its half-close, or its last byte.
  std::chrono::steady_clock::time_point half_closed_quiet_since() const;
  // The pump's executor is both sockets' own (the relay), so its waits need no binding.
  bool sockets_share_executor();
  bool take_stage(flow& d);
  void give_back_stage(flow& d);

  tcp::socket a_;
  tcp::socket b_;
  data_path path_;
  stage_pool& stages_;
  done_handler on_done_;
  std::unique_ptr<pump_meter> meter_;
  flow a_to_b_;
  flow b_to_a_;
  bool finished_ = false;
  bool runs_on_sockets_executor_ = false;  // set by start() and rehome()
  // Bumped by rehome(): a handler queued before a move finds it changed and
  // does nothing (it may run on the old thread while the new one runs the
  // pump, hence atomic).
  std::atomic<std::uint32_t> moves_{0};
  timeouts limits_;
  boost::asio::steady_timer timer_;
  std::chrono::steady_clock::time_point last_byte_;       // either way
  std::chrono::steady_clock::time_point half_closed_at_;  // when one direction ended
};

}  // namespace tlsrelay::pump
