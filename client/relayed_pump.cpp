#include "client/relayed_pump.hpp"

#include <memory>
#include <string>
#include <utility>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>

#include "protocol/defaults.hpp"
#include "pump/pair_pump.hpp"
#include "pump/stage_pool.hpp"

namespace tlsrelay::client {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost_ec = boost::system::error_code;
using done_handler = std::function<void(const pump_result&)>;

// The pipes and buffers of every splice pump in the process. Never destroyed:
// a pump still held by an io_context that outlives main can give its stage back.
pump::stage_pool& shared_stages() {
  static auto* pool = new pump::stage_pool(defaults::idle_stages);
  return *pool;
}

void reset_socket(tcp::socket& socket) {
  boost_ec ignored;
  if (!socket.is_open()) return;
  socket.set_option(asio::socket_base::linger(true, 0), ignored);
  socket.close(ignored);
}

void splice_pump(tcp::socket relayed, tcp::socket local, done_handler done) {
  auto strand = asio::make_strand(local.get_executor());
  auto p = std::make_shared<pump::pair_pump>(
    strand, std::move(relayed), std::move(local), pump::data_path::splice, shared_stages(),
    [done = std::move(done)](const pump::pair_pump::totals& t) {
      pump_result r;
      r.a_to_b = t.a_to_b;
      r.b_to_a = t.b_to_a;
      r.error = t.error;
      r.error_where = t.error_where;
      if (done) done(r);
    });
  asio::dispatch(strand, [p] { p->start(); });
}

void copy_pump(std::unique_ptr<pump_end> relayed, tcp::socket local, done_handler done) {
  const auto executor = local.get_executor();
  start_pump(executor, std::move(relayed), make_pump_end(std::move(local)),
             defaults::pump_buffer_bytes, std::move(done));
}

// End-to-end TLS with a PROXY header: the header first, then the pump.
void tls_pump_after_header(relayed_connection conn, tcp::socket local, done_handler done) {
  struct pending {
    std::string header;
    tcp::socket local;
    std::unique_ptr<pump_end> relayed;
    done_handler done;
  };
  auto context = conn.tls_context();
  auto state = std::make_shared<pending>(pending{conn.proxy_header(), std::move(local),
                                                 make_pump_end(conn.release_tls(), context),
                                                 std::move(done)});
  asio::async_write(state->local, asio::buffer(state->header),
                    [state](const boost_ec& ec, std::size_t) {
                      if (ec) {
                        state->relayed->abort();
                        reset_socket(state->local);
                        pump_result r;
                        r.error = ec;
                        r.error_where = "writing b";
                        if (state->done) state->done(r);
                        return;
                      }
                      copy_pump(std::move(state->relayed), std::move(state->local),
                                std::move(state->done));
                    });
}

}  // namespace

void pump_relayed(relayed_connection conn, tcp::socket local, done_handler done,
                  const relayed_pump_options& options) {
  if (!conn.valid()) {
    // Nothing to pump: the local side learns it by a reset, the caller by done.
    reset_socket(local);
    pump_result r;
    r.error = asio::error::not_connected;
    r.error_where = "reading a";
    asio::post(local.get_executor(), [done = std::move(done), r] {
      if (done) done(r);
    });
    return;
  }
  if (conn.is_tls()) {
    if (!conn.proxy_header().empty())
      return tls_pump_after_header(std::move(conn), std::move(local), std::move(done));
    auto context = conn.tls_context();
    return copy_pump(make_pump_end(conn.release_tls(), context), std::move(local),
                     std::move(done));
  }
  if (options.path == relayed_pump_path::copy)
    return copy_pump(make_pump_end(conn.release_socket()), std::move(local), std::move(done));
  splice_pump(conn.release_socket(), std::move(local), std::move(done));
}

relayed_pump_stats relayed_pump_stages() {
  const auto& pool = shared_stages();
  return {pool.pipes_in_use(), pool.buffers_in_use(), pool.idle_pipes()};
}

}  // namespace tlsrelay::client
