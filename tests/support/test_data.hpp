// Payloads for data-path tests and a readable way to compare them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tlsrelay::test {

// `size` pseudo-random bytes; the same seed gives the same bytes.
std::string random_bytes(std::size_t size, std::uint64_t seed);

// Empty if `actual` equals `expected`; otherwise a short description (sizes,
// offset of the first differing byte and the bytes around it), fit for a
// failure message where printing megabytes would not be.
std::string bytes_diff(std::string_view expected, std::string_view actual);

}  // namespace tlsrelay::test
