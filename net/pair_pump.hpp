// pair_pump: moves bytes between a client and its reverse connection until
// both directions have ended, without any actor on the data path.
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

#include <cstdint>
#include <functional>
#include <memory>

#include <chrono>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "net/net_counters.hpp"
#include "net/relay_network.hpp"
#include "net/stage_pool.hpp"

namespace tlsrelay::net {

class pair_pump : public std::enable_shared_from_this<pair_pump> {
public:
  using tcp = boost::asio::ip::tcp;
  struct totals {
    std::uint64_t client_to_server = 0;
    std::uint64_t server_to_client = 0;
    bool reset = false;  // ended by a reset rather than two EOFs
    pair_end end = pair_end::closed;  // why it ended (reset is set for all but closed)
  };
  using done_handler = std::function<void(const totals&)>;
  using timeouts = pair_timeouts;

  // `stages` (and `counters`, if given: bytes delivered are added there as
  // they go, to the node's and to pool pair `pair`'s) must outlive the pump.
  pair_pump(tcp::socket client, tcp::socket reverse, data_path path, stage_pool& stages,
            done_handler on_done, timeouts limits = {}, net_counters* counters = nullptr,
            std::size_t pair = 0);
  ~pair_pump();

  void start();
  // Closes both sockets now (session ended); the done handler still runs.
  // Both are reset if any byte read from one peer is still undelivered.
  void close();
  // Resets both sockets now (the relay stops): the peers learn that the
  // stream was cut, not ended. The done handler still runs.
  void reset();

  data_path path() const { return path_; }

private:
  struct direction {
    tcp::socket* from = nullptr;
    tcp::socket* to = nullptr;
    stage_pool::pipe_ends pipe;      // splice path: the stage is a pipe, while in flight
    std::unique_ptr<char[]> buffer;  // copy path: the stage is a buffer, while in flight
    std::size_t staged_offset = 0;
    std::size_t staged = 0;  // bytes read from `from`, not yet written to `to`
    bool eof = false;        // `from` sent FIN
    bool done = false;       // FIN passed on to `to`
    std::uint64_t bytes = 0;
    std::atomic<std::uint64_t>* delivered = nullptr;  // the node's tally of this direction
    std::atomic<std::uint64_t>* open_on_pair = nullptr;  // its pool pair's, while open
    std::uint64_t delivered_bytes = 0;                  // what this pump added there
  };

  void pump(direction& d);
  long stage_in(direction& d);   // read from d.from into the stage; -1/errno on error
  long stage_out(direction& d);  // write from the stage to d.to; -1/errno on error
  void await(direction& d, tcp::socket& socket, tcp::socket::wait_type what);
  void finish(bool reset, pair_end why);
  // The one timer of the pair, set for the earliest deadline; moving bytes
  // does not touch it (it checks the time of the last byte when it fires).
  void arm_timer();
  void on_timer();
  // One direction has ended and the half-close timeout applies.
  bool half_closed() const;
  // Since when a half-closed pair has been quiet: its half-close, or its last byte.
  std::chrono::steady_clock::time_point half_closed_quiet_since() const;
  bool take_stage(direction& d);
  void give_back_stage(direction& d);

  tcp::socket client_;
  tcp::socket reverse_;
  data_path path_;
  stage_pool& stages_;
  done_handler on_done_;
  direction up_;    // client → server
  direction down_;  // server → client
  bool finished_ = false;
  timeouts limits_;
  boost::asio::steady_timer timer_;
  std::chrono::steady_clock::time_point last_byte_;       // either way
  std::chrono::steady_clock::time_point half_closed_at_;  // when one direction ended
};

}  // namespace tlsrelay::net
