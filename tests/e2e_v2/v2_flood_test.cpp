// Peers that have not authenticated cost the relay a fixed, small amount:
// control lines are handed to a session under credit (a few at a time), and
// a line nobody expects ends the session at once, however long a failing
// authentication is being slowed down.
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "tests/e2e_v2/e2e_v2.hpp"
#include "tests/faults/faults.hpp"

using namespace tlsrelay::test;

TEST_CASE("v2 flood: 100 connections streaming lines during a slowed authentication are cut at "
          "once and cost the relay under 16 MiB",
          "[e2e][v2][flood][hostile]") {
  temp_file tokens("tokens", "the-only-good-token\n");
  // 100 handshakes from one address at once: the per-address admission
  // limits (tested on their own in v2_limits) would refuse some of them
  // whenever the machine is slow enough for more than 32 to overlap. This
  // test is about what the ones that got in cost.
  relay_process relay(v2_relay(2, {"--tokens", tokens.str(), "--max-handshakes-per-source", "0",
                                   "--control-rate", "0"}));
  // A session and a round trip first, so what start-up allocates lazily is
  // in the baseline.
  {
    auto warmup = v2_server_without_certificate(relay);
    warmup->greet(hello_with("the-only-good-token"));
  }
  const long baseline_kib = status_kib(relay.pid(), "VmRSS");

  constexpr int attackers = 100;
  const std::string junk_line = std::string(1000, 'x') + "\r\n";
  std::atomic<int> cut_early{0}, failed{0};
  std::atomic<long> lines_sent{0};
  std::vector<std::thread> threads;
  const auto started = steady::now();
  for (int i = 0; i < attackers; ++i) {
    threads.emplace_back([&] {
      try {
        v2_control_conn conn("127.0.0.1", relay.port(),
                             v2_test_server::without_certificate(relay.keys_dir()));
        if (!conn.handshake()) throw io_error("handshake refused: " + conn.close_reason());
        conn.write("hello 2 token=a-wrong-token\r\n");
        // Stream for up to 5 s: the relay slows down the verdict on the
        // token, the flood is meant to pile up meanwhile.
        const auto until = steady::now() + 5s;
        while (steady::now() < until) {
          try {
            conn.write(junk_line, 1000ms);
            ++lines_sent;
          } catch (const io_error&) {
            // The relay closed, or stopped reading (credit spent): either
            // way it takes no more.
            break;
          }
        }
        const std::string rest = conn.read_until_closed(6s);
        if (steady::now() < until) ++cut_early;
        if (rest.find("error bad_request") == std::string::npos && !rest.empty())
          throw io_error("unexpected answer: " + printable(rest));
      } catch (const std::exception& e) {
        ++failed;
        UNSCOPED_INFO("attacker: " << e.what());
      }
    });
  }
  for (auto& t : threads) t.join();
  const auto took = std::chrono::duration_cast<millis>(steady::now() - started);
  const long peak_kib = status_kib(relay.pid(), "VmHWM");

  INFO("baseline RSS " << baseline_kib << " KiB, peak " << peak_kib << " KiB; " << lines_sent
                       << " junk lines written in " << took.count() << " ms");
  CHECK(failed == 0);
  // Each was ended long before its 5 s of slowed authentication were up.
  CHECK(cut_early == attackers);
  if (rss_is_meaningful)
    CHECK(peak_kib - baseline_kib < 16 * 1024);
  else
    WARN("sanitizer build: the relay's RSS bound is checked by the Release build only");

  // And the relay serves the honest.
  auto honest = v2_server_without_certificate(relay);
  honest->greet(hello_with("the-only-good-token"));
  tcp_conn client = tcp_conn::connect(honest->public_listener().port);
  tcp_conn reverse = honest->accept_client();
  client.send_all("still serving");
  CHECK(reverse.recv_exact(13) == "still serving");
  CHECK_RELAY_STOPS_CLEANLY(relay);
}
