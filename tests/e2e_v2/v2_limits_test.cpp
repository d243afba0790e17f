// What a connection costs before it has proved anything is bounded: reverse
// connections that have not sent their first line, per address; new client
// connections per address and second (--client-rate); descriptors (a relay
// under a small `ulimit -n` sheds what it cannot hold and keeps serving).
// Attackers get addresses of their own: all of 127.0.0.0/8 is loopback.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

#include "tests/e2e_v2/e2e_v2.hpp"

using namespace tlsrelay::test;

namespace {

// A TCP connection from `source` (an address of 127.0.0.0/8) to
// 127.0.0.1:port. The kernel completes it whatever the relay then does.
tcp_conn connect_from(const std::string& source, std::uint16_t port) {
  unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw io_error(std::string("socket(): ") + std::strerror(errno));
  sockaddr_in from{};
  from.sin_family = AF_INET;
  ::inet_pton(AF_INET, source.c_str(), &from.sin_addr);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&from), sizeof from) != 0)
    throw io_error("bind " + source + ": " + std::strerror(errno));
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) != 0)
    throw io_error("connect from " + source + ": " + std::strerror(errno));
  // tcp_conn's reads wait with poll() and a deadline: they need a non-blocking socket.
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  return tcp_conn(std::move(fd), "127.0.0.1:" + std::to_string(port));
}

// Open descriptors of a process.
std::size_t open_fds(pid_t pid) {
  std::size_t n = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    (void)entry;
    ++n;
  }
  return n;
}

// This test process needs thousands of sockets: the soft limit up to the hard one.
void raise_own_descriptor_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

}  // namespace

TEST_CASE("v2 limits: 2000 silent connections to a reverse port from one address are capped, a "
          "server's reverse connection from another address still pairs",
          "[e2e][v2][limits][hostile]") {
  raise_own_descriptor_limit();
  relay_process relay(v2_relay(2, {"--max-unchecked-per-source", "64"}));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  const auto reverse_port = server->reverse_listener().port;
  const std::size_t baseline = open_fds(relay.pid());

  std::vector<tcp_conn> silent;
  silent.reserve(2000);
  for (int i = 0; i < 2000; ++i) silent.push_back(connect_from("127.0.0.2", reverse_port));
  // The relay keeps 64 of them (each may wait for its first line) and closes
  // the rest at once: the last one is closed without a byte.
  CHECK(closed_within(silent.back(), 3000ms));
  const std::size_t during = open_fds(relay.pid());
  INFO("relay descriptors: " << baseline << " before, " << during << " with the flood held open");
  CHECK(during <= baseline + 64 + 8);

  // The server, from its own address, is served as usual.
  tcp_conn client = tcp_conn::connect(server->public_listener().port);
  tcp_conn reverse = server->accept_client();
  client.send_all("through the flood");
  CHECK(reverse.recv_exact(17) == "through the flood");
  reverse.send_all("ok");
  CHECK(client.recv_exact(2) == "ok");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2 limits: --client-rate bites per address and recovers", "[e2e][v2][limits][hostile]") {
  relay_process relay(v2_relay(2, {"--client-rate", "5"}));  // bursts of 10
  auto server = v2_server_with_certificate(relay);
  server->greet();
  server->serve_echo();
  const auto port = server->public_listener().port;

  const auto echoed = [&](const std::string& source, const std::string& text) {
    try {
      tcp_conn c = connect_from(source, port);
      c.send_all(text);
      return c.recv_exact(text.size(), 3s) == text;
    } catch (const io_error&) {
      return false;  // closed without an answer: refused
    }
  };
  int served = 0;
  const auto burst_from = steady::now();
  for (int i = 0; i < 20; ++i) served += echoed("127.0.0.3", "burst " + std::to_string(i));
  // The bucket starts full (10) and refills at 5 a second while the burst
  // runs (slowly, under a sanitizer): at most that many more pass.
  const std::chrono::duration<double> burst_took = steady::now() - burst_from;
  const int allowed = 10 + static_cast<int>(burst_took.count() * 5) + 1;
  INFO("served " << served << " of 20 in " << burst_took.count() << " s; at most " << allowed);
  CHECK(served >= 10);
  CHECK(served <= allowed);
  CHECK(served < 20);  // it bites
  // Another address has its own allowance.
  CHECK(echoed("127.0.0.4", "another address"));
  // Tokens come back at 5 a second: after 1.2 s at least five more pass.
  std::this_thread::sleep_for(1200ms);  // the scenario: the flood pauses
  int later = 0;
  for (int i = 0; i < 5; ++i) later += echoed("127.0.0.3", "later " + std::to_string(i));
  CHECK(later == 5);
  CHECK(relay.wait_for_log("client connection rate of one address exceeded"));
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2 limits: under ulimit -n 256 a connection flood is shed, established pairs keep "
          "echoing, and new clients are served once it ends",
          "[e2e][v2][limits][hostile]") {
  raise_own_descriptor_limit();
  // No per-address cap: the flood runs into the descriptor limit itself.
  relay_options options = v2_relay(4, {"--max-unchecked-per-source", "0"});
  options.launcher = {"prlimit", "--nofile=256:256", "--"};
  relay_process relay(options);
  auto server = v2_server_with_certificate(relay);
  server->greet();
  const auto port = server->public_listener().port;

  // Three established pairs, echoing through the server's reverse connections.
  std::vector<tcp_conn> clients, reverses;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(tcp_conn::connect(port));
    reverses.push_back(server->accept_client());
  }
  const auto round_trip = [&](int i, const std::string& text) {
    clients[i].send_all(text);
    if (reverses[i].recv_exact(text.size()) != text) return false;
    reverses[i].send_all(text);
    return clients[i].recv_exact(text.size()) == text;
  };
  for (int i = 0; i < 3; ++i) REQUIRE(round_trip(i, "before"));

  // 600 silent connections to the reverse port from another address, held
  // open: far more than 256 descriptors. The relay must shed what it cannot hold.
  std::vector<tcp_conn> flood;
  for (int i = 0; i < 600; ++i) {
    try {
      flood.push_back(connect_from("127.0.0.5", server->reverse_listener().port));
    } catch (const io_error&) {
      // A full backlog may refuse or time out; the flood goes on.
    }
  }
  for (int i = 0; i < 3; ++i) CHECK(round_trip(i, "during " + std::to_string(i)));
  flood.clear();  // the flood ends

  // The relay recovers by itself: a new client is served (retried while the
  // relay is still letting go of the flood's connections).
  bool served = false;
  const auto deadline = steady::now() + 10s;
  while (!served && steady::now() < deadline) {
    tcp_conn c = tcp_conn::connect(port);
    try {
      const auto announced = server->expect_new_connection(2s);
      tcp_conn reverse = server->accept(announced.id);
      c.send_all("after");
      served = reverse.recv_exact(5, 2s) == "after";
    } catch (const io_error&) {
      std::this_thread::sleep_for(200ms);  // it was shed: try again shortly
    }
  }
  CHECK(served);
  for (int i = 0; i < 3; ++i) CHECK(round_trip(i, "after " + std::to_string(i)));
  CHECK(relay.wait_for_log("refused"));
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

TEST_CASE("v2 limits: a relay refuses to start when its pool cannot fit under the descriptor limit",
          "[e2e][limits]") {
  child_process relay("prlimit", {"--nofile=100:100", "--", tlsrelay_binary(), "serve", "--listen",
                                  "127.0.0.1", "--port", "1", "--port-count", "200"});
  const auto code = relay.wait_exit(10000ms);
  REQUIRE(code.has_value());
  CHECK(*code == 2);
  CHECK_THAT(relay.stderr_text(), Catch::Contains("descriptor limit (ulimit -n) is 100"));
  CHECK_THAT(relay.stderr_text(), Catch::Contains("--port-count 200"));
}

// Not in the ASan/UBSan build: UBSan checks a vptr by testing the memory
// with a pipe, and a relay out of descriptors gets none, so UBSan reports
// every virtual call as an invalid vptr (and no suppression applies to an
// object whose type it could not read). The TSan and Release builds run it.
#if !defined(__SANITIZE_ADDRESS__)

namespace {

// The lowest descriptor number a process does not have open: with its limit
// set to this, the process can open no descriptor at all.
int lowest_free_fd(pid_t pid) {
  std::set<int> open;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
    open.insert(std::stoi(entry.path().filename().string()));
  int n = 0;
  while (open.count(n) != 0) ++n;
  return n;
}

// Sets a running process's descriptor limit (soft and hard) with prlimit(1).
void set_descriptor_limit(pid_t pid, int limit) {
  const std::string value = "--nofile=" + std::to_string(limit) + ":" + std::to_string(limit);
  child_process prlimit("prlimit", {"--pid", std::to_string(pid), value});
  const auto code = prlimit.wait_exit(5000ms);
  REQUIRE(code.has_value());
  REQUIRE(*code == 0);
}

}  // namespace

TEST_CASE("v2 limits: a relay out of descriptors sheds new connections at once, keeps its pairs "
          "and recovers when descriptors free up",
          "[e2e][v2][limits][hostile]") {
  // No per-address or global cap gets there first: the descriptors run out.
  // (The test server does not answer pings: a long heartbeat keeps its session.)
  relay_process relay(v2_relay(2, {"--max-unchecked-per-source", "0", "--client-rate", "0",
                                   "--heartbeat", "120"}));
  auto server = v2_server_with_certificate(relay);
  server->greet();
  const auto port = server->public_listener().port;
  std::vector<tcp_conn> clients, reverses;
  const auto round_trip = [&](std::size_t i, const std::string& text) {
    clients[i].send_all(text);
    if (reverses[i].recv_exact(text.size()) != text) return false;
    reverses[i].send_all(text);
    return clients[i].recv_exact(text.size()) == text;
  };
  for (int i = 0; i < 4; ++i) {
    clients.push_back(tcp_conn::connect(port));
    reverses.push_back(server->accept_client());
    REQUIRE(round_trip(clients.size() - 1, "before"));
  }

  // The descriptors run out under the relay: the limit drops to its lowest
  // free number, so it can open no more. (As when the limit or the host is
  // exhausted; the relay's own --max-connections still has room.) The spare
  // descriptor it keeps for this was opened at start, below that number.
  set_descriptor_limit(relay.pid(), lowest_free_fd(relay.pid()));

  // New clients: one that fits where the relay gave up idle pipes is taken;
  // then they are shed, closed at once instead of hanging in the backlog.
  std::vector<tcp_conn> held;
  bool shed = false;
  for (int i = 0; i < 16 && !shed; ++i) {
    tcp_conn c = tcp_conn::connect(port);
    if (closed_within(c, 1000ms)) {
      shed = true;
    } else {
      held.push_back(std::move(c));
    }
  }
  INFO("clients taken before one was shed: " << held.size());
  REQUIRE(shed);
  CHECK(relay.wait_for_log("out of file descriptors, connection shed"));
  // Out of descriptors with nobody waiting, the relay waits for the next
  // connection: no accept loop, no line per failed accept.
  const auto log = relay.stderr_text();
  std::size_t failed_accepts = 0;
  for (auto at = log.find("accept failed"); at != std::string::npos;
       at = log.find("accept failed", at + 1))
    ++failed_accepts;
  CHECK(failed_accepts == 0);
  // The pairs it had keep working.
  for (std::size_t i = 0; i < clients.size(); ++i)
    CHECK(round_trip(i, "while out of descriptors " + std::to_string(i)));

  // Descriptors free up (two pairs and the held clients end): the relay
  // serves new clients again by itself.
  held.clear();
  for (int i = 0; i < 2; ++i) {
    clients.pop_back();
    reverses.pop_back();
  }
  server->serve_echo();
  bool served = false;
  const auto deadline = steady::now() + 10s;
  while (!served && steady::now() < deadline) {
    try {
      tcp_conn c = tcp_conn::connect(port);
      c.send_all("after");
      served = c.recv_exact(5, 2s) == "after";
    } catch (const io_error&) {
      std::this_thread::sleep_for(200ms);  // shed again: the relay is still letting go
    }
  }
  CHECK(served);
  for (std::size_t i = 0; i < clients.size(); ++i) CHECK(round_trip(i, "after " + std::to_string(i)));
  CHECK_RELAY_STOPS_CLEANLY(relay);
}

#endif  // !__SANITIZE_ADDRESS__

namespace {

// `n` TCP connections from `source` to the control port that never start TLS;
// returns how many the relay closed within `within` (refused at accept).
int closed_of_silent_controls(const relay_process& relay, const std::string& source, int n,
                              std::vector<tcp_conn>& keep, millis within = 1500ms) {
  std::vector<tcp_conn> conns;
  for (int i = 0; i < n; ++i) conns.push_back(connect_from(source, relay.port()));
  // One deadline for all: those refused are closed at once, the others wait
  // for their handshake (far longer).
  const auto deadline = steady::now() + within;
  int closed = 0;
  for (auto& c : conns) {
    const auto left = std::max(millis(0), std::chrono::duration_cast<millis>(deadline - steady::now()));
    closed += closed_within(c, left) ? 1 : 0;
  }
  for (auto& c : conns) keep.push_back(std::move(c));
  return closed;
}

// A v2 server from 127.0.0.1 still gets through: TLS, hello, welcome.
bool server_gets_through(const relay_process& relay) {
  try {
    auto server = v2_server_with_certificate(relay);
    server->greet();
    return server->public_listener().port != 0;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

TEST_CASE("v2 limits: handshakes per address, handshakes in all and control connections per "
          "second are capped, and a server from another address still gets through",
          "[e2e][v2][limits][hostile]") {
  std::vector<tcp_conn> keep;  // held open (mid-handshake) until the section ends
  SECTION("--max-handshakes-per-source") {
    relay_process relay(v2_relay(2, {"--max-handshakes-per-source", "4", "--control-rate", "0"}));
    // Ten connections that never finish their handshake: four are kept (until
    // the handshake timeout), six are closed at once.
    CHECK(closed_of_silent_controls(relay, "127.0.0.6", 10, keep) == 6);
    CHECK(server_gets_through(relay));
    CHECK(relay.wait_for_log("--max-handshakes-per-source"));
    CHECK_RELAY_STOPS_CLEANLY(relay);
  }
  SECTION("--max-handshakes") {
    relay_process relay(v2_relay(2, {"--max-handshakes", "6", "--max-handshakes-per-source", "0",
                                     "--control-rate", "0"}));
    // Four from each of two addresses: the last two of the second are over
    // the global cap.
    CHECK(closed_of_silent_controls(relay, "127.0.0.6", 4, keep) == 0);
    CHECK(closed_of_silent_controls(relay, "127.0.0.7", 4, keep) == 2);
    // The cap is global: the legitimate server waits its turn, so free the
    // slots first (the relay sees the attackers leave).
    keep.clear();
    bool through = false;
    const auto deadline = steady::now() + 5s;
    while (!through && steady::now() < deadline) through = server_gets_through(relay);
    CHECK(through);
    CHECK(relay.wait_for_log("--max-handshakes)"));
    CHECK_RELAY_STOPS_CLEANLY(relay);
  }
  SECTION("--control-rate") {
    relay_process relay(v2_relay(2, {"--control-rate", "2", "--max-handshakes-per-source", "0"}));
    // A burst of twelve from one address: the bucket holds four (twice the
    // rate) and gains two a second while the burst runs, so most are closed
    // at once.
    const auto from = steady::now();
    const int closed = closed_of_silent_controls(relay, "127.0.0.8", 12, keep, 500ms);
    const std::chrono::duration<double> took = steady::now() - from;
    const int allowed = 4 + static_cast<int>(took.count() * 2) + 1;
    INFO("closed " << closed << " of 12 in " << took.count() << " s; at most " << allowed
                   << " allowed");
    CHECK(12 - closed >= 4);
    CHECK(12 - closed <= allowed);
    CHECK(closed > 0);
    CHECK(server_gets_through(relay));  // another address, its own bucket
    CHECK(relay.wait_for_log("--control-rate"));
    CHECK_RELAY_STOPS_CLEANLY(relay);
  }
}
