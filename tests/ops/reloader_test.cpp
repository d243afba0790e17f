// The reload entry point shared by SIGHUP and the admin endpoint's
// POST /reload (cli/reload.hpp): one reload at a time whichever thread asks,
// its outcome returned, and every reload and every refusal counted for
// tlsrelay_reloads_total / tlsrelay_reload_failures_total.
#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "cli/reload.hpp"

using tlsrelay::cli::reload_stats;
using tlsrelay::cli::reloader;

TEST_CASE("reloader: the outcome is returned and counted", "[ops][reload]") {
  const auto reloads = reload_stats().reloads.load();
  const auto failures = reload_stats().failures.load();
  std::string next_outcome;
  reloader reload([&] { return next_outcome; });

  CHECK(reload.reload() == "");
  next_outcome = "relay.toml:3: key \"port\": expected an integer, found a string";
  CHECK(reload.reload() == next_outcome);
  CHECK(reload_stats().reloads.load() == reloads + 2);
  CHECK(reload_stats().failures.load() == failures + 1);

  reloader throwing([]() -> std::string { throw std::runtime_error("out of memory"); });
  CHECK(throwing.reload() == "out of memory");
  CHECK(reload_stats().failures.load() == failures + 2);
}

TEST_CASE("reloader: reloads asked for from several threads run one at a time",
          "[ops][reload]") {
  const auto reloads = reload_stats().reloads.load();
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  reloader reload([&] {
    if (inside.fetch_add(1) != 0) ++overlaps;
    for (int i = 0; i < 1000; ++i) std::this_thread::yield();  // a window for an overlap
    inside.fetch_sub(1);
    return std::string();
  });
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int i = 0; i < 25; ++i) reload.reload();
    });
  for (auto& caller : callers) caller.join();
  CHECK(overlaps.load() == 0);
  CHECK(reload_stats().reloads.load() == reloads + 100);
}
