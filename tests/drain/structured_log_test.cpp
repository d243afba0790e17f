// The JSON log format itself: one line per event, valid JSON whatever the
// text holds, the event's fields as keys; a line logged without the helper is
// event "message".
#include <algorithm>
#include <sstream>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include "logging/structured_log.hpp"

using namespace tlsrelay;
using json = nlohmann::json;

namespace {

// Makes the default logger write JSON into `out` for the scope, at debug.
struct json_capture {
  json_capture() : previous(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    auto logger = std::make_shared<spdlog::logger>("json_capture", sink);
    logger->set_formatter(logging::make_json_formatter());
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
  }
  ~json_capture() { spdlog::set_default_logger(previous); }
  std::vector<json> lines() const {
    std::vector<json> parsed;
    std::istringstream in(out.str());
    for (std::string line; std::getline(in, line);) parsed.push_back(json::parse(line));
    return parsed;
  }
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> previous;
};

}  // namespace

TEST_CASE("logs: a JSON line stays one valid line whatever its text holds, with the event's "
          "fields as keys",
          "[logs]") {
  json_capture capture;
  const std::string tricky = "quote \" backslash \\ newline \n tab \t bell \a bad utf-8 \xff end";
  logging::event(spdlog::level::warn, "pair_ended",
                 logging::fields()
                   .session(7)
                   .name("web")
                   .peer("192.0.2.1:5555")
                   .port(12101)
                   .bytes_in(10)
                   .bytes_out(20)
                   .duration_ms(31)
                   .reason(tricky),
                 "text: {}", tricky);
  spdlog::info("a line without fields");
  logging::event(spdlog::level::trace, "not_logged", logging::fields(), "below the level");

  const std::string text = capture.out.str();
  CHECK(std::count(text.begin(), text.end(), '\n') == 2);
  const auto lines = capture.lines();
  REQUIRE(lines.size() == 2);
  const auto& e = lines[0];
  CHECK(e["level"] == "warn");
  CHECK(e["event"] == "pair_ended");
  CHECK(e["session"] == 7);
  CHECK(e["name"] == "web");
  CHECK(e["peer"] == "192.0.2.1:5555");
  CHECK(e["port"] == 12101);
  CHECK(e["bytes_in"] == 10);
  CHECK(e["bytes_out"] == 20);
  CHECK(e["duration_ms"] == 31);
  // The invalid byte becomes U+FFFD; everything else comes back as it was.
  const std::string expected = "quote \" backslash \\ newline \n tab \t bell \a bad utf-8 \xef\xbf\xbd end";
  CHECK(e["reason"] == expected);
  CHECK(e["msg"] == "text: " + expected);
  // The keys come in a fixed order: ts, level, event, msg, then the fields.
  CHECK(text.find("{\"ts\":") == 0);
  CHECK(text.find("\"level\"") < text.find("\"event\""));
  CHECK(text.find("\"event\"") < text.find("\"msg\""));
  CHECK(text.find("\"msg\"") < text.find("\"session\""));
  CHECK(lines[1]["event"] == "message");
  CHECK(lines[1]["msg"] == "a line without fields");
  CHECK(lines[1].size() == 4);  // ts, level, event, msg
}
