// Tells the support library whether the running test case has failed (so a
// relay prints its log only when that helps) and lets it fail the running
// test case (a relay_process the test forgot to stop).
#include <atomic>
#include <string>

#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

#include "tests/support/relay_process.hpp"

namespace {

std::atomic<bool> current_test_failed{false};

bool probe() { return current_test_failed.load(); }

void report(const std::string& message) { FAIL_CHECK(message); }

struct client_failure_tracker : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;

  void testRunStarting(Catch::TestRunInfo const& info) override {
    tlsrelay::test::set_failure_probe(&probe);
    tlsrelay::test::set_failure_reporter(&report);
    TestEventListenerBase::testRunStarting(info);
  }
  void testCaseStarting(Catch::TestCaseInfo const& info) override {
    current_test_failed = false;
    TestEventListenerBase::testCaseStarting(info);
  }
  bool assertionEnded(Catch::AssertionStats const& stats) override {
    if (!stats.assertionResult.isOk()) current_test_failed = true;
    return true;
  }
};

}  // namespace

CATCH_REGISTER_LISTENER(client_failure_tracker)
