#include <catch2/catch.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/defaults.hpp"
#include "protocol/line_splitter.hpp"

using tlsrelay::line_splitter;
using status = line_splitter::status;

namespace {

constexpr std::size_t max_line = tlsrelay::defaults::max_control_line_bytes;

struct drained {
  std::vector<std::string> lines;
  status last = status::need_more;
};

// Calls next() until it returns something other than a line.
drained drain(line_splitter& s) {
  drained d;
  for (;;) {
    const auto r = s.next();
    if (r.state != status::line) {
      d.last = r.state;
      return d;
    }
    d.lines.emplace_back(r.line);
  }
}

// Feeds `bytes` in pieces of `chunk` bytes, draining after each append.
drained feed_chunked(line_splitter& s, std::string_view bytes, std::size_t chunk) {
  drained all;
  for (std::size_t off = 0; off < bytes.size(); off += chunk) {
    s.append(bytes.substr(off, chunk));
    auto d = drain(s);
    all.lines.insert(all.lines.end(), d.lines.begin(), d.lines.end());
    all.last = d.last;
    if (d.last == status::too_long) break;
  }
  return all;
}

using lines = std::vector<std::string>;

}  // namespace

SCENARIO("lines end in CRLF or in a bare LF", "[protocol][line_splitter]") {
  line_splitter s(max_line);

  GIVEN("a line ending in \\r\\n") {
    s.append("new_connection\r\n");
    THEN("it is returned without its ending") {
      const auto r = s.next();
      REQUIRE(r.state == status::line);
      CHECK(r.line == "new_connection");
      CHECK(s.next().state == status::need_more);
      CHECK(s.buffered() == 0);
    }
  }
  GIVEN("a line ending in a bare \\n") {
    s.append("new_connection\n");
    THEN("it is returned without its ending") {
      const auto r = s.next();
      REQUIRE(r.state == status::line);
      CHECK(r.line == "new_connection");
      CHECK(s.next().state == status::need_more);
      CHECK(s.buffered() == 0);
    }
  }
  GIVEN("a carriage return that is not part of the ending") {
    s.append("a\rb\r\nc\r\r\nd\r");
    THEN("only one \\r right before the \\n is removed") {
      const auto d = drain(s);
      CHECK(d.lines == lines{"a\rb", "c\r"});
      CHECK(d.last == status::need_more);
      CHECK(s.buffered() == 2);  // "d\r" waits for its \n
    }
  }
  GIVEN("no newline yet") {
    s.append("public_listener 127.0.0.1:12101\r");
    THEN("nothing is returned and the bytes stay buffered") {
      CHECK(s.next().state == status::need_more);
      CHECK(s.next().state == status::need_more);
      CHECK(s.buffered() == 32);
      AND_WHEN("the \\n arrives") {
        s.append("\n");
        THEN("the line is complete") {
          const auto r = s.next();
          REQUIRE(r.state == status::line);
          CHECK(r.line == "public_listener 127.0.0.1:12101");
        }
      }
    }
  }
}

SCENARIO("several lines in one append", "[protocol][line_splitter]") {
  line_splitter s(max_line);
  WHEN("three lines with mixed endings and a partial fourth arrive together") {
    s.append("public_listener [::1]:12101\r\nreverse_listener [::1]:12001\nnew_connection\r\nno_av");
    THEN("the three are returned in order and the partial one waits") {
      const auto d = drain(s);
      CHECK(d.lines ==
            lines{"public_listener [::1]:12101", "reverse_listener [::1]:12001", "new_connection"});
      CHECK(d.last == status::need_more);
      CHECK(s.buffered() == 5);
      AND_WHEN("the rest of the fourth arrives") {
        s.append("ailable_listeners\r\n");
        const auto d2 = drain(s);
        CHECK(d2.lines == lines{"no_available_listeners"});
        CHECK(d2.last == status::need_more);
        CHECK(s.buffered() == 0);
      }
    }
  }
}

SCENARIO("lines split across many appends", "[protocol][line_splitter]") {
  const std::string stream =
    "public_listener relay.example.com:12101\r\n"
    "reverse_listener 10.0.0.1:12001\n"
    "\r\n"
    "new_connection\r\n"
    "public_listener [2001:db8::1]:12102\r\n"
    "no_available_listeners\n";
  const lines expected{"public_listener relay.example.com:12101",
                       "reverse_listener 10.0.0.1:12001",
                       "",
                       "new_connection",
                       "public_listener [2001:db8::1]:12102",
                       "no_available_listeners"};

  for (std::size_t chunk : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7},
                            std::size_t{16}, stream.size()}) {
    GIVEN("chunks of " + std::to_string(chunk) + " bytes") {
      line_splitter s(max_line);
      const auto d = feed_chunked(s, stream, chunk);
      THEN("the same lines come out") {
        CHECK(d.lines == expected);
        CHECK(d.last == status::need_more);
        CHECK(s.buffered() == 0);
      }
    }
  }

  GIVEN("bytes fed one at a time") {
    line_splitter s(max_line);
    THEN("a line is returned exactly when its \\n arrives, never earlier") {
      lines got;
      for (char c : stream) {
        s.append(std::string_view(&c, 1));
        const auto d = drain(s);
        if (c == '\n') {
          CHECK(d.lines.size() == 1);
        } else {
          CHECK(d.lines.empty());
        }
        got.insert(got.end(), d.lines.begin(), d.lines.end());
      }
      CHECK(got == expected);
    }
  }
}

TEST_CASE("empty lines are returned as empty lines", "[protocol][line_splitter]") {
  line_splitter s(max_line);
  s.append("\r\n\n\r\nx\n\n");
  const auto d = drain(s);
  CHECK(d.lines == lines{"", "", "", "x", ""});
  CHECK(d.last == status::need_more);
}

SCENARIO("the line length limit", "[protocol][line_splitter]") {
  const std::string max_body(max_line, 'x');
  const std::string over_body(max_line + 1, 'x');

  GIVEN("a line of exactly the limit ending in \\r\\n") {
    WHEN("it arrives in one append") {
      line_splitter s(max_line);
      s.append(max_body + "\r\n");
      THEN("it is accepted") {
        const auto r = s.next();
        REQUIRE(r.state == status::line);
        CHECK(r.line == max_body);
        CHECK(s.next().state == status::need_more);
      }
    }
    WHEN("it arrives byte by byte (the \\r before the \\n)") {
      line_splitter s(max_line);
      const auto d = feed_chunked(s, max_body + "\r\n", 1);
      THEN("it is accepted") {
        CHECK(d.lines == lines{max_body});
        CHECK(d.last == status::need_more);
      }
    }
  }
  GIVEN("a line of exactly the limit ending in \\n") {
    WHEN("it arrives in one append") {
      line_splitter s(max_line);
      s.append(max_body + "\n");
      THEN("it is accepted") {
        const auto r = s.next();
        REQUIRE(r.state == status::line);
        CHECK(r.line == max_body);
      }
    }
    WHEN("it arrives byte by byte") {
      line_splitter s(max_line);
      const auto d = feed_chunked(s, max_body + "\n", 1);
      THEN("it is accepted") {
        CHECK(d.lines == lines{max_body});
        CHECK(d.last == status::need_more);
      }
    }
  }
  GIVEN("a line one byte over the limit") {
    for (const char* ending : {"\r\n", "\n"}) {
      WHEN(std::string("it ends in ") + (ending[0] == '\r' ? "CRLF" : "LF")) {
        line_splitter s(max_line);
        s.append(over_body + ending);
        THEN("it is too_long") { CHECK(s.next().state == status::too_long); }
      }
      WHEN(std::string("it ends in ") + (ending[0] == '\r' ? "CRLF" : "LF") +
           " and arrives byte by byte") {
        line_splitter s(max_line);
        const auto d = feed_chunked(s, over_body + ending, 1);
        THEN("it is too_long and no line was returned") {
          CHECK(d.lines.empty());
          CHECK(d.last == status::too_long);
        }
      }
    }
  }
  GIVEN("the limit plus a \\r and no \\n yet") {
    line_splitter s(max_line);
    s.append(max_body + "\r");
    THEN("it may still become a valid line") { CHECK(s.next().state == status::need_more); }
  }
  GIVEN("a line that passes the limit before any newline arrives") {
    line_splitter s(max_line);
    s.append(std::string(max_line + 2, 'x'));
    THEN("too_long is reported without waiting for the newline") {
      CHECK(s.next().state == status::too_long);
    }
  }
  GIVEN("a line that grows past the limit one byte at a time") {
    line_splitter s(max_line);
    std::size_t fed = 0;
    status last = status::need_more;
    while (last == status::need_more && fed < 10 * max_line) {
      s.append("y");
      ++fed;
      last = s.next().state;
    }
    THEN("too_long is reported at most two bytes past the limit") {
      CHECK(last == status::too_long);
      CHECK(fed > max_line);
      CHECK(fed <= max_line + 2);
    }
  }
  GIVEN("a small limit") {
    line_splitter s(3);
    s.append("abc\r\nabcd\r\n");
    THEN("lines up to it pass and the first longer one is too_long") {
      auto r = s.next();
      REQUIRE(r.state == status::line);
      CHECK(r.line == "abc");
      CHECK(s.next().state == status::too_long);
    }
  }
}

SCENARIO("too_long is final", "[protocol][line_splitter]") {
  line_splitter s(max_line);
  s.append("new_connection\r\n" + std::string(2 * max_line, 'x'));
  WHEN("complete lines precede the overlong one") {
    THEN("they are still returned, then too_long") {
      const auto r = s.next();
      REQUIRE(r.state == status::line);
      CHECK(r.line == "new_connection");
      CHECK(s.next().state == status::too_long);
    }
  }
  WHEN("valid lines arrive after too_long") {
    drain(s);
    s.append("\r\nnew_connection\r\n");
    s.append("no_available_listeners\n");
    THEN("next() keeps returning too_long") {
      for (int i = 0; i < 3; ++i) CHECK(s.next().state == status::too_long);
    }
  }
}

SCENARIO("an endless line does not grow the buffer without bound", "[protocol][line_splitter]") {
  constexpr std::size_t chunk = 4096;
  constexpr std::size_t total = 1024 * 1024;
  const std::string block(chunk, 'z');
  const std::size_t bound = max_line + chunk + 1;

  GIVEN("1 MiB without a newline, in 4 KiB chunks, drained after each append") {
    line_splitter s(max_line);
    std::size_t max_seen = 0;
    status last = status::need_more;
    for (std::size_t fed = 0; fed < total; fed += chunk) {
      s.append(block);
      if (s.buffered() > max_seen) max_seen = s.buffered();
      last = drain(s).last;
    }
    THEN("the buffer stays within limit + one chunk + 1 and the state is too_long") {
      CHECK(max_seen <= bound);
      CHECK(last == status::too_long);
      CHECK(s.buffered() <= bound);
      CHECK(s.next().state == status::too_long);
    }
  }
  GIVEN("1 MiB without a newline, in 4 KiB chunks, with no next() between appends") {
    // The header promises the bound whatever the caller does between appends:
    // a reader may keep reading while an earlier line is still being handled.
    line_splitter s(max_line);
    std::size_t max_seen = 0;
    for (std::size_t fed = 0; fed < total; fed += chunk) {
      s.append(block);
      if (s.buffered() > max_seen) max_seen = s.buffered();
    }
    THEN("the buffer stays within limit + one chunk + 1 and next() says too_long") {
      CHECK(max_seen <= bound);
      CHECK(s.next().state == status::too_long);
      CHECK(s.next().state == status::too_long);
    }
  }
  GIVEN("complete lines before the endless one, with no next() between appends") {
    line_splitter s(max_line);
    s.append("new_connection\r\n");
    s.append("public_listener 127.0.0.1:12101\r\n");
    for (std::size_t fed = 0; fed < total; fed += chunk) s.append(block);
    THEN("the complete lines are returned, then too_long") {
      CHECK(s.buffered() <= std::size_t{16 + 33} + bound);
      const auto d = drain(s);
      CHECK(d.lines == lines{"new_connection", "public_listener 127.0.0.1:12101"});
      CHECK(d.last == status::too_long);
    }
  }
}

TEST_CASE("buffered counts bytes not yet returned as lines", "[protocol][line_splitter]") {
  line_splitter s(max_line);
  CHECK(s.buffered() == 0);
  s.append("ab\ncd");
  CHECK(s.buffered() == 5);
  REQUIRE(s.next().state == status::line);
  CHECK(s.buffered() == 2);
  CHECK(s.next().state == status::need_more);
  CHECK(s.buffered() == 2);
  s.append("\r\n");
  CHECK(s.buffered() == 4);
  const auto r = s.next();
  REQUIRE(r.state == status::line);
  CHECK(r.line == "cd");
  CHECK(s.buffered() == 0);
}

TEST_CASE("a limit of SIZE_MAX does not wrap around", "[protocol][line_splitter]") {
  // Regression: `max + 1` wrapped to 0, so any partial line was too_long.
  line_splitter s(static_cast<std::size_t>(-1));
  s.append("public_listener 127.0.0.1:12101");
  CHECK(s.next().state == status::need_more);
  s.append("\r\n");
  const auto r = s.next();
  REQUIRE(r.state == status::line);
  CHECK(r.line == "public_listener 127.0.0.1:12101");
}
