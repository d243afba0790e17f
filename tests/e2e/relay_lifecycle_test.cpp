// Starting and stopping the daemon: a bad flag, key file or port is refused
// with exit code 2 and one `tlsrelay: error:` line naming it, and nothing is
// left listening; a signal stops it cleanly.
#include <csignal>
#include <regex>
#include <sstream>

#include "tests/e2e/e2e.hpp"

using namespace tlsrelay::test;
using Catch::Matchers::Contains;

namespace {

struct start_attempt {
  int exit_code = -1;  // -1: still running after the deadline (then killed)
  std::string error_line;  // the first `tlsrelay: error:` line of stderr
  int error_lines = 0;     // how many such lines
  std::string stderr_text, stdout_text;
};

// Runs `tlsrelay serve --listen 127.0.0.1 ARGS...` and waits for it to end.
start_attempt try_to_start(std::vector<std::string> args) {
  args.insert(args.begin(), {"serve", "--listen", "127.0.0.1"});
  child_process relay(tlsrelay_binary(), args);
  start_attempt out;
  out.exit_code = relay.wait_exit(5s).value_or(-1);
  out.stderr_text = relay.stderr_text();
  out.stdout_text = relay.stdout_text();
  std::istringstream lines(out.stderr_text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("tlsrelay: error:", 0) != 0) continue;
    if (out.error_lines++ == 0) out.error_line = line;
  }
  return out;
}

// Ports of first..last (except `skip`) on which something accepts connections.
std::vector<unsigned> listening_ports(unsigned first, unsigned last, unsigned skip = 0) {
  std::vector<unsigned> found;
  for (unsigned p = first; p <= last && p <= 65535; ++p)
    if (p != skip && accepts_connections(static_cast<std::uint16_t>(p))) found.push_back(p);
  return found;
}

void check_refused(const start_attempt& attempt) {
  INFO("stderr: " << printable(attempt.stderr_text, 2000));
  CHECK(attempt.exit_code == 2);
  CHECK(attempt.error_lines == 1);
  CHECK_THAT(attempt.stdout_text, !Contains("tlsrelay: listening"));
  CHECK_NO_SANITIZER_OUTPUT(attempt.stderr_text);
}

}  // namespace

TEST_CASE("the relay refuses to start with an odd --port-count", "[e2e][startup]") {
  const pki keys;
  const std::uint16_t port = pick_free_port_range(7);
  const auto attempt = try_to_start({"--port", std::to_string(port), "--port-count", "7",
                                     "--keys", keys.dir().string()});
  check_refused(attempt);
  CHECK_THAT(attempt.error_line, Contains("--port-count"));
  CHECK(listening_ports(port, port + 7).empty());
}

TEST_CASE("the relay refuses to start with --port-count 0", "[e2e][startup]") {
  const pki keys;
  const std::uint16_t port = pick_free_port_range(2);
  const auto attempt = try_to_start({"--port", std::to_string(port), "--port-count", "0",
                                     "--keys", keys.dir().string()});
  check_refused(attempt);
  CHECK_THAT(attempt.error_line, Contains("--port-count"));
  CHECK(listening_ports(port, port + 2).empty());
}

TEST_CASE("the relay refuses a port range that goes past 65535", "[e2e][startup]") {
  const pki keys;
  REQUIRE(listening_ports(65500, 65535).empty());  // precondition: nobody else there
  const auto attempt = try_to_start(
      {"--port", "65500", "--port-count", "200", "--keys", keys.dir().string()});
  check_refused(attempt);
  CHECK_THAT(attempt.error_line, Contains("--port"));  // --port or --port-count
  CHECK(listening_ports(65500, 65535).empty());
}

TEST_CASE("the relay refuses to start when the keys directory does not exist",
          "[e2e][startup]") {
  const temp_dir tmp;
  const auto missing = tmp.path() / "no-such-keys-dir";
  const std::uint16_t port = pick_free_port_range(4);
  const auto attempt = try_to_start(
      {"--port", std::to_string(port), "--port-count", "4", "--keys", missing.string()});
  check_refused(attempt);
  CHECK_THAT(attempt.error_line, Contains(missing.string()));
  CHECK(listening_ports(port, port + 4).empty());
}

// Tests run as root, for whom chmod 000 changes nothing: a file that cannot
// be read is a directory in its place, or a symlink to nowhere.
TEST_CASE("the relay refuses to start when server.key.pem is a directory", "[e2e][startup]") {
  const pki keys;
  const auto key = keys.file("server.key.pem");
  fs::remove(key);
  fs::create_directory(key);
  const std::uint16_t port = pick_free_port_range(4);
  const auto attempt = try_to_start({"--port", std::to_string(port), "--port-count", "4",
                                     "--keys", keys.dir().string()});
  check_refused(attempt);
  CHECK_THAT(attempt.error_line, Contains(key.string()));
  CHECK(listening_ports(port, port + 4).empty());
}

TEST_CASE("the relay refuses to start when ca.crt.pem is a dangling symlink", "[e2e][startup]") {
  const pki keys;
  const auto ca = keys.file("ca.crt.pem");
  fs::remove(ca);
  fs::create_symlink(keys.dir() / "nowhere.pem", ca);
  const std::uint16_t port = pick_free_port_range(4);
  const auto attempt = try_to_start({"--port", std::to_string(port), "--port-count", "4",
                                     "--keys", keys.dir().string()});
  check_refused(attempt);
  CHECK_THAT(attempt.error_line, Contains(ca.string()));
  CHECK(listening_ports(port, port + 4).empty());
}

TEST_CASE("the relay refuses to start when server.key.pem does not match server.crt.pem",
          "[e2e][startup]") {
  const pki keys;
  const pki foreign;
  fs::copy_file(foreign.file("server.key.pem"), keys.file("server.key.pem"),
                fs::copy_options::overwrite_existing);
  const std::uint16_t port = pick_free_port_range(4);
  const auto attempt = try_to_start({"--port", std::to_string(port), "--port-count", "4",
                                     "--keys", keys.dir().string()});
  check_refused(attempt);
  // A mismatch is between two files; naming either one points at the problem.
  CHECK_THAT(attempt.error_line, Contains(keys.file("server.key.pem").string()) ||
                                     Contains(keys.file("server.crt.pem").string()));
  CHECK(listening_ports(port, port + 4).empty());
}

TEST_CASE("the relay refuses to start when a port of its range is taken and names that port",
          "[e2e][startup]") {
  const pki keys;
  const std::uint16_t port = pick_free_port_range(4);
  const unsigned taken = port + 3;  // the public port of pair 0
  const unique_fd occupant = listen_on(static_cast<std::uint16_t>(taken));
  REQUIRE(occupant);
  const auto attempt = try_to_start({"--port", std::to_string(port), "--port-count", "4",
                                     "--keys", keys.dir().string()});
  check_refused(attempt);
  INFO("error line: " << attempt.error_line);
  CHECK(std::regex_search(attempt.error_line,
                          std::regex("(^|[^0-9])" + std::to_string(taken) + "([^0-9]|$)")));
  CHECK(listening_ports(port, port + 4, taken).empty());
}

// relay_process runs the relay with --drain-timeout 0 (the drain: tests/drain).
TEST_CASE("SIGTERM with --drain-timeout 0 stops the relay with exit code 0 within 2 s and its "
          "clients' connections end",
          "[e2e][lifecycle]") {
  relay_process relay(relay_with(2));
  auto server = connect_server(relay);
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  tcp_conn reverse = server->accept_client();
  client.send_all("hi");
  REQUIRE(reverse.recv_exact(2) == "hi");
  reverse.send_all("yo");
  REQUIRE(client.recv_exact(2) == "yo");

  const auto sent_at = steady::now();
  relay.signal(SIGTERM);
  const auto code = relay.wait_exit(2s);
  INFO("waited " << std::chrono::duration_cast<millis>(steady::now() - sent_at).count() << " ms");
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK_NO_SANITIZER_OUTPUT(relay);
  CHECK_NOTHROW(client.expect_closed(2s));
  CHECK_FALSE(accepts_connections(relay.port()));
}

TEST_CASE("SIGINT with --drain-timeout 0 stops the relay with exit code 0 within 2 s",
          "[e2e][lifecycle]") {
  relay_process relay(relay_with(2));
  auto server = connect_server(relay);
  relay.signal(SIGINT);
  const auto code = relay.wait_exit(2s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK_NO_SANITIZER_OUTPUT(relay);
  CHECK_FALSE(accepts_connections(relay.port()));
}

TEST_CASE("the relay refuses to start with --io-threads 0 or above 8 and names the flag",
          "[e2e][startup]") {
  const pki keys;
  for (const std::string threads : {"0", "9"}) {
    const std::uint16_t port = pick_free_port_range(2);
    const auto attempt = try_to_start({"--port", std::to_string(port), "--port-count", "2",
                                       "--keys", keys.dir().string(), "--io-threads", threads});
    INFO("--io-threads " << threads);
    check_refused(attempt);
    CHECK_THAT(attempt.error_line, Contains("--io-threads"));
    CHECK(listening_ports(port, port + 2).empty());
  }
}
