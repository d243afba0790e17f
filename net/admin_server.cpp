#include "net/admin_server.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <optional>

#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <caf/all.hpp>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include "actors/messages.hpp"
#include "protocol/defaults.hpp"

namespace tlsrelay::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

bool is_loopback(const asio::ip::address& address) {
  if (address.is_v4()) return address.to_v4().is_loopback();
  const auto v6 = address.to_v6();
  if (v6.is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, v6).is_loopback();
  return v6.is_loopback();
}

namespace {

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

// The process as the kernel sees it (Linux /proc).
process_figures read_process_figures(std::int64_t started_unix_ms) {
  process_figures p;
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size_pages = 0, resident_pages = 0;
  if (statm >> size_pages >> resident_pages)
    p.resident_memory_bytes = resident_pages * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (const dirent* entry = ::readdir(dir))
      if (entry->d_name[0] != '.') ++p.open_fds;
    ::closedir(dir);
    if (p.open_fds > 0) --p.open_fds;  // the directory's own descriptor
  }
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0)
    p.max_fds = lim.rlim_cur == RLIM_INFINITY ? 0 : static_cast<std::uint64_t>(lim.rlim_cur);
  p.start_time_seconds = static_cast<double>(started_unix_ms) / 1000.0;
  return p;
}

std::array<unsigned char, SHA256_DIGEST_LENGTH> digest(std::string_view text) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> out{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), out.data());
  return out;
}

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

response make_response(const request& req, http::status status, std::string body,
                       std::string_view content_type = "text/plain; charset=utf-8") {
  response res{status, req.version()};
  res.set(http::field::server, "tlsrelay");
  res.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(false);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

}  // namespace

class admin_server::impl {
 public:
  impl(admin_config config, caf::actor_system& system, const net_counters& counters)
    : config_(std::move(config)),
      system_(system),
      counters_(counters),
      token_digest_(digest("Bearer " + config_.token)) {}

  std::string bind() {
    boost::system::error_code ec;
    acceptor_.open(config_.endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(config_.endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) return {};
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    const auto where = config_.endpoint.address().to_string() + ":" +
                       std::to_string(config_.endpoint.port());
    if (ec == asio::error::address_in_use) return "--admin " + where + ": already in use";
    return "--admin " + where + ": cannot listen: " + ec.message();
  }

  tcp::endpoint local_endpoint() const {
    boost::system::error_code ec;
    return acceptor_.local_endpoint(ec);
  }

  void start(caf::actor pool_manager) {
    pool_manager_ = std::move(pool_manager);
    accept();
    thread_ = std::thread([this] {
      for (;;) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("admin thread: unexpected exception: {}", e.what());
        }
      }
    });
  }

  void stop() {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      io_.stop();  // connections in progress are dropped with the context
    });
    thread_.join();
    pool_manager_ = nullptr;  // an actor handle must not outlive the actor system
  }

  // One admin connection: read one request, answer, close.
  class connection : public std::enable_shared_from_this<connection> {
   public:
    connection(impl& server, tcp::socket socket) : server_(server), stream_(std::move(socket)) {
      ++server_.connections_;
    }
    ~connection() { --server_.connections_; }

    void start() {
      parser_.emplace();
      parser_->header_limit(static_cast<std::uint32_t>(defaults::admin_max_header_bytes));
      parser_->body_limit(defaults::admin_max_body_bytes);
      stream_.expires_after(defaults::admin_io_timeout);
      http::async_read(stream_, buffer_, *parser_,
                       [self = shared_from_this()](beast::error_code ec, std::size_t) {
                         self->on_read(ec);
                       });
    }

   private:
    void on_read(beast::error_code ec) {
      if (ec == http::error::header_limit || ec == http::error::body_limit) {
        request req;
        req.version(11);
        return write(make_response(req, http::status::payload_too_large,
                                   "request too large\n"));
      }
      if (ec) return;  // timeout, or the peer left or sent no valid request: just close
      write(server_.handle(parser_->get()));
    }

    void write(response res) {
      response_ = std::move(res);
      stream_.expires_after(defaults::admin_io_timeout);
      http::async_write(stream_, response_,
                        [self = shared_from_this()](beast::error_code ec, std::size_t) {
                          if (ec) return self->stream_.close();
                          beast::error_code ignored;
                          self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
                          self->stream_.expires_after(defaults::close_linger);
                          self->drain();
                        });
    }

    // Reads (and drops) what the client still sends until its EOF or the
    // linger deadline: closing with its bytes unread would make the kernel
    // send a reset that can destroy our answer before the client reads it
    // (a request refused as too large has not been read to its end).
    void drain() {
      stream_.async_read_some(asio::buffer(sink_),
                              [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                if (ec) return self->stream_.close();
                                self->drain();
                              });
    }

    impl& server_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    response response_;
    std::array<char, 4096> sink_{};
  };

 private:
  void accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        // Out of descriptors or the like: try again in a moment, not at once.
        auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
        timer->async_wait([this, timer](const boost::system::error_code& e) {
          if (!e) accept();
        });
        return;
      }
      accept();
      if (connections_ >= defaults::admin_max_connections) {
        spdlog::warn("admin endpoint: {} connections open, one more closed",
                     defaults::admin_max_connections);
        return;  // the socket closes here
      }
      std::make_shared<connection>(*this, std::move(socket))->start();
    });
  }

  bool authorized(const request& req) const {
    if (config_.token.empty()) return true;
    const auto it = req.find(http::field::authorization);
    if (it == req.end()) return false;
    // Digests of equal length, compared in constant time: neither the time
    // taken nor the token's length tells a guesser anything.
    const auto given = digest(std::string_view(it->value().data(), it->value().size()));
    return CRYPTO_memcmp(given.data(), token_digest_.data(), given.size()) == 0;
  }

  // The pool_manager's report (which asks every session), or nullopt if the
  // actors did not answer within defaults::admin_actor_timeout. Blocks this
  // (admin) thread meanwhile: never the data path.
  std::optional<relay_report> ask_actors() {
    std::optional<relay_report> result;
    caf::scoped_actor self{system_};
    self->request(pool_manager_, defaults::admin_actor_timeout, status_atom::value)
      .receive([&](relay_report& report) { result = std::move(report); },
               [&](caf::error& err) {
                 spdlog::warn("admin endpoint: the actors did not answer: {}",
                              system_.render(err));
               });
    return result;
  }

  // A session counts the bytes of its pairs that have ended; those of its
  // pairs open now are net's, read here after the actors answered (a pair
  // ending in between is missed for this one answer, never counted twice).
  void add_open_pair_bytes(relay_report& report) const {
    const auto first = config_.relay.first_public_port;
    for (auto& s : report.sessions) {
      if (s.public_port < first || static_cast<std::size_t>(s.public_port - first) >= counters_.pair_count)
        continue;
      const auto& open = counters_.open_pair_bytes[s.public_port - first];
      s.activity.bytes_in += open.client_to_server.load(std::memory_order_relaxed);
      s.activity.bytes_out += open.server_to_client.load(std::memory_order_relaxed);
    }
  }

  metrics_snapshot snapshot(relay_report report) const {
    metrics_snapshot s;
    s.relay = std::move(report);
    s.network.bytes_client_to_server = counters_.bytes_client_to_server.load(std::memory_order_relaxed);
    s.network.bytes_server_to_client = counters_.bytes_server_to_client.load(std::memory_order_relaxed);
    s.network.tls_handshake_failures = counters_.tls_handshake_failures.load(std::memory_order_relaxed);
    s.network.pairs_moved = counters_.pairs_moved.load(std::memory_order_relaxed);
    for (std::size_t k = 1; k < refusal_kinds; ++k)
      s.network.refused.emplace_back(std::string(label_of(static_cast<refusal>(k))),
                                     counters_.refused[k].load(std::memory_order_relaxed));
    s.process = read_process_figures(config_.relay.started_unix_ms);
    s.version = config_.relay.version;
    s.commit = config_.relay.commit;
    if (config_.reloads) s.reloads = config_.reloads();
    if (config_.reload_failures) s.reload_failures = config_.reload_failures();
    return s;
  }

  response handle(const request& req) {
    const auto target = std::string(req.target().substr(0, req.target().find('?')));
    spdlog::debug("admin endpoint: {} {}", std::string(req.method_string()), target);
    if (!authorized(req)) {
      auto res = make_response(req, http::status::unauthorized,
                               "unauthorized: send Authorization: Bearer <--admin-token>\n");
      res.set(http::field::www_authenticate, "Bearer realm=\"tlsrelay\"");
      return res;
    }
    const bool is_get = req.method() == http::verb::get;
    const auto method_not_allowed = [&](std::string_view allowed) {
      auto res = make_response(req, http::status::method_not_allowed,
                               "method not allowed: use " + std::string(allowed) + "\n");
      res.set(http::field::allow, beast::string_view(allowed.data(), allowed.size()));
      return res;
    };
    const auto unavailable = [&] {
      return make_response(req, http::status::service_unavailable,
                           "unavailable: the relay's actors did not answer within 1 s\n");
    };
    if (target == "/metrics" || target == "/status" || target == "/healthz" || target == "/readyz") {
      if (!is_get) return method_not_allowed("GET");
      auto report = ask_actors();
      if (!report) return unavailable();
      if (target == "/metrics")
        return make_response(req, http::status::ok, format_metrics(snapshot(std::move(*report))),
                             metrics_content_type);
      if (target == "/status") {
        add_open_pair_bytes(*report);
        return make_response(req, http::status::ok,
                             format_status(config_.relay, *report, now_unix_ms()),
                             "application/json");
      }
      if (target == "/healthz") return make_response(req, http::status::ok, "ok\n");
      // /readyz: the pool is bound and the keys are loaded (the endpoint
      // starts only after both), so only draining is left to check.
      if (config_.draining && config_.draining())
        return make_response(req, http::status::service_unavailable, "not ready: draining\n");
      return make_response(req, http::status::ok, "ready\n");
    }
    if (target == "/reload") {
      if (req.method() != http::verb::post) return method_not_allowed("POST");
      if (!config_.reload)
        return make_response(req, http::status::not_implemented,
                             "reload is not available in this relay\n");
      auto error = config_.reload();
      if (!error.empty())
        return make_response(req, http::status::internal_server_error,
                             "reload refused: " + error + "\n");
      return make_response(req, http::status::ok, "reloaded\n");
    }
    return make_response(req, http::status::not_found,
                         "not found: try /metrics, /healthz, /readyz, /status or POST /reload\n");
  }

  admin_config config_;
  caf::actor_system& system_;
  caf::actor pool_manager_;
  const net_counters& counters_;
  const std::array<unsigned char, SHA256_DIGEST_LENGTH> token_digest_;
  // Before io_: connections still held by its handlers count themselves
  // out when it is destroyed.
  std::size_t connections_ = 0;  // io thread only
  asio::io_context io_{1};
  tcp::acceptor acceptor_{io_};
  std::thread thread_;
};

admin_server::admin_server(admin_config config, caf::actor_system& system,
                           const net_counters& counters)
  : impl_(std::make_unique<impl>(std::move(config), system, counters)) {}

admin_server::~admin_server() { stop(); }

std::string admin_server::bind() { return impl_->bind(); }
tcp::endpoint admin_server::local_endpoint() const { return impl_->local_endpoint(); }
void admin_server::start(caf::actor pool_manager) { impl_->start(std::move(pool_manager)); }
void admin_server::stop() { impl_->stop(); }

}  // namespace tlsrelay::net
