// `bulk`: N streams write chunks into a sink as fast as they can for T seconds; only
// bytes the sink acknowledged (its 8-byte little-endian running totals) count.
//
// At the deadline the highest total acknowledged on each stream is taken as the result.
// Then every stream half-closes and waits for the sink's final total, which must equal
// what was written (no byte lost on the way): `all_bytes_acked`.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bench/bench_common.hpp"
#include "bench/bench_modes.hpp"

namespace tlsrelay::bench {
namespace {

struct stream {
  unique_fd fd;
  std::uint64_t written = 0;
  std::uint64_t acked = 0;
  std::uint64_t acked_at_deadline = 0;
  unsigned char ack_bytes[8]{};
  std::size_t ack_fill = 0;
  std::size_t chunk_off = 0;
  bool eof = false;
};

// Reads whatever counters are there; false with `error` on a protocol or socket error.
// Sets s.eof at end of stream.
bool read_acks(stream& s, std::size_t index, std::string& error) {
  unsigned char buf[4096];
  for (;;) {
    const ssize_t n = ::read(s.fd.get(), buf, sizeof buf);
    if (n == 0) {
      s.eof = true;
      return true;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      if (errno == EINTR) continue;
      error = "stream " + std::to_string(index) + ": read: " + errno_text(errno);
      return false;
    }
    for (ssize_t i = 0; i < n; ++i) {
      s.ack_bytes[s.ack_fill++] = buf[i];
      if (s.ack_fill == 8) {
        std::uint64_t v = 0;
        for (int b = 7; b >= 0; --b) v = (v << 8) | s.ack_bytes[b];
        s.ack_fill = 0;
        if (v < s.acked || v > s.written) {
          error = "stream " + std::to_string(index) + ": bad acknowledgement " +
                  std::to_string(v) + " (previous " + std::to_string(s.acked) + ", written " +
                  std::to_string(s.written) + "): is the target a sink?";
          return false;
        }
        s.acked = v;
      }
    }
    if (static_cast<std::size_t>(n) < sizeof buf) return true;
  }
}

}  // namespace

int run_bulk(const bulk_options& o) {
  if (o.streams == 0) throw bench_error("--streams must be at least 1");
  if (!(o.seconds > 0)) throw bench_error("--seconds must be positive");
  if (o.chunk_kib == 0) throw bench_error("--chunk-kib must be at least 1");
  raise_nofile_limit();
  const auto addr = resolve(o.target);
  const std::size_t chunk = std::size_t{o.chunk_kib} * 1024;
  std::vector<char> payload(chunk);
  for (std::size_t i = 0; i < chunk; ++i) payload[i] = static_cast<char>(i * 131 + 7);

  std::vector<stream> streams(o.streams);
  for (auto& s : streams) s.fd = connect_with_timeout(addr, std::chrono::seconds(10));

  unique_fd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) throw bench_error("epoll_create1: " + errno_text(errno));
  for (std::size_t i = 0; i < streams.size(); ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u64 = i;
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, streams[i].fd.get(), &ev) != 0)
      throw bench_error("epoll_ctl: " + errno_text(errno));
  }
  note("bulk: " + std::to_string(o.streams) + " stream(s) to " + addr.text + " for " +
       std::to_string(o.seconds) + " s");

  std::string error;
  std::vector<epoll_event> events(streams.size());
  const auto start = steady::now();
  const auto deadline = start + std::chrono::duration_cast<steady::duration>(
                                  std::chrono::duration<double>(o.seconds));
  while (error.empty() && !stop_requested()) {
    const auto now = steady::now();
    if (now >= deadline) break;
    const int n = ::epoll_wait(ep.get(), events.data(), static_cast<int>(events.size()),
                               ms_until(deadline, 100));
    if (n < 0) {
      if (errno == EINTR) continue;
      error = "epoll_wait: " + errno_text(errno);
      break;
    }
    for (int e = 0; e < n && error.empty(); ++e) {
      const std::size_t i = events[e].data.u64;
      auto& s = streams[i];
      if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (!read_acks(s, i, error)) break;
        if (s.eof) {
          error = "stream " + std::to_string(i) + ": the peer closed the connection";
          break;
        }
      }
      if (events[e].events & EPOLLOUT) {
        for (int k = 0; k < 64; ++k) {
          const ssize_t w = ::send(s.fd.get(), payload.data() + s.chunk_off,
                                   chunk - s.chunk_off, MSG_NOSIGNAL);
          if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            error = "stream " + std::to_string(i) + ": write: " + errno_text(errno);
            break;
          }
          s.written += static_cast<std::uint64_t>(w);
          s.chunk_off = (s.chunk_off + static_cast<std::size_t>(w)) % chunk;
        }
      }
    }
  }
  const auto stopped = steady::now();
  if (error.empty() && stop_requested()) error = "interrupted";
  // the counters already on their way in count; nothing after the deadline does
  for (std::size_t i = 0; i < streams.size(); ++i) {
    if (error.empty()) read_acks(streams[i], i, error);
    streams[i].acked_at_deadline = streams[i].acked;
  }

  // Drain: half-close, wait for each sink's final total and its end of stream.
  bool all_acked = error.empty();
  if (error.empty()) {
    for (std::size_t i = 0; i < streams.size(); ++i) {
      ::shutdown(streams[i].fd.get(), SHUT_WR);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      ::epoll_ctl(ep.get(), EPOLL_CTL_MOD, streams[i].fd.get(), &ev);
    }
    const auto drain_deadline = steady::now() + std::chrono::duration_cast<steady::duration>(
                                                  std::chrono::duration<double>(o.drain_timeout));
    std::size_t open = streams.size();
    std::string drain_error;
    while (open > 0 && steady::now() < drain_deadline && drain_error.empty()) {
      const int n = ::epoll_wait(ep.get(), events.data(), static_cast<int>(events.size()),
                                 ms_until(drain_deadline, 100));
      if (n < 0 && errno != EINTR) break;
      for (int e = 0; e < n; ++e) {
        const std::size_t i = events[e].data.u64;
        auto& s = streams[i];
        if (s.eof) continue;
        if (!read_acks(s, i, drain_error)) break;
        if (s.eof) {
          --open;
          ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, s.fd.get(), nullptr);
        }
      }
    }
    for (const auto& s : streams)
      if (!s.eof || s.acked != s.written) all_acked = false;
    if (!all_acked) {
      std::string detail = drain_error;
      if (detail.empty()) {
        for (std::size_t i = 0; i < streams.size(); ++i) {
          if (streams[i].acked != streams[i].written || !streams[i].eof) {
            detail = "stream " + std::to_string(i) + ": " + std::to_string(streams[i].written) +
                     " bytes written, " + std::to_string(streams[i].acked) +
                     " acknowledged after the drain" +
                     (streams[i].eof ? "" : " (no end of stream within the drain timeout)");
            break;
          }
        }
      }
      error = "not every byte was acknowledged: " + detail;
    }
  }

  std::uint64_t written = 0, acked = 0;
  std::vector<std::uint64_t> per_stream;
  for (const auto& s : streams) {
    written += s.written;
    acked += s.acked_at_deadline;
    per_stream.push_back(s.acked_at_deadline);
  }
  const double gbit_s = static_cast<double>(acked) * 8.0 / o.seconds / 1e9;
  json_object j;
  j.add("mode", "bulk")
    .add("ok", error.empty())
    .add("target", addr.text)
    .add("streams", o.streams)
    .add("seconds", o.seconds)
    .add("elapsed_s", seconds_between(start, stopped))
    .add("chunk_bytes", static_cast<std::uint64_t>(chunk))
    .add("bytes_written", written)
    .add("bytes_acked", acked)
    .add("gbit_s", gbit_s)
    .add("per_stream_bytes_acked", per_stream)
    .add("all_bytes_acked", all_acked);
  if (!error.empty()) j.add("error", error);
  print_json(j);
  note("bulk: " + std::to_string(gbit_s) + " Gbit/s acknowledged");
  if (!error.empty()) {
    note("bulk: " + error);
    return 1;
  }
  return 0;
}

}  // namespace tlsrelay::bench
