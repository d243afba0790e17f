// The relay's reload entry point: what SIGHUP does, and what the admin
// endpoint's `POST /reload` calls.
//
// A reload re-reads the config file (--config), the keys directory
// (certificate, key, CA) and the tokens file, and applies what can change
// while the relay runs: the token table (sessions whose token is gone are
// ended with `error auth_failed token revoked`), the certificates and CA used
// by new TLS handshakes (connections already up keep theirs), and the log
// level. Other settings that differ from the running ones are logged as
// "changed in FILE but ignored until restart". Nothing is applied unless
// everything new reads and checks out: a bad config, key or tokens file is
// refused with one line and the running configuration stays in force.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace tlsrelay::cli {

// Process-wide, for the admin endpoint's /metrics:
// tlsrelay_reloads_total (every reload asked for, by signal or HTTP) and
// tlsrelay_reload_failures_total (those refused; the old configuration stayed).
struct reload_counters {
  std::atomic<std::uint64_t> reloads{0};
  std::atomic<std::uint64_t> failures{0};
};
reload_counters& reload_stats();

class reloader {
 public:
  // `reload_once` does one reload and returns "" (the new configuration is in
  // force) or one line saying why it was refused.
  explicit reloader(std::function<std::string()> reload_once);

  // Callable from any thread; reloads run one at a time (a second caller
  // waits for the first to finish, then reloads again: it may have changed a
  // file in between). Logs the outcome and counts it in reload_stats().
  // Returns "" on success, else the one-line reason (also logged).
  std::string reload();

 private:
  std::mutex mutex_;
  std::function<std::string()> reload_once_;
};

}  // namespace tlsrelay::cli
