// What the tests of the listener's parts (control channel, reverse
// connector, warm pool, accept queue) share: a loopback port that plays the
// relay's reverse port, a connected pair of sockets, and running a step on
// the parts' strand. Loopback only; every wait has a deadline.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include "client/relayed_connection.hpp"
#include "client/reverse_connector.hpp"
#include "client/warm_pool.hpp"
#include "tests/client/client_test_support.hpp"
#include "tests/support/socket_io.hpp"

namespace tlsrelay::test {

using part_strand = asio::strand<asio::io_context::executor_type>;

// A listening socket on 127.0.0.1, a port chosen by the kernel.
class loopback_listener {
 public:
  loopback_listener();
  std::uint16_t port() const { return port_; }
  host_port address() const { return {"127.0.0.1", port_}; }
  // The next connection; throws io_error if none arrives within `timeout`.
  tcp_conn accept(millis timeout = default_timeout);

 private:
  unique_fd fd_;
  std::uint16_t port_ = 0;
};

// Two ends of one loopback TCP connection: ours as a relayed connection
// (plain, with `id`), the other as a tcp_conn to observe what ours does.
struct connected_pair {
  client::relayed_connection ours;
  tcp_conn peer;
};
connected_pair make_connected_pair(asio::io_context& io, const std::string& id);

// Runs `step` on `strand` and waits for it; throws io_error if it has not
// run within `timeout`.
void run_on(const part_strand& strand, std::function<void()> step,
            millis timeout = default_timeout);

// The owner of a reverse connector and of a warm pool, as the listener is:
// records what they hand over and report, for the test thread to wait on.
class part_recorder : public client::detail::reverse_connector::owner,
                      public client::detail::warm_pool::owner {
 public:
  void reverse_ready(client::relayed_connection conn) override;
  void reverse_refused(const std::string& why) override;
  void warm_pool_changed(const client::warm_pool_stats& now) override;

  // The next connection handed over, in order; nullopt if none within `timeout`.
  std::optional<client::relayed_connection> next_ready(millis timeout = default_timeout);
  // Waits for the first refusal; "" if none within `timeout`.
  std::string first_refusal(millis timeout = default_timeout);
  // Waits until the pool's last published numbers satisfy `holds`; those
  // numbers, and whether they did within `timeout`.
  bool wait_warm(const std::function<bool(const client::warm_pool_stats&)>& holds,
                 millis timeout = default_timeout);
  client::warm_pool_stats warm() const;

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<client::relayed_connection> ready_;
  std::vector<std::string> refused_;
  client::warm_pool_stats warm_;
};

// A reverse connector on its own strand, toward a reverse port played by
// the test, its owner a part_recorder; closed at the end.
struct connector_fixture {
  explicit connector_fixture(client::detail::reverse_connector::settings s = {});
  ~connector_fixture();
  io_thread io;
  part_strand strand;
  loopback_listener relay_reverse;
  part_recorder owner;
  std::shared_ptr<client::detail::reverse_address> to;
  std::shared_ptr<client::detail::reverse_connector> connector;
};

// Connector settings with end-to-end TLS: the relay's certificate of `keys`
// presented to clients.
client::detail::reverse_connector::settings end_to_end_settings(const pki& keys);

}  // namespace tlsrelay::test
