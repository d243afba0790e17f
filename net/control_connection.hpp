// One control connection: TLS handshake under a deadline, then a line reader
// and a bounded write queue. Lines go to the owning actor as control_line.
//
//   start → handshake ─ok─► control_host::control_ready … route() → do_read ⟲
//                                                         (paused while the owner has no credit)
//                     └─fail/timeout─► close
#pragma once

#include <memory>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <caf/actor.hpp>

#include "actors/messages.hpp"
#include "net/admission.hpp"
#include "net/tls_socket.hpp"
#include "protocol/line_splitter.hpp"

namespace tlsrelay::net {

class control_connection;

// What a control connection tells the io thread it lives on (relay_network's).
class control_host {
public:
  virtual void control_ready(control_connection& conn) = 0;
  virtual void control_handshake_failed() = 0;
  // It closed: the host drops its reference.
  virtual void forget_control(conn_id id) = 0;
  // It handed its last lines (send_and_close) to the kernel.
  virtual void last_lines_sent() = 0;

protected:
  ~control_host() = default;
};

class control_connection : public std::enable_shared_from_this<control_connection> {
public:
  // `slot` and `handshake` are what admission granted it: given back when it
  // closes, and when its handshake is over.
  // TLS server end on `socket` under `tls` (the relay's context when it was
  // accepted; a reload affects later connections only).
  control_connection(conn_id id, boost::asio::ip::tcp::socket socket, SSL_CTX* tls,
                     host_port peer, control_host& host,
                     admission::ticket slot = {}, admission::ticket handshake = {});

  void start();
  void route(caf::actor owner);
  // The owner dealt with `lines` more lines (see line_credit).
  void add_credit(std::uint32_t lines);
  void send(std::string bytes);
  void send_and_close(std::string bytes);
  void close();
  // Has last lines (send_and_close) not yet handed to the kernel.
  bool writing_last_lines() const { return close_after_write_ && !write_side_closed_ && !closed_; }

  conn_id id() const { return id_; }
  const std::string& peer() const { return peer_; }
  const host_port& peer_address() const { return peer_address_; }
  // After the handshake: 2 when ALPN chose tlsrelay/2, else 1; and whether
  // the peer proved a certificate our CA signed.
  unsigned protocol() const { return protocol_; }
  bool client_certificate() const { return client_certificate_; }
  // With a client certificate: SHA-256 of its DER, 64 hex digits; else "".
  const std::string& certificate_fingerprint() const { return certificate_fingerprint_; }

private:
  void do_read();
  // Hands complete lines to the owner while it has credit; reads more when
  // none is left over and credit remains.
  void deliver_lines();
  void on_read(const boost::system::error_code& ec, std::string_view bytes);
  void do_write();
  void on_write(const boost::system::error_code& ec, std::size_t n);
  void fail(close_reason reason);

  conn_id id_;
  tls_socket stream_;
  host_port peer_address_;
  std::string peer_;  // formatted, for logs
  control_host& host_;
  boost::asio::steady_timer deadline_;
  caf::actor owner_;
  line_splitter lines_;
  // Lines not yet handed to the TLS stream, back to back (one string, not a
  // queue: an idle connection keeps no queue nodes), and those being written.
  std::string outbox_;
  std::string in_flight_;
  std::size_t outbox_bytes_ = 0;
  bool writing_ = false;
  bool reading_ = false;  // a read is in flight (or the owner may not read yet)
  std::uint32_t credits_ = 0;  // lines the owner may still be handed
  bool close_after_write_ = false;
  bool write_side_closed_ = false;
  bool closed_ = false;
  unsigned protocol_ = 1;
  bool client_certificate_ = false;
  std::string certificate_fingerprint_;
  admission::ticket slot_;
  admission::ticket handshake_;
};

}  // namespace tlsrelay::net
