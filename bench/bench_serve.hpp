// tlsrelay-bench: the echo and sink backends, as epoll worker threads that serve
// connections handed to them (accepted by `sink`/`echo`, or reverse connections the
// `agent` opened).
//
// sink: reads everything; after each batch of reads it writes back the running total of
//       bytes received as an 8-byte little-endian counter. At most one counter is in
//       flight per connection; while one waits for socket space, newer totals replace
//       it (the latest wins). At end of stream it sends the final total, then closes.
// echo: writes back what it reads; stops reading while its write is blocked.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace tlsrelay::bench {

enum class backend_kind { echo, sink };
const char* backend_name(backend_kind k);

struct serve_counters {
  std::uint64_t connections = 0;       // accepted, or reverse connections established
  std::uint64_t connect_failures = 0;  // reverse connections that did not connect
  std::uint64_t closed = 0;
  std::uint64_t resets = 0;            // ended by a socket error instead of end of stream
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;         // echoed bytes, or ack bytes
  std::uint64_t acks = 0;              // sink counters written
  std::uint64_t peak_open = 0;
  void add(const serve_counters& o);
};

class serve_worker;

// `threads` epoll workers; connections are spread over them round-robin.
class serve_pool {
public:
  serve_pool(backend_kind kind, unsigned threads);
  ~serve_pool();
  serve_pool(const serve_pool&) = delete;
  serve_pool& operator=(const serve_pool&) = delete;

  // Takes ownership of a non-blocking socket. `connecting`: a connect() in progress.
  void hand_over(int fd, bool connecting);
  // Stops the workers (closing their connections) and returns the summed counters.
  serve_counters stop();
  // Connections open right now (approximate while running).
  std::uint64_t open_connections() const;

private:
  std::vector<std::unique_ptr<serve_worker>> workers_;
  std::size_t next_ = 0;
  bool stopped_ = false;
  serve_counters totals_;
};

}  // namespace tlsrelay::bench
