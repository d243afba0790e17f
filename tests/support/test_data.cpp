#include "tests/support/test_data.hpp"

#include <algorithm>

#include "tests/support/socket_io.hpp"

namespace tlsrelay::test {

std::string random_bytes(std::size_t size, std::uint64_t seed) {
  // splitmix64: fast, and every seed gives a distinct stream.
  std::string out(size, '\0');
  std::uint64_t state = seed;
  for (std::size_t i = 0; i < size; i += 8) {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    for (std::size_t j = 0; j < 8 && i + j < size; ++j)
      out[i + j] = static_cast<char>((z >> (8 * j)) & 0xff);
  }
  return out;
}

std::string bytes_diff(std::string_view expected, std::string_view actual) {
  if (expected == actual) return {};
  const auto mismatch = std::mismatch(expected.begin(), expected.end(), actual.begin(),
                                      actual.end());
  const std::size_t at = static_cast<std::size_t>(mismatch.first - expected.begin());
  const std::size_t from = at > 8 ? at - 8 : 0;
  return "expected " + std::to_string(expected.size()) + " bytes, got " +
         std::to_string(actual.size()) + "; first difference at offset " + std::to_string(at) +
         ": expected " + printable(expected.substr(std::min(from, expected.size()), 24), 24) +
         ", got " + printable(actual.substr(std::min(from, actual.size()), 24), 24);
}

}  // namespace tlsrelay::test
