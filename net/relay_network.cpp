#include "net/relay_network.hpp"

#include <fcntl.h>
#include <sched.h>
#include <netinet/in.h>
#include <unistd.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <future>
#include <optional>
#include <utility>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <caf/send.hpp>
#include <spdlog/spdlog.h>

#include "net/control_connection.hpp"
#include "pump/adopted_socket.hpp"
#include "logging/structured_log.hpp"
#include "protocol/defaults.hpp"
#include "protocol/endpoint.hpp"
#include "protocol/first_line.hpp"
#include "protocol/v2.hpp"

namespace tlsrelay::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// One listening port of the pool.
struct relay_network::pool_listener {
  pool_listener(asio::io_context& io, pair_index p, port_kind k) : acceptor(io), pair(p), kind(k) {}
  tcp::acceptor acceptor;
  pair_index pair;
  port_kind kind;
  // Where its connections arrive, when that is one address (not a wildcard
  // listen address): then no getsockname per connection.
  std::optional<host_port> local;
};

// An accepted pool connection that is not joined yet. Its bytes stay in the
// kernel until it is joined, so a waiting client cannot make us buffer.
struct relay_network::plain_connection {
  plain_connection(conn_id i, tcp::socket s, pair_index p) : id(i), socket(std::move(s)), pair(p) {}
  conn_id id;
  // For the pairing latency (accept → joined) reported with pair_joined.
  std::chrono::steady_clock::time_point accepted = std::chrono::steady_clock::now();
  tcp::socket socket;
  pair_index pair;
  caf::actor owner;      // set by route_connection: the connection is claimed
  bool closing = false;  // being closed with lingering_close
  admission::ticket slot;       // its place under --max-connections
  admission::ticket unchecked;  // v2 reverse: until its first line is judged
  // Once its peer has spoken, the socket stays readable: a reset is then
  // looked for on this timer instead (see watch_for_departure).
  std::unique_ptr<asio::steady_timer> recheck;
};

namespace {

// A joined pair's bytes, counted as they are delivered: on the node's tally
// per direction and on its pool pair's while it is open (net_counters); the
// pair's leave that tally when the pump ends, just before pump_finished
// hands its totals to the session.
//
// `became_busy` is called once, on the pump's thread, when the pair has
// delivered defaults::busy_pair_bytes.
class pair_meter final : public pump::pump_meter {
 public:
  // `client_slot`, `reverse_slot`: the pair's two places under
  // --max-connections, given back when it ends (held here rather than in the
  // done handler, which must be copyable: one allocation less per pair).
  pair_meter(net_counters& counters, std::size_t pair, std::function<void()> became_busy,
             admission::ticket client_slot, admission::ticket reverse_slot)
    : counters_(counters),
      became_busy_(std::move(became_busy)),
      client_slot_(std::move(client_slot)),
      reverse_slot_(std::move(reverse_slot)) {
    if (pair < counters.pair_count) open_ = &counters.open_pair_bytes[pair];
  }
  void delivered(pump::direction dir, std::uint64_t bytes) override {
    if (became_busy_ && (total_ += bytes) >= defaults::busy_pair_bytes)
      std::exchange(became_busy_, nullptr)();
    const bool up = dir == pump::direction::a_to_b;  // a is the client
    net_counters::bump(up ? counters_.bytes_client_to_server : counters_.bytes_server_to_client,
                       bytes);
    if (open_) net_counters::bump(up ? open_->client_to_server : open_->server_to_client, bytes);
  }
  void ended(std::uint64_t a_to_b, std::uint64_t b_to_a) override {
    client_slot_.release();
    reverse_slot_.release();
    if (!open_) return;
    open_->client_to_server.fetch_sub(a_to_b, std::memory_order_relaxed);
    open_->server_to_client.fetch_sub(b_to_a, std::memory_order_relaxed);
  }

 private:
  net_counters& counters_;
  net_counters::pair_bytes* open_ = nullptr;
  std::function<void()> became_busy_;
  std::uint64_t total_ = 0;
  admission::ticket client_slot_;
  admission::ticket reverse_slot_;
};

pair_end to_pair_end(pump::end_reason why) {
  switch (why) {
    case pump::end_reason::closed: return pair_end::closed;
    case pump::end_reason::reset: return pair_end::reset;
    case pump::end_reason::idle_timeout: return pair_end::idle_timeout;
    case pump::end_reason::half_close_timeout: return pair_end::half_close_timeout;
    case pump::end_reason::cut: return pair_end::cut;
  }
  return pair_end::reset;
}

host_port to_host_port(const tcp::endpoint& ep) {
  auto addr = ep.address();
  if (addr.is_v6() && addr.to_v6().is_v4_mapped())
    addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
  if (!addr.is_v4()) return {addr.to_string(), ep.port()};
  // Dotted quad by hand: address::to_string goes through inet_ntop and
  // sprintf, a measurable part of setting up a relayed connection.
  const auto bytes = addr.to_v4().to_bytes();
  std::string text;
  text.reserve(15);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i) text += '.';
    char digits[3];
    text.append(digits, std::to_chars(digits, digits + sizeof digits, bytes[i]).ptr);
  }
  return {std::move(text), ep.port()};
}

// Writes the relay's last bytes, half-closes, then reads (and discards) until
// the peer's EOF or the linger deadline before closing: closing with the
// peer's bytes unread would make the kernel send a reset that can destroy our
// message before the peer reads it.
class lingering_closer : public std::enable_shared_from_this<lingering_closer> {
public:
  lingering_closer(tcp::socket socket, std::string bytes, admission::ticket slot)
    : socket_(std::move(socket)),
      bytes_(std::move(bytes)),
      deadline_(socket_.get_executor()),
      slot_(std::move(slot)) {}

  void start() {
    deadline_.expires_after(defaults::close_linger);
    deadline_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->close();
    });
    asio::async_write(socket_, asio::buffer(bytes_),
                      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                        if (ec) return self->close();
                        boost::system::error_code ignored;
                        self->socket_.shutdown(tcp::socket::shutdown_send, ignored);
                        self->drain();
                      });
  }

private:
  void drain() {
    socket_.async_read_some(asio::buffer(sink_), [self = shared_from_this()](
                                                   const boost::system::error_code& ec, std::size_t) {
      if (ec) return self->close();
      self->drain();
    });
  }
  void close() {
    boost::system::error_code ignored;
    deadline_.cancel();
    socket_.close(ignored);
    slot_.release();
  }

  tcp::socket socket_;
  std::string bytes_;
  asio::steady_timer deadline_;
  admission::ticket slot_;
  std::array<char, 4096> sink_{};
};

// Reads the first line of a v2 reverse connection (`accept <ID>` or
// `ready ...`) by peeking, never past the line: what follows it is the server's payload and stays in the kernel
// until the pair is joined. Reports once, under a deadline.
class accept_line_reader : public std::enable_shared_from_this<accept_line_reader> {
public:
  enum class outcome { line, no_line, gone };
  using report = std::function<void(outcome, std::string)>;

  accept_line_reader(tcp::socket& socket, report done)
    : socket_(socket), done_(std::move(done)), deadline_(socket.get_executor()) {}

  void start() {
    deadline_.expires_after(defaults::accept_line_timeout);
    deadline_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->finish(outcome::no_line, {});
    });
    wait();
  }

private:
  void wait() {
    socket_.async_wait(tcp::socket::wait_read,
                       [self = shared_from_this()](const boost::system::error_code& ec) {
                         if (self->reported_) return;
                         if (ec) return self->finish(outcome::gone, {});
                         self->peek();
                       });
  }

  // Bytes before the line's end are the line's, so they are taken out of the
  // kernel as they come (left there, they would keep the socket readable
  // and the wait would spin); once the line is complete, exactly the rest of
  // it is taken: what follows is the server's payload. protocol/first_line
  // decides (and is fuzzed).
  void peek() {
    std::array<char, v2::max_reverse_line_bytes> buf;
    const std::size_t taken_before = taken_.size();
    std::copy(taken_.begin(), taken_.end(), buf.begin());
    const long n = ::recv(socket_.native_handle(), buf.data() + taken_before,
                          buf.size() - taken_before, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return wait();
    if (n <= 0) return finish(outcome::gone, {});  // left (or cut its line short)
    const std::string_view seen(buf.data(), taken_before + static_cast<std::size_t>(n));
    const auto found = find_reverse_line(seen);
    if (found.state == first_line::status::too_long) return finish(outcome::no_line, {});
    const std::size_t take =
      found.state == first_line::status::complete ? found.take - taken_before
                                                  : static_cast<std::size_t>(n);
    std::array<char, v2::max_reverse_line_bytes> sink;
    if (::recv(socket_.native_handle(), sink.data(), take, MSG_DONTWAIT) != static_cast<long>(take))
      return finish(outcome::gone, {});
    if (found.state == first_line::status::need_more) {
      taken_.assign(seen);
      return wait();
    }
    finish(outcome::line, std::string(found.line));
  }

  void finish(outcome result, std::string line) {
    if (reported_) return;
    reported_ = true;
    deadline_.cancel();
    boost::system::error_code ignored;
    if (result == outcome::no_line) socket_.cancel(ignored);  // ends the pending wait
    auto done = std::move(done_);
    done(result, std::move(line));
  }

  tcp::socket& socket_;  // owned by the plain_connection the report closes over
  report done_;
  asio::steady_timer deadline_;
  std::string taken_;  // bytes of the line taken out of the kernel so far
  bool reported_ = false;
};

// A descriptor accept4 returned, as a socket of `io` (which may be another
// thread's: Asio's registration with its reactor is thread-safe); nothing,
// and the descriptor closed, if Asio cannot take it.
std::optional<tcp::socket> socket_of(asio::io_context& io, int fd, const tcp::endpoint& peer) {
  boost::system::error_code ec;
  tcp::socket socket(io);
  pump::adopt(socket, peer.protocol(), fd, ec);
  if (!ec) return socket;
  ::close(fd);
  return std::nullopt;
}

}  // namespace

void set_keepalive(tcp::socket& socket, std::chrono::seconds idle) {
  // Probes after `idle` of silence, then every idle/3, three unanswered ones
  // end it; TCP_USER_TIMEOUT bounds unacknowledged data (and the probes) to
  // the same total, so a server lost behind a NAT is noticed within 2 x idle.
  const int fd = socket.native_handle();
  const int on = 1;
  const int idle_s = static_cast<int>(idle.count());
  const int interval_s = std::max(1, idle_s / 3);
  const int probes = 3;
  const unsigned user_timeout_ms = static_cast<unsigned>(idle_s + probes * interval_s) * 1000u;
  if (::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms) != 0)
    spdlog::warn("cannot set TCP keepalive on a control connection: {}", std::strerror(errno));
}

host_port peer_address(const tcp::socket& socket) {
  boost::system::error_code ec;
  const auto ep = socket.remote_endpoint(ec);
  return ec ? host_port{"unknown", 0} : to_host_port(ep);
}

host_port local_address(const tcp::socket& socket) {
  boost::system::error_code ec;
  const auto ep = socket.local_endpoint(ec);
  return ec ? host_port{"unknown", 0} : to_host_port(ep);
}

std::string peer_name(const tcp::socket& socket) { return format_host_port(peer_address(socket)); }

unsigned default_io_threads() {
  // The CPUs this process may run on (taskset, a container's cpuset), not
  // all the machine has: more threads than those only add switches.
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  unsigned cores = ::sched_getaffinity(0, sizeof allowed, &allowed) == 0
                     ? static_cast<unsigned>(CPU_COUNT(&allowed))
                     : std::thread::hardware_concurrency();
  return std::clamp(cores, 1u, max_io_threads);
}

// One io thread and the state it alone touches (see relay_network.hpp).
class relay_network::io_thread final : public control_host {
public:
  io_thread(relay_network& network, std::size_t index)
    : network_(network), index(index), last_lines_timer(io) {
    spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  ~io_thread() {
    if (spare_fd >= 0) ::close(spare_fd);
  }

  // Ids are index, index + N, index + 2N, ...: an id names its thread.
  conn_id next_id() {
    const auto seq = last_seq.fetch_add(1, std::memory_order_relaxed) + 1;
    return conn_id{seq * network_.threads_.size() + index};
  }
  SSL_CTX* control_tls() {
    return (replaced_tls ? *replaced_tls : network_.tls_).native_handle();
  }

  // -- control_host ----------------------------------------------------------
  void control_ready(control_connection& conn) override {
    caf::anon_send(pool_manager,
                   control_connected{conn.id(), conn.peer_address(),
                                     static_cast<std::uint8_t>(conn.protocol()),
                                     conn.client_certificate(), conn.certificate_fingerprint()});
  }
  void control_handshake_failed() override {
    net_counters::bump(network_.counters_.tls_handshake_failures);
  }
  void forget_control(conn_id id) override {
    controls.erase(id);
    if (last_lines_written) check_last_lines();
  }
  void last_lines_sent() override {
    if (last_lines_written) check_last_lines();
  }
  void check_last_lines() {
    for (const auto& [id, conn] : controls)
      if (conn->writing_last_lines()) return;
    last_lines_timer.cancel();
    if (auto done = std::move(last_lines_written)) {
      last_lines_written = nullptr;
      done();
    }
  }

  relay_network& network_;
  const std::size_t index;
  asio::io_context io{1};
  std::thread thread;
  bool stopped = false;
  // Any thread takes ids of this one (thread 0 for the control connections
  // it hands over).
  std::atomic<std::uint64_t> last_seq{0};
  // Busy pairs pumped here now (see start_pump); read by every thread.
  std::atomic<std::size_t> busy{0};
  caf::actor pool_manager;
  // Set by replace_tls; used instead of the relay's context when set. An SSL
  // made from a context holds a reference to it, so a context replaced
  // while its connections live on is freed only after them.
  std::shared_ptr<asio::ssl::context> replaced_tls;
  // Kept open to be given up when accept fails for want of descriptors: then
  // the waiting connection can be accepted and closed at once instead of
  // staying in the backlog (and making accept fail again and again).
  int spare_fd = -1;
  log_throttle accept_failures;
  // await_last_lines: called (once) when no control connection here has last lines to write.
  std::function<void()> last_lines_written;
  asio::steady_timer last_lines_timer;
  std::unordered_map<conn_id, std::shared_ptr<control_connection>> controls;
  std::unordered_map<conn_id, std::shared_ptr<plain_connection>> plains;  // not yet joined
};

relay_network::relay_network(network_config config, asio::ssl::context& tls)
  : config_(std::move(config)),
    tls_(tls),
    counters_(config_.layout.pair_count()),
    stages_(defaults::idle_stages),
    admission_(admission::make(config_.limits)) {
  const unsigned n = std::clamp(config_.io_threads, 1u, max_io_threads);
  for (unsigned i = 0; i < n; ++i) threads_.push_back(std::make_unique<io_thread>(*this, i));
  refusal_timer_ = std::make_unique<asio::steady_timer>(threads_[0]->io);
  control_acceptor_ = std::make_unique<tcp_acceptor>(threads_[0]->io);
  pair_owner_.resize(config_.layout.pair_count());
  pair_framing_.resize(config_.layout.pair_count(), reverse_framing::raw);
}

relay_network::~relay_network() {
  stop();
  // Before the io_contexts: the sockets of pumps that never ran are theirs.
  pumps_.clear();
}

template <class Work>
void relay_network::on_every_thread(const Work& work) {
  for (auto& t : threads_) asio::post(t->io, [&t = *t, work] { work(t); });
}

void relay_network::replace_tls(std::shared_ptr<asio::ssl::context> tls) {
  on_every_thread([tls](io_thread& t) { t.replaced_tls = tls; });
}

std::string relay_network::bind() {
  const auto listen_on = [this](tcp::acceptor& acceptor, std::uint16_t port) -> std::string {
    boost::system::error_code ec;
    const tcp::endpoint ep(config_.listen_address, port);
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    // Every port takes the connections waiting at a wake-up (accept_ready).
    if (!ec) acceptor.non_blocking(true, ec);
    if (!ec) return {};
    boost::system::error_code ignored;
    acceptor.close(ignored);
    if (ec == asio::error::address_in_use)
      return "port " + std::to_string(port) + " on " + config_.listen_address.to_string() +
             " is already in use";
    return "cannot listen on " + format_host_port(config_.listen_address.to_string(), port) +
           ": " + ec.message();
  };
  const auto& layout = config_.layout;
  std::string error = listen_on(*control_acceptor_, layout.control_port());
  if (!error.empty()) return error + " (--port)";
  for (pair_index i = 0; i < layout.pair_count() && error.empty(); ++i) {
    for (auto kind : {port_kind::reverse_port, port_kind::public_port}) {
      auto listener = std::make_unique<pool_listener>(thread_of_pair(i).io, i, kind);
      const auto port =
        kind == port_kind::public_port ? layout.public_port(i) : layout.reverse_port(i);
      error = listen_on(listener->acceptor, port);
      if (error.empty()) {
        // Inherited by every accepted connection (Linux): pumps skip setting it.
        boost::system::error_code ec;
        listener->acceptor.set_option(tcp::no_delay(true), ec);
        if (ec) error = "cannot prepare a listening socket: " + ec.message();
        if (!config_.listen_address.is_unspecified())
          listener->local = to_host_port(listener->acceptor.local_endpoint(ec));
      }
      if (!error.empty()) {
        error += " (pool " + std::to_string(layout.control_port() + 1) + "-" +
                 std::to_string(layout.last_port()) + " from --port and --port-count)";
        break;
      }
      pool_listeners_.push_back(std::move(listener));
    }
  }
  if (!error.empty()) {
    // Nothing stays bound after a failed start.
    boost::system::error_code ignored;
    control_acceptor_->close(ignored);
    pool_listeners_.clear();
  }
  return error;
}

void relay_network::start(caf::actor pool_manager) {
  for (auto& t : threads_) t->pool_manager = pool_manager;
  // Handlers set up here run on their threads once those start.
  accept_control();
  for (auto& listener : pool_listeners_) accept_pool(*listener);
  for (auto& t : threads_) {
    t->thread = std::thread([&t = *t] {
      auto guard = asio::make_work_guard(t.io);
      for (;;) {
        try {
          t.io.run();
          return;
        } catch (const std::exception& e) {
          // A handler must not throw; if one does, say so and keep serving.
          spdlog::error("network thread {}: unexpected exception: {}", t.index, e.what());
        }
      }
    });
  }
}

std::size_t relay_network::stop() {
  std::atomic<std::size_t> cut{0};
  if (threads_[0]->thread.joinable()) {
    for (auto& t : threads_) {
      asio::post(t->io, [this, &t = *t, &cut] {
        cut += close_everything(t);
        t.io.stop();
      });
    }
    for (auto& t : threads_) t->thread.join();
  } else {
    for (auto& t : threads_) cut += close_everything(*t);
  }
  return cut;
}

std::size_t relay_network::close_everything(io_thread& t) {
  if (t.stopped) return 0;
  t.stopped = true;
  boost::system::error_code ignored;
  if (t.index == 0) {
    control_acceptor_->close(ignored);
    refusal_timer_->cancel();
  }
  for (auto& listener : pool_listeners_)
    if (&thread_of_pair(listener->pair) == &t) listener->acceptor.close(ignored);
  // Closing removes entries from the maps: work on copies.
  auto controls = t.controls;
  for (auto& [id, conn] : controls) conn->close();
  auto plains = t.plains;
  for (auto& [id, conn] : plains) conn->socket.close(ignored);
  t.plains.clear();
  // The pumps this thread runs (also those handed over and not started yet).
  std::vector<std::shared_ptr<pump::pair_pump>> mine;
  {
    std::lock_guard lock(pumps_mutex_);
    for (auto& [id, running] : pumps_)
      if (running.runs_on == &t) mine.push_back(running.pump);
  }
  std::sort(mine.begin(), mine.end());
  mine.erase(std::unique(mine.begin(), mine.end()), mine.end());
  for (auto& pump : mine) pump->reset();  // its done handler leaves the table
  // Actor handles must not outlive the actor system.
  for (std::size_t p = t.index; p < pair_owner_.size(); p += threads_.size())
    pair_owner_[p] = caf::actor{};
  t.pool_manager = nullptr;
  return mine.size();
}

void relay_network::after_accept_error(io_thread& t, const boost::system::error_code& ec,
                                       tcp_acceptor& acceptor, const std::string& where,
                                       std::function<void()> again) {
  if (ec == asio::error::no_descriptors || ec.value() == ENFILE) {
    // Idle pipes kept for reuse go first: then the waiting connection can be
    // served instead of shed. (They come back one by one as pairs need them.)
    if (const auto released = stages_.release_idle_pipes(); released > 0) {
      spdlog::warn("out of file descriptors: closed {} idle pipes to make room", released);
      return again();
    }
    // Give up the spare descriptor for a moment, take the waiting connection
    // and close it at once: its peer learns now instead of waiting in the
    // backlog.
    if (t.spare_fd >= 0) ::close(t.spare_fd);
    const int shed = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
    const int shed_errno = errno;
    if (shed >= 0) ::close(shed);
    t.spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (shed >= 0) {
      note_refusal(refusal::descriptors, {});
      return again();
    }
    if (shed_errno == EAGAIN || shed_errno == EWOULDBLOCK) {
      acceptor.async_wait(tcp_acceptor::wait_read,
                          [&t, again = std::move(again)](const boost::system::error_code& ec) {
                            if (!ec && !t.stopped) again();
                          });
      return;
    }
    // Not even the spare helped (none could be reopened, or the limit was
    // lowered under it): wait a moment as for any other failure.
  }
  if (const auto n = t.accept_failures.note(std::chrono::steady_clock::now()))
    spdlog::warn("{}: accept failed: {}{}", where, ec.message(),
                 n > 1 ? " (" + std::to_string(n) + " failures since the last report)" : "");
  // Accepting again at once would spin.
  auto timer = std::make_shared<asio::steady_timer>(t.io, std::chrono::milliseconds(100));
  timer->async_wait([&t, timer, again = std::move(again)](const boost::system::error_code& ec) {
    if (!ec && !t.stopped) again();
  });
}

// A port takes the connections waiting at a wake-up, up to a batch, with
// accept4 (non-blocking and close-on-exec from the start, the peer's address
// with it): per connection no ioctl, no getpeername and no epoll round of
// its own. The batch bounds how long one busy port keeps the others waiting.
template <class Describe, class Take>
void relay_network::accept_ready(io_thread& t, tcp_acceptor& acceptor, unsigned batch,
                                 Describe where, std::function<void()> again, Take take) {
  if (!acceptor.is_open()) return;  // closed by stop_accepting (a retry came late)
  acceptor.async_wait(tcp::acceptor::wait_read, [this, &t, &acceptor, batch, where, again, take](
                                                  const boost::system::error_code& ec) mutable {
    if (t.stopped || ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (ec) return after_accept_error(t, ec, acceptor, where(), again);
    for (unsigned n = 0; n < batch; ++n) {
      sockaddr_storage from{};
      socklen_t from_size = sizeof from;
      const int fd = ::accept4(acceptor.native_handle(), reinterpret_cast<sockaddr*>(&from),
                               &from_size, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINTR || errno == ECONNABORTED) continue;  // a peer gone before accept
        return after_accept_error(
          t, boost::system::error_code(errno, boost::system::system_category()), acceptor, where(),
          again);
      }
      tcp::endpoint peer;
      std::memcpy(peer.data(), &from, std::min<std::size_t>(from_size, peer.capacity()));
      take(fd, peer);
      if (t.stopped || !acceptor.is_open()) return;
    }
    again();
  });
}

void relay_network::accept_control() {
  auto& t = *threads_[0];
  accept_ready(t, *control_acceptor_, defaults::control_accept_batch,
               [] { return std::string("control port"); },
               [this] { accept_control(); },
               [this](int fd, const tcp::endpoint& peer_ep) {
                 auto peer = to_host_port(peer_ep);
                 admission::ticket slot, handshake;
                 const auto refused = admission_->admit_control(
                   peer.host, std::chrono::steady_clock::now(), slot, handshake);
                 if (refused != refusal::none) {
                   // Closed before a byte of TLS: a refusal here costs no handshake.
                   ::close(fd);
                   note_refusal(refused, peer.host);
                   return;
                 }
                 // Handshakes (the costly part) are spread over the threads.
                 auto& home = *threads_[next_control_thread_];
                 next_control_thread_ = (next_control_thread_ + 1) % threads_.size();
                 auto socket = socket_of(home.io, fd, peer_ep);
                 if (!socket) return;
                 if (&home == threads_[0].get())
                   return adopt_control(home, std::move(*socket), std::move(peer),
                                        std::move(slot), std::move(handshake));
                 asio::post(home.io, [this, &home, socket = std::move(*socket),
                                      peer = std::move(peer), slot = std::move(slot),
                                      handshake = std::move(handshake)]() mutable {
                   if (home.stopped) return;  // the socket closes here
                   adopt_control(home, std::move(socket), std::move(peer), std::move(slot),
                                 std::move(handshake));
                 });
               });
}

void relay_network::adopt_control(io_thread& t, tcp::socket socket, host_port peer,
                                  admission::ticket slot, admission::ticket handshake) {
  if (config_.keepalive.count() > 0) set_keepalive(socket, config_.keepalive);
  const auto id = t.next_id();
  auto conn = std::make_shared<control_connection>(id, std::move(socket), t.control_tls(),
                                                   std::move(peer), t, std::move(slot),
                                                   std::move(handshake));
  t.controls.emplace(id, conn);
  conn->start();
}

void relay_network::note_refusal(refusal why, const std::string& source) {
  net_counters::bump(counters_.refused[static_cast<std::size_t>(why)]);
  std::uint64_t n = 0;
  bool arm = false;
  {
    std::lock_guard lock(refusals_mutex_);
    n = refusals_.note(why, std::chrono::steady_clock::now());
    arm = !refusal_timer_armed_ && refusals_.has_pending();
    if (arm) refusal_timer_armed_ = true;
  }
  if (n > 0) {
    auto f = logging::fields();
    if (!source.empty()) f.peer(source);
    f.reason(std::string(to_string(why))).add("count", n);
    if (n == 1)
      logging::event(spdlog::level::warn, "connections_refused", f,
                     "refused a connection{}{}: {} (see {}); more of this kind are summed up "
                     "once a second",
                     source.empty() ? "" : " from ", source, to_string(why), flag_of(why));
    else
      logging::event(spdlog::level::warn, "connections_refused", f,
                     "refused {} connections in the last second, the last{}{}: {} (see {})", n,
                     source.empty() ? "" : " from ", source, to_string(why), flag_of(why));
  }
  if (arm) asio::post(threads_[0]->io, [this] { report_refusals_later(); });
}

// On thread 0, with refusal_timer_armed_ set: sums up, a second from now,
// the refusals kept back, and again while there are more.
void relay_network::report_refusals_later() {
  if (threads_[0]->stopped) return;
  refusal_timer_->expires_after(std::chrono::seconds(1));
  refusal_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec || threads_[0]->stopped) return;
    const auto now = std::chrono::steady_clock::now();
    bool more = false;
    for (std::size_t k = 1; k < refusal_kinds; ++k) {
      const auto why = static_cast<refusal>(k);
      std::uint64_t n = 0;
      {
        std::lock_guard lock(refusals_mutex_);
        n = refusals_.take_due(why, now);
      }
      if (n > 0)
        logging::event(spdlog::level::warn, "connections_refused",
                       logging::fields().reason(std::string(to_string(why))).add("count", n),
                       "refused {} more connection(s) in the last second: {} (see {})", n,
                       to_string(why), flag_of(why));
    }
    {
      std::lock_guard lock(refusals_mutex_);
      more = refusals_.has_pending();
      refusal_timer_armed_ = more;
    }
    if (more) report_refusals_later();
  });
}

void relay_network::accept_pool(pool_listener& listener) {
  auto& t = thread_of_pair(listener.pair);
  const auto where = [&listener] {
    return std::string(to_string(listener.kind)) + " port of pair " + std::to_string(listener.pair);
  };
  accept_ready(t, listener.acceptor, defaults::accept_batch, where,
               [this, &listener] { accept_pool(listener); },
               [this, &t, &listener](int fd, const tcp::endpoint& peer) {
                 if (auto socket = socket_of(t.io, fd, peer))
                   on_pool_connection(t, listener, std::move(*socket), to_host_port(peer));
               });
}

void relay_network::on_pool_connection(io_thread& t, pool_listener& listener, tcp::socket socket,
                                       host_port peer) {
  const auto& owner = pair_owner_[listener.pair];
  const bool reads_first_line = owner && listener.kind == port_kind::reverse_port &&
                                pair_framing_[listener.pair] == reverse_framing::accept_line;
  admission::ticket slot, unchecked;
  const auto refused =
    listener.kind == port_kind::public_port
      ? admission_->admit_client(peer.host, std::chrono::steady_clock::now(), slot)
      : admission_->admit_reverse(peer.host, reads_first_line, slot, unchecked);
  if (refused != refusal::none) {
    note_refusal(refused, peer.host);
    return;  // the socket closes here
  }
  const auto id = t.next_id();
  auto conn = std::make_shared<plain_connection>(id, std::move(socket), listener.pair);
  conn->slot = std::move(slot);
  conn->unchecked = std::move(unchecked);
  t.plains.emplace(id, conn);
  if (!owner)
    caf::anon_send(t.pool_manager,
                   unrouted_arrival{id, listener.pair, listener.kind, format_host_port(peer)});
  else if (listener.kind == port_kind::public_port)
    caf::anon_send(owner, client_arrived{id, std::move(peer),
                                         listener.local ? *listener.local
                                                        : local_address(conn->socket)});
  else if (reads_first_line)
    read_accept_line(t, conn, format_host_port(peer));
  else
    announce_reverse(t, *conn, format_host_port(peer), {});
}

void relay_network::announce_reverse(io_thread& t, plain_connection& conn, std::string peer,
                                     std::string first_line) {
  // The pair may have changed hands while the line was read.
  const auto& owner = pair_owner_[conn.pair];
  if (!owner) {
    close_plain(t, conn.id);
    return;
  }
  caf::anon_send(owner, reverse_arrived{conn.id, std::move(peer), std::move(first_line)});
}

void relay_network::read_accept_line(io_thread& t, std::shared_ptr<plain_connection> conn,
                                     std::string peer) {
  auto reader = std::make_shared<accept_line_reader>(
    conn->socket, [this, &t, conn, peer = std::move(peer)](accept_line_reader::outcome result,
                                                            std::string line) mutable {
      if (t.stopped || t.plains.count(conn->id) == 0) return;
      conn->unchecked.release();  // judged: its actor decides from here
      switch (result) {
        case accept_line_reader::outcome::line:
          announce_reverse(t, *conn, std::move(peer), std::move(line));
          break;
        case accept_line_reader::outcome::no_line:
          spdlog::debug("reverse connection from {}: no accept line in time, or too long", peer);
          announce_reverse(t, *conn, std::move(peer), {});
          break;
        case accept_line_reader::outcome::gone: close_plain(t, conn->id); break;
      }
    });
  reader->start();
}

void relay_network::await_last_lines(std::chrono::milliseconds limit) {
  if (!threads_[0]->thread.joinable()) return;
  std::vector<std::future<void>> written;
  for (auto& t : threads_) {
    auto done = std::make_shared<std::promise<void>>();
    written.push_back(done->get_future());
    asio::post(t->io, [&t = *t, done, limit] {
      t.last_lines_written = [done] { done->set_value(); };
      t.last_lines_timer.expires_after(limit);
      t.last_lines_timer.async_wait([&t](const boost::system::error_code& ec) {
        if (ec) return;
        if (auto call = std::move(t.last_lines_written)) {
          t.last_lines_written = nullptr;
          call();
        }
      });
      t.check_last_lines();
    });
  }
  // The timers bound it; the margin covers an io thread busy with a burst.
  const auto until = std::chrono::steady_clock::now() + limit + std::chrono::seconds(1);
  for (auto& w : written) w.wait_until(until);
}

void relay_network::close_plain(io_thread& t, conn_id id) {
  auto it = t.plains.find(id);
  if (it == t.plains.end()) return;
  boost::system::error_code ignored;
  it->second->socket.close(ignored);
  if (it->second->recheck) it->second->recheck->cancel();
  it->second->slot.release();
  it->second->unchecked.release();
  t.plains.erase(it);
}

namespace {

// What a waiting connection's peer has done, seen by peeking: its bytes stay
// in the kernel until the pair is joined.
enum class peer_state { quiet, spoke, closed, failed };

// A reset leaves the bytes that came before it readable; only the state of
// the connection tells.
bool was_reset(tcp::socket& socket) {
  tcp_info info{};
  socklen_t size = sizeof info;
  if (::getsockopt(socket.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &size) != 0) return true;
  return info.tcpi_state == TCP_CLOSE;
}

peer_state peek_peer(tcp::socket& socket) {
  char byte;
  const long n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  // A reset that came after the bytes is not seen here (they are read first):
  // who needs to know asks was_reset too.
  if (n > 0) return peer_state::spoke;
  if (n == 0) return peer_state::closed;  // EOF and not a byte: it left without a word
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return peer_state::quiet;
  return peer_state::failed;  // reset, or another socket error
}

// How often a waiting connection whose peer has spoken is checked for a reset.
constexpr auto spoken_recheck = std::chrono::milliseconds(250);

}  // namespace

bool relay_network::still_connected(plain_connection& conn) {
  if (conn.closing || !conn.socket.is_open()) return false;
  const auto state = peek_peer(conn.socket);
  return state == peer_state::quiet || (state == peer_state::spoke && !was_reset(conn.socket));
}

void relay_network::watch_for_departure(io_thread& t, std::shared_ptr<plain_connection> conn) {
  // Readable while waiting means data or EOF; peeking tells them apart.
  conn->socket.async_wait(tcp::socket::wait_read, [this, &t, conn](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || t.stopped || !conn->socket.is_open()) return;
    switch (peek_peer(conn->socket)) {
      // Its bytes wait in the kernel; a reset behind them is looked for on
      // the recheck timer (and again when it is joined).
      case peer_state::spoke: return recheck_later(t, conn);
      case peer_state::quiet: return watch_for_departure(t, conn);
      case peer_state::closed:
        caf::anon_send(conn->owner, connection_closed{conn->id, close_reason::peer_closed});
        break;
      case peer_state::failed:
        caf::anon_send(conn->owner, connection_closed{conn->id, close_reason::peer_error});
        break;
    }
    close_plain(t, conn->id);
  });
}

void relay_network::recheck_later(io_thread& t, std::shared_ptr<plain_connection> conn) {
  if (!conn->recheck) conn->recheck = std::make_unique<asio::steady_timer>(t.io);
  conn->recheck->expires_after(spoken_recheck);
  conn->recheck->async_wait([this, &t, conn](const boost::system::error_code& ec) {
    // Joined (the socket moved to its pump) or closed: nothing to watch.
    if (ec || t.stopped || !conn->socket.is_open() || t.plains.count(conn->id) == 0) return;
    if (!was_reset(conn->socket)) return recheck_later(t, conn);
    caf::anon_send(conn->owner, connection_closed{conn->id, close_reason::peer_error});
    close_plain(t, conn->id);
  });
}

void relay_network::lingering_close(std::shared_ptr<plain_connection> conn, std::string bytes) {
  conn->closing = true;
  auto closer = std::make_shared<lingering_closer>(std::move(conn->socket), std::move(bytes),
                                                   std::move(conn->slot));
  closer->start();
}

template <class Work>
bool relay_network::on_pump_thread(conn_id id, Work work) {
  io_thread* runs_on = nullptr;
  {
    std::lock_guard lock(pumps_mutex_);
    auto it = pumps_.find(id);
    if (it == pumps_.end()) return false;
    runs_on = it->second.runs_on;
  }
  // The pump may move on before this runs: then it follows it there. (It
  // moves only on its own thread, so once this runs where the table says,
  // it stays until `work` is done.)
  asio::dispatch(runs_on->io, [this, id, runs_on, work]() mutable {
    std::shared_ptr<pump::pair_pump> pump;
    {
      std::lock_guard lock(pumps_mutex_);
      auto it = pumps_.find(id);
      if (it == pumps_.end()) return;  // ended meanwhile
      if (it->second.runs_on != runs_on) {
        asio::post(runs_on->io, [this, id, work] { on_pump_thread(id, work); });
        return;
      }
      pump = it->second.pump;
    }
    work(*pump);
  });
  return true;
}

// -- orders ------------------------------------------------------------------

void relay_network::order(send_line o) {
  auto& t = thread_of(o.id);
  asio::post(t.io, [&t, o = std::move(o)]() mutable {
    if (auto it = t.controls.find(o.id); it != t.controls.end()) it->second->send(std::move(o.line));
  });
}

void relay_network::order(send_and_close o) {
  auto& t = thread_of(o.id);
  asio::post(t.io, [this, &t, o = std::move(o)]() mutable {
    if (auto it = t.controls.find(o.id); it != t.controls.end()) {
      it->second->send_and_close(std::move(o.bytes));
      return;
    }
    if (auto it = t.plains.find(o.id); it != t.plains.end()) {
      auto conn = it->second;
      t.plains.erase(it);
      lingering_close(std::move(conn), std::move(o.bytes));
    }
  });
}

void relay_network::order(close_connection o) {
  auto& t = thread_of(o.id);
  asio::post(t.io, [this, &t, o] {
    if (auto it = t.controls.find(o.id); it != t.controls.end()) {
      it->second->close();
      return;
    }
    if (on_pump_thread(o.id, [](pump::pair_pump& pump) { pump.close(); })) return;
    close_plain(t, o.id);
  });
}

void relay_network::order(line_credit o) {
  auto& t = thread_of(o.id);
  asio::post(t.io, [&t, o] {
    if (auto it = t.controls.find(o.id); it != t.controls.end()) it->second->add_credit(o.lines);
  });
}

void relay_network::order(route_connection o) {
  auto& t = thread_of(o.id);
  asio::post(t.io, [this, &t, o = std::move(o)]() mutable {
    if (auto it = t.controls.find(o.id); it != t.controls.end()) {
      it->second->route(std::move(o.owner));
      return;
    }
    if (auto it = t.plains.find(o.id); it != t.plains.end()) {
      auto conn = it->second;
      const bool was_claimed = static_cast<bool>(conn->owner);
      conn->owner = std::move(o.owner);
      if (!was_claimed) watch_for_departure(t, conn);
      return;
    }
    // Already gone: its owner must hear it, or it would wait forever.
    caf::anon_send(o.owner, connection_closed{o.id, close_reason::peer_closed});
  });
}

void relay_network::order(route_pair o) {
  if (o.pair >= pair_owner_.size()) return;
  auto& t = thread_of_pair(o.pair);
  asio::post(t.io, [this, &t, o = std::move(o)]() mutable {
    if (t.stopped) return;
    pair_owner_[o.pair] = std::move(o.owner);
    pair_framing_[o.pair] = o.framing;
    // Connections announced to the previous owner and never claimed by it
    // have nobody left to look after them.
    std::vector<conn_id> orphans;
    for (auto& [id, conn] : t.plains)
      if (conn->pair == o.pair && !conn->owner && !conn->closing) orphans.push_back(id);
    for (auto id : orphans) close_plain(t, id);
  });
}

void relay_network::order(join_pair o) {
  // Both ends of a pair were accepted on its pair's thread (see the header).
  auto& t = thread_of(o.client);
  asio::post(t.io, [this, &t, o = std::move(o)]() mutable {
    auto client = t.plains.find(o.client);
    auto reverse = t.plains.find(o.reverse);
    // A side whose peer already left (its EOF or reset is in the kernel, not
    // yet seen by a departure watcher) would make the pair die at once.
    const bool client_there = client != t.plains.end() && still_connected(*client->second);
    const bool reverse_there = reverse != t.plains.end() && still_connected(*reverse->second);
    if (!client_there || !reverse_there) {
      if (!client_there) close_plain(t, o.client);
      if (!reverse_there) close_plain(t, o.reverse);
      caf::anon_send(o.owner, join_failed{o.client, o.reverse, !client_there, !reverse_there});
      return;
    }
    auto client_conn = client->second;
    auto reverse_conn = reverse->second;
    t.plains.erase(o.client);
    t.plains.erase(o.reverse);
    boost::system::error_code ignored;
    for (auto* c : {client_conn.get(), reverse_conn.get()}) {
      c->socket.cancel(ignored);  // stop watching for departure
      if (c->recheck) c->recheck->cancel();
    }
    if (o.reverse_preamble.empty()) {
      start_pump(t, std::move(o), std::move(client_conn), std::move(reverse_conn));
      return;
    }
    // The preamble (a PROXY header) is tiny and goes to a fresh socket: it
    // fits the send buffer, so the pump starts right after it.
    auto preamble = std::make_shared<std::string>(std::move(o.reverse_preamble));
    asio::async_write(reverse_conn->socket, asio::buffer(*preamble),
                      [this, &t, o = std::move(o), client_conn, reverse_conn, preamble](
                        const boost::system::error_code& ec, std::size_t) mutable {
                        if (ec || t.stopped) {
                          boost::system::error_code ignored2;
                          client_conn->socket.close(ignored2);
                          reverse_conn->socket.close(ignored2);
                          caf::anon_send(o.owner, pump_finished{o.client, o.reverse, false, 0, 0,
                                                                pair_end::reset});
                          return;
                        }
                        start_pump(t, std::move(o), std::move(client_conn), std::move(reverse_conn));
                      });
  });
}

void relay_network::order(stop_accepting) {
  // Closing a listener refuses what the kernel still holds in its backlog
  // (a reset) and every later connection attempt: nobody is left waiting.
  on_every_thread([this](io_thread& t) {
    if (t.stopped) return;
    boost::system::error_code ignored;
    if (t.index == 0) control_acceptor_->close(ignored);
    for (auto& listener : pool_listeners_)
      if (listener->kind == port_kind::public_port && &thread_of_pair(listener->pair) == &t)
        listener->acceptor.close(ignored);
  });
  // Said once, after thread 0 closed the control port (the others close
  // theirs at the same time).
  asio::post(threads_[0]->io, [this] {
    if (threads_[0]->stopped) return;
    std::size_t joined = 0;
    {
      std::lock_guard lock(pumps_mutex_);
      joined = pumps_.size() / 2;
    }
    spdlog::info("stopped accepting: the control port and {} public port(s) are closed; {} "
                 "joined pair(s) are open",
                 config_.layout.pair_count(), joined);
  });
}

void relay_network::start_pump(io_thread& t, join_pair o,
                               std::shared_ptr<plain_connection> client_conn,
                               std::shared_ptr<plain_connection> reverse_conn) {
  // A pair starts on the thread that accepted it (no hand-off for the many
  // that end soon); once busy it may move to a thread with fewer busy pairs.
  auto became_busy = [this, id = o.client] {
    io_thread* runs_on = nullptr;
    {
      std::lock_guard lock(pumps_mutex_);
      auto it = pumps_.find(id);
      if (it == pumps_.end()) return;
      it->second.busy = true;
      runs_on = it->second.runs_on;
    }
    runs_on->busy.fetch_add(1, std::memory_order_relaxed);
    // Not from inside the pump's loop (this is its meter): on the next round.
    asio::post(runs_on->io, [this, runs_on, id] { spread_busy_pair(*runs_on, id); });
  };
  // a = the client, b = the reverse connection.
  auto pump = std::make_shared<pump::pair_pump>(
    t.io.get_executor(), std::move(client_conn->socket), std::move(reverse_conn->socket),
    config_.path, stages_,
    [this, o](const pump::pair_pump::totals& t) {
      {
        std::lock_guard lock(pumps_mutex_);
        if (auto it = pumps_.find(o.client); it != pumps_.end() && it->second.busy)
          it->second.runs_on->busy.fetch_sub(1, std::memory_order_relaxed);
        pumps_.erase(o.client);
        pumps_.erase(o.reverse);
      }
      spdlog::debug("pair {}/{} finished{}: {} bytes client→server, {} bytes server→client",
                    o.client.value, o.reverse.value, t.reset ? " by reset" : "", t.a_to_b,
                    t.b_to_a);
      caf::anon_send(o.owner, pump_finished{o.client, o.reverse, true, t.a_to_b, t.b_to_a,
                                            to_pair_end(t.end)});
    },
    config_.pair_limits,
    // The meter also holds the pair's two places under --max-connections,
    // given back when the pair ends.
    std::make_unique<pair_meter>(counters_, client_conn->pair,
                                 threads_.size() > 1 ? std::function<void()>(became_busy)
                                                     : std::function<void()>(),
                                 std::move(client_conn->slot), std::move(reverse_conn->slot)));
  {
    std::lock_guard lock(pumps_mutex_);
    pumps_.emplace(o.client, running_pump{pump, &t, o.reverse});
    pumps_.emplace(o.reverse, running_pump{pump, &t, o.client});
  }
  const auto latency = std::chrono::steady_clock::now() - client_conn->accepted;
  caf::anon_send(o.owner, pair_joined{o.client, o.reverse,
                                      static_cast<std::uint64_t>(
                                        std::chrono::duration_cast<std::chrono::microseconds>(latency)
                                          .count())});
  pump->start(true);  // both accepted by accept_ready: non-blocking, TCP_NODELAY
}

void relay_network::spread_busy_pair(io_thread& t, conn_id client) {
  if (t.stopped) return;
  // To the thread with the fewest busy pairs, if that makes the threads more
  // even (this one has at least two more), not merely swaps them.
  const auto here = t.busy.load(std::memory_order_relaxed);
  io_thread* target = &t;
  auto fewest = here;
  for (auto& other : threads_) {
    const auto n = other->busy.load(std::memory_order_relaxed);
    if (n < fewest) {
      fewest = n;
      target = other.get();
    }
  }
  if (target == &t || fewest + 2 > here) return;
  std::shared_ptr<pump::pair_pump> pump;
  {
    std::lock_guard lock(pumps_mutex_);
    auto it = pumps_.find(client);
    if (it == pumps_.end() || it->second.runs_on != &t) return;  // ended, or moved already
    pump = it->second.pump;
    it->second.runs_on = target;
    if (auto partner = pumps_.find(it->second.partner); partner != pumps_.end())
      partner->second.runs_on = target;
  }
  // (A pump that finished has left the table in its done handler, so this
  // one is still running; it stays idle until resume() on `target`.)
  pump->rehome(target->io);
  t.busy.fetch_sub(1, std::memory_order_relaxed);
  target->busy.fetch_add(1, std::memory_order_relaxed);
  net_counters::bump(counters_.pairs_moved);
  asio::post(target->io, [pump, target] {
    if (target->stopped) return pump->reset();  // close_everything ran before it could resume
    pump->resume();
  });
}

}  // namespace tlsrelay::net
