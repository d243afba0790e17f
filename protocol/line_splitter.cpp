#include "protocol/line_splitter.hpp"

namespace tlsrelay {
namespace {

// True when `n` bytes without a '\n' can no longer become a line of at most
// `max` bytes. "+ 1": the '\r' of a maximal line may arrive before its '\n'.
// Written without `max + 1` so that max == SIZE_MAX does not wrap.
bool unterminated_too_long(std::size_t n, std::size_t max) {
  return n > max && n - max > 1;
}

// Length of the unterminated line at the end of `buffer` (bytes after the last '\n').
std::size_t tail_size(const std::string& buffer) {
  const auto nl = buffer.rfind('\n');
  return nl == std::string::npos ? buffer.size() : buffer.size() - nl - 1;
}

}  // namespace

void line_splitter::append(std::string_view bytes) {
  if (failed_) return;
  // Drop what was already handed out before growing the buffer.
  if (consumed_ > 0) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  // The line being received is already over the limit: next() will report
  // too_long once it gets there, and nothing after it will be returned.
  if (unterminated_too_long(tail_size(buffer_), max_line_)) return;
  buffer_.append(bytes);
  // Enforce the bound here too, not only in next(): a caller may append
  // several times before draining. Keep just enough of an overlong tail
  // (limit + 2 bytes) for next() to see it is too long; complete lines
  // before it are kept and still returned.
  const auto tail = tail_size(buffer_);
  if (unterminated_too_long(tail, max_line_)) buffer_.resize(buffer_.size() - tail + max_line_ + 2);
}

line_splitter::result line_splitter::next() {
  if (failed_) return {status::too_long, {}};
  std::string_view rest(buffer_);
  rest.remove_prefix(consumed_);
  const auto nl = rest.find('\n');
  if (nl == std::string_view::npos) {
    if (unterminated_too_long(rest.size(), max_line_)) {
      failed_ = true;
      return {status::too_long, {}};
    }
    return {status::need_more, {}};
  }
  auto line = rest.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > max_line_) {
    failed_ = true;
    return {status::too_long, {}};
  }
  consumed_ += nl + 1;
  return {status::line, line};
}

}  // namespace tlsrelay
