#include "client/relay_listener.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>
#include <utility>
#include <variant>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <openssl/x509_vfy.h>
#include <spdlog/spdlog.h>

#include "client/warm_pool_size.hpp"
#include "protocol/connection_id.hpp"
#include "protocol/defaults.hpp"
#include "protocol/line_splitter.hpp"
#include "protocol/overloaded.hpp"
#include "protocol/proxy_header.hpp"
#include "protocol/v1.hpp"
#include "protocol/v2.hpp"
#include "protocol/warm_ticket.hpp"
#include "protocol/wire.hpp"

namespace tlsrelay::client {
namespace detail {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using boost_ec = boost::system::error_code;

// Our own lines (pong, ping) waiting for a relay that does not read; past it
// the control connection is not working and is given up.
constexpr std::size_t max_queued_control_lines = 64;
// Redirects followed in a row from one seed; one more ends the chain (the
// next seed is tried).
constexpr int max_redirects = 3;
// A relay silent for this many heartbeat intervals is gone (as the relay
// judges us).
constexpr unsigned silent_intervals = defaults::heartbeat_misses;
// Bytes read from the control connection at a time.
constexpr std::size_t control_read_bytes = 4096;
// After a warm connection could not be opened (the reverse port refused or
// timed out): no new one before this, so an unreachable relay is not hammered.
constexpr auto warm_retry_delay = std::chrono::seconds(1);
// The relay accepts warm tickets up to this far out of order: no more may be
// in flight at once.
constexpr std::size_t warm_window = warm_ticket::replay_window::width;


std::string ms_text(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + " s";
  return std::to_string(d.count()) + " ms";
}

// One reverse connection from new_connection (or, warm, from being opened
// ahead of demand) until it is queued or given up.
struct reverse_op {
  explicit reverse_op(const asio::any_io_executor& ex) : socket(ex), resolver(ex), timer(ex) {}
  tcp::socket& lowest() { return tls ? tls->next_layer() : socket; }
  tcp::socket socket;
  tcp::resolver resolver;
  asio::steady_timer timer;
  std::unique_ptr<tls_stream> tls;
  std::optional<connection_id> id;
  std::optional<host_port> client;
  std::string id_hex;
  std::string accept_line;  // or the ready line of a warm connection
  std::string proxy_header;
  bool proxy_announced = false;  // the relay's welcome said proxy=2
  bool done = false;

  // Warm connections only, until the relay pairs a client with them.
  bool warm = false;
  std::uint64_t serial = 0;
  bool connected = false;
  bool ready_sent = false;
  steady::time_point ready_at;
  std::array<char, v2::max_paired_line_bytes> line_buf{};
  std::string line;  // the relay's `<ID> <CLIENT>` line so far
};

// One attempt's control connection and everything only it uses; handlers
// hold it alive (an ssl::stream must outlive its operations).
struct control_conn {
  control_conn(const asio::any_io_executor& ex, asio::ssl::context& ctx)
      : stream(ex, ctx), warm_retry(ex) {}
  tls_stream stream;
  std::array<char, control_read_bytes> buffer{};
  line_splitter splitter{defaults::max_control_line_bytes};
  std::deque<std::string> out;  // lines to write, front one in flight when `writing`
  bool writing = false;
  bool greeted = false;  // the whole greeting arrived: the session runs
  bool welcomed = false;
  std::string secret;
  std::optional<host_port> public_endpoint, reverse_endpoint;
  std::optional<tcp::resolver::results_type> reverse_resolved;  // on first use
  steady::time_point last_heard, next_ping;

  // Warm reverse connections of this session (v2); all closed with it.
  unsigned warm_offered = 0;  // the welcome's warm=
  bool proxy_announced = false;  // the welcome's proxy=2
  std::optional<warm_pool_size> warm;  // set once the session runs with warm connections
  warm_ticket::signer warm_signer;  // keyed with the welcome's session secret
  std::uint64_t next_serial = 1;
  std::set<std::shared_ptr<reverse_op>> warm_ops;  // being opened, or waiting for a client
  asio::steady_timer warm_retry;
  bool warm_retrying = false;
};

// Whether a failure says "not this relay" (another seed may do) rather than
// "not this set-up" (no relay will: wrong token, name, port, request).
bool relay_scoped(std::error_code code) {
  if (code.category() != client_category()) return false;
  switch (static_cast<client_errc>(code.value())) {
    case client_errc::relay_unreachable:
    case client_errc::tls_failed:
    case client_errc::pool_exhausted:
    case client_errc::heartbeat_lost:
    case client_errc::session_lost:
    case client_errc::relay_draining: return true;
    default: return false;
  }
}

std::string describe_client(const reverse_op& op) {
  std::string text = op.id_hex.empty() ? std::string("relayed connection")
                                       : "relayed connection " + op.id_hex;
  if (op.client) text += " (client " + format_host_port(*op.client) + ")";
  return text;
}

}  // namespace

class listener_impl : public std::enable_shared_from_this<listener_impl> {
 public:
  listener_impl(asio::io_context& io, listener_options options)
      : io_(io),
        strand_(asio::make_strand(io)),
        options_(std::move(options)),
        logger_(options_.logger ? options_.logger : spdlog::default_logger()),
        backoff_(options_.backoff),
        resolver_(io),
        deadline_(io),
        heartbeat_(io),
        reconnect_timer_(io),
        seeds_(seeds(options_)),
        target_(seeds_.front()) {
    if (auto err = validate(options_); !err.empty()) throw std::invalid_argument(err);
    std::string err;
    const std::string alpn =
      options_.protocol == protocol_version::v2 ? std::string(wire::alpn_v2) : std::string();
    relay_ctx_ = make_client_context(options_.tls, alpn, err);
    if (!relay_ctx_) throw std::invalid_argument(err);
    if (options_.end_to_end_tls) {
      e2e_ctx_ = make_server_context(*options_.end_to_end_tls, err);
      if (!e2e_ctx_) throw std::invalid_argument("end-to-end TLS: " + err);
    }
  }

  const listener_options& options() const { return options_; }

  // -- public entry points (any thread) ------------------------------------------

  void set_event_handler(relay_listener::event_handler handler) {
    asio::post(strand_, [self = shared_from_this(), h = std::move(handler)]() mutable {
      self->events_ = std::move(h);
    });
  }

  void async_listen(relay_listener::listen_handler handler) {
    asio::post(strand_, [self = shared_from_this(), h = std::move(handler)]() mutable {
      if (self->started_) {
        self->post_user([h = std::move(h)] {
          h(make_error_code(std::errc::operation_in_progress), session_info{});
        });
        return;
      }
      self->started_ = true;
      self->listen_handler_ = std::move(h);
      if (self->closed_) {
        self->complete_listen(client_errc::listener_closed, session_info{});
        return;
      }
      self->start_round();
    });
  }

  void async_accept(relay_listener::accept_handler handler) {
    std::unique_lock lock(queue_mutex_);
    if (!queue_.empty()) {
      auto conn = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      post_accept(std::move(handler), std::move(conn));
      return;
    }
    if (stop_error_) {
      const auto ec = stop_error_;
      lock.unlock();
      post_user([h = std::move(handler), ec] { h(ec, relayed_connection{}); });
      return;
    }
    waiters_.push_back(std::move(handler));
  }

  std::optional<relayed_connection> accept(std::chrono::milliseconds timeout, std::error_code& ec) {
    std::unique_lock lock(queue_mutex_);
    queue_changed_.wait_for(lock, timeout, [&] { return !queue_.empty() || stop_error_; });
    if (!queue_.empty()) {
      auto conn = std::move(queue_.front());
      queue_.pop_front();
      ec.clear();
      return conn;
    }
    ec = stop_error_ ? stop_error_ : make_error_code(std::errc::timed_out);
    return std::nullopt;
  }

  std::optional<session_info> session() const {
    if (closing_) return std::nullopt;
    std::lock_guard lock(state_mutex_);
    return session_;
  }
  std::error_code last_error() const {
    std::lock_guard lock(state_mutex_);
    return last_error_;
  }
  std::string last_error_detail() const {
    std::lock_guard lock(state_mutex_);
    return last_detail_;
  }
  std::size_t queued() const {
    std::lock_guard lock(queue_mutex_);
    return queue_.size();
  }
  warm_pool_stats warm_pool() const {
    std::lock_guard lock(state_mutex_);
    return warm_published_;
  }

  void close() {
    closing_ = true;
    // The queue at once, so that a blocked accept() returns now.
    stop_queue(client_errc::listener_closed, true);
    asio::post(strand_, [self = shared_from_this()] { self->do_close(); });
  }

 private:
  // -- seeds and redirect chains -----------------------------------------------------

  // From the first seed again (every connect and reconnect).
  void start_round() {
    if (closed_) return;
    seed_ = 0;
    round_failures_.clear();
    start_chain();
  }

  // The current seed, then wherever it redirects us.
  void start_chain() {
    if (closed_) return;
    target_ = seeds_[seed_];
    chain_.assign(1, target_);
    redirects_ = 0;
    if (seeds_.size() > 1)
      logger_->info("trying relay {} (seed {} of {})", format_host_port(target_), seed_ + 1,
                    seeds_.size());
    start_attempt();
  }

  // -- control connection: connect, TLS, greeting ---------------------------------

  void start_attempt() {
    if (closed_) return;
    auto c = std::make_shared<control_conn>(io_.get_executor(), *relay_ctx_);
    control_ = c;
    const std::string& name = options_.tls.server_name.empty() ? target_.host
                                                               : options_.tls.server_name;
    if (auto err = set_peer_name(c->stream.native_handle(), name, options_.tls.insecure);
        !err.empty()) {
      fail(c, client_errc::tls_failed, err);
      return;
    }
    const std::string where = format_host_port(target_);
    logger_->debug("connecting to relay {}", where);
    arm_deadline(c, options_.connect_timeout, client_errc::relay_unreachable,
                 "no connection to relay " + where + " within " +
                   ms_text(options_.connect_timeout));
    resolver_.async_resolve(
      target_.host, std::to_string(target_.port),
      asio::bind_executor(strand_, [self = shared_from_this(), c, where](
                                     const boost_ec& ec, tcp::resolver::results_type results) {
        if (c != self->control_) return;
        if (ec) {
          self->fail(c, client_errc::relay_unreachable,
                     "cannot resolve relay " + where + ": " + ec.message());
          return;
        }
        asio::async_connect(
          c->stream.next_layer(), results,
          asio::bind_executor(self->strand_,
                              [self, c, where](const boost_ec& ec, const tcp::endpoint&) {
                                self->on_connected(c, ec, where);
                              }));
      }));
  }

  void on_connected(const std::shared_ptr<control_conn>& c, const boost_ec& ec,
                    const std::string& where) {
    if (c != control_) return;
    if (ec) {
      fail(c, client_errc::relay_unreachable, "cannot connect to relay " + where + ": " + ec.message());
      return;
    }
    boost_ec ignored;
    c->stream.next_layer().set_option(tcp::no_delay(true), ignored);
    // v1 has no heartbeat: let the kernel notice a vanished relay at least.
    c->stream.next_layer().set_option(asio::socket_base::keep_alive(true), ignored);
    arm_deadline(c, options_.handshake_timeout, client_errc::tls_failed,
                 "no TLS handshake with relay " + where + " within " +
                   ms_text(options_.handshake_timeout));
    c->stream.async_handshake(
      asio::ssl::stream_base::client,
      asio::bind_executor(strand_, [self = shared_from_this(), c, where](const boost_ec& ec) {
        self->on_handshake(c, ec, where);
      }));
  }

  void on_handshake(const std::shared_ptr<control_conn>& c, const boost_ec& ec,
                    const std::string& where) {
    if (c != control_) return;
    SSL* ssl = c->stream.native_handle();
    if (ec) {
      if (is_certificate_rejection(ec)) {
        fail(c, client_errc::auth_failed, rejection_detail(ec, ssl));
        return;
      }
      std::string detail = "TLS handshake with relay " + where + " failed: " +
                           describe_tls_error(ec, ssl);
      const long verify = SSL_get_verify_result(ssl);
      if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH)
        detail += " (the certificate does not name \"" +
                  (options_.tls.server_name.empty() ? target_.host : options_.tls.server_name) +
                  "\"; see the server name option)";
      fail(c, client_errc::tls_failed, detail);
      return;
    }
    if (options_.protocol == protocol_version::v2) {
      if (selected_alpn(ssl) != wire::alpn_v2) {
        fail(c, client_errc::protocol_error,
             "relay " + where + " does not speak protocol 2 (it did not select ALPN " +
               std::string(wire::alpn_v2) + "); use protocol 1");
        return;
      }
      v2::hello hello;
      hello.token = options_.token;
      hello.name = options_.name;
      hello.port = options_.port;
      send_line(c, v2::format_line(v2::server_message{hello}));
    }
    c->last_heard = steady::now();
    // A relay that does not answer in time is not one to wait for: next seed.
    arm_deadline(c, options_.greeting_timeout, client_errc::protocol_error,
                 "relay " + where + " did not give us a public port within " +
                   ms_text(options_.greeting_timeout),
                 true);
    read_control(c);
  }

  std::string rejection_detail(const boost_ec& ec, SSL* ssl) const {
    if (!options_.tls.cert_file)
      return "the relay requires a client certificate and we have none (" +
             describe_tls_error(ec, ssl) + ")";
    return "the relay refused our client certificate " + options_.tls.cert_file->string() + " (" +
           describe_tls_error(ec, ssl) + ")";
  }

  // -- control connection: reading and writing lines ---------------------------------

  void read_control(const std::shared_ptr<control_conn>& c) {
    c->stream.async_read_some(
      asio::buffer(c->buffer),
      asio::bind_executor(strand_, [self = shared_from_this(), c](const boost_ec& ec,
                                                                  std::size_t n) {
        self->on_read(c, ec, n);
      }));
  }

  void on_read(const std::shared_ptr<control_conn>& c, const boost_ec& ec, std::size_t n) {
    if (c != control_) return;
    if (ec) {
      on_read_error(c, ec);
      return;
    }
    c->last_heard = steady::now();
    c->splitter.append(std::string_view(c->buffer.data(), n));
    for (;;) {
      const auto r = c->splitter.next();
      if (r.state == line_splitter::status::need_more) break;
      if (r.state == line_splitter::status::too_long) {
        fail(c, client_errc::protocol_error,
             "the relay sent a control line over " +
               std::to_string(defaults::max_control_line_bytes) + " bytes");
        return;
      }
      const std::string line(r.line);
      if (options_.protocol == protocol_version::v2)
        handle_v2_line(c, line);
      else
        handle_v1_line(c, line);
      if (c != control_) return;  // the line ended this connection
    }
    read_control(c);
  }

  void on_read_error(const std::shared_ptr<control_conn>& c, const boost_ec& ec) {
    SSL* ssl = c->stream.native_handle();
    if (is_certificate_rejection(ec)) {
      // TLS 1.3: the relay checks our certificate after our handshake ended.
      fail(c, client_errc::auth_failed, rejection_detail(ec, ssl));
      return;
    }
    const std::string where = format_host_port(target_);
    const bool eof = is_tls_eof(ec) || ec == asio::error::connection_reset;
    if (!c->greeted && eof && options_.protocol == protocol_version::v1 && !options_.tls.cert_file &&
        c->splitter.buffered() == 0 && !c->public_endpoint && !c->reverse_endpoint) {
      // A v1 relay closes on a server without a certificate without a word.
      fail(c, client_errc::auth_failed,
           "relay " + where + " closed the control connection without a line: protocol 1 "
           "needs a client certificate (and its key)");
      return;
    }
    if (!c->greeted) {
      // Closed without a reason (a node going down, at its limits): next seed.
      fail(c, eof ? client_errc::protocol_error : client_errc::session_lost,
           eof ? "relay " + where + " closed the control connection before giving us a port"
               : "control connection to relay " + where + " failed: " +
                   (is_tls_error(ec) ? describe_tls_error(ec, ssl) : ec.message()),
           true);
      return;
    }
    fail(c, client_errc::session_lost,
         eof ? "relay " + where + " closed the control connection"
             : "control connection to relay " + where + " failed: " +
                 (is_tls_error(ec) ? describe_tls_error(ec, ssl) : ec.message()));
  }

  void send_line(const std::shared_ptr<control_conn>& c, std::string line) {
    if (c->out.size() >= max_queued_control_lines) {
      fail(c, client_errc::heartbeat_lost, "the relay does not read the control connection");
      return;
    }
    c->out.push_back(std::move(line));
    if (!c->writing) write_next(c);
  }

  void write_next(const std::shared_ptr<control_conn>& c) {
    c->writing = true;
    asio::async_write(c->stream, asio::buffer(c->out.front()),
                      asio::bind_executor(strand_, [self = shared_from_this(), c](
                                                     const boost_ec& ec, std::size_t) {
                        if (c != self->control_) return;
                        if (ec) {
                          self->fail(c, client_errc::session_lost,
                                     "cannot write to the relay: " + ec.message());
                          return;
                        }
                        c->out.pop_front();
                        c->writing = false;
                        if (!c->out.empty()) self->write_next(c);
                      }));
  }

  // -- the protocols ------------------------------------------------------------------

  void handle_v1_line(const std::shared_ptr<control_conn>& c, const std::string& line) {
    v1::relay_message msg;
    if (auto ec = v1::parse_line(line, msg)) {
      unexpected_line(c, line, ec);
      return;
    }
    std::visit(overloaded{
                 [&](const v1::public_listener& m) {
                   c->public_endpoint = m.endpoint;
                   maybe_greeted(c);
                 },
                 [&](const v1::reverse_listener& m) {
                   c->reverse_endpoint = m.endpoint;
                   maybe_greeted(c);
                 },
                 [&](const v1::new_connection&) {
                   if (!c->greeted) {
                     unexpected_line(c, line, {});
                     return;
                   }
                   open_reverse(c, std::nullopt, std::nullopt);
                 },
                 [&](const v1::no_available_listeners&) {
                   fail(c, client_errc::pool_exhausted,
                        "relay " + format_host_port(target_) +
                          " has no free port pair (no_available_listeners)");
                 },
               },
               msg);
  }

  void handle_v2_line(const std::shared_ptr<control_conn>& c, const std::string& line) {
    v2::relay_message msg;
    if (auto ec = v2::parse_relay_line(line, msg)) {
      unexpected_line(c, line, ec);
      return;
    }
    std::visit(
      overloaded{
        [&](const v2::welcome& m) {
          c->welcomed = true;
          c->secret = m.session_secret;
          c->warm_offered = m.warm_max;
          c->proxy_announced = m.proxy_header;
        },
        [&](const v1::public_listener& m) {
          c->public_endpoint = m.endpoint;
          maybe_greeted(c);
        },
        [&](const v1::reverse_listener& m) {
          c->reverse_endpoint = m.endpoint;
          maybe_greeted(c);
        },
        [&](const v2::new_connection& m) {
          if (!c->greeted) {
            unexpected_line(c, line, {});
            return;
          }
          open_reverse(c, m.id, m.client);
          if (c->warm && !c->warm->stopped()) {
            // The relay had no warm connection for this client: more demand
            // than the pool covers.
            c->warm->fell_back();
            logger_->debug("a client came through new_connection: warm pool target {}",
                           c->warm->target());
            fill_warm(c);
          }
        },
        [&](const v2::error& m) { relay_error(c, m); },
        [&](const v1::no_available_listeners&) {
          fail(c, client_errc::pool_exhausted,
               "relay " + format_host_port(target_) +
                 " has no free port pair (no_available_listeners)");
        },
        [&](const v2::redirect& m) { follow_redirect(c, m.relay); },
        [&](const v2::ping&) { send_line(c, v2::format_line(v2::server_message{v2::pong{}})); },
        [&](const v2::pong&) {},
      },
      msg);
  }

  void relay_error(const std::shared_ptr<control_conn>& c, const v2::error& m) {
    client_errc code = client_errc::protocol_error;
    switch (m.code) {
      case v2::error_code::auth_failed: code = client_errc::auth_failed; break;
      case v2::error_code::port_unavailable: code = client_errc::port_unavailable; break;
      case v2::error_code::name_unavailable: code = client_errc::name_unavailable; break;
      case v2::error_code::too_many_sessions: code = client_errc::too_many_sessions; break;
      case v2::error_code::bad_request:
      case v2::error_code::unsupported_version: code = client_errc::protocol_error; break;
      case v2::error_code::draining: code = client_errc::relay_draining; break;
    }
    std::string detail = "relay " + format_host_port(target_) + ": " +
                         std::string(v2::to_string(m.code));
    if (!m.text.empty()) detail += " (" + m.text + ")";
    fail(c, code, detail);
  }

  void unexpected_line(const std::shared_ptr<control_conn>& c, const std::string& line,
                       std::error_code ec) {
    const std::string why = ec ? " (" + ec.message() + ")" : std::string();
    if (!c->greeted) {
      fail(c, client_errc::protocol_error,
           "relay " + format_host_port(target_) + " sent an unexpected line \"" +
             line.substr(0, 80) + "\"" + why);
      return;
    }
    // Once the session runs, newer relays may say things we do not know.
    logger_->warn("ignoring a control line from the relay: \"{}\"{}", line.substr(0, 80), why);
  }

  void maybe_greeted(const std::shared_ptr<control_conn>& c) {
    if (c->greeted || !c->public_endpoint || !c->reverse_endpoint) return;
    c->greeted = true;
    deadline_.cancel();
    session_info s;
    s.protocol = options_.protocol;
    s.relay = target_;
    s.public_endpoint = *c->public_endpoint;
    s.reverse_endpoint = *c->reverse_endpoint;
    s.session_secret = c->secret;
    {
      std::lock_guard lock(state_mutex_);
      session_ = s;
    }
    backoff_.reset();
    redirects_ = 0;
    logger_->info("listening through relay {}: public address {}", format_host_port(target_),
                  format_host_port(s.public_endpoint));
    if (!first_done_) {
      first_done_ = true;
      complete_listen({}, s);
    }
    listener_event ev;
    ev.what = listener_event::kind::listening;
    ev.session = s;
    emit(ev);
    if (options_.protocol == protocol_version::v2) {
      c->last_heard = steady::now();
      c->next_ping = c->last_heard + options_.heartbeat_interval;
      schedule_heartbeat(c);
      start_warm(c);
    }
  }

  // Pings every interval; gives up after `silent_intervals` without a byte.
  void schedule_heartbeat(const std::shared_ptr<control_conn>& c) {
    const auto interval = options_.heartbeat_interval;
    const auto dead_at = c->last_heard + silent_intervals * interval;
    heartbeat_.expires_at(std::min(c->next_ping, dead_at));
    heartbeat_.async_wait(
      asio::bind_executor(strand_, [self = shared_from_this(), c](const boost_ec& ec) {
        if (ec || c != self->control_) return;
        const auto interval = self->options_.heartbeat_interval;
        const auto now = steady::now();
        if (now - c->last_heard >= silent_intervals * interval) {
          self->fail(c, client_errc::heartbeat_lost,
                     "relay " + format_host_port(self->target_) + " silent for " +
                       ms_text(std::chrono::duration_cast<std::chrono::milliseconds>(
                         silent_intervals * interval)));
          return;
        }
        if (now >= c->next_ping) {
          self->send_line(c, v2::format_line(v2::server_message{v2::ping{}}));
          if (c != self->control_) return;
          c->next_ping = now + interval;
        }
        self->schedule_heartbeat(c);
      }));
  }

  // A chain that comes back to a relay it has visited, or grows too long,
  // ends as an unusable seed would: the next seed, not the listener's end.
  void follow_redirect(const std::shared_ptr<control_conn>& c, const host_port& to) {
    if (std::find(chain_.begin(), chain_.end(), to) != chain_.end()) {
      fail(c, client_errc::protocol_error,
           "redirect loop: relay " + format_host_port(target_) + " redirects us to " +
             format_host_port(to) + ", already tried (" + describe_chain() + ")",
           true);
      return;
    }
    if (redirects_ + 1 > max_redirects) {
      fail(c, client_errc::protocol_error,
           "more than " + std::to_string(max_redirects) + " redirects in a row (" +
             describe_chain() + ", then " + format_host_port(to) + ")",
           true);
      return;
    }
    ++redirects_;
    logger_->info("relay {} redirects us to {}", format_host_port(target_), format_host_port(to));
    close_control();
    target_ = to;
    chain_.push_back(to);
    asio::post(strand_, [self = shared_from_this()] { self->start_attempt(); });
  }

  // "a -> b -> c": the relays of the current chain.
  std::string describe_chain() const {
    std::string text;
    for (const auto& relay : chain_) {
      if (!text.empty()) text += " -> ";
      text += format_host_port(relay);
    }
    return text;
  }

  void arm_deadline(const std::shared_ptr<control_conn>& c, std::chrono::milliseconds after,
                    client_errc code, std::string detail, bool not_this_relay = false) {
    deadline_.expires_after(after);
    deadline_.async_wait(asio::bind_executor(
      strand_, [self = shared_from_this(), c, code, detail = std::move(detail),
                not_this_relay](const boost_ec& ec) {
        if (ec || c != self->control_) return;
        self->fail(c, code, detail, not_this_relay);
      }));
  }

  void close_control() {
    deadline_.cancel();
    heartbeat_.cancel();
    resolver_.cancel();
    if (control_) {
      close_warm(control_);
      boost_ec ignored;
      control_->stream.next_layer().close(ignored);
      control_.reset();
      publish_warm(nullptr);
    }
  }

  // The current attempt or session ended with `code`: report it, then try
  // the next seed, reconnect, or stop. `not_this_relay`: the failure is the
  // relay's even if `code` alone does not say so (relay_scoped).
  void fail(const std::shared_ptr<control_conn>& c, std::error_code code, std::string detail,
            bool not_this_relay = false) {
    if (c != control_ || closed_) return;
    const bool was_listening = c->greeted;
    const bool relay_fault = not_this_relay || relay_scoped(code);
    close_control();
    {
      std::lock_guard lock(state_mutex_);
      last_error_ = code;
      last_detail_ = detail;
      session_.reset();
    }
    listener_event ev;
    ev.error = code;
    ev.detail = detail;
    if (!was_listening && relay_fault) {
      round_failures_.push_back(detail);
      if (seed_ + 1 < seeds_.size()) {
        // Not this relay: the next seed at once, backoff only after a whole round.
        if (code == client_errc::relay_draining && options_.reconnect) heard_draining_ = true;
        logger_->warn("relay {} not usable: {}; trying the next seed", format_host_port(target_),
                      detail);
        ev.what = listener_event::kind::attempt_failed;
        emit(ev);
        ++seed_;
        asio::post(strand_, [self = shared_from_this()] { self->start_chain(); });
        return;
      }
      if (round_failures_.size() > 1) {
        // The whole round failed: say so for each seed.
        detail = "no relay usable (" + std::to_string(seeds_.size()) + " seeds): ";
        for (std::size_t i = 0; i < round_failures_.size(); ++i)
          detail += (i ? "; " : "") + round_failures_[i];
        ev.detail = detail;
        std::lock_guard lock(state_mutex_);
        last_detail_ = detail;
      }
    }
    // A draining relay is going away in order (a restart, an upgrade): not a
    // failure of ours or of the set-up, so always worth coming back, with
    // the same hello (name, token), even when the first attempt hears it.
    const bool draining = code == client_errc::relay_draining;
    if (draining && options_.reconnect) {
      heard_draining_ = true;
      logger_->info("relay {} is draining (shutting down or restarting): {}; will reconnect",
                    format_host_port(target_), was_listening ? "session ended" : "not now");
      ev.what = was_listening ? listener_event::kind::session_lost
                              : listener_event::kind::attempt_failed;
      emit(ev);
      schedule_reconnect();
      return;
    }
    if (was_listening) {
      logger_->warn("session with relay {} lost: {}", format_host_port(target_), detail);
      ev.what = listener_event::kind::session_lost;
      emit(ev);
    } else if (first_done_) {
      logger_->warn("reconnecting to relay {} failed: {}", format_host_port(target_), detail);
      ev.what = listener_event::kind::attempt_failed;
      emit(ev);
    }
    // With several seeds, any of them may be the one that comes back.
    const bool away = code == client_errc::relay_unreachable || (seeds_.size() > 1 && relay_fault);
    if (!first_done_ && heard_draining_ && away && options_.reconnect) {
      // The relay we reached was restarting: its being away for a while is expected.
      logger_->info("relay {} still away after draining: {}", format_host_port(target_), detail);
      ev.what = listener_event::kind::attempt_failed;
      emit(ev);
      schedule_reconnect();
      return;
    }
    if (!first_done_) {
      // The first attempt decides: a mistake in the set-up is reported, not retried.
      first_done_ = true;
      complete_listen(code, session_info{});
      stop(code, detail);
      return;
    }
    if (!options_.reconnect) {
      stop(code, detail);
      return;
    }
    schedule_reconnect();
  }

  void schedule_reconnect() {
    target_ = seeds_.front();
    redirects_ = 0;
    const auto delay = backoff_.next();
    if (seeds_.size() > 1)
      logger_->info("reconnecting in {}, from the first of {} seeds ({})", ms_text(delay),
                    seeds_.size(), format_host_port(target_));
    else
      logger_->info("reconnecting to relay {} in {}", format_host_port(target_), ms_text(delay));
    listener_event ev;
    ev.what = listener_event::kind::reconnecting;
    ev.delay = delay;
    emit(ev);
    reconnect_timer_.expires_after(delay);
    reconnect_timer_.async_wait(
      asio::bind_executor(strand_, [self = shared_from_this()](const boost_ec& ec) {
        if (ec || self->closed_) return;
        self->start_round();
      }));
  }

  void stop(std::error_code code, const std::string& detail) {
    stop_queue(code, false);
    listener_event ev;
    ev.what = listener_event::kind::stopped;
    ev.error = code;
    ev.detail = detail;
    emit(ev);
  }

  void do_close() {
    if (closed_) return;
    closed_ = true;
    close_control();
    reconnect_timer_.cancel();
    for (const auto& op : pending_) {
      op->done = true;
      op->timer.cancel();
      op->resolver.cancel();
      boost_ec ignored;
      op->lowest().close(ignored);
    }
    pending_.clear();
    {
      std::lock_guard lock(state_mutex_);
      session_.reset();
    }
    complete_listen(client_errc::listener_closed, session_info{});
    logger_->debug("listener closed");
  }

  // -- reverse connections ---------------------------------------------------------------

  void open_reverse(const std::shared_ptr<control_conn>& c, std::optional<connection_id> id,
                    std::optional<host_port> client) {
    auto op = std::make_shared<reverse_op>(io_.get_executor());
    op->proxy_announced = c->proxy_announced;
    op->id = id;
    op->client = std::move(client);
    if (id) op->id_hex = to_hex(*id);
    if (pending_.size() >= options_.max_pending_reverse) {
      const std::string why = describe_client(*op) + ": not answered, " +
                              std::to_string(pending_.size()) +
                              " reverse connections are already being opened";
      logger_->warn("{}", why);
      dropped(why);
      return;
    }
    pending_.insert(op);
    const host_port reverse = *c->reverse_endpoint;
    arm_reverse_timer(op, options_.connect_timeout,
                      "no reverse connection to " + format_host_port(reverse) + " within " +
                        ms_text(options_.connect_timeout));
    resolve_reverse(
      c, op->resolver, [self = shared_from_this(), op, reverse](
                         const boost_ec& ec, tcp::resolver::results_type results) {
        if (op->done) return;
        if (ec) {
          self->finish_reverse(op, "cannot resolve reverse address " + format_host_port(reverse) +
                                     ": " + ec.message());
          return;
        }
        asio::async_connect(
          op->socket, results,
          asio::bind_executor(self->strand_, [self, op, reverse](const boost_ec& ec,
                                                                 const tcp::endpoint&) {
            if (op->done) return;
            if (ec) {
              self->finish_reverse(op, "cannot connect to reverse address " +
                                         format_host_port(reverse) + ": " + ec.message());
              return;
            }
            boost_ec ignored;
            op->socket.set_option(tcp::no_delay(true), ignored);
            if (op->id)
              self->send_accept_line(op);
            else
              self->after_accept_line(op);
          }));
      });
  }

  void send_accept_line(const std::shared_ptr<reverse_op>& op) {
    op->accept_line = v2::format_line(v2::accept{*op->id});
    asio::async_write(op->socket, asio::buffer(op->accept_line),
                      asio::bind_executor(strand_, [self = shared_from_this(), op](
                                                     const boost_ec& ec, std::size_t) {
                        if (op->done) return;
                        if (ec) {
                          self->finish_reverse(op, "cannot write accept: " + ec.message());
                          return;
                        }
                        self->after_accept_line(op);
                      }));
  }

  void after_accept_line(const std::shared_ptr<reverse_op>& op) {
    if (!e2e_ctx_) {
      deliver(op);
      return;
    }
    arm_reverse_timer(op, options_.handshake_timeout,
                      "no TLS handshake with the client within " +
                        ms_text(options_.handshake_timeout));
    // A PROXY header is read only when the relay announced one: otherwise the
    // bytes are the client's, and a client could forge its address with one.
    if (op->proxy_announced)
      read_proxy_header(op);
    else
      start_server_tls(op);
  }

  void read_proxy_header(const std::shared_ptr<reverse_op>& op) {
    op->proxy_header.resize(proxy_v2::fixed_bytes);
    asio::async_read(
      op->socket, asio::buffer(op->proxy_header),
      asio::bind_executor(strand_, [self = shared_from_this(), op](const boost_ec& ec,
                                                                   std::size_t) {
        if (op->done) return;
        if (ec) {
          self->finish_reverse(op, "the connection ended inside a PROXY header");
          return;
        }
        const auto* bytes = reinterpret_cast<const unsigned char*>(op->proxy_header.data());
        if (!std::equal(proxy_v2::signature.begin(), proxy_v2::signature.end(), bytes)) {
          self->finish_reverse(op, "the relay announced a PROXY v2 header and sent none");
          return;
        }
        const std::size_t rest = (std::size_t{bytes[14]} << 8) | bytes[15];
        op->proxy_header.resize(proxy_v2::fixed_bytes + rest);
        asio::async_read(op->socket,
                         asio::buffer(&op->proxy_header[proxy_v2::fixed_bytes], rest),
                         asio::bind_executor(self->strand_, [self, op](const boost_ec& ec,
                                                                       std::size_t) {
                           if (op->done) return;
                           if (ec) {
                             self->finish_reverse(op, "the connection ended inside a PROXY header");
                             return;
                           }
                           self->start_server_tls(op);
                         }));
      }));
  }

  void start_server_tls(const std::shared_ptr<reverse_op>& op) {
    op->tls = std::make_unique<tls_stream>(std::move(op->socket), *e2e_ctx_);
    op->tls->async_handshake(
      asio::ssl::stream_base::server,
      asio::bind_executor(strand_, [self = shared_from_this(), op](const boost_ec& ec) {
        if (op->done) return;
        if (ec) {
          self->finish_reverse(op, "TLS handshake with the client failed: " +
                                     describe_tls_error(ec, op->tls->native_handle()));
          return;
        }
        self->deliver(op);
      }));
  }

  void arm_reverse_timer(const std::shared_ptr<reverse_op>& op, std::chrono::milliseconds after,
                         std::string reason) {
    op->timer.expires_after(after);
    op->timer.async_wait(asio::bind_executor(
      strand_, [self = shared_from_this(), op, reason = std::move(reason)](const boost_ec& ec) {
        if (ec || op->done) return;
        self->finish_reverse(op, reason);
      }));
  }

  // Gives up a reverse connection that did not make it (logged).
  void finish_reverse(const std::shared_ptr<reverse_op>& op, const std::string& reason) {
    if (op->done) return;
    op->done = true;
    op->timer.cancel();
    op->resolver.cancel();
    pending_.erase(op);
    logger_->warn("{}: {}", describe_client(*op), reason);
    boost_ec ignored;
    op->lowest().close(ignored);
  }

  void deliver(const std::shared_ptr<reverse_op>& op) {
    op->done = true;
    op->timer.cancel();
    pending_.erase(op);
    logger_->debug("{}: ready", describe_client(*op));
    if (op->tls)
      deliver(relayed_connection(std::move(op->tls), e2e_ctx_, op->client, op->id_hex,
                                 std::move(op->proxy_header), op->warm));
    else
      deliver(relayed_connection(std::move(op->socket), op->client, op->id_hex, op->warm));
  }

  void deliver(relayed_connection conn) {
    std::unique_lock lock(queue_mutex_);
    if (stop_error_ == client_errc::listener_closed) {
      lock.unlock();
      conn.close();
      return;
    }
    if (!waiters_.empty()) {
      auto h = std::move(waiters_.front());
      waiters_.pop_front();
      lock.unlock();
      post_accept(std::move(h), std::move(conn));
      return;
    }
    if (queue_.size() >= options_.max_queued_connections) {
      const auto size = queue_.size();
      lock.unlock();
      const std::string why = "relayed connection" + (conn.id().empty() ? std::string() : " " + conn.id()) +
                              " closed: " + std::to_string(size) +
                              " are already waiting to be accepted";
      logger_->warn("{}", why);
      conn.close();
      dropped(why);
      return;
    }
    queue_.push_back(std::move(conn));
    lock.unlock();
    queue_changed_.notify_one();
  }

  // -- warm reverse connections (v2) ---------------------------------------------------
  //
  // Opened ahead of demand: connect, `ready <SERIAL> <TAG>`, then wait with no
  // deadline (the relay expires unused ones) for the relay's `<ID> <CLIENT>`
  // line, reading nothing past it; from there on as a reverse connection
  // after its accept line. warm_pool_size decides how many.

  void start_warm(const std::shared_ptr<control_conn>& c) {
    const std::size_t max =
      std::min({options_.warm_max, std::size_t{c->warm_offered}, warm_window});
    if (max == 0) {
      logger_->debug("warm connections: off ({})", options_.warm_max == 0
                                                     ? "warm_max is 0"
                                                     : "the relay keeps none (warm=0)");
      return;
    }
    connection_id secret;
    if (parse_connection_id(c->secret, secret)) {
      logger_->warn("warm connections: off (the relay's session secret is not 32 hex digits)");
      return;
    }
    c->warm_signer.set_secret(secret);
    c->warm.emplace(max);
    logger_->info("warm connections: up to {}", max);
    fill_warm(c);
  }

  // Opens as many as the pool lacks (unless waiting after a failed open).
  void fill_warm(const std::shared_ptr<control_conn>& c) {
    if (c != control_ || closed_ || !c->warm) return;
    if (!c->warm_retrying)
      for (auto n = c->warm->to_open(c->warm_ops.size()); n > 0; --n) open_warm(c);
    publish_warm(c);
  }

  void open_warm(const std::shared_ptr<control_conn>& c) {
    auto op = std::make_shared<reverse_op>(io_.get_executor());
    op->proxy_announced = c->proxy_announced;
    op->warm = true;
    op->serial = c->next_serial++;
    c->warm_ops.insert(op);
    const host_port reverse = *c->reverse_endpoint;
    op->timer.expires_after(options_.connect_timeout);
    op->timer.async_wait(
      asio::bind_executor(strand_, [self = shared_from_this(), c, op, reverse](const boost_ec& ec) {
        if (ec || op->done || op->connected) return;
        self->warm_not_opened(c, op, "no connection to " + format_host_port(reverse) +
                                       " within " + ms_text(self->options_.connect_timeout));
      }));
    resolve_reverse(
      c, op->resolver, [self = shared_from_this(), c, op, reverse](
                         const boost_ec& ec, tcp::resolver::results_type results) {
        if (op->done) return;
        if (ec) {
          self->warm_not_opened(c, op, "cannot resolve " + format_host_port(reverse) + ": " +
                                         ec.message());
          return;
        }
        asio::async_connect(
          op->socket, results,
          asio::bind_executor(self->strand_, [self, c, op, reverse](const boost_ec& ec,
                                                                    const tcp::endpoint&) {
            if (op->done) return;
            if (ec) {
              self->warm_not_opened(c, op, "cannot connect to " + format_host_port(reverse) +
                                             ": " + ec.message());
              return;
            }
            op->connected = true;
            op->timer.cancel();
            boost_ec ignored;
            op->socket.set_option(tcp::no_delay(true), ignored);
            self->send_ready_line(c, op);
          }));
      });
  }

  // The reverse address of the session, resolved once: every reverse and
  // warm connection of a session goes to the same reverse_listener, and a
  // lookup each (a resolver thread hop) was a measurable part of expose's
  // cost per connection. `handler(ec, results)` runs on the strand.
  template <class Handler>
  void resolve_reverse(const std::shared_ptr<control_conn>& c, tcp::resolver& resolver,
                       Handler handler) {
    if (c->reverse_resolved) {
      handler(boost_ec{}, *c->reverse_resolved);
      return;
    }
    const host_port reverse = *c->reverse_endpoint;
    resolver.async_resolve(
      reverse.host, std::to_string(reverse.port),
      asio::bind_executor(strand_, [c, handler = std::move(handler)](
                                     const boost_ec& ec, tcp::resolver::results_type results) mutable {
        if (!ec) c->reverse_resolved = results;
        handler(ec, std::move(results));
      }));
  }

  void send_ready_line(const std::shared_ptr<control_conn>& c,
                       const std::shared_ptr<reverse_op>& op) {
    op->accept_line =
      v2::format_line(v2::ready{op->serial, c->warm_signer.tag(op->serial)});
    asio::async_write(op->socket, asio::buffer(op->accept_line),
                      asio::bind_executor(strand_, [self = shared_from_this(), c, op](
                                                     const boost_ec& ec, std::size_t) {
                        if (op->done) return;
                        if (ec) {
                          self->warm_closed(c, op, "cannot write its ready line: " + ec.message());
                          return;
                        }
                        op->ready_sent = true;
                        op->ready_at = steady::now();
                        ++self->warm_totals_.opened;
                        self->logger_->debug("warm connection #{} open (pool {} of target {})",
                                             op->serial, c->warm_ops.size(), c->warm->target());
                        self->publish_warm(c);
                        self->wait_paired(c, op);
                      }));
  }

  // Looks (MSG_PEEK) for the end of the relay's line and takes exactly the
  // line: the client's bytes (or a PROXY header) after it stay in the socket.
  // Bytes without a line end are taken too (they are the line's), so a peek
  // never sees the same bytes twice.
  void wait_paired(const std::shared_ptr<control_conn>& c, const std::shared_ptr<reverse_op>& op) {
    const std::size_t room = op->line_buf.size() - op->line.size();
    op->socket.async_receive(
      asio::buffer(op->line_buf.data(), room), tcp::socket::message_peek,
      asio::bind_executor(strand_, [self = shared_from_this(), c, op](const boost_ec& ec,
                                                                      std::size_t n) {
        if (op->done) return;
        if (ec || n == 0) {
          self->warm_closed(c, op, ec ? ec.message() : std::string("end of stream"));
          return;
        }
        const char* begin = op->line_buf.data();
        const char* end_of_line = std::find(begin, begin + n, '\n');
        const bool complete = end_of_line != begin + n;
        if (!complete && op->line.size() + n >= op->line_buf.size()) {
          self->warm_bad_line(c, op, "no line end within " +
                                       std::to_string(v2::max_paired_line_bytes) + " bytes");
          return;
        }
        const std::size_t take = complete ? std::size_t(end_of_line - begin) + 1 : n;
        asio::async_read(
          op->socket, asio::buffer(op->line_buf.data(), take),
          asio::bind_executor(self->strand_, [self, c, op, complete](const boost_ec& ec,
                                                                     std::size_t n) {
            if (op->done) return;
            if (ec) {
              self->warm_closed(c, op, ec.message());
              return;
            }
            op->line.append(op->line_buf.data(), n);
            if (complete)
              self->on_paired(c, op);
            else
              self->wait_paired(c, op);
          }));
      }));
  }

  void on_paired(const std::shared_ptr<control_conn>& c, const std::shared_ptr<reverse_op>& op) {
    std::string_view line(op->line);
    line.remove_suffix(1);  // '\n'
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    v2::paired paired;
    if (auto ec = v2::parse_paired_line(line, paired)) {
      warm_bad_line(c, op, "the relay's first line \"" + std::string(line.substr(0, 80)) +
                             "\" is not `ID HOST:PORT` (" + ec.message() + ")");
      return;
    }
    c->warm_ops.erase(op);
    op->id = paired.id;
    op->id_hex = to_hex(paired.id);
    op->client = paired.client;
    ++warm_totals_.paired;
    logger_->debug("{}: paired with warm connection #{}", describe_client(*op), op->serial);
    fill_warm(c);  // its replacement, at once
    // From here on it is a reverse connection like any other (a bound on
    // them would only drop a client the relay has already joined with it).
    pending_.insert(op);
    after_accept_line(op);
  }

  // The relay ended a warm connection before pairing it: it expired unused,
  // or (soon after its ready line) the relay refused it.
  void warm_closed(const std::shared_ptr<control_conn>& c, const std::shared_ptr<reverse_op>& op,
                   const std::string& how) {
    if (!op->line.empty()) {
      warm_bad_line(c, op, "it ended inside the relay's first line");
      return;
    }
    drop_warm(c, op);
    const auto open_for = op->ready_sent ? steady::now() - op->ready_at : steady::duration::zero();
    const auto open_ms = std::chrono::duration_cast<std::chrono::milliseconds>(open_for);
    const bool was_stopped = c->warm->stopped();
    if (c->warm->closed_unused(open_for) == warm_pool_size::close_kind::expired) {
      ++warm_totals_.expired;
      logger_->debug("warm connection #{} closed unused by the relay after {} ({}): expired; "
                     "pool target {}",
                     op->serial, ms_text(open_ms), how, c->warm->target());
      fill_warm(c);
      return;
    }
    if (!was_stopped)
      logger_->warn("the relay closed warm connection #{} {} after its ready line, unused ({}): "
                    "refused (over the relay's limit, or a bad ticket); no more warm connections "
                    "this session, clients come through new_connection",
                    op->serial, ms_text(open_ms), how);
    publish_warm(c);
  }

  // The relay said something unusable on a warm connection: no more of them
  // this session (each would be the same).
  void warm_bad_line(const std::shared_ptr<control_conn>& c, const std::shared_ptr<reverse_op>& op,
                     const std::string& why) {
    drop_warm(c, op);
    if (!c->warm->stopped())
      logger_->warn("warm connection #{}: {}; no more warm connections this session", op->serial,
                    why);
    c->warm->stop();
    publish_warm(c);
  }

  void warm_not_opened(const std::shared_ptr<control_conn>& c,
                       const std::shared_ptr<reverse_op>& op, const std::string& why) {
    drop_warm(c, op);
    logger_->debug("warm connection #{} not opened: {}; next try in {}", op->serial, why,
                   ms_text(warm_retry_delay));
    if (!c->warm_retrying) {
      c->warm_retrying = true;
      c->warm_retry.expires_after(warm_retry_delay);
      c->warm_retry.async_wait(
        asio::bind_executor(strand_, [self = shared_from_this(), c](const boost_ec& ec) {
          if (ec || c != self->control_) return;
          c->warm_retrying = false;
          self->fill_warm(c);
        }));
    }
    publish_warm(c);
  }

  void drop_warm(const std::shared_ptr<control_conn>& c, const std::shared_ptr<reverse_op>& op) {
    op->done = true;
    op->timer.cancel();
    op->resolver.cancel();
    c->warm_ops.erase(op);
    boost_ec ignored;
    op->socket.close(ignored);
  }

  // The session ended: every warm connection with it.
  void close_warm(const std::shared_ptr<control_conn>& c) {
    for (const auto& op : c->warm_ops) {
      op->done = true;
      op->timer.cancel();
      op->resolver.cancel();
      boost_ec ignored;
      op->socket.close(ignored);
    }
    if (!c->warm_ops.empty()) logger_->debug("{} warm connections closed", c->warm_ops.size());
    c->warm_ops.clear();
    c->warm_retry.cancel();
  }

  // warm_pool() for other threads: the pool of `c` if it is the session now.
  void publish_warm(const std::shared_ptr<control_conn>& c) {
    warm_pool_stats now = warm_totals_;
    if (c && c == control_ && c->warm) {
      now.waiting = static_cast<std::size_t>(
        std::count_if(c->warm_ops.begin(), c->warm_ops.end(),
                      [](const std::shared_ptr<reverse_op>& op) { return op->ready_sent; }));
      now.target = c->warm->target();
      now.stopped = c->warm->stopped();
    }
    std::lock_guard lock(state_mutex_);
    warm_published_ = now;
  }

  // -- completion of user handlers -------------------------------------------------------

  // The queue stops taking connections; waiting handlers get `code`. On
  // close(), queued connections are closed too.
  void stop_queue(std::error_code code, bool drop_queued) {
    std::deque<relay_listener::accept_handler> waiters;
    std::deque<relayed_connection> dropped;
    {
      std::lock_guard lock(queue_mutex_);
      if (!stop_error_ || code == client_errc::listener_closed) stop_error_ = code;
      waiters.swap(waiters_);
      if (drop_queued) dropped.swap(queue_);
    }
    queue_changed_.notify_all();
    for (auto& conn : dropped) conn.close();
    for (auto& h : waiters)
      post_user([h = std::move(h), code] { h(code, relayed_connection{}); });
  }

  void complete_listen(std::error_code code, const session_info& s) {
    if (!listen_handler_) return;
    auto h = std::move(listen_handler_);
    listen_handler_ = nullptr;
    post_user([self = shared_from_this(), h = std::move(h), code, s] {
      // Once closed, a success is no longer news (and the listener may be gone).
      if (!code && self->closing_) {
        h(client_errc::listener_closed, session_info{});
        return;
      }
      h(code, s);
    });
  }

  // Hands `conn` to an accept handler, unless the listener was closed by
  // the time the handler runs: then the connection is closed and the handler
  // told so (it must not touch a listener that may be gone).
  void post_accept(relay_listener::accept_handler h, relayed_connection conn) {
    post_user([self = shared_from_this(), h = std::move(h), c = std::move(conn)]() mutable {
      if (self->closing_) {
        c.close();
        h(client_errc::listener_closed, relayed_connection{});
        return;
      }
      h({}, std::move(c));
    });
  }

  void dropped(const std::string& why) {
    listener_event ev;
    ev.what = listener_event::kind::connection_dropped;
    ev.detail = why;
    emit(ev);
  }

  // Not after close(): the handler may refer to what the user is tearing down.
  void emit(const listener_event& ev) {
    if (events_ && !closing_) events_(ev);
  }

  template <class F>
  void post_user(F&& f) {
    asio::post(io_.get_executor(), std::forward<F>(f));
  }

  asio::io_context& io_;
  asio::strand<asio::io_context::executor_type> strand_;
  listener_options options_;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<asio::ssl::context> relay_ctx_;
  std::shared_ptr<asio::ssl::context> e2e_ctx_;

  // Strand only.
  backoff backoff_;
  tcp::resolver resolver_;
  asio::steady_timer deadline_;   // the current step of an attempt
  asio::steady_timer heartbeat_;  // pings and the silence check (v2)
  asio::steady_timer reconnect_timer_;
  std::shared_ptr<control_conn> control_;
  const std::vector<host_port> seeds_;  // options' relay, then relays
  std::size_t seed_ = 0;                // the seed of the current chain
  host_port target_;  // the relay of the current attempt (differs after a redirect)
  std::vector<host_port> chain_;  // the seed and the redirect targets visited from it
  int redirects_ = 0;
  std::vector<std::string> round_failures_;  // why each seed of this round failed
  std::set<std::shared_ptr<reverse_op>> pending_;
  relay_listener::listen_handler listen_handler_;
  relay_listener::event_handler events_;
  bool started_ = false;
  bool first_done_ = false;  // the first attempt has succeeded or failed
  // A first attempt heard `error draining`: the relay was restarting, so it
  // being unreachable for a while does not end the listener.
  bool heard_draining_ = false;
  bool closed_ = false;

  // Shared with user threads.
  std::atomic<bool> closing_{false};  // close() was called
  mutable std::mutex state_mutex_;
  std::optional<session_info> session_;
  std::error_code last_error_;
  std::string last_detail_;
  warm_pool_stats warm_published_;  // what warm_pool() returns
  warm_pool_stats warm_totals_;     // strand only: the counters over the listener's life

  mutable std::mutex queue_mutex_;
  std::condition_variable queue_changed_;
  std::deque<relayed_connection> queue_;
  std::deque<relay_listener::accept_handler> waiters_;
  std::error_code stop_error_;  // set once the listener stopped
};

}  // namespace detail

relay_listener::relay_listener(boost::asio::io_context& io, listener_options options)
    : impl_(std::make_shared<detail::listener_impl>(io, std::move(options))) {}

relay_listener::~relay_listener() {
  if (impl_) impl_->close();
}

void relay_listener::set_event_handler(event_handler handler) {
  impl_->set_event_handler(std::move(handler));
}

void relay_listener::async_listen(listen_handler handler) {
  impl_->async_listen(std::move(handler));
}

std::error_code relay_listener::listen(std::chrono::milliseconds timeout, session_info* session) {
  auto result = std::make_shared<std::promise<std::pair<std::error_code, session_info>>>();
  auto done = result->get_future();
  impl_->async_listen([result](std::error_code ec, const session_info& s) {
    result->set_value({ec, s});
  });
  if (done.wait_for(timeout) != std::future_status::ready)
    return make_error_code(std::errc::timed_out);
  auto [ec, s] = done.get();
  if (session) *session = s;
  return ec;
}

void relay_listener::async_accept(accept_handler handler) {
  impl_->async_accept(std::move(handler));
}

std::optional<relayed_connection> relay_listener::accept(std::chrono::milliseconds timeout,
                                                         std::error_code& ec) {
  return impl_->accept(timeout, ec);
}

std::optional<session_info> relay_listener::session() const { return impl_->session(); }
std::error_code relay_listener::last_error() const { return impl_->last_error(); }
std::string relay_listener::last_error_detail() const { return impl_->last_error_detail(); }
std::size_t relay_listener::queued() const { return impl_->queued(); }
warm_pool_stats relay_listener::warm_pool() const { return impl_->warm_pool(); }
const listener_options& relay_listener::options() const { return impl_->options(); }
void relay_listener::close() { impl_->close(); }

}  // namespace tlsrelay::client
