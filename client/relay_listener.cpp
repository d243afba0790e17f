// relay_listener wires its parts, each in a file of its own:
//
//   control_channel    connect to the seeds, TLS, greeting, heartbeat,
//                      redirects, reconnect with backoff, v1/v2 control lines
//   reverse_connector  a reverse connection per announced client: accept
//                      line, PROXY header, end-to-end TLS
//   warm_pool          v2 reverse connections opened ahead of demand
//   accept_queue       ready connections until the user accepts them
//
// listener_impl owns them, keeps what user threads may read (session, last
// error, warm pool numbers) and runs the user's handlers.
#include "client/relay_listener.hpp"

#include <atomic>
#include <future>
#include <mutex>
#include <stdexcept>
#include <utility>

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <spdlog/spdlog.h>

#include "client/accept_queue.hpp"
#include "client/control_channel.hpp"
#include "client/reverse_connector.hpp"
#include "client/warm_pool.hpp"
#include "protocol/wire.hpp"

namespace tlsrelay::client {
namespace detail {

namespace asio = boost::asio;

class listener_impl : public std::enable_shared_from_this<listener_impl>,
                      private control_channel::owner,
                      private reverse_connector::owner,
                      private warm_pool::owner {
 public:
  listener_impl(asio::io_context& io, listener_options options)
      : io_(io),
        strand_(asio::make_strand(io)),
        options_(std::move(options)),
        logger_(options_.logger ? options_.logger : spdlog::default_logger()) {
    if (auto err = validate(options_); !err.empty()) throw std::invalid_argument(err);
    std::string err;
    const std::string alpn =
      options_.protocol == protocol_version::v2 ? std::string(wire::alpn_v2) : std::string();
    auto relay_ctx = make_client_context(options_.tls, alpn, err);
    if (!relay_ctx) throw std::invalid_argument(err);
    std::shared_ptr<asio::ssl::context> e2e_ctx;
    if (options_.end_to_end_tls) {
      e2e_ctx = make_server_context(*options_.end_to_end_tls, err);
      if (!e2e_ctx) throw std::invalid_argument("end-to-end TLS: " + err);
    }
    queue_ = std::make_shared<accept_queue>(io_.get_executor(), options_.max_queued_connections);
    reverse_connector::settings reverse;
    reverse.connect_timeout = options_.connect_timeout;
    reverse.handshake_timeout = options_.handshake_timeout;
    reverse.max_pending = options_.max_pending_reverse;
    reverse.end_to_end = std::move(e2e_ctx);
    reverse.logger = logger_;
    connector_ = std::make_shared<reverse_connector>(io_, strand_, std::move(reverse),
                                                     static_cast<reverse_connector::owner&>(*this));
    channel_ = std::make_shared<control_channel>(io_, strand_, options_, std::move(relay_ctx),
                                                 static_cast<control_channel::owner&>(*this));
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
      if (self->channel_->closed()) {
        self->complete_listen(client_errc::listener_closed, session_info{});
        return;
      }
      self->channel_->start();
    });
  }

  void async_accept(relay_listener::accept_handler handler) {
    queue_->async_accept(std::move(handler));
  }
  std::optional<relayed_connection> accept(std::chrono::milliseconds timeout, std::error_code& ec) {
    return queue_->accept(timeout, ec);
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
  std::size_t queued() const { return queue_->size(); }
  warm_pool_stats warm_pool() const {
    std::lock_guard lock(state_mutex_);
    return warm_published_;
  }

  void close() {
    closing_ = true;
    // The queue at once, so that a blocked accept() returns now.
    queue_->close();
    asio::post(strand_, [self = shared_from_this()] { self->do_close(); });
  }

 private:
  void do_close() {
    if (channel_->closed()) return;
    channel_->close();
    connector_->close_all();
    {
      std::lock_guard lock(state_mutex_);
      session_.reset();
    }
    complete_listen(client_errc::listener_closed, session_info{});
    logger_->debug("listener closed");
  }

  // -- what the control channel reports (strand) ----------------------------------------

  void session_started(const session_info& s, const session_terms& terms, bool first) override {
    {
      std::lock_guard lock(state_mutex_);
      session_ = s;
    }
    if (first) complete_listen({}, s);
    listener_event ev;
    ev.what = listener_event::kind::listening;
    ev.session = s;
    emit(ev);
    terms_ = terms;
    reverse_ = std::make_shared<reverse_address>(s.reverse_endpoint);
    if (options_.protocol == protocol_version::v2) {
      detail::warm_pool::settings warm;
      warm.warm_max = options_.warm_max;
      warm.connect_timeout = options_.connect_timeout;
      warm.logger = logger_;
      warm_ = detail::warm_pool::start(io_, strand_, std::move(warm),
                               {terms.warm_offered, s.session_secret, terms.proxy_announced},
                               reverse_, connector_, warm_totals_,
                               static_cast<detail::warm_pool::owner&>(*this));
    }
  }

  void client_announced(std::optional<connection_id> id,
                        std::optional<host_port> client) override {
    connector_->open(reverse_, terms_.proxy_announced, id, std::move(client));
    if (warm_) warm_->client_fell_back();
  }

  void session_closed() override {
    if (warm_) warm_->close();
    warm_.reset();
    reverse_.reset();
    terms_ = {};
    warm_pool_changed(*warm_totals_);
  }

  void failure(std::error_code code, const std::string& detail) override {
    std::lock_guard lock(state_mutex_);
    last_error_ = code;
    last_detail_ = detail;
    session_.reset();
  }

  void first_attempt_failed(std::error_code code) override {
    complete_listen(code, session_info{});
  }

  void stopped(std::error_code code, const std::string& detail) override {
    queue_->stop(code, false);
    listener_event ev;
    ev.what = listener_event::kind::stopped;
    ev.error = code;
    ev.detail = detail;
    emit(ev);
  }

  void event(const listener_event& ev) override { emit(ev); }

  // -- what the reverse connector and the warm pool report (strand) ------------------------

  void reverse_ready(relayed_connection conn) override {
    const std::string why = queue_->deliver(std::move(conn));
    if (why.empty()) return;
    logger_->warn("{}", why);
    dropped(why);
  }

  void reverse_refused(const std::string& why) override { dropped(why); }

  // warm_pool() for other threads.
  void warm_pool_changed(const warm_pool_stats& now) override {
    std::lock_guard lock(state_mutex_);
    warm_published_ = now;
  }

  // -- completion of user handlers -------------------------------------------------------

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
  listener_strand strand_;
  listener_options options_;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<accept_queue> queue_;
  std::shared_ptr<reverse_connector> connector_;
  std::shared_ptr<control_channel> channel_;

  // Strand only.
  session_terms terms_;                       // of the current session
  std::shared_ptr<reverse_address> reverse_;  // of the current session
  std::shared_ptr<detail::warm_pool> warm_;   // of the current session, if it keeps one
  std::shared_ptr<warm_pool_stats> warm_totals_ = std::make_shared<warm_pool_stats>();
  relay_listener::listen_handler listen_handler_;
  relay_listener::event_handler events_;
  bool started_ = false;

  // Shared with user threads.
  std::atomic<bool> closing_{false};  // close() was called
  mutable std::mutex state_mutex_;
  std::optional<session_info> session_;
  std::error_code last_error_;
  std::string last_detail_;
  warm_pool_stats warm_published_;  // what warm_pool() returns
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
