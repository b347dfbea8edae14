#pragma once
// Order-independent content digests of event streams.
//
// row_hash = a 128-bit non-cryptographic hash (4-lane multiply/rotate, 32 bytes per step, ~0.1 us per
// 2 KB) of: the row id bytes, one 0xFF separator byte, then the content bytes. A stream digest is the
// wrap-around sum mod 2^256 of every row's 256-bit expansion (a, b, mix(a^b), mix(a+b)), so it does not
// depend on the order in which rows were copied or committed, and adding is a few instructions.
//
// What "content" is depends on the caller and is documented there: the copy path hashes the exact
// outgoing /logs3 row bytes (cheap, a record of what was sent); `verify` hashes a canonical form of the
// fields that survive a copy on both sides (see verify.hpp) with this same function.
//
// Pure value types; thread-safe as values.

#include "stores/stream_record.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::pipelines::streams {

struct row_hash {
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  friend bool operator==(const row_hash&, const row_hash&) = default;
};

row_hash hash_row(std::string_view id, std::string_view content);
/// The 128-bit hash of arbitrary bytes (same function, no id part).
row_hash hash_bytes(std::string_view bytes);

/// stores::digest256 (the stream record's digest) that can also add a row's hash: the 128-bit hash is
/// expanded to 256 bits (a, b, mix(a^b), mix(a+b)) and added mod 2^256.
struct digest256 : stores::digest256 {
  using stores::digest256::add;
  void add(const row_hash& h);
};

}  // namespace ferry::pipelines::streams
