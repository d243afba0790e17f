#include "tests/support/fault_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>

namespace tlsrelay::test {
namespace {

// Per direction: what the proxy may hold between reading and writing.
constexpr std::size_t buffer_bytes = 64 * 1024;
// A truncation that ends in a reset first waits (at most this long) for the
// kernel to have delivered the allowed bytes: a reset discards unsent data,
// and "exactly K bytes, then a reset" is the point of truncate().
constexpr millis max_drain_time = 2000ms;
// How often a draining connection's send queue is looked at.
constexpr int drain_poll_ms = 1;
// Connections beyond this wait in the listen backlog: a bound, not a limit
// any test comes near.
constexpr std::size_t max_live = 64;

std::string errno_text(int error) { return std::strerror(error); }

sockaddr_in ipv4(const std::string& host, std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1)
    throw io_error("fault_proxy: " + host + " is not a numeric IPv4 address");
  return address;
}

// Closing with SO_LINGER 0 makes the kernel send RST instead of FIN.
void close_with_reset(unique_fd& fd) {
  if (!fd) return;
  const linger hard{1, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  fd.reset();
}

}  // namespace

struct fault_proxy::half {
  std::unique_ptr<char[]> buf = std::make_unique<char[]>(buffer_bytes);
  std::size_t begin = 0, end = 0;  // held bytes are buf[begin, end)
  // When each run of held bytes arrived, oldest first: what delay() needs.
  std::deque<std::pair<steady::time_point, std::size_t>> arrivals;

  millis hold{0};
  std::size_t chunk = 0;  // 0: no pacing
  steady::time_point next_write{};

  bool stalled = false;
  bool cut = false;          // no more reads; FIN once empty
  bool source_eof = false;   // the sender sent FIN
  bool shut = false;         // we sent FIN to the receiver
  bool blocked = false;      // last write hit EAGAIN: wait for POLLOUT
  std::optional<std::uint64_t> budget;  // truncate(): bytes still allowed
  truncate_end end_action = truncate_end::reset;
  std::optional<steady::time_point> draining_since;  // budget spent, waiting to reset
  std::uint64_t forwarded = 0;

  std::size_t held() const { return end - begin; }

  // Whether to read more from the sender now.
  bool wants_read() const {
    return !stalled && !cut && !source_eof && held() < buffer_bytes && !(budget && *budget == 0);
  }
  // Bytes that may be written now: arrived at least `hold` ago, paced, within budget.
  std::size_t writable(steady::time_point now) const {
    if (chunk > 0 && now < next_write) return 0;
    std::size_t n = 0;
    for (const auto& [at, count] : arrivals) {
      if (at + hold > now) break;
      n += count;
    }
    if (chunk > 0) n = std::min(n, chunk);
    if (budget) n = static_cast<std::size_t>(std::min<std::uint64_t>(n, *budget));
    return n;
  }
  // When the oldest held bytes may be written (the poll timeout of a delay).
  std::optional<steady::time_point> due() const {
    if (arrivals.empty()) return std::nullopt;
    auto at = arrivals.front().first + hold;
    if (chunk > 0) at = std::max(at, next_write);
    return at;
  }
  void make_room() {
    if (begin == 0) return;
    std::memmove(buf.get(), buf.get() + begin, held());
    end -= begin;
    begin = 0;
  }
  void consume(std::size_t n) {
    begin += n;
    forwarded += n;
    if (budget) *budget -= n;
    while (n > 0) {
      auto& front = arrivals.front();
      const std::size_t take = std::min(n, front.second);
      front.second -= take;
      n -= take;
      if (front.second == 0) arrivals.pop_front();
    }
    if (begin == end) begin = end = 0;
  }
  void drop() {
    begin = end = 0;
    arrivals.clear();
  }
};

struct fault_proxy::connection {
  std::size_t number = 0;
  unique_fd accepted, target;
  bool connecting = true;  // target connect in progress
  bool closed = false;
  bool reset_requested = false;
  half up, down;  // up: accepted → target; down: target → accepted

  half& of(direction d) { return d == direction::upstream ? up : down; }
  const half& of(direction d) const { return d == direction::upstream ? up : down; }
  int from(const half& h) const { return &h == &up ? accepted.get() : target.get(); }
  int to(const half& h) const { return &h == &up ? target.get() : accepted.get(); }
};

fault_proxy::fault_proxy(std::string target_host, std::uint16_t target_port)
    : target_host_(std::move(target_host)), target_port_(target_port) {
  ignore_sigpipe();
  ipv4(target_host_, target_port_);  // validates the address now, not in the thread
  listener_ = listen_on(0);
  if (!listener_) throw io_error("fault_proxy: cannot listen on 127.0.0.1:0: " + errno_text(errno));
  sockaddr_in bound{};
  socklen_t length = sizeof bound;
  if (::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&bound), &length) != 0)
    throw io_error("fault_proxy: getsockname(): " + errno_text(errno));
  port_ = ntohs(bound.sin_port);
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) != 0)
    throw io_error("fault_proxy: pipe2(): " + errno_text(errno));
  wake_read_.reset(pipe_fds[0]);
  wake_write_.reset(pipe_fds[1]);
  thread_ = std::thread([this] { run(); });
}

fault_proxy::~fault_proxy() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake();
  thread_.join();
  // The connections' descriptors close with them (plain close: peers see EOF).
}

void fault_proxy::wake() {
  const char byte = 1;
  // A full pipe already guarantees a wake-up.
  [[maybe_unused]] const auto ignored = ::write(wake_write_.get(), &byte, 1);
}

// -- commands ---------------------------------------------------------------------

void fault_proxy::for_each_target(std::size_t conn, const std::function<void(connection&)>& f) {
  if (conn == all) {
    for (auto& c : connections_)
      if (!c->closed) f(*c);
    return;
  }
  if (conn >= connections_.size())
    throw io_error("fault_proxy: no connection number " + std::to_string(conn) + " (" +
                   std::to_string(connections_.size()) + " accepted)");
  if (!connections_[conn]->closed) f(*connections_[conn]);
}

void fault_proxy::delay(direction d, millis hold, std::size_t chunk, std::size_t conn) {
  {
    std::lock_guard lock(mutex_);
    for_each_target(conn, [&](connection& c) {
      c.of(d).hold = hold;
      c.of(d).chunk = chunk;
    });
  }
  wake();
}

void fault_proxy::stall(direction d, std::size_t conn) {
  {
    std::lock_guard lock(mutex_);
    for_each_target(conn, [&](connection& c) { c.of(d).stalled = true; });
  }
  wake();
}

void fault_proxy::resume(direction d, std::size_t conn) {
  {
    std::lock_guard lock(mutex_);
    for_each_target(conn, [&](connection& c) { c.of(d).stalled = false; });
  }
  wake();
}

void fault_proxy::cut(direction d, std::size_t conn) {
  {
    std::lock_guard lock(mutex_);
    for_each_target(conn, [&](connection& c) { c.of(d).cut = true; });
  }
  wake();
}

void fault_proxy::truncate(direction d, std::size_t bytes, truncate_end end, std::size_t conn) {
  {
    std::lock_guard lock(mutex_);
    for_each_target(conn, [&](connection& c) {
      c.of(d).budget = bytes;
      c.of(d).end_action = end;
    });
  }
  wake();
}

void fault_proxy::reset(std::size_t conn) {
  std::vector<const connection*> targets;
  {
    std::lock_guard lock(mutex_);
    for_each_target(conn, [&](connection& c) {
      c.reset_requested = true;
      targets.push_back(&c);
    });
  }
  wake();
  // Done by the proxy thread (it alone touches descriptors); returns once done.
  const bool done = wait_for(default_timeout, [&] {
    return std::all_of(targets.begin(), targets.end(), [](const connection* c) { return c->closed; });
  });
  if (!done) throw io_error("fault_proxy: reset() not carried out within the timeout");
}

// -- observations -------------------------------------------------------------------

std::size_t fault_proxy::accepted() const {
  std::lock_guard lock(mutex_);
  return connections_.size();
}

std::size_t fault_proxy::live() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(std::count_if(
      connections_.begin(), connections_.end(), [](const auto& c) { return !c->closed; }));
}

std::uint64_t fault_proxy::forwarded(direction d, std::size_t conn) const {
  std::lock_guard lock(mutex_);
  std::uint64_t sum = 0;
  for (const auto& c : connections_)
    if (conn == all || c->number == conn) sum += c->of(d).forwarded;
  return sum;
}

std::vector<std::string> fault_proxy::errors() const {
  std::lock_guard lock(mutex_);
  return errors_;
}

bool fault_proxy::wait_for(millis timeout, const std::function<bool()>& done) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, done);
}

bool fault_proxy::wait_accepted(std::size_t n, millis timeout) const {
  return wait_for(timeout, [&] { return connections_.size() >= n; });
}

bool fault_proxy::wait_live(std::size_t n, millis timeout) const {
  return wait_for(timeout, [&] {
    return static_cast<std::size_t>(std::count_if(connections_.begin(), connections_.end(),
                                                   [](const auto& c) { return !c->closed; })) == n;
  });
}

bool fault_proxy::wait_forwarded(direction d, std::uint64_t bytes, std::size_t conn,
                                 millis timeout) const {
  return wait_for(timeout, [&] {
    std::uint64_t sum = 0;
    for (const auto& c : connections_)
      if (conn == all || c->number == conn) sum += c->of(d).forwarded;
    return sum >= bytes;
  });
}

// -- the proxy thread ---------------------------------------------------------------

void fault_proxy::run() {
  try {
    for (;;) {
      std::vector<pollfd> fds;
      std::vector<connection*> owners;  // owners[i] has fds[2 + 2i] and fds[3 + 2i]
      int timeout_ms = -1;
      {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
        std::size_t live_now = 0;
        std::optional<steady::time_point> next_due;
        for (auto& c : connections_) {
          if (c->closed) continue;
          ++live_now;
          short a = 0, b = 0;
          if (c->connecting) {
            b = POLLOUT;
          } else {
            if (c->up.wants_read()) a |= POLLIN;
            if (c->down.blocked) a |= POLLOUT;
            if (c->down.wants_read()) b |= POLLIN;
            if (c->up.blocked) b |= POLLOUT;
            for (const half* h : {&c->up, &c->down}) {
              if (h->draining_since) timeout_ms = drain_poll_ms;
              if (h->blocked || h->held() == 0) continue;
              if (const auto due = h->due(); due && (!next_due || *due < *next_due)) next_due = due;
            }
          }
          // A negative fd is ignored by poll(2): no spinning on a hang-up we do not act on.
          fds.push_back({a ? c->accepted.get() : -1, a, 0});
          fds.push_back({b ? c->target.get() : -1, b, 0});
          owners.push_back(c.get());
        }
        fds.insert(fds.begin(), {pollfd{wake_read_.get(), POLLIN, 0},
                                 pollfd{live_now < max_live ? listener_.get() : -1, POLLIN, 0}});
        if (next_due) {
          const int due_ms = poll_timeout_ms(*next_due);
          timeout_ms = timeout_ms < 0 ? due_ms : std::min(timeout_ms, due_ms);
        }
      }

      if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR)
        throw io_error("poll(): " + errno_text(errno));

      std::lock_guard lock(mutex_);
      if (stopping_) return;
      if (fds[0].revents) {
        char drain[64];
        while (::read(wake_read_.get(), drain, sizeof drain) > 0) {
        }
      }
      if (fds[1].revents) accept_new();
      for (std::size_t i = 0; i < owners.size(); ++i) {
        connection& c = *owners[i];
        if (c.closed) continue;
        const short ra = fds[2 + 2 * i].revents, rb = fds[3 + 2 * i].revents;
        constexpr short writable_now = POLLOUT | POLLERR | POLLHUP;
        constexpr short readable_now = POLLIN | POLLERR | POLLHUP;
        if (c.connecting) {
          if (rb & writable_now) finish_connect(c);
          continue;
        }
        if (rb & writable_now) c.up.blocked = false;
        if (ra & writable_now) c.down.blocked = false;
        if ((ra & readable_now) && c.up.wants_read()) read_into(c, c.up);
        if (!c.closed && (rb & readable_now) && c.down.wants_read()) read_into(c, c.down);
      }
      // Every live connection, not only those with events: commands, delays and
      // budgets act without any socket event.
      for (auto& c : connections_)
        if (!c->closed && !c->connecting) progress(*c);
      changed_.notify_all();
    }
  } catch (const std::exception& e) {
    std::lock_guard lock(mutex_);
    errors_.push_back(std::string("proxy thread stopped: ") + e.what());
  } catch (...) {
    std::lock_guard lock(mutex_);
    errors_.push_back("proxy thread stopped: unknown exception");
  }
  changed_.notify_all();
}

void fault_proxy::accept_new() {
  for (;;) {
    const std::size_t live_now = static_cast<std::size_t>(std::count_if(
        connections_.begin(), connections_.end(), [](const auto& c) { return !c->closed; }));
    if (live_now >= max_live) return;
    const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == ECONNABORTED || errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) errors_.push_back("accept4(): " + errno_text(errno));
      return;
    }
    auto c = std::make_unique<connection>();
    c->number = connections_.size();
    c->accepted.reset(fd);
    c->target.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!c->target) {
      errors_.push_back("socket(): " + errno_text(errno));
      close_with_reset(c->accepted);
      c->closed = true;
    } else {
      // Each write goes out as it is: a trickle stays a trickle.
      const int on = 1;
      ::setsockopt(c->accepted.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
      ::setsockopt(c->target.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
      const sockaddr_in address = ipv4(target_host_, target_port_);
      if (::connect(c->target.get(), reinterpret_cast<const sockaddr*>(&address),
                    sizeof address) == 0) {
        c->connecting = false;
      } else if (errno != EINPROGRESS) {
        // The target refused: so does the proxy, as a reset.
        close_with_reset(c->accepted);
        c->target.reset();
        c->closed = true;
      }
    }
    connections_.push_back(std::move(c));
  }
}

void fault_proxy::finish_connect(connection& c) {
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(c.target.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
  if (error == 0) {
    c.connecting = false;
    return;
  }
  close_with_reset(c.accepted);
  c.target.reset();
  c.closed = true;
}

void fault_proxy::read_into(connection& c, half& h) {
  h.make_room();
  const ssize_t n = ::recv(c.from(h), h.buf.get() + h.end, buffer_bytes - h.end, 0);
  if (n > 0) {
    h.end += static_cast<std::size_t>(n);
    h.arrivals.emplace_back(steady::now(), static_cast<std::size_t>(n));
  } else if (n == 0) {
    h.source_eof = true;
  } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    reset_locked(c);  // the sender reset: the receiver sees one too
  }
}

void fault_proxy::progress(connection& c) {
  if (c.reset_requested) {
    reset_locked(c);
    return;
  }
  for (half* h : {&c.up, &c.down}) {
    if (!h->shut && !h->blocked) {
      if (const std::size_t n = h->writable(steady::now()); n > 0) {
        const ssize_t sent = ::send(c.to(*h), h->buf.get() + h->begin, n, MSG_NOSIGNAL);
        if (sent > 0) {
          h->consume(static_cast<std::size_t>(sent));
          if (h->chunk > 0) h->next_write = steady::now() + h->hold;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
          h->blocked = true;
        } else if (errno != EINTR) {
          reset_locked(c);  // the receiver is gone: the sender learns it by a reset
          return;
        }
      }
    }
    if (h->budget && *h->budget == 0) {
      h->drop();  // past the budget: never forwarded
      if (h->end_action == truncate_end::reset) {
        const auto now = steady::now();
        if (!h->draining_since) h->draining_since = now;
        int unsent = 0;
        if (::ioctl(c.to(*h), SIOCOUTQ, &unsent) != 0 || unsent == 0 ||
            now - *h->draining_since >= max_drain_time) {
          reset_locked(c);
          return;
        }
        continue;  // not yet delivered: look again shortly
      }
      h->budget.reset();
      h->cut = true;
    }
    if ((h->source_eof || h->cut) && h->held() == 0 && !h->shut) {
      ::shutdown(c.to(*h), SHUT_WR);
      h->shut = true;
    }
  }
  if (c.up.shut && c.down.shut) {
    c.accepted.reset();
    c.target.reset();
    c.closed = true;
    c.up.buf.reset();
    c.down.buf.reset();
  }
}

void fault_proxy::reset_locked(connection& c) {
  close_with_reset(c.accepted);
  close_with_reset(c.target);
  c.closed = true;
  c.up.drop();
  c.down.drop();
  c.up.buf.reset();
  c.down.buf.reset();
}

}  // namespace tlsrelay::test
