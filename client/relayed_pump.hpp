// Serving a relayed connection by handing it to a local socket (a backend,
// another process's service): bytes both ways until both directions are
// over, EOF passed on as a half-close per direction, a reset or broken
// connection on either side passed on as a reset of the other.
//
// A plain relayed connection is pumped with splice(2) by the relay's own pump
// (pump/pair_pump.hpp): the bytes go from socket to socket through a pipe in
// the kernel and never enter the process's memory. A connection with
// end-to-end TLS is decrypted here, so it is copied (stream_pump.hpp).
//
//   listener.async_accept([](std::error_code ec, relayed_connection conn) {
//     ... connect `local` to the service, then:
//     client::pump_relayed(std::move(conn), std::move(local), [](const pump_result& r) {...});
//   });
#pragma once

#include <cstddef>
#include <functional>

#include <boost/asio/ip/tcp.hpp>

#include "client/relayed_connection.hpp"
#include "client/stream_pump.hpp"

namespace tlsrelay::client {

// How a plain relayed connection is pumped.
enum class relayed_pump_path {
  splice,  // splice(2) through a pipe per direction: no byte enters user space
  copy,    // the copying stream_pump (read into a buffer, write it out), as
           // for TLS; kept for comparison
};

struct relayed_pump_options {
  relayed_pump_path path = relayed_pump_path::splice;
};

// Pumps `conn` (a = the relayed connection, the client's side) and `local`
// (b) until both directions are over, then closes both and calls `done` once,
// on a strand of `local`'s executor (any number of threads may run its
// io_context). Per direction at most one pipe or buffer of
// defaults::pump_buffer_bytes is read ahead of the receiver, taken only while
// bytes are in flight: a slow reader slows its writer through TCP flow
// control, and an idle pump holds no pipe or buffer.
//
// With end-to-end TLS, the PROXY header the relay sent ahead of the TLS
// handshake (conn.proxy_header(), if any) is written to `local` first: the
// local service sees the same bytes as behind a plain connection (where the
// header is part of the stream). A plain connection's PROXY header, if the
// relay sends one, is passed on untouched with the stream.
//
// `result.error`/`error_where` name the first failure ("reading a": the
// client's side reset, "writing b": the local service went away, ...); with
// splice the byte counts are those read from each side (all delivered unless
// the pump ended on an error).
void pump_relayed(relayed_connection conn, boost::asio::ip::tcp::socket local,
                  std::function<void(const pump_result&)> done,
                  const relayed_pump_options& options = {});

// The pipes and buffers of every splice pump of this process (any thread).
struct relayed_pump_stats {
  std::size_t pipes_in_use = 0;    // held by a direction with bytes in flight
  std::size_t buffers_in_use = 0;  // the same, where no pipe could be had
  std::size_t idle_pipes = 0;      // kept for reuse
};
relayed_pump_stats relayed_pump_stages();

}  // namespace tlsrelay::client
