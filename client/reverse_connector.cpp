#include "client/reverse_connector.hpp"

#include <algorithm>
#include <utility>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "protocol/proxy_header.hpp"

namespace tlsrelay::client::detail {

std::string ms_text(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + " s";
  return std::to_string(d.count()) + " ms";
}

std::string describe_client(const reverse_op& op) {
  std::string text = op.id_hex.empty() ? std::string("relayed connection")
                                       : "relayed connection " + op.id_hex;
  if (op.client) text += " (client " + format_host_port(*op.client) + ")";
  return text;
}

reverse_connector::reverse_connector(asio::io_context& io, listener_strand strand, settings s,
                                     owner& to)
    : io_(io), strand_(std::move(strand)), settings_(std::move(s)), owner_(to) {
  if (!settings_.logger) settings_.logger = spdlog::default_logger();
}

void reverse_connector::open(const std::shared_ptr<reverse_address>& to, bool proxy_announced,
                             std::optional<connection_id> id, std::optional<host_port> client) {
  auto op = std::make_shared<reverse_op>(io_.get_executor());
  op->proxy_announced = proxy_announced;
  op->id = id;
  op->client = std::move(client);
  if (id) op->id_hex = to_hex(*id);
  if (pending_.size() >= settings_.max_pending) {
    const std::string why = describe_client(*op) + ": not answered, " +
                            std::to_string(pending_.size()) +
                            " reverse connections are already being opened";
    settings_.logger->warn("{}", why);
    owner_.reverse_refused(why);
    return;
  }
  pending_.insert(op);
  const host_port reverse = to->endpoint;
  arm_timer(op, settings_.connect_timeout,
            "no reverse connection to " + format_host_port(reverse) + " within " +
              ms_text(settings_.connect_timeout));
  connect_reverse(
    op, to, strand_, "reverse address ",
    [self = shared_from_this(), op] {
      if (op->id)
        self->send_accept_line(op);
      else
        self->after_accept_line(op);
    },
    [self = shared_from_this(), op](const std::string& why) { self->give_up(op, why); });
}

void reverse_connector::adopt(const std::shared_ptr<reverse_op>& op) {
  pending_.insert(op);
  after_accept_line(op);
}

void reverse_connector::close_all() {
  for (const auto& op : pending_) {
    op->done = true;
    op->timer.cancel();
    op->resolver.cancel();
    boost_ec ignored;
    op->lowest().close(ignored);
  }
  pending_.clear();
}

void reverse_connector::send_accept_line(const std::shared_ptr<reverse_op>& op) {
  op->accept_line = v2::format_line(v2::accept{*op->id});
  asio::async_write(op->socket, asio::buffer(op->accept_line),
                    asio::bind_executor(strand_, [self = shared_from_this(), op](
                                                   const boost_ec& ec, std::size_t) {
                      if (op->done) return;
                      if (ec) {
                        self->give_up(op, "cannot write accept: " + ec.message());
                        return;
                      }
                      self->after_accept_line(op);
                    }));
}

void reverse_connector::after_accept_line(const std::shared_ptr<reverse_op>& op) {
  if (!settings_.end_to_end) {
    deliver(op);
    return;
  }
  arm_timer(op, settings_.handshake_timeout,
            "no TLS handshake with the client within " + ms_text(settings_.handshake_timeout));
  // A PROXY header is read only when the relay announced one: otherwise the
  // bytes are the client's, and a client could forge its address with one.
  if (op->proxy_announced)
    read_proxy_header(op);
  else
    start_server_tls(op);
}

void reverse_connector::read_proxy_header(const std::shared_ptr<reverse_op>& op) {
  op->proxy_header.resize(proxy_v2::fixed_bytes);
  asio::async_read(
    op->socket, asio::buffer(op->proxy_header),
    asio::bind_executor(strand_, [self = shared_from_this(), op](const boost_ec& ec,
                                                                 std::size_t) {
      if (op->done) return;
      if (ec) {
        self->give_up(op, "the connection ended inside a PROXY header");
        return;
      }
      const auto* bytes = reinterpret_cast<const unsigned char*>(op->proxy_header.data());
      if (!std::equal(proxy_v2::signature.begin(), proxy_v2::signature.end(), bytes)) {
        self->give_up(op, "the relay announced a PROXY v2 header and sent none");
        return;
      }
      const std::size_t rest = (std::size_t{bytes[14]} << 8) | bytes[15];
      op->proxy_header.resize(proxy_v2::fixed_bytes + rest);
      asio::async_read(op->socket, asio::buffer(&op->proxy_header[proxy_v2::fixed_bytes], rest),
                       asio::bind_executor(self->strand_, [self, op](const boost_ec& ec,
                                                                     std::size_t) {
                         if (op->done) return;
                         if (ec) {
                           self->give_up(op, "the connection ended inside a PROXY header");
                           return;
                         }
                         self->start_server_tls(op);
                       }));
    }));
}

void reverse_connector::start_server_tls(const std::shared_ptr<reverse_op>& op) {
  op->tls = std::make_unique<tls_stream>(std::move(op->socket), *settings_.end_to_end);
  op->tls->async_handshake(
    asio::ssl::stream_base::server,
    asio::bind_executor(strand_, [self = shared_from_this(), op](const boost_ec& ec) {
      if (op->done) return;
      if (ec) {
        self->give_up(op, "TLS handshake with the client failed: " +
                            describe_tls_error(ec, op->tls->native_handle()));
        return;
      }
      self->deliver(op);
    }));
}

void reverse_connector::arm_timer(const std::shared_ptr<reverse_op>& op,
                                  std::chrono::milliseconds after, std::string reason) {
  op->timer.expires_after(after);
  op->timer.async_wait(asio::bind_executor(
    strand_, [self = shared_from_this(), op, reason = std::move(reason)](const boost_ec& ec) {
      if (ec || op->done) return;
      self->give_up(op, reason);
    }));
}

// A reverse connection that did not make it: closed (logged).
void reverse_connector::give_up(const std::shared_ptr<reverse_op>& op, const std::string& reason) {
  if (op->done) return;
  op->done = true;
  op->timer.cancel();
  op->resolver.cancel();
  pending_.erase(op);
  settings_.logger->warn("{}: {}", describe_client(*op), reason);
  boost_ec ignored;
  op->lowest().close(ignored);
}

void reverse_connector::deliver(const std::shared_ptr<reverse_op>& op) {
  op->done = true;
  op->timer.cancel();
  pending_.erase(op);
  settings_.logger->debug("{}: ready", describe_client(*op));
  if (op->tls)
    owner_.reverse_ready(relayed_connection(std::move(op->tls), settings_.end_to_end, op->client,
                                            op->id_hex, std::move(op->proxy_header), op->warm));
  else
    owner_.reverse_ready(relayed_connection(std::move(op->socket), op->client, op->id_hex,
                                            op->warm));
}

}  // namespace tlsrelay::client::detail
