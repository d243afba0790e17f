// Log lines that name what happened: the relay's important events (start and
// stop, sessions, pair ends, refusals, the drain) are written with an event
// name and fields. The text format (the default) shows only the human text,
// as it always has; the JSON format (`serve --log-format json`) writes one
// object per line with stable keys, for log shippers:
//
//   {"ts":"2026-01-02T03:04:05.678Z","level":"info","event":"pair_ended",
//    "msg":"...","session":7,"name":"web","peer":"192.0.2.1:5555","port":12101,
//    "bytes_in":10,"bytes_out":20,"duration_ms":31,"reason":"closed"}
//
// `ts` is RFC 3339 UTC with milliseconds; `level` is trace, debug, info,
// warn, error or critical; a line logged without this helper is event
// "message". Field names used by the relay: session (the control
// connection's number), name, peer, port, bytes_in, bytes_out, duration_ms,
// reason, plus counts some events carry (sessions, pairs, ...).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <spdlog/spdlog.h>

namespace tlsrelay::logging {

enum class log_format { text, json };

// The fields of one event, in the order they are written.
class fields {
 public:
  using value = std::variant<std::string, std::uint64_t>;

  fields& session(std::uint64_t id) { return add("session", id); }
  fields& name(std::string v) { return v.empty() ? *this : add("name", std::move(v)); }
  fields& peer(std::string v) { return add("peer", std::move(v)); }
  fields& port(std::uint64_t v) { return add("port", v); }
  fields& bytes_in(std::uint64_t v) { return add("bytes_in", v); }
  fields& bytes_out(std::uint64_t v) { return add("bytes_out", v); }
  fields& duration_ms(std::uint64_t v) { return add("duration_ms", v); }
  fields& reason(std::string v) { return add("reason", std::move(v)); }
  // Any other field (counts of an event); `key` must be a literal of [a-z_].
  fields& add(const char* key, value v) {
    items_.emplace_back(key, std::move(v));
    return *this;
  }

  const std::vector<std::pair<const char*, value>>& items() const { return items_; }

 private:
  std::vector<std::pair<const char*, value>> items_;
};

// Logs `text` at `level` as event `event` (a short stable name such as
// "session_started") with `f`, through the default logger.
void write(spdlog::level::level_enum level, const char* event, const fields& f,
           std::string_view text);

template <class... Args>
void event(spdlog::level::level_enum level, const char* event, const fields& f,
           fmt::format_string<Args...> format, Args&&... args) {
  if (!spdlog::default_logger_raw()->should_log(level)) return;
  write(level, event, f, fmt::format(format, std::forward<Args>(args)...));
}

// The relay's logger on stderr in `format` at `level` (trace ... off),
// made the default logger.
void setup(const std::string& logger_name, log_format format, const std::string& level);

// The formatter of the JSON format, for a logger of one's own.
std::unique_ptr<spdlog::formatter> make_json_formatter();

}  // namespace tlsrelay::logging
