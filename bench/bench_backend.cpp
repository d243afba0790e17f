// `sink` and `echo`: backends that serve many connections until SIGTERM/SIGINT.
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "bench/bench_common.hpp"
#include "bench/bench_modes.hpp"

namespace tlsrelay::bench {

int run_backend(const backend_options& o) {
  const auto fd_limit = raise_nofile_limit();
  const auto addr = resolve(o.listen, true);
  auto listener = listen_on(addr);
  const auto bound = local_address_text(listener.get());
  note(std::string(backend_name(o.kind)) + " listening on " + bound + " (" +
       std::to_string(o.threads) + " worker thread(s), open-file limit " +
       std::to_string(fd_limit) + ")");

  serve_pool pool(o.kind, o.threads);
  const auto started = steady::now();
  std::uint64_t accept_errors = 0;
  std::string error;
  while (!stop_requested()) {
    pollfd p{listener.get(), POLLIN, 0};
    const int n = ::poll(&p, 1, 200);
    if (n < 0 && errno != EINTR) {
      error = "poll: " + errno_text(errno);
      break;
    }
    if (n <= 0) continue;
    for (int i = 0; i < 256; ++i) {
      const int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        pool.hand_over(fd, false);
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
      if (errno == ECONNABORTED) continue;
      // EMFILE/ENFILE/ENOBUFS: count, give the system a moment, go on
      if (++accept_errors == 1) note("accept: " + errno_text(errno));
      ::poll(nullptr, 0, 10);
      break;
    }
  }
  const auto c = pool.stop();
  const double uptime = seconds_between(started, steady::now());
  json_object j;
  j.add("mode", backend_name(o.kind))
    .add("ok", error.empty())
    .add("listen", bound)
    .add("threads", o.threads)
    .add("uptime_s", uptime)
    .add("connections", c.connections)
    .add("peak_open", c.peak_open)
    .add("resets", c.resets)
    .add("accept_errors", accept_errors)
    .add("bytes_in", c.bytes_in)
    .add("bytes_out", c.bytes_out);
  if (o.kind == backend_kind::sink) j.add("acks", c.acks);
  if (!error.empty()) j.add("error", error);
  print_json(j);
  if (!error.empty()) {
    note(std::string(backend_name(o.kind)) + ": " + error);
    return 1;
  }
  return 0;
}

}  // namespace tlsrelay::bench
