#include "logging/structured_log.hpp"

#include <ctime>

#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace tlsrelay::logging {
namespace {

// The event being written on this thread, for the formatter: spdlog's
// loggers here are synchronous, so a line is formatted on the thread that
// logs it, inside write().
struct pending_event {
  const char* event;
  const fields* f;
};
thread_local const pending_event* current = nullptr;

// Today's text lines, unchanged: local time, level, text.
constexpr const char* text_pattern = "%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v";

const char* level_name(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

// RFC 3339, UTC, milliseconds: 2026-01-02T03:04:05.678Z.
std::string utc_timestamp(spdlog::log_clock::time_point t) {
  const auto since_epoch = t.time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds);
  const std::time_t whole = static_cast<std::time_t>(seconds.count());
  std::tm utc{};
  gmtime_r(&whole, &utc);
  char text[32];
  const auto n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  return fmt::format("{}.{:03}Z", std::string_view(text, n), millis.count());
}

class json_formatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::ordered_json line;
    line["ts"] = utc_timestamp(msg.time);
    line["level"] = level_name(msg.level);
    line["event"] = current ? current->event : "message";
    line["msg"] = std::string(msg.payload.data(), msg.payload.size());
    if (current) {
      for (const auto& [key, value] : current->f->items()) {
        if (const auto* text = std::get_if<std::string>(&value))
          line[key] = *text;
        else
          line[key] = std::get<std::uint64_t>(value);
      }
    }
    // Bytes that are not UTF-8 (a peer's line quoted in a message) become
    // U+FFFD instead of making the line unwritable.
    const auto text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_formatter>();
  }
};

}  // namespace

void write(spdlog::level::level_enum level, const char* event, const fields& f,
           std::string_view text) {
  const pending_event pending{event, &f};
  current = &pending;
  spdlog::default_logger_raw()->log(level, spdlog::string_view_t(text.data(), text.size()));
  current = nullptr;
}

std::unique_ptr<spdlog::formatter> make_json_formatter() {
  return std::make_unique<json_formatter>();
}

void setup(const std::string& logger_name, log_format format, const std::string& level) {
  std::shared_ptr<spdlog::logger> logger;
  if (format == log_format::json) {
    // No colours: a log shipper reads the bytes.
    logger = spdlog::stderr_logger_mt(logger_name);
    logger->set_formatter(make_json_formatter());
  } else {
    logger = spdlog::stderr_color_mt(logger_name);
    logger->set_pattern(text_pattern);
  }
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace tlsrelay::logging
