#include "cli/reload.hpp"

#include <spdlog/spdlog.h>

namespace tlsrelay::cli {

reload_counters& reload_stats() {
  static reload_counters counters;
  return counters;
}

reloader::reloader(std::function<std::string()> reload_once)
    : reload_once_(std::move(reload_once)) {}

std::string reloader::reload() {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& stats = reload_stats();
  ++stats.reloads;
  std::string error;
  try {
    error = reload_once_();
  } catch (const std::exception& e) {
    error = e.what();  // e.g. out of memory: still a refused reload, not a dead relay
  }
  if (!error.empty()) {
    ++stats.failures;
    spdlog::error("reload refused, the running configuration stays in force: {}", error);
  }
  return error;
}

}  // namespace tlsrelay::cli
