// The first bytes of a reverse or warm connection, read by peeking.
//
// The first line (`accept <ID>`, `ready <SERIAL> <TAG>`, or the relay's
// `<ID> <CLIENT>` on a warm connection) is followed by raw bytes that belong
// to someone else: the client's data, or a PROXY v2 header. So the reader
// looks (MSG_PEEK) and takes out of the kernel exactly the line, ending
// included, and not one byte more. find_first_line decides, from what the
// peeks have shown so far, whether the line is there, how many bytes to take,
// or that it cannot be a line within the maximum.
//
// A caller peeks into a buffer of `max_line_bytes`: nothing past the maximum
// can change the answer. Bytes left in the kernel keep the socket readable, so
// a reader that waits for readiness between peeks takes the bytes of an
// unfinished line out as they come (they are the line's) and asks about what
// it took plus what the next peek shows; when complete, it takes the rest of
// the line, `take` minus what it already took. `line` views `seen`: copy it
// before that buffer is reused.
#pragma once

#include <cstddef>
#include <string_view>

#include "protocol/v2.hpp"

namespace tlsrelay {

struct first_line {
  enum class status {
    complete,   // `line` and `take` are set
    need_more,  // no '\n' yet, and fewer than the maximum bytes seen
    too_long,   // no '\n' within the maximum: the connection has no valid first line
  };
  status state = status::need_more;
  // When complete: the line without its ending ("\n", or "\r\n": one '\r'
  // right before the '\n' is removed, any other stays). A view into `seen`.
  std::string_view line;
  // When complete: the bytes to take out of the kernel, ending included
  // (never more than the maximum, nor than `seen`). 0 otherwise.
  std::size_t take = 0;
};

// `seen`: the bytes at the start of the connection seen so far (what a peek
// returned, or what was taken plus what a peek returned). `max_line_bytes`:
// the longest first line, ending included — v2::max_reverse_line_bytes on the
// relay, v2::max_paired_line_bytes on a warm connection. The answer depends on
// the first max_line_bytes bytes of `seen` only, and once it is not
// need_more, on no byte that arrives later.
first_line find_first_line(std::string_view seen, std::size_t max_line_bytes);

// The first line of a reverse connection, as the relay reads it.
inline first_line find_reverse_line(std::string_view seen) {
  return find_first_line(seen, v2::max_reverse_line_bytes);
}
// The relay's first line on a warm connection, as the server reads it.
inline first_line find_paired_line(std::string_view seen) {
  return find_first_line(seen, v2::max_paired_line_bytes);
}

// The length of the PROXY v2 header, fixed part, addresses and TLVs
// included, that `fixed` starts, once its fixed part (proxy_v2::fixed_bytes,
// 16) is there: how much to read before the client's own bytes. 0 if those 16
// bytes cannot start a header proxy_v2::decode() accepts (wrong signature,
// version, command or family, or a length too short for the addresses), or if
// fewer than 16 bytes are given (before that, decode() tells a valid beginning
// from garbage). Bytes after the first 16 are ignored.
std::size_t proxy_header_bytes(std::string_view fixed);

}  // namespace tlsrelay
