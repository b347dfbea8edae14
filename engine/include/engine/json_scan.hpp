#pragma once
// Finding the bytes a JSON string escaper must look at, eight bytes at a time.
//
// Escaping is a copy of long clean runs broken by rare special bytes. A byte-by-byte loop was ~8% of the
// destination emulator's CPU (its /logs3 minifier) and ~4% of the migrator's (the row rewriter): most
// row text is plain ASCII with no quote, backslash or control byte.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace ferry::engine {

/// Index of the first byte at or after `from` that is a control byte (< 0x20), '"', '\\' or, when
/// `stop_at_non_ascii`, >= 0x80; s.size() when there is none.
inline std::size_t json_special_byte(std::string_view s, std::size_t from, bool stop_at_non_ascii) {
  constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  const auto zero_byte = [](std::uint64_t v) { return (v - ones) & ~v & highs; };  // exact "has a 0x00 byte"
  const char* p = s.data();
  const std::size_t n = s.size();
  std::size_t i = from;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    std::uint64_t hit = ((w - ones * 0x20) & ~w & highs)  // some byte < 0x20
                        | zero_byte(w ^ (ones * '"')) | zero_byte(w ^ (ones * '\\'));
    if (stop_at_non_ascii) hit |= w & highs;
    if (hit) break;  // the byte loop below finds which one
  }
  for (; i < n; ++i) {
    const auto c = static_cast<unsigned char>(p[i]);
    if (c < 0x20 || c == '"' || c == '\\' || (stop_at_non_ascii && c >= 0x80)) return i;
  }
  return n;
}

}  // namespace ferry::engine
