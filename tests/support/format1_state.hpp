#pragma once
// A stream record byte for byte as ferry wrote it before the record became one typed type (state
// format 1: generic columns, the streams engine's own fields as JSON text in `extra`), for the tests
// proving that a state dir written by an older ferry still loads and resumes.

#include <array>
#include <cstdint>
#include <string>

namespace ferry::test {

struct format1_stream {
  std::string stream_id;
  std::string kind = "logs";
  std::string source_object;  // the source ids joined by ','
  std::string last_key;       // the cursor
  bool done = false;
  // rows_read, rows_written, bytes_written, batches, retries, resent_rows, skipped_rows
  std::array<std::uint64_t, 7> counters{};
  std::array<std::uint64_t, 4> digest{};
  std::int64_t updated_at_ms = 0;
  std::string extra;  // JSON text
};

inline std::string format1_record(const format1_stream& s) {
  std::string r(1, '\x01');
  auto varint = [&](std::uint64_t n) {
    for (;; n >>= 7) {
      r.push_back(static_cast<char>(n < 0x80 ? n : (n & 0x7f) | 0x80));
      if (n < 0x80) break;
    }
  };
  auto str = [&](const std::string& v) {
    varint(v.size());
    r += v;
  };
  str(s.stream_id);
  str(s.kind);
  str(s.source_object);
  str("");  // dest_object
  str(s.last_key);
  r.push_back(s.done ? '\x01' : '\x00');
  for (auto v : s.counters) varint(v);
  for (auto w : s.digest)
    for (int i = 0; i < 8; ++i) r.push_back(static_cast<char>((w >> (8 * i)) & 0xff));
  str("");  // last_error
  varint((static_cast<std::uint64_t>(s.updated_at_ms) << 1) ^ static_cast<std::uint64_t>(s.updated_at_ms >> 63));
  str(s.extra);
  return r;
}

}  // namespace ferry::test
