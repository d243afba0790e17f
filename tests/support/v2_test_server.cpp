#include "tests/support/v2_test_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "protocol/overloaded.hpp"
#include "protocol/warm_ticket.hpp"
#include "protocol/wire.hpp"

namespace tlsrelay::test {
namespace {


millis left_until(steady::time_point deadline) {
  return std::max(millis(0), std::chrono::duration_cast<millis>(deadline - steady::now()));
}

std::string describe(const v2::relay_message& msg) {
  return v2::format_line(msg);
}

}  // namespace

std::uint16_t local_port_of(const tcp_conn& conn) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (::getsockname(conn.fd(), reinterpret_cast<sockaddr*>(&address), &length) != 0)
    throw io_error("getsockname(): " + std::string(std::strerror(errno)));
  if (address.ss_family == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
}

// -- the peer's end of a connection, seen in /proc/net/tcp ------------------------------

namespace {

// The kernel's line for the socket whose local end is `local`:`local_port`
// and remote end `remote`:`remote_port` (addresses as /proc/net/tcp prints
// them: the network-order 32-bit value read as a native integer).
struct proc_tcp_entry {
  unsigned state = 0;                  // 0x01 ESTABLISHED ... 0x08 CLOSE_WAIT
  unsigned long unacked_bytes = 0;     // tx_queue: sent and not yet acknowledged
  unsigned long unread_bytes = 0;      // rx_queue: received and not yet read
};

std::optional<proc_tcp_entry> find_proc_tcp(std::uint32_t local, std::uint16_t local_port,
                                            std::uint32_t remote, std::uint16_t remote_port) {
  std::ifstream in("/proc/net/tcp");
  if (!in) throw io_error("cannot read /proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local_text, remote_text, state_text, queues;
    if (!(fields >> slot >> local_text >> remote_text >> state_text >> queues)) continue;
    const auto parse_end = [](const std::string& text, std::uint32_t& address,
                              std::uint16_t& port) {
      const auto colon = text.find(':');
      if (colon == std::string::npos) return false;
      address = static_cast<std::uint32_t>(std::stoul(text.substr(0, colon), nullptr, 16));
      port = static_cast<std::uint16_t>(std::stoul(text.substr(colon + 1), nullptr, 16));
      return true;
    };
    std::uint32_t la = 0, ra = 0;
    std::uint16_t lp = 0, rp = 0;
    if (!parse_end(local_text, la, lp) || !parse_end(remote_text, ra, rp)) continue;
    if (la != local || lp != local_port || ra != remote || rp != remote_port) continue;
    const auto colon = queues.find(':');
    if (colon == std::string::npos) continue;
    proc_tcp_entry entry;
    entry.state = static_cast<unsigned>(std::stoul(state_text, nullptr, 16));
    entry.unacked_bytes = std::stoul(queues.substr(0, colon), nullptr, 16);
    entry.unread_bytes = std::stoul(queues.substr(colon + 1), nullptr, 16);
    return entry;
  }
  return std::nullopt;
}

std::string ends_text(const tcp4_ends& e) {
  return "our port " + std::to_string(e.our_port) + ", the peer's " + std::to_string(e.peer_port);
}

}  // namespace

tcp4_ends ends_of(const tcp_conn& conn) {
  sockaddr_storage ours{}, theirs{};
  socklen_t ours_length = sizeof ours, theirs_length = sizeof theirs;
  if (::getsockname(conn.fd(), reinterpret_cast<sockaddr*>(&ours), &ours_length) != 0 ||
      ::getpeername(conn.fd(), reinterpret_cast<sockaddr*>(&theirs), &theirs_length) != 0)
    throw io_error(conn.name() + ": getsockname/getpeername: " + std::strerror(errno));
  if (ours.ss_family != AF_INET || theirs.ss_family != AF_INET)
    throw io_error(conn.name() + ": ends_of() knows IPv4 connections only");
  const auto& o = reinterpret_cast<const sockaddr_in&>(ours);
  const auto& t = reinterpret_cast<const sockaddr_in&>(theirs);
  return {o.sin_addr.s_addr, t.sin_addr.s_addr, ntohs(o.sin_port), ntohs(t.sin_port)};
}

void wait_until_peer_has_read(const tcp_conn& conn, millis timeout) {
  const auto ends = ends_of(conn);
  const auto deadline = steady::now() + timeout;
  for (;;) {
    // The peer's socket: its local end is our remote end. Gone: it was
    // closed, so it has dealt with what it got.
    const auto peer = find_proc_tcp(ends.peer_address, ends.peer_port, ends.our_address,
                                    ends.our_port);
    if (!peer) return;
    // Our bytes count as arrived once acknowledged (loopback may deliver them
    // a little after send() returned); then as read once the peer's queue is
    // empty.
    const auto ours = find_proc_tcp(ends.our_address, ends.our_port, ends.peer_address,
                                    ends.peer_port);
    const unsigned long unacked = ours ? ours->unacked_bytes : 0;
    if (unacked == 0 && peer->unread_bytes == 0) return;
    if (steady::now() >= deadline)
      throw io_error(conn.name() + ": after " + std::to_string(timeout.count()) + " ms, " +
                     std::to_string(unacked) + " bytes were still unacknowledged and " +
                     std::to_string(peer->unread_bytes) + " unread by the peer (" +
                     ends_text(ends) + ")");
    std::this_thread::sleep_for(1ms);  // polling the kernel's table, under the deadline
  }
}

void wait_until_peer_closed(const tcp4_ends& ends, millis timeout) {
  constexpr unsigned established = 0x01, close_wait = 0x08;
  const auto deadline = steady::now() + timeout;
  for (;;) {
    const auto entry = find_proc_tcp(ends.peer_address, ends.peer_port, ends.our_address,
                                     ends.our_port);
    if (!entry || (entry->state != established && entry->state != close_wait)) return;
    if (steady::now() >= deadline)
      throw io_error("the peer's end was still open (state " + std::to_string(entry->state) +
                     ") " + std::to_string(timeout.count()) + " ms after we closed ours (" +
                     ends_text(ends) + ")");
    std::this_thread::sleep_for(1ms);  // polling the kernel's table, under the deadline
  }
}

// -- v2_test_server ------------------------------------------------------------------

tls_identity v2_test_server::with_certificate(const std::filesystem::path& keys_dir) {
  return tls_identity::from_keys_dir(keys_dir);
}

tls_identity v2_test_server::without_certificate(const std::filesystem::path& keys_dir) {
  tls_identity identity;
  identity.ca_file = keys_dir / "ca.crt.pem";
  return identity;
}

v2_test_server::v2_test_server(std::uint16_t control_port, const tls_identity& identity,
                               options opt, millis timeout)
    : options_(std::move(opt)),
      control_(std::make_unique<v2_control_conn>(options_.host, control_port, identity,
                                                 options_.offer_alpn, timeout)),
      answer_pings_(options_.answer_pings) {
  if (!control_->handshake(timeout))
    throw io_error("v2 server: the TLS handshake with " + control_->peer() +
                   " failed: " + control_->close_reason());
}

v2_test_server::~v2_test_server() {
  disconnect();
  std::vector<std::thread> handlers;
  {
    std::lock_guard lock(mutex_);
    for (const int fd : open_reverse_fds_) ::shutdown(fd, SHUT_RDWR);
    handlers.swap(handler_threads_);
  }
  for (auto& t : handlers) t.join();
}

void v2_test_server::send_line(std::string_view line, millis timeout) {
  std::string bytes(line);
  bytes += "\r\n";
  control_->write(bytes, timeout);
}

void v2_test_server::send_hello(const v2::hello& hello, millis timeout) {
  control_->write(v2::format_line(v2::server_message{hello}), timeout);
}

hello_answer v2_test_server::say_hello(const v2::hello& hello, millis timeout) {
  const auto deadline = steady::now() + timeout;
  hello_answer answer;
  const auto sent = steady::now();
  send_hello(hello, timeout);
  answer.first_line = control_->read_line(left_until(deadline));
  answer.answer_time = std::chrono::duration_cast<millis>(steady::now() - sent);
  if (!answer.first_line) {
    answer.close_reason = control_->close_reason();
    return answer;
  }
  v2::relay_message msg;
  if (v2::parse_relay_line(*answer.first_line, msg))
    throw io_error("v2 server: the relay answered the hello with a line it may not send: " +
                   printable(*answer.first_line));
  const bool refused = std::visit(
      overloaded{
          [&](const v2::error& e) {
            answer.error = e;
            return true;
          },
          [&](const v1::no_available_listeners&) {
            answer.no_available_listeners = true;
            return true;
          },
          [](const v2::welcome&) { return false; },
          [&](const auto&) -> bool {
            throw io_error("v2 server: expected welcome, error or no_available_listeners, the "
                           "relay sent " + printable(*answer.first_line));
          },
      },
      msg);
  if (refused) {
    answer.after_refusal = control_->read_until_closed(left_until(deadline));
    answer.closed_after_refusal = answer.after_refusal.empty();
    answer.close_reason = control_->close_reason();
    return answer;
  }
  greeting_.push_back(*answer.first_line);
  session_secret_ = std::get<v2::welcome>(msg).session_secret;
  for (const char* command : {"public_listener", "reverse_listener"}) {
    const auto line = read_line(left_until(deadline));
    if (!line)
      throw io_error(std::string("v2 server: the relay ended the control connection instead of "
                                 "sending ") + command + ": " + control_->close_reason());
    greeting_.push_back(*line);
    v2::relay_message listener;
    if (v2::parse_relay_line(*line, listener))
      throw io_error(std::string("v2 server: expected ") + command + ", the relay sent " +
                     printable(*line));
    if (std::strcmp(command, "public_listener") == 0 &&
        std::holds_alternative<v1::public_listener>(listener)) {
      const auto& ep = std::get<v1::public_listener>(listener).endpoint;
      public_ = {ep.host, ep.port};
    } else if (std::strcmp(command, "reverse_listener") == 0 &&
               std::holds_alternative<v1::reverse_listener>(listener)) {
      const auto& ep = std::get<v1::reverse_listener>(listener).endpoint;
      reverse_ = {ep.host, ep.port};
    } else {
      throw io_error(std::string("v2 server: expected ") + command + ", the relay sent " +
                     printable(*line));
    }
  }
  answer.welcomed = true;
  return answer;
}

void v2_test_server::greet(const v2::hello& hello, millis timeout) {
  const auto answer = say_hello(hello, timeout);
  if (answer.welcomed) return;
  throw io_error("v2 server: the hello " +
                 printable(v2::format_line(v2::server_message{hello})) + " was not welcomed: " +
                 (answer.first_line ? "the relay answered " + printable(*answer.first_line)
                                    : "the relay closed without a line (" +
                                          answer.close_reason + ")"));
}

std::optional<std::string> v2_test_server::read_line(millis timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    auto line = control_->read_line(left_until(deadline));
    if (!line || *line != "ping") return line;
    ++pings_;
    if (answer_pings_) control_->write("pong\r\n", timeout);
  }
}

v2::relay_message v2_test_server::read_message(millis timeout) {
  const auto line = read_line(timeout);
  if (!line)
    throw io_error("v2 server: the relay ended the control connection: " +
                   control_->close_reason());
  v2::relay_message msg;
  if (auto ec = v2::parse_relay_line(*line, msg))
    throw io_error("v2 server: the relay sent a line that is not protocol v2 (" + ec.message() +
                   "): " + printable(*line));
  return msg;
}

v2::new_connection v2_test_server::expect_new_connection(millis timeout) {
  const auto msg = read_message(timeout);
  if (const auto* nc = std::get_if<v2::new_connection>(&msg)) return *nc;
  throw io_error("v2 server: expected new_connection <ID> <CLIENT>, the relay sent " +
                 printable(describe(msg)));
}

std::vector<std::string> v2_test_server::ping_pong(millis timeout) {
  const auto deadline = steady::now() + timeout;
  send_line("ping", timeout);
  std::vector<std::string> before;
  for (;;) {
    const auto line = read_line(left_until(deadline));
    if (!line)
      throw io_error("v2 server: the relay ended the control connection instead of answering "
                     "ping: " + control_->close_reason());
    if (*line == "pong") return before;
    before.push_back(*line);
  }
}

std::string v2_test_server::read_until_closed(millis timeout) {
  return control_->read_until_closed(timeout);
}

tcp_conn v2_test_server::open_reverse(millis timeout) {
  if (reverse_.port == 0) throw io_error("v2 server: open_reverse() before greet()");
  return tcp_connect_to(options_.host, reverse_.port, timeout);
}

tcp_conn v2_test_server::open_reverse_with(std::string_view first_bytes, millis timeout) {
  tcp_conn conn = open_reverse(timeout);
  conn.send_all(first_bytes, timeout);
  return conn;
}

tcp_conn v2_test_server::accept(const connection_id& id, millis timeout) {
  return open_reverse_with(v2::format_line(v2::accept{id}), timeout);
}

tcp_conn v2_test_server::accept_client(millis timeout) {
  const auto announced = expect_new_connection(timeout);
  return accept(announced.id, timeout);
}

std::string v2_test_server::ready_line(std::uint64_t serial) const {
  connection_id secret;
  if (parse_connection_id(session_secret_, secret))
    throw io_error("v2 server: ready_line() without a session secret (greet() first)");
  return v2::format_line(v2::ready{serial, warm_ticket::tag(secret, serial)});
}

tcp_conn v2_test_server::open_warm(std::uint64_t serial, millis timeout) {
  return open_reverse_with(ready_line(serial), timeout);
}

void v2_test_server::track_reverse(tcp_conn& conn, handler h) {
  std::lock_guard lock(mutex_);
  open_reverse_fds_.push_back(conn.fd());
  handler_threads_.emplace_back([this, h = std::move(h), conn = std::move(conn)]() mutable {
    std::string error;
    try {
      h(conn);
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::lock_guard lock(mutex_);
    if (!error.empty()) errors_.push_back(error);
    // Under the lock, so the destructor never shuts down a reused fd.
    open_reverse_fds_.erase(
        std::find(open_reverse_fds_.begin(), open_reverse_fds_.end(), conn.fd()));
    conn.close();
  });
}

void v2_test_server::serve(handler h) {
  if (control_thread_.joinable()) throw io_error("v2 server: serve() called twice");
  control_thread_ = std::thread([this, h = std::move(h)] {
    while (!stopping_) {
      std::optional<std::string> line;
      try {
        line = read_line(200ms);
      } catch (const io_error&) {
        if (control_->closed()) break;
        continue;  // an idle control connection is normal; check stopping_
      }
      if (!line) break;  // the relay (or disconnect()) ended it
      v2::relay_message msg;
      if (v2::parse_relay_line(*line, msg) || !std::holds_alternative<v2::new_connection>(msg)) {
        if (*line == "pong") continue;
        std::lock_guard lock(mutex_);
        errors_.push_back("unexpected control line " + printable(*line));
        continue;
      }
      try {
        tcp_conn conn = accept(std::get<v2::new_connection>(msg).id);
        ++served_;
        track_reverse(conn, h);
      } catch (const std::exception& e) {
        std::lock_guard lock(mutex_);
        errors_.push_back(std::string("opening a reverse connection: ") + e.what());
      }
    }
    if (!stopping_) control_ended_ = true;
  });
}

void v2_test_server::serve_echo() { serve(echo); }

std::vector<std::string> v2_test_server::errors() const {
  std::lock_guard lock(mutex_);
  return errors_;
}

void v2_test_server::stop_serving() {
  if (!control_thread_.joinable()) return;
  stopping_ = true;
  control_->interrupt();
  control_thread_.join();
}

void v2_test_server::disconnect() {
  stop_serving();
  control_->close();
}

}  // namespace tlsrelay::test
