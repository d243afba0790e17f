// Incremental splitting of a byte stream into control lines.
//
// Lines end in "\r\n"; a bare "\n" from a peer is accepted too. A line longer
// than the limit is an error, detected as soon as the limit is passed, so the
// buffer never holds more than limit + the bytes of one append().
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tlsrelay {

class line_splitter {
public:
  enum class status {
    line,       // `line` holds one complete line, without its ending
    need_more,  // no complete line buffered yet
    too_long,   // the peer sent a line over the limit; the stream is unusable
  };

  struct result {
    status state;
    std::string_view line;  // valid until the next call to append() or next()
  };

  explicit line_splitter(std::size_t max_line_bytes) : max_line_(max_line_bytes) {}

  void append(std::string_view bytes);
  result next();

  // Bytes received but not yet returned as lines.
  std::size_t buffered() const { return buffer_.size() - consumed_; }

private:
  std::size_t max_line_;
  std::string buffer_;
  std::size_t consumed_ = 0;  // bytes of buffer_ already returned as lines
  bool failed_ = false;
};

}  // namespace tlsrelay
