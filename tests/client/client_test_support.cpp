#include "tests/client/client_test_support.hpp"

#include <poll.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <fstream>
#include <future>
#include <iostream>

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "client/tls.hpp"

namespace tlsrelay::test {
namespace {

using boost_ec = boost::system::error_code;

std::string tail(const std::string& text, std::size_t max) {
  return text.size() <= max ? text : "..." + text.substr(text.size() - max);
}

const char* kind_name(client::listener_event::kind k) {
  using kind = client::listener_event::kind;
  switch (k) {
    case kind::listening: return "listening";
    case kind::session_lost: return "session_lost";
    case kind::reconnecting: return "reconnecting";
    case kind::attempt_failed: return "attempt_failed";
    case kind::stopped: return "stopped";
    case kind::connection_dropped: return "connection_dropped";
  }
  return "?";
}

// Echo over any stream: read, write back, until the end of input; then end
// our output the stream's way.
template <class Stream>
class echo_session : public std::enable_shared_from_this<echo_session<Stream>> {
 public:
  using shutdown_fn = std::function<void(Stream&, std::shared_ptr<void>)>;
  echo_session(Stream& stream, std::shared_ptr<void> owner, shutdown_fn shutdown,
               std::function<bool(const boost_ec&)> is_eof)
      : stream_(stream),
        owner_(std::move(owner)),
        shutdown_(std::move(shutdown)),
        is_eof_(std::move(is_eof)) {}
  void start() { read(); }

 private:
  void read() {
    stream_.async_read_some(asio::buffer(buffer_), [self = this->shared_from_this()](
                                                     const boost_ec& ec, std::size_t n) {
      if (ec) {
        if (self->is_eof_(ec)) self->shutdown_(self->stream_, self);
        return;
      }
      asio::async_write(self->stream_, asio::buffer(self->buffer_.data(), n),
                        [self](const boost_ec& ec, std::size_t) {
                          if (!ec) self->read();
                        });
    });
  }

  Stream& stream_;
  std::shared_ptr<void> owner_;  // keeps stream_ alive
  shutdown_fn shutdown_;
  std::function<bool(const boost_ec&)> is_eof_;
  std::array<char, 16 * 1024> buffer_{};
};

void start_plain_echo(std::shared_ptr<asio_tcp::socket> socket) {
  auto& s = *socket;
  std::make_shared<echo_session<asio_tcp::socket>>(
    s, socket,
    [](asio_tcp::socket& s, std::shared_ptr<void>) {
      boost_ec ignored;
      s.shutdown(asio_tcp::socket::shutdown_send, ignored);
    },
    [](const boost_ec& ec) { return ec == asio::error::eof; })
    ->start();
}

}  // namespace

// -- io_thread ---------------------------------------------------------------------------

io_thread::io_thread() : work_(asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {}

io_thread::~io_thread() {
  work_.reset();
  io_.stop();
  thread_.join();
}

// -- echo_service ------------------------------------------------------------------------

struct echo_service::state {
  explicit state(asio::io_context& io) : acceptor(io) {}
  asio_tcp::acceptor acceptor;
  std::atomic<std::size_t> accepted{0};
};

namespace {
void accept_echo(const std::shared_ptr<void>& keep, asio_tcp::acceptor& acceptor,
                 std::atomic<std::size_t>& accepted) {
  acceptor.async_accept([keep, &acceptor, &accepted](const boost_ec& ec, asio_tcp::socket s) {
    if (ec) return;
    ++accepted;
    start_plain_echo(std::make_shared<asio_tcp::socket>(std::move(s)));
    accept_echo(keep, acceptor, accepted);
  });
}
}  // namespace

echo_service::echo_service(asio::io_context& io, const std::string& address)
    : state_(std::make_shared<state>(io)) {
  const asio_tcp::endpoint ep(asio::ip::make_address(address), 0);
  state_->acceptor.open(ep.protocol());
  state_->acceptor.bind(ep);
  state_->acceptor.listen();
  port_ = state_->acceptor.local_endpoint().port();
  asio::post(io, [s = state_] { accept_echo(s, s->acceptor, s->accepted); });
}

std::size_t echo_service::accepted() const { return state_->accepted.load(); }

echo_service::~echo_service() {
  asio::post(state_->acceptor.get_executor(), [s = state_] {
    boost_ec ignored;
    s->acceptor.close(ignored);
  });
}

// -- relayed_echo ------------------------------------------------------------------------

struct relayed_echo::state {
  mutable std::mutex mutex;
  mutable std::condition_variable changed;
  std::vector<accepted_info> accepted;
};

namespace {
void accept_relayed(client::relay_listener& listener, std::shared_ptr<relayed_echo::state> st);
}

relayed_echo::relayed_echo(client::relay_listener& listener)
    : state_(std::make_shared<state>()) {
  accept_relayed(listener, state_);
}

namespace {
void accept_relayed(client::relay_listener& listener, std::shared_ptr<relayed_echo::state> st) {
  listener.async_accept([&listener, st](std::error_code ec, client::relayed_connection conn) {
    if (ec) return;
    {
      std::lock_guard lock(st->mutex);
      st->accepted.push_back({conn.client(), conn.id(), conn.proxy_header(), conn.is_tls(),
                             conn.warm()});
    }
    st->changed.notify_all();
    if (conn.is_tls()) {
      auto context = conn.tls_context();
      std::shared_ptr<client::tls_stream> stream = conn.release_tls();
      auto& s = *stream;
      // The context outlives the stream: both in `owner`.
      auto owner = std::make_shared<std::pair<std::shared_ptr<asio::ssl::context>,
                                              std::shared_ptr<client::tls_stream>>>(context,
                                                                                    stream);
      std::make_shared<echo_session<client::tls_stream>>(
        s, owner,
        [](client::tls_stream& s, std::shared_ptr<void> keep) {
          client::async_send_close_notify(s, [keep](const boost_ec&) {});
        },
        [](const boost_ec& ec) { return client::is_tls_eof(ec); })
        ->start();
    } else {
      start_plain_echo(std::make_shared<asio_tcp::socket>(conn.release_socket()));
    }
    accept_relayed(listener, st);
  });
}
}  // namespace

std::size_t relayed_echo::served() const {
  std::lock_guard lock(state_->mutex);
  return state_->accepted.size();
}

std::vector<accepted_info> relayed_echo::accepted() const {
  std::lock_guard lock(state_->mutex);
  return state_->accepted;
}

bool relayed_echo::wait_served(std::size_t n, millis timeout) const {
  std::unique_lock lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [&] { return state_->accepted.size() >= n; });
}

// -- test_client -------------------------------------------------------------------------

struct test_client::impl {
  asio::io_context io;
  asio_tcp::socket socket{io};
  std::shared_ptr<asio::ssl::context> ctx;
  std::unique_ptr<client::tls_stream> tls;
  std::string pending;  // received, not yet handed out
  std::string name;
  std::array<char, 64 * 1024> chunk{};

  asio_tcp::socket& lowest() { return tls ? tls->next_layer() : socket; }

  // Runs the io_context until `finished()`; on the deadline, closes the
  // socket, lets the handlers (which refer to the caller's locals) finish,
  // and throws.
  void run_until(millis timeout, const std::function<bool()>& finished, const std::string& what) {
    io.restart();
    const auto deadline = steady::now() + timeout;
    while (!finished()) {
      if (io.run_one_until(deadline) > 0) continue;
      if (finished()) break;
      boost_ec ignored;
      lowest().close(ignored);
      io.restart();
      io.run_for(std::chrono::seconds(2));
      if (steady::now() >= deadline)
        throw io_error(name + ": " + what + ": nothing within " + std::to_string(timeout.count()) +
                       " ms; received so far " + printable(pending));
      throw io_error(name + ": " + what + ": no operation left to wait for");
    }
  }

  template <class Handler>
  void read_some(Handler&& h) {
    if (tls)
      tls->async_read_some(asio::buffer(chunk), std::forward<Handler>(h));
    else
      socket.async_read_some(asio::buffer(chunk), std::forward<Handler>(h));
  }

  bool is_eof(const boost_ec& ec) const {
    return tls ? client::is_tls_eof(ec) : ec == asio::error::eof;
  }

  // Reads until `want` bytes are pending, EOF, or an error.
  struct read_state {
    bool done = false;
    bool eof = false;
    boost_ec error;
  };
  void read_loop(read_state& st, std::size_t want) {
    if (pending.size() >= want) {
      st.done = true;
      return;
    }
    read_some([this, &st, want](const boost_ec& ec, std::size_t n) {
      pending.append(chunk.data(), n);
      if (ec) {
        if (is_eof(ec))
          st.eof = true;
        else
          st.error = ec;
        st.done = true;
        return;
      }
      read_loop(st, want);
    });
  }
};

test_client::test_client(std::unique_ptr<impl> p) : p_(std::move(p)) {}
test_client::test_client(test_client&&) noexcept = default;
test_client& test_client::operator=(test_client&&) noexcept = default;
test_client::~test_client() = default;

test_client test_client::connect(const std::string& host, std::uint16_t port, millis timeout) {
  auto p = std::make_unique<impl>();
  p->name = format_host_port(host, port);
  const asio_tcp::endpoint ep(asio::ip::make_address(host), port);
  bool done = false;
  boost_ec result;
  p->socket.async_connect(ep, [&](const boost_ec& ec) {
    done = true;
    result = ec;
  });
  p->run_until(timeout, [&] { return done; }, "connecting");
  if (result) throw io_error("connecting to " + p->name + ": " + result.message());
  boost_ec ignored;
  p->socket.set_option(asio_tcp::no_delay(true), ignored);
  return test_client(std::move(p));
}

std::string test_client::try_start_tls(const std::filesystem::path& ca,
                                       const std::string& server_name, millis timeout) {
  client::relay_tls_options options;
  options.ca_file = ca;
  std::string err;
  p_->ctx = client::make_client_context(options, "", err);
  if (!p_->ctx) throw io_error("TLS context: " + err);
  p_->tls = std::make_unique<client::tls_stream>(std::move(p_->socket), *p_->ctx);
  if (auto e = client::set_peer_name(p_->tls->native_handle(), server_name, false); !e.empty())
    throw io_error(e);
  bool done = false;
  boost_ec result;
  p_->tls->async_handshake(asio::ssl::stream_base::client, [&](const boost_ec& ec) {
    done = true;
    result = ec;
  });
  p_->run_until(timeout, [&] { return done; }, "TLS handshake");
  if (result) return client::describe_tls_error(result, p_->tls->native_handle());
  return {};
}

void test_client::start_tls(const std::filesystem::path& ca, const std::string& server_name,
                            millis timeout) {
  if (auto err = try_start_tls(ca, server_name, timeout); !err.empty())
    throw io_error(p_->name + ": TLS handshake failed: " + err);
}

void test_client::send_all(std::string_view data, millis timeout) {
  bool done = false;
  boost_ec result;
  auto h = [&](const boost_ec& ec, std::size_t) {
    done = true;
    result = ec;
  };
  if (p_->tls)
    asio::async_write(*p_->tls, asio::buffer(data.data(), data.size()), h);
  else
    asio::async_write(p_->socket, asio::buffer(data.data(), data.size()), h);
  p_->run_until(timeout, [&] { return done; }, "sending " + std::to_string(data.size()) + " bytes");
  if (result) throw io_error(p_->name + ": sending: " + result.message());
}

std::string test_client::recv_exact(std::size_t n, millis timeout) {
  impl::read_state st;
  p_->read_loop(st, n);
  p_->run_until(timeout, [&] { return st.done; },
                "waiting for " + std::to_string(n) + " bytes");
  if (p_->pending.size() < n)
    throw io_error(p_->name + ": waiting for " + std::to_string(n) + " bytes, but " +
                   (st.eof ? std::string("EOF") : st.error.message()) + " after " +
                   std::to_string(p_->pending.size()) + ": " + printable(p_->pending));
  std::string out = p_->pending.substr(0, n);
  p_->pending.erase(0, n);
  return out;
}

std::string test_client::exchange(std::string_view data, millis timeout) {
  bool written = false;
  boost_ec write_error;
  auto h = [&](const boost_ec& ec, std::size_t) {
    written = true;
    write_error = ec;
  };
  if (p_->tls)
    asio::async_write(*p_->tls, asio::buffer(data.data(), data.size()), h);
  else
    asio::async_write(p_->socket, asio::buffer(data.data(), data.size()), h);
  impl::read_state st;
  p_->read_loop(st, data.size());
  p_->run_until(timeout, [&] { return written && st.done; },
                "exchanging " + std::to_string(data.size()) + " bytes");
  if (write_error) throw io_error(p_->name + ": sending: " + write_error.message());
  if (p_->pending.size() < data.size())
    throw io_error(p_->name + ": echo of " + std::to_string(data.size()) + " bytes ended by " +
                   (st.eof ? std::string("EOF") : st.error.message()) + " after " +
                   std::to_string(p_->pending.size()));
  std::string out = p_->pending.substr(0, data.size());
  p_->pending.erase(0, data.size());
  return out;
}

std::string test_client::recv_until_eof(millis timeout) {
  impl::read_state st;
  p_->read_loop(st, std::string::npos);
  p_->run_until(timeout, [&] { return st.done; }, "waiting for EOF");
  if (!st.eof)
    throw io_error(p_->name + ": waiting for EOF, but " + st.error.message() + " after " +
                   std::to_string(p_->pending.size()) + " bytes");
  std::string out;
  out.swap(p_->pending);
  return out;
}

void test_client::shutdown_write(millis timeout) {
  if (!p_->tls) {
    p_->socket.shutdown(asio_tcp::socket::shutdown_send);
    return;
  }
  bool done = false;
  boost_ec result;
  client::async_send_close_notify(*p_->tls, [&](const boost_ec& ec) {
    done = true;
    result = ec;
  });
  p_->run_until(timeout, [&] { return done; }, "sending close_notify");
  if (result) throw io_error(p_->name + ": close_notify: " + result.message());
}

bool test_client::closed_within(millis timeout) {
  impl::read_state st;
  const auto before = p_->pending.size();
  p_->read_loop(st, before + 1);
  try {
    p_->run_until(timeout, [&] { return st.done; }, "waiting for the close");
  } catch (const io_error&) {
    return false;
  }
  return p_->pending.size() == before && (st.eof || st.error);
}

std::uint16_t test_client::local_port() const { return p_->lowest().local_endpoint().port(); }

void test_client::reset() {
  boost_ec ignored;
  p_->lowest().set_option(asio::socket_base::linger(true, 0), ignored);
  p_->lowest().close(ignored);
}

void test_client::close() {
  boost_ec ignored;
  p_->lowest().close(ignored);
}

// -- relay_runner ------------------------------------------------------------------------

relay_runner::relay_runner(config c) : config_(std::move(c)) {
  std::string failures;
  for (int attempt = 0; attempt < 8; ++attempt) {
    try {
      start_on(pick_free_port_range(config_.port_count));
      return;
    } catch (const io_error& e) {
      // Someone took a port of the range (the relay exits 2 naming it): another range.
      failures += std::string("\n  ") + e.what();
      if (!process_ || process_->exit_code() != 2) throw;
    }
  }
  throw io_error("tlsrelay did not start in 8 attempts:" + failures);
}

relay_runner::~relay_runner() {
  if (process_ && (std::uncaught_exceptions() > 0 || current_test_failing()))
    std::cerr << "---- tlsrelay (control port " << port_ << ") stderr ----\n"
              << tail(earlier_stderr_ + process_->stderr_text(), 8192) << "\n---- end ----"
              << std::endl;
}

void relay_runner::start_on(std::uint16_t port) {
  port_ = port;
  std::vector<std::string> args = {"serve",        "--listen",
                                   config_.listen, "--port",
                                   std::to_string(port), "--port-count",
                                   std::to_string(config_.port_count), "--keys",
                                   config_.keys.string()};
  if (config_.myhost) {
    args.push_back("--myhost");
    args.push_back(*config_.myhost);
  }
  args.push_back("--drain-timeout");
  args.push_back(config_.drain_timeout);
  args.insert(args.end(), config_.extra.begin(), config_.extra.end());
  process_ = std::make_unique<child_process>(tlsrelay_binary(), args);
  if (process_->wait_stdout_line("tlsrelay: listening", 10000ms)) return;
  const auto code = process_->exit_code();
  throw io_error(process_->command_line() + " did not start (" +
                 (code ? "exit code " + std::to_string(*code) : std::string("no listening line")) +
                 "); stderr: " + printable(tail(process_->stderr_text(), 2000), 2000));
}

std::string relay_runner::stderr_text() const {
  return earlier_stderr_ + (process_ ? process_->stderr_text() : std::string());
}

std::string relay_runner::stop() {
  if (!process_) return "tlsrelay was not running";
  std::string problems;
  if (const auto ended = process_->exit_code()) {
    problems = "tlsrelay had already ended with code " + std::to_string(*ended);
  } else {
    process_->signal(SIGTERM);
    const auto code = process_->wait_exit(3000ms);
    if (!code) {
      process_->kill();
      problems = "tlsrelay did not exit within 3 s of SIGTERM";
    } else if (*code != 0) {
      problems = "tlsrelay exited with code " + std::to_string(*code) + " after SIGTERM";
    }
  }
  const std::string err = process_->stderr_text();
  if (auto report = find_sanitizer_output(err); !report.empty())
    problems += (problems.empty() ? "" : "\n") + std::string("sanitizer output:\n") + report;
  earlier_stderr_ += err;
  process_.reset();
  return problems;
}

void relay_runner::restart() {
  if (auto problems = stop(); !problems.empty()) throw io_error("restarting the relay: " + problems);
  start_on(port_);
}

// -- event_log ---------------------------------------------------------------------------

client::relay_listener::event_handler event_log::handler() {
  return [st = state_](const client::listener_event& ev) {
    {
      std::lock_guard lock(st->mutex);
      st->events.push_back(ev);
    }
    st->changed.notify_all();
  };
}

std::vector<client::listener_event> event_log::events() const {
  std::lock_guard lock(state_->mutex);
  return state_->events;
}

std::size_t event_log::count(client::listener_event::kind what) const {
  std::lock_guard lock(state_->mutex);
  std::size_t n = 0;
  for (const auto& ev : state_->events) n += ev.what == what;
  return n;
}

bool event_log::wait_count(client::listener_event::kind what, std::size_t n,
                           millis timeout) const {
  std::unique_lock lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [&] {
    std::size_t seen = 0;
    for (const auto& ev : state_->events) seen += ev.what == what;
    return seen >= n;
  });
}

std::string event_log::describe() const {
  std::lock_guard lock(state_->mutex);
  std::string out;
  for (const auto& ev : state_->events) {
    if (!out.empty()) out += ", ";
    out += kind_name(ev.what);
    if (ev.what == client::listener_event::kind::listening)
      out += " " + format_host_port(ev.session.public_endpoint);
    if (ev.error) out += " (" + ev.error.message() + ": " + ev.detail + ")";
    if (ev.what == client::listener_event::kind::reconnecting)
      out += " in " + std::to_string(ev.delay.count()) + " ms";
  }
  return out.empty() ? "(no events)" : out;
}

// -- capture_proxy -----------------------------------------------------------------------

struct capture_proxy::state : std::enable_shared_from_this<capture_proxy::state> {
  state(asio::io_context& io, std::uint16_t target) : io(io), acceptor(io), target(target) {}
  asio::io_context& io;
  asio_tcp::acceptor acceptor;
  std::uint16_t target;
  mutable std::mutex mutex;
  std::string captured;
  std::size_t accepted = 0;

  struct link {
    link(asio::io_context& io, asio_tcp::socket client) : client(std::move(client)), server(io) {}
    asio_tcp::socket client, server;
    std::array<std::array<char, 16 * 1024>, 2> buffers{};
  };

  void accept() {
    acceptor.async_accept([self = shared_from_this()](const boost_ec& ec, asio_tcp::socket s) {
      if (ec) return;
      auto l = std::make_shared<link>(self->io, std::move(s));
      self->links.push_back(l);
      {
        std::lock_guard lock(self->mutex);
        ++self->accepted;
      }
      l->server.async_connect(
        asio_tcp::endpoint(asio::ip::make_address("127.0.0.1"), self->target),
        [self, l](const boost_ec& ec) {
          if (ec) return;
          self->copy(l, l->client, l->server, 0);
          self->copy(l, l->server, l->client, 1);
        });
      self->accept();
    });
  }

  std::vector<std::weak_ptr<link>> links;  // io thread only

  void copy(const std::shared_ptr<link>& l, asio_tcp::socket& from, asio_tcp::socket& to, int dir) {
    from.async_read_some(asio::buffer(l->buffers[dir]), [self = shared_from_this(), l, &from, &to,
                                                         dir](const boost_ec& ec, std::size_t n) {
      if (ec) {
        boost_ec ignored;
        if (ec == asio::error::eof)
          to.shutdown(asio_tcp::socket::shutdown_send, ignored);
        else
          to.close(ignored);
        return;
      }
      {
        std::lock_guard lock(self->mutex);
        self->captured.append(l->buffers[dir].data(), n);
      }
      asio::async_write(to, asio::buffer(l->buffers[dir].data(), n),
                        [self, l, &from, &to, dir](const boost_ec& ec, std::size_t) {
                          if (!ec) self->copy(l, from, to, dir);
                        });
    });
  }
};

capture_proxy::capture_proxy(asio::io_context& io, std::uint16_t target)
    : state_(std::make_shared<state>(io, target)) {
  const asio_tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  state_->acceptor.open(ep.protocol());
  state_->acceptor.bind(ep);
  state_->acceptor.listen();
  port_ = state_->acceptor.local_endpoint().port();
  asio::post(io, [s = state_] { s->accept(); });
}

capture_proxy::~capture_proxy() {
  asio::post(state_->io, [s = state_] {
    boost_ec ignored;
    s->acceptor.close(ignored);
  });
}

void capture_proxy::cut() {
  std::promise<void> done;
  asio::post(state_->io, [s = state_, &done] {
    for (auto& weak : s->links) {
      if (auto l = weak.lock()) {
        boost_ec ignored;
        l->client.close(ignored);
        l->server.close(ignored);
      }
    }
    s->links.clear();
    done.set_value();
  });
  if (done.get_future().wait_for(default_timeout) != std::future_status::ready)
    throw io_error("capture_proxy::cut() did not run");
}

std::size_t capture_proxy::connections() const {
  std::lock_guard lock(state_->mutex);
  return state_->accepted;
}

std::string capture_proxy::captured() const {
  std::lock_guard lock(state_->mutex);
  return state_->captured;
}

// -- refusing_port ------------------------------------------------------------------

unique_fd bound_loopback_socket(int flags, std::uint16_t& port) {
  unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0));
  if (!fd) throw io_error("socket() failed");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t size = sizeof address;
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &size) != 0)
    throw io_error("cannot bind a port on 127.0.0.1");
  port = ntohs(address.sin_port);
  return fd;
}

refusing_port::refusing_port() { fd_ = bound_loopback_socket(0, port_); }

// -- helpers -----------------------------------------------------------------------------

tcp_conn as_tcp_conn(client::relayed_connection conn) {
  const int fd = ::dup(conn.lowest_layer().native_handle());
  if (fd < 0) throw io_error("dup() of a relayed connection failed");
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  conn.close();
  return tcp_conn(unique_fd(fd), "relayed connection (server side)");
}

client::listener_options v1_options(const std::filesystem::path& keys, std::uint16_t port) {
  client::listener_options o;
  o.relay = {"127.0.0.1", port};
  o.protocol = client::protocol_version::v1;
  o.tls.ca_file = keys / "ca.crt.pem";
  o.tls.cert_file = keys / "client.crt.pem";
  o.tls.key_file = keys / "client.key.pem";
  o.connect_timeout = default_timeout;
  o.handshake_timeout = default_timeout;
  o.greeting_timeout = default_timeout;
  return o;
}

client::listener_options v2_options(const std::filesystem::path& keys, std::uint16_t port,
                                    const std::string& token) {
  client::listener_options o;
  o.relay = {"127.0.0.1", port};
  o.protocol = client::protocol_version::v2;
  o.tls.ca_file = keys / "ca.crt.pem";
  o.token = token;
  o.connect_timeout = default_timeout;
  o.handshake_timeout = default_timeout;
  o.greeting_timeout = default_timeout;
  return o;
}

std::filesystem::path write_file(const std::filesystem::path& dir, const std::string& name,
                                 const std::string& text) {
  const auto path = dir / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw io_error("cannot write " + path.string());
  return path;
}

socket_pair_source::socket_pair_source(asio::io_context& io) : io_(io), acceptor_(io) {
  const asio_tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  acceptor_.open(ep.protocol());
  acceptor_.bind(ep);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  acceptor_.non_blocking(true);
}

std::pair<tcp_conn, asio_tcp::socket> socket_pair_source::connect() {
  auto conn = tcp_conn::connect(acceptor_.local_endpoint().port());
  const auto deadline = steady::now() + default_timeout;
  asio_tcp::socket accepted(io_);
  for (;;) {
    boost::system::error_code ec;
    acceptor_.accept(accepted, ec);
    if (!ec) return {std::move(conn), std::move(accepted)};
    if (ec != asio::error::would_block) throw io_error("accepting: " + ec.message());
    if (wait_fd(acceptor_.native_handle(), POLLIN, deadline) == 0)
      throw io_error("accepting: nothing within the timeout");
  }
}

}  // namespace tlsrelay::test
