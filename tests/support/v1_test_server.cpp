#include "tests/support/v1_test_server.hpp"

#include <sys/socket.h>

#include <algorithm>

namespace tlsrelay::test {
namespace {

listener_address parse_address(const std::string& line, const std::string& command) {
  const std::string prefix = command + " ";
  if (line.compare(0, prefix.size(), prefix) != 0)
    throw io_error("expected the line \"" + command + " <HOST>:<PORT>\", the relay sent " +
                   printable(line));
  const std::string arg = line.substr(prefix.size());
  const auto colon = arg.rfind(':');
  listener_address out;
  if (colon != std::string::npos && colon > 0 && colon + 1 < arg.size() &&
      arg.find_first_not_of("0123456789", colon + 1) == std::string::npos &&
      arg.size() - colon - 1 <= 5) {
    const unsigned long port = std::stoul(arg.substr(colon + 1));
    if (port > 0 && port <= 65535) {
      out.host = arg.substr(0, colon);
      out.port = static_cast<std::uint16_t>(port);
      return out;
    }
  }
  throw io_error("malformed " + command + " line: " + printable(line));
}

}  // namespace

v1_test_server::v1_test_server(std::uint16_t control_port, const std::filesystem::path& keys_dir,
                               millis timeout)
    : v1_test_server(control_port, tls_identity::from_keys_dir(keys_dir), timeout) {}

v1_test_server::v1_test_server(std::uint16_t control_port, const tls_identity& identity,
                               millis timeout)
    : control_(std::make_unique<tls_line_conn>(control_port, identity, timeout)) {
  if (!control_->handshake(timeout))
    throw io_error("server: the TLS handshake with the control port 127.0.0.1:" +
                   std::to_string(control_port) + " failed: " + control_->close_reason());
}

v1_test_server::~v1_test_server() {
  disconnect();
  std::vector<std::thread> handlers;
  {
    std::lock_guard lock(mutex_);
    for (const int fd : open_reverse_fds_) ::shutdown(fd, SHUT_RDWR);
    handlers.swap(handler_threads_);
  }
  for (auto& t : handlers) t.join();
}

void v1_test_server::greet(millis timeout) {
  if (!try_greet(timeout))
    throw io_error("server: the relay answered no_available_listeners instead of "
                   "public_listener: its pool is empty");
}

bool v1_test_server::try_greet(millis timeout) {
  const auto deadline = steady::now() + timeout;
  for (const std::string command : {"public_listener", "reverse_listener"}) {
    const auto line = control_->read_line(std::max(millis(0), std::chrono::duration_cast<millis>(
                                                                  deadline - steady::now())));
    if (!line)
      throw io_error("server: the relay ended the control connection instead of sending " +
                     command + ": " + control_->close_reason() + "; lines before: " +
                     std::to_string(greeting_.size()));
    greeting_.push_back(*line);
    if (greeting_.size() == 1 && *line == "no_available_listeners") return false;
    (command == "public_listener" ? public_ : reverse_) = parse_address(*line, command);
  }
  return true;
}

std::optional<std::string> v1_test_server::read_line(millis timeout) {
  return control_->read_line(timeout);
}

void v1_test_server::expect_new_connection(millis timeout) {
  const auto line = control_->read_line(timeout);
  if (!line)
    throw io_error("server: the relay ended the control connection while the server waited for "
                   "new_connection: " + control_->close_reason());
  if (*line != "new_connection")
    throw io_error("server: expected the line \"new_connection\", the relay sent " +
                   printable(*line));
}

tcp_conn v1_test_server::open_reverse(millis timeout) {
  if (reverse_.port == 0) throw io_error("server: open_reverse() before greet()");
  return tcp_conn::connect(reverse_.port, timeout);
}

tcp_conn v1_test_server::accept_client(millis timeout) {
  expect_new_connection(timeout);
  return open_reverse(timeout);
}

void v1_test_server::serve(handler h) {
  control_thread_ = std::thread([this, h = std::move(h)] {
    while (!stopping_) {
      std::optional<std::string> line;
      try {
        line = control_->read_line(1s);
      } catch (const io_error&) {
        continue;  // an idle control connection is normal; check stopping_
      }
      if (!line) return;  // the relay (or disconnect()) ended it
      if (*line != "new_connection") {
        std::lock_guard lock(mutex_);
        errors_.push_back("unexpected control line " + printable(*line));
        continue;
      }
      try {
        tcp_conn conn = open_reverse();
        ++served_;
        std::lock_guard lock(mutex_);
        open_reverse_fds_.push_back(conn.fd());
        handler_threads_.emplace_back([this, h, conn = std::move(conn)]() mutable {
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
      } catch (const std::exception& e) {
        std::lock_guard lock(mutex_);
        errors_.push_back(std::string("opening a reverse connection: ") + e.what());
      }
    }
  });
}

void v1_test_server::serve_echo() { serve(echo); }

std::vector<std::string> v1_test_server::errors() const {
  std::lock_guard lock(mutex_);
  return errors_;
}

void v1_test_server::stop_serving() {
  if (!control_thread_.joinable()) return;
  stopping_ = true;
  control_->interrupt();
  control_thread_.join();
}

void v1_test_server::disconnect() {
  stop_serving();
  control_->close();
}

void echo(tcp_conn& conn) {
  for (;;) {
    std::optional<std::string> data;
    try {
      data = conn.recv_some(60s);
    } catch (const io_error&) {
      return;  // reset by the relay, or shut down by ~v1_test_server
    }
    if (!data) {
      try {
        conn.shutdown_write();
      } catch (const io_error&) {
        // the relay is already gone: nothing left to answer
      }
      return;
    }
    conn.send_all(*data, 30s);
  }
}

}  // namespace tlsrelay::test
