// The warm pool (protocol v2): reverse connections of one session opened
// ahead of demand. Each: connect to the reverse address, write
// `ready <SERIAL> <TAG>` (TAG signed with the session secret), then wait with
// no deadline (the relay expires unused ones) for the relay's `<ID> <CLIENT>`
// line, reading nothing past it; from there on the reverse connector takes
// it. warm_pool_size decides how many; a paired one is replaced at once, a
// failed open is retried after a pause, a refusal stops the pool for the
// session. Everything runs on the listener's strand. Internal to relay_listener.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "client/relay_listener.hpp"
#include "client/reverse_connector.hpp"
#include "client/warm_pool_size.hpp"
#include "protocol/warm_ticket.hpp"

namespace tlsrelay::client::detail {

// What a session's welcome offers for warm connections.
struct warm_offer {
  std::size_t relay_max = 0;      // the welcome's warm= (the relay's --warm-max)
  std::string session_secret;     // the welcome's session= (32 hex digits)
  bool proxy_announced = false;   // the welcome's proxy=2
};

class warm_pool : public std::enable_shared_from_this<warm_pool> {
 public:
  // Told of every change of the pool's numbers (to publish them). Called on
  // the strand; the owner outlives the pool's work (it calls close() first).
  struct owner {
    virtual ~owner() = default;
    virtual void warm_pool_changed(const warm_pool_stats& now) = 0;
  };
  struct settings {
    std::size_t warm_max = 0;  // listener_options::warm_max
    std::chrono::milliseconds connect_timeout{10000};
    std::shared_ptr<spdlog::logger> logger;
  };

  // After a failed open (the reverse port refused or timed out): no new one
  // before this, so an unreachable relay is not hammered.
  static constexpr std::chrono::seconds retry_delay{1};

  // The pool of a session that has just been greeted, already filling; null
  // (the reason logged) if it keeps none: warm_max 0, the relay offers none,
  // or its session secret is unusable. `totals` counts over the listener's
  // life (opened, paired, expired) and is shared by the sessions' pools.
  static std::shared_ptr<warm_pool> start(boost::asio::io_context& io, listener_strand strand,
                                          settings s, const warm_offer& offer,
                                          std::shared_ptr<reverse_address> to,
                                          std::shared_ptr<reverse_connector> connector,
                                          std::shared_ptr<warm_pool_stats> totals, owner& to_tell);

  // A client came through new_connection: the pool was too small.
  void client_fell_back();
  // The session ended: every warm connection is closed with it.
  void close();
  // The totals, with this pool's numbers unless it is closed.
  warm_pool_stats stats() const;

  warm_pool(boost::asio::io_context& io, listener_strand strand, settings s, std::size_t max,
            bool proxy_announced, const connection_id& secret, std::shared_ptr<reverse_address> to,
            std::shared_ptr<reverse_connector> connector, std::shared_ptr<warm_pool_stats> totals,
            owner& to_tell);

 private:
  void fill();
  void open_one();
  void send_ready_line(const std::shared_ptr<reverse_op>& op);
  void wait_paired(const std::shared_ptr<reverse_op>& op);
  void on_paired(const std::shared_ptr<reverse_op>& op);
  void closed_by_relay(const std::shared_ptr<reverse_op>& op, const std::string& how);
  void bad_line(const std::shared_ptr<reverse_op>& op, const std::string& why);
  void not_opened(const std::shared_ptr<reverse_op>& op, const std::string& why);
  void drop(const std::shared_ptr<reverse_op>& op);
  void publish();

  boost::asio::io_context& io_;
  listener_strand strand_;
  settings settings_;
  bool proxy_announced_;
  std::shared_ptr<reverse_address> to_;
  std::shared_ptr<reverse_connector> connector_;
  std::shared_ptr<warm_pool_stats> totals_;
  owner& owner_;

  warm_pool_size size_;
  warm_ticket::signer signer_;  // keyed with the session secret
  std::uint64_t next_serial_ = 1;
  std::set<std::shared_ptr<reverse_op>> ops_;  // being opened, or waiting for a client
  boost::asio::steady_timer retry_;
  bool retrying_ = false;
  bool closed_ = false;
};

}  // namespace tlsrelay::client::detail
