#include "bench/bench_serve.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_set>

#include "bench/bench_common.hpp"

namespace tlsrelay::bench {

const char* backend_name(backend_kind k) { return k == backend_kind::echo ? "echo" : "sink"; }

void serve_counters::add(const serve_counters& o) {
  connections += o.connections;
  connect_failures += o.connect_failures;
  closed += o.closed;
  resets += o.resets;
  bytes_in += o.bytes_in;
  bytes_out += o.bytes_out;
  acks += o.acks;
  peak_open += o.peak_open;  // sum of per-worker peaks: an upper bound
}

namespace {

constexpr std::size_t read_buffer_bytes = 256 * 1024;
constexpr int reads_per_wakeup = 16;  // fairness between connections of one worker

struct conn {
  int fd = -1;
  bool connecting = false;
  bool peer_eof = false;
  std::uint32_t interest = 0;
  std::uint64_t received = 0;  // sink: running total
  std::uint64_t acked = 0;     // sink: total in the last counter queued
  std::string out;             // echo: bytes not yet written back; sink: one counter
  std::size_t out_off = 0;
};

}  // namespace

class serve_worker {
public:
  explicit serve_worker(backend_kind kind) : kind_(kind), buffer_(read_buffer_bytes) {
    epoll_ = unique_fd(::epoll_create1(EPOLL_CLOEXEC));
    wake_ = unique_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!epoll_ || !wake_) throw bench_error("epoll/eventfd: " + errno_text(errno));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the wake-up eventfd
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev);
    thread_ = std::thread([this] { run(); });
  }

  ~serve_worker() { stop(); }

  void hand_over(int fd, bool connecting) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      incoming_.emplace_back(fd, connecting);
    }
    wake();
  }

  void stop() {
    if (!thread_.joinable()) return;
    stopping_.store(true);
    wake();
    thread_.join();
  }

  const serve_counters& counters() const { return counters_; }
  std::uint64_t open() const { return open_.load(std::memory_order_relaxed); }

private:
  void wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
  }

  void run() {
    std::vector<epoll_event> events(512);
    while (!stopping_.load()) {
      const int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), 500);
      if (n < 0) {
        if (errno == EINTR) continue;
        note(std::string("epoll_wait: ") + errno_text(errno));
        break;
      }
      for (int i = 0; i < n; ++i) {
        if (events[i].data.ptr == nullptr) {
          take_incoming();
        } else {
          handle(static_cast<conn*>(events[i].data.ptr), events[i].events);
        }
      }
    }
    take_incoming();
    for (conn* c : conns_) {
      ::close(c->fd);
      delete c;
    }
    conns_.clear();
    open_.store(0);
  }

  void take_incoming() {
    std::uint64_t value;
    [[maybe_unused]] auto r = ::read(wake_.get(), &value, sizeof value);
    std::vector<std::pair<int, bool>> batch;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      batch.swap(incoming_);
    }
    for (auto [fd, connecting] : batch) {
      auto* c = new conn;
      c->fd = fd;
      c->connecting = connecting;
      if (!connecting) {
        set_nodelay(fd);
        ++counters_.connections;
      }
      conns_.insert(c);
      open_.store(conns_.size(), std::memory_order_relaxed);
      counters_.peak_open = std::max<std::uint64_t>(counters_.peak_open, conns_.size());
      c->interest = connecting ? EPOLLOUT : EPOLLIN;
      epoll_event ev{};
      ev.events = c->interest;
      ev.data.ptr = c;
      if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
        note("epoll_ctl: " + errno_text(errno));
        close_conn(c, true);
      }
    }
  }

  void close_conn(conn* c, bool reset) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c->fd, nullptr);
    ::close(c->fd);
    if (reset) ++counters_.resets;
    ++counters_.closed;
    conns_.erase(c);
    open_.store(conns_.size(), std::memory_order_relaxed);
    delete c;
  }

  void handle(conn* c, std::uint32_t events) {
    if (c->connecting) {
      const int err = socket_error(c->fd);
      if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
        ++counters_.connect_failures;
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c->fd, nullptr);
        ::close(c->fd);
        conns_.erase(c);
        open_.store(conns_.size(), std::memory_order_relaxed);
        delete c;
        return;
      }
      c->connecting = false;
      set_nodelay(c->fd);
      ++counters_.connections;
      update_interest(c);
      return;
    }
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && c->out_off < c->out.size() && !flush(c))
      return;
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->peer_eof) {
      const bool ok = kind_ == backend_kind::echo ? read_echo(c) : read_sink(c);
      if (!ok) return;
    }
    if (kind_ == backend_kind::sink && !queue_ack(c)) return;
    if (c->peer_eof && c->out_off >= c->out.size()) {
      close_conn(c, false);
      return;
    }
    update_interest(c);
  }

  // false: the connection was closed
  bool read_echo(conn* c) {
    for (int i = 0; i < reads_per_wakeup && c->out.empty(); ++i) {
      const ssize_t n = ::read(c->fd, buffer_.data(), buffer_.size());
      if (n > 0) {
        counters_.bytes_in += static_cast<std::uint64_t>(n);
        ssize_t w = ::send(c->fd, buffer_.data(), static_cast<std::size_t>(n), MSG_NOSIGNAL);
        if (w < 0) {
          if (errno != EAGAIN && errno != EWOULDBLOCK) {
            close_conn(c, true);
            return false;
          }
          w = 0;
        }
        counters_.bytes_out += static_cast<std::uint64_t>(w);
        if (w < n) {
          c->out.assign(buffer_.data() + w, static_cast<std::size_t>(n - w));
          c->out_off = 0;
        }
        if (static_cast<std::size_t>(n) < buffer_.size()) break;  // probably drained
      } else if (n == 0) {
        c->peer_eof = true;
        break;
      } else {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
        close_conn(c, true);
        return false;
      }
    }
    return true;
  }

  bool read_sink(conn* c) {
    for (int i = 0; i < reads_per_wakeup; ++i) {
      const ssize_t n = ::read(c->fd, buffer_.data(), buffer_.size());
      if (n > 0) {
        counters_.bytes_in += static_cast<std::uint64_t>(n);
        c->received += static_cast<std::uint64_t>(n);
        if (static_cast<std::size_t>(n) < buffer_.size()) break;
      } else if (n == 0) {
        c->peer_eof = true;
        break;
      } else {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
        close_conn(c, true);
        return false;
      }
    }
    return true;
  }

  // Sink: queue the latest total when no counter is in flight, and try to send it.
  bool queue_ack(conn* c) {
    if (c->out_off < c->out.size() || c->received == c->acked) return true;
    char bytes[8];
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((c->received >> (8 * i)) & 0xff);
    c->out.assign(bytes, 8);
    c->out_off = 0;
    c->acked = c->received;
    ++counters_.acks;
    return flush(c);
  }

  bool flush(conn* c) {
    while (c->out_off < c->out.size()) {
      const ssize_t w = ::send(c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off,
                               MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        if (errno == EINTR) continue;
        close_conn(c, true);
        return false;
      }
      c->out_off += static_cast<std::size_t>(w);
      counters_.bytes_out += static_cast<std::uint64_t>(w);
    }
    c->out.clear();
    c->out_off = 0;
    if (kind_ == backend_kind::sink && c->received != c->acked) return queue_ack(c);
    return true;
  }

  void update_interest(conn* c) {
    const bool pending = c->out_off < c->out.size();
    std::uint32_t want = 0;
    if (!c->peer_eof && (kind_ == backend_kind::sink || !pending)) want |= EPOLLIN;
    if (pending) want |= EPOLLOUT;
    if (want == c->interest) return;
    c->interest = want;
    epoll_event ev{};
    ev.events = want;
    ev.data.ptr = c;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c->fd, &ev);
  }

  backend_kind kind_;
  std::vector<char> buffer_;
  unique_fd epoll_;
  unique_fd wake_;
  std::mutex mutex_;
  std::vector<std::pair<int, bool>> incoming_;
  std::unordered_set<conn*> conns_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> open_{0};
  serve_counters counters_;
  std::thread thread_;
};

serve_pool::serve_pool(backend_kind kind, unsigned threads) {
  if (threads == 0) threads = 1;
  for (unsigned i = 0; i < threads; ++i) workers_.push_back(std::make_unique<serve_worker>(kind));
}

serve_pool::~serve_pool() { stop(); }

void serve_pool::hand_over(int fd, bool connecting) {
  workers_[next_]->hand_over(fd, connecting);
  next_ = (next_ + 1) % workers_.size();
}

serve_counters serve_pool::stop() {
  if (!stopped_) {
    stopped_ = true;
    for (auto& w : workers_) w->stop();
    for (auto& w : workers_) totals_.add(w->counters());
  }
  return totals_;
}

std::uint64_t serve_pool::open_connections() const {
  std::uint64_t n = 0;
  for (const auto& w : workers_) n += w->open();
  return n;
}

}  // namespace tlsrelay::bench
