// What the first SIGTERM or SIGINT does to a running relay: it drains. The
// readiness flag drops at once; the pool_manager closes the doors (control
// and public ports), tells every session, and reports when the last one has
// ended or the drain timeout has passed; serve waits for that report, or for
// a second SIGTERM/SIGINT, which stops it at once.
#pragma once

#include <signal.h>

#include <chrono>
#include <functional>
#include <memory>

namespace tlsrelay::cli {

// Whether the relay is draining: set at the first SIGTERM/SIGINT, never
// cleared (the process exits). For readiness (/readyz): not ready from then on.
bool relay_draining() noexcept;
void mark_draining() noexcept;

// The wait of serve's main thread for the end of a drain.
class drain_waiter {
 public:
  enum class outcome {
    drained,      // the pool_manager reported the drain over
    signal,       // another stop signal came first
    overdue,      // neither within the limit (the actors did not answer)
  };

  drain_waiter();
  drain_waiter(const drain_waiter&) = delete;
  drain_waiter& operator=(const drain_waiter&) = delete;

  // For pool_manager_config::drained: wakes wait(). Callable from any thread,
  // also after this waiter is gone.
  std::function<void()> notifier() const;

  // Waits for the drain to end, for one of `signals` (which every thread
  // must have blocked; the one taken is written to `*signal_number`), or
  // for `limit` to pass.
  outcome wait(const sigset_t& signals, std::chrono::milliseconds limit, int* signal_number);

 private:
  struct event;
  std::shared_ptr<event> event_;
};

}  // namespace tlsrelay::cli
