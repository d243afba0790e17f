#include "client/control_channel.hpp"

#include <algorithm>
#include <array>
#include <utility>
#include <variant>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <openssl/x509_vfy.h>
#include <spdlog/spdlog.h>

#include "protocol/defaults.hpp"
#include "protocol/line_splitter.hpp"
#include "protocol/overloaded.hpp"
#include "protocol/wire.hpp"

namespace tlsrelay::client::detail {

using steady = std::chrono::steady_clock;

namespace {

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

}  // namespace

// One attempt's control connection and everything only it uses; handlers
// hold it alive (an ssl::stream must outlive its operations).
struct control_channel::connection {
  connection(const asio::any_io_executor& ex, asio::ssl::context& ctx) : stream(ex, ctx) {}
  tls_stream stream;
  std::array<char, control_read_bytes> buffer{};
  line_splitter splitter{defaults::max_control_line_bytes};
  std::deque<std::string> out;  // lines to write, front one in flight when `writing`
  bool writing = false;
  bool greeted = false;  // the whole greeting arrived: the session runs
  std::string secret;
  session_terms terms;
  std::optional<host_port> public_endpoint, reverse_endpoint;
  steady::time_point last_heard, next_ping;
};

control_channel::control_channel(asio::io_context& io, listener_strand strand,
                                 const listener_options& options,
                                 std::shared_ptr<asio::ssl::context> relay_tls, owner& to_tell)
    : io_(io),
      strand_(std::move(strand)),
      options_(options),
      logger_(options_.logger ? options_.logger : spdlog::default_logger()),
      relay_tls_(std::move(relay_tls)),
      owner_(to_tell),
      backoff_(options_.backoff),
      resolver_(io),
      deadline_(io),
      heartbeat_(io),
      reconnect_timer_(io),
      seeds_(seeds(options_)),
      target_(seeds_.front()) {}

void control_channel::start() { start_round(); }

void control_channel::close() {
  if (closed_) return;
  closed_ = true;
  close_connection();
  reconnect_timer_.cancel();
}

// -- seeds and redirect chains -----------------------------------------------------

// From the first seed again (every connect and reconnect).
void control_channel::start_round() {
  if (closed_) return;
  seed_ = 0;
  round_failures_.clear();
  start_chain();
}

// The current seed, then wherever it redirects us.
void control_channel::start_chain() {
  if (closed_) return;
  target_ = seeds_[seed_];
  chain_.assign(1, target_);
  redirects_ = 0;
  if (seeds_.size() > 1)
    logger_->info("trying relay {} (seed {} of {})", format_host_port(target_), seed_ + 1,
                  seeds_.size());
  start_attempt();
}

// -- connect, TLS, greeting -------------------------------------------------------------

void control_channel::start_attempt() {
  if (closed_) return;
  auto c = std::make_shared<connection>(io_.get_executor(), *relay_tls_);
  control_ = c;
  const std::string& name =
    options_.tls.server_name.empty() ? target_.host : options_.tls.server_name;
  if (auto err = set_peer_name(c->stream.native_handle(), name, options_.tls.insecure);
      !err.empty()) {
    fail(c, client_errc::tls_failed, err);
    return;
  }
  const std::string where = format_host_port(target_);
  logger_->debug("connecting to relay {}", where);
  arm_deadline(c, options_.connect_timeout, client_errc::relay_unreachable,
               "no connection to relay " + where + " within " + ms_text(options_.connect_timeout));
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
      asio::async_connect(c->stream.next_layer(), results,
                          asio::bind_executor(self->strand_, [self, c, where](
                                                               const boost_ec& ec,
                                                               const tcp::endpoint&) {
                            self->on_connected(c, ec, where);
                          }));
    }));
}

void control_channel::on_connected(const connection_ptr& c, const boost_ec& ec,
                                   const std::string& where) {
  if (c != control_) return;
  if (ec) {
    fail(c, client_errc::relay_unreachable,
         "cannot connect to relay " + where + ": " + ec.message());
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

void control_channel::on_handshake(const connection_ptr& c, const boost_ec& ec,
                                   const std::string& where) {
  if (c != control_) return;
  SSL* ssl = c->stream.native_handle();
  if (ec) {
    if (is_certificate_rejection(ec)) {
      fail(c, client_errc::auth_failed, rejection_detail(ec, ssl));
      return;
    }
    std::string detail =
      "TLS handshake with relay " + where + " failed: " + describe_tls_error(ec, ssl);
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
  read(c);
}

std::string control_channel::rejection_detail(const boost_ec& ec, SSL* ssl) const {
  if (!options_.tls.cert_file)
    return "the relay requires a client certificate and we have none (" +
           describe_tls_error(ec, ssl) + ")";
  return "the relay refused our client certificate " + options_.tls.cert_file->string() + " (" +
         describe_tls_error(ec, ssl) + ")";
}

// -- reading and writing lines -----------------------------------------------------------

void control_channel::read(const connection_ptr& c) {
  c->stream.async_read_some(
    asio::buffer(c->buffer),
    asio::bind_executor(strand_, [self = shared_from_this(), c](const boost_ec& ec,
                                                                std::size_t n) {
      self->on_read(c, ec, n);
    }));
}

void control_channel::on_read(const connection_ptr& c, const boost_ec& ec, std::size_t n) {
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
  read(c);
}

void control_channel::on_read_error(const connection_ptr& c, const boost_ec& ec) {
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
         "relay " + where +
           " closed the control connection without a line: protocol 1 "
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

void control_channel::send_line(const connection_ptr& c, std::string line) {
  if (c->out.size() >= max_queued_control_lines) {
    fail(c, client_errc::heartbeat_lost, "the relay does not read the control connection");
    return;
  }
  c->out.push_back(std::move(line));
  if (!c->writing) write_next(c);
}

void control_channel::write_next(const connection_ptr& c) {
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

// -- the protocols ------------------------------------------------------------------------

void control_channel::handle_v1_line(const connection_ptr& c, const std::string& line) {
  v1::relay_message msg;
  if (auto ec = v1::parse_line(line, msg)) {
    unexpected_line(c, line, ec);
    return;
  }
  std::visit(overloaded{
               [&](const v1::new_connection&) { announced(c, line, std::nullopt, std::nullopt); },
               [&](const auto& m) { handle_common(c, m); },
             },
             msg);
}

void control_channel::handle_v2_line(const connection_ptr& c, const std::string& line) {
  v2::relay_message msg;
  if (auto ec = v2::parse_relay_line(line, msg)) {
    unexpected_line(c, line, ec);
    return;
  }
  std::visit(overloaded{
               [&](const v2::welcome& m) {
                 c->secret = m.session_secret;
                 c->terms.warm_offered = m.warm_max;
                 c->terms.proxy_announced = m.proxy_header;
               },
               [&](const v2::new_connection& m) { announced(c, line, m.id, m.client); },
               [&](const v2::error& m) { relay_error(c, m); },
               [&](const v2::redirect& m) { follow_redirect(c, m.relay); },
               [&](const v2::ping&) {
                 send_line(c, v2::format_line(v2::server_message{v2::pong{}}));
               },
               [&](const v2::pong&) {},
               [&](const auto& m) { handle_common(c, m); },
             },
             msg);
}

// The lines v2 kept from v1.
void control_channel::handle_common(const connection_ptr& c, const v1::public_listener& m) {
  c->public_endpoint = m.endpoint;
  maybe_greeted(c);
}

void control_channel::handle_common(const connection_ptr& c, const v1::reverse_listener& m) {
  c->reverse_endpoint = m.endpoint;
  maybe_greeted(c);
}

void control_channel::handle_common(const connection_ptr& c, const v1::no_available_listeners&) {
  fail(c, client_errc::pool_exhausted,
       "relay " + format_host_port(target_) + " has no free port pair (no_available_listeners)");
}

// new_connection: v2 with the client's id and address, v1 with neither.
void control_channel::announced(const connection_ptr& c, const std::string& line,
                                std::optional<connection_id> id,
                                std::optional<host_port> client) {
  if (!c->greeted) {
    unexpected_line(c, line, {});
    return;
  }
  owner_.client_announced(id, std::move(client));
}

void control_channel::relay_error(const connection_ptr& c, const v2::error& m) {
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
  std::string detail =
    "relay " + format_host_port(target_) + ": " + std::string(v2::to_string(m.code));
  if (!m.text.empty()) detail += " (" + m.text + ")";
  fail(c, code, detail);
}

void control_channel::unexpected_line(const connection_ptr& c, const std::string& line,
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

void control_channel::maybe_greeted(const connection_ptr& c) {
  if (c->greeted || !c->public_endpoint || !c->reverse_endpoint) return;
  c->greeted = true;
  deadline_.cancel();
  session_info s;
  s.protocol = options_.protocol;
  s.relay = target_;
  s.public_endpoint = *c->public_endpoint;
  s.reverse_endpoint = *c->reverse_endpoint;
  s.session_secret = c->secret;
  backoff_.reset();
  redirects_ = 0;
  logger_->info("listening through relay {}: public address {}", format_host_port(target_),
                format_host_port(s.public_endpoint));
  const bool first = !first_done_;
  first_done_ = true;
  if (options_.protocol == protocol_version::v2) {
    c->last_heard = steady::now();
    c->next_ping = c->last_heard + options_.heartbeat_interval;
    schedule_heartbeat(c);
  }
  owner_.session_started(s, c->terms, first);
}

// Pings every interval; gives up after `silent_intervals` without a byte.
void control_channel::schedule_heartbeat(const connection_ptr& c) {
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
void control_channel::follow_redirect(const connection_ptr& c, const host_port& to) {
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
  close_connection();
  target_ = to;
  chain_.push_back(to);
  asio::post(strand_, [self = shared_from_this()] { self->start_attempt(); });
}

// "a -> b -> c": the relays of the current chain.
std::string control_channel::describe_chain() const {
  std::string text;
  for (const auto& relay : chain_) {
    if (!text.empty()) text += " -> ";
    text += format_host_port(relay);
  }
  return text;
}

void control_channel::arm_deadline(const connection_ptr& c, std::chrono::milliseconds after,
                                   client_errc code, std::string detail, bool not_this_relay) {
  deadline_.expires_after(after);
  deadline_.async_wait(asio::bind_executor(
    strand_, [self = shared_from_this(), c, code, detail = std::move(detail),
              not_this_relay](const boost_ec& ec) {
      if (ec || c != self->control_) return;
      self->fail(c, code, detail, not_this_relay);
    }));
}

void control_channel::close_connection() {
  deadline_.cancel();
  heartbeat_.cancel();
  resolver_.cancel();
  if (control_) {
    owner_.session_closed();
    boost_ec ignored;
    control_->stream.next_layer().close(ignored);
    control_.reset();
  }
}

// -- the end of an attempt or session ---------------------------------------------------

// The current attempt or session ended with `code`: report it, then try
// the next seed, reconnect, or stop. `not_this_relay`: the failure is the
// relay's even if `code` alone does not say so (relay_scoped).
void control_channel::fail(const connection_ptr& c, std::error_code code, std::string detail,
                           bool not_this_relay) {
  if (c != control_ || closed_) return;
  const bool was_listening = c->greeted;
  const bool relay_fault = not_this_relay || relay_scoped(code);
  close_connection();
  owner_.failure(code, detail);
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
      owner_.event(ev);
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
      owner_.failure(code, detail);
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
    ev.what =
      was_listening ? listener_event::kind::session_lost : listener_event::kind::attempt_failed;
    owner_.event(ev);
    schedule_reconnect();
    return;
  }
  if (was_listening) {
    logger_->warn("session with relay {} lost: {}", format_host_port(target_), detail);
    ev.what = listener_event::kind::session_lost;
    owner_.event(ev);
  } else if (first_done_) {
    logger_->warn("reconnecting to relay {} failed: {}", format_host_port(target_), detail);
    ev.what = listener_event::kind::attempt_failed;
    owner_.event(ev);
  }
  // With several seeds, any of them may be the one that comes back.
  const bool away = code == client_errc::relay_unreachable || (seeds_.size() > 1 && relay_fault);
  if (!first_done_ && heard_draining_ && away && options_.reconnect) {
    // The relay we reached was restarting: its being away for a while is expected.
    logger_->info("relay {} still away after draining: {}", format_host_port(target_), detail);
    ev.what = listener_event::kind::attempt_failed;
    owner_.event(ev);
    schedule_reconnect();
    return;
  }
  if (!first_done_) {
    // The first attempt decides: a mistake in the set-up is reported, not retried.
    first_done_ = true;
    owner_.first_attempt_failed(code);
    owner_.stopped(code, detail);
    return;
  }
  if (!options_.reconnect) {
    owner_.stopped(code, detail);
    return;
  }
  schedule_reconnect();
}

void control_channel::schedule_reconnect() {
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
  owner_.event(ev);
  reconnect_timer_.expires_after(delay);
  reconnect_timer_.async_wait(
    asio::bind_executor(strand_, [self = shared_from_this()](const boost_ec& ec) {
      if (ec || self->closed_) return;
      self->start_round();
    }));
}

}  // namespace tlsrelay::client::detail
