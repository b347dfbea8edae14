#pragma once
// The durable record of one event stream: the one type the streams engine works on, the state store
// persists, and `ferry status` and the migration report print. Counters are cumulative over all runs.
//
// Adding a counter: a member of stream_counters and one row of counter_fields (appended at the end:
// the on-disk record stores the counters in that order, count-prefixed, so records written before the
// counter existed read it as 0), plus the line in pipelines that counts it into batch_receipt::counts.
// The commit, the state store, `status --json` and the migration report pick it up from counter_fields.
//
// Pure value types; thread-safe as values.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::stores {

/// An order-independent digest of a multiset of rows: the sum modulo 2^256 of the rows' 256-bit
/// hashes. w[0] is the least significant 64 bits. Adding the same rows in any order gives the same
/// digest; source and destination digests compare equal iff (with overwhelming probability) they hold
/// the same rows.
struct digest256 {
  std::array<std::uint64_t, 4> w{};  // little-endian limbs of a 256-bit number

  /// this += d (mod 2^256): merges the digests of two disjoint row sets. (Inline: the copy path adds
  /// every row's hash through it.)
  void add(const digest256& d) {
    std::uint64_t carry = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      const std::uint64_t s = w[i] + d.w[i];
      const std::uint64_t t = s + carry;
      carry = (s < w[i] ? 1 : 0) | (t < s ? 1 : 0);
      w[i] = t;
    }
  }
  bool empty() const { return w == std::array<std::uint64_t, 4>{}; }
  /// 64 lower-case hex digits, most significant limb first.
  std::string hex() const;
  static std::optional<digest256> from_hex(std::string_view s);
  friend bool operator==(const digest256&, const digest256&) = default;
};

/// d += hash (mod 2^256); `hash` is read as a little-endian integer (byte 0 least significant);
/// `len` <= 32 bytes, shorter hashes (e.g. 128-bit) are zero-extended.
void digest_add(digest256& d, const std::uint8_t* hash, std::size_t len = 32);
/// d += other (mod 2^256).
void digest_merge(digest256& d, const digest256& other);
/// d.hex().
std::string digest_hex(const digest256& d);

struct stream_counters {
  std::uint64_t rows = 0;          // rows committed (acknowledged by the destination)
  std::uint64_t bytes = 0;         // request bytes committed
  std::uint64_t batches = 0;
  std::uint64_t deletes = 0;
  std::uint64_t merges = 0;
  std::uint64_t resent_rows = 0;   // re-sent after a resume (they were in an uncommitted batch)
  std::uint64_t spilled_fields = 0;
  std::uint64_t attachments_copied = 0;
  std::uint64_t caught_up_rows = 0;  // committed by runs after the stream had reached its end once
  std::uint64_t origins_mapped = 0;    // a source row's own origin pointed at a migrated object: now its copy
  std::uint64_t origins_unmapped = 0;  // ... at an object not migrated: left as it was (source ids)
  std::uint64_t unwritable_rows = 0;   // refused by the destination even alone (413 after overflow/spill): skipped

  stream_counters& operator+=(const stream_counters& o);
  friend bool operator==(const stream_counters&, const stream_counters&) = default;
};

/// Every counter with its name, in on-disk order (see the file comment): the one list the record's
/// encoding, the commit, `status --json` and the migration report go through.
struct counter_field {
  std::string_view name;
  std::uint64_t stream_counters::*member;
};
inline constexpr counter_field counter_fields[] = {
    {"rows", &stream_counters::rows},
    {"bytes", &stream_counters::bytes},
    {"batches", &stream_counters::batches},
    {"resent_rows", &stream_counters::resent_rows},
    {"deletes", &stream_counters::deletes},
    {"merges", &stream_counters::merges},
    {"spilled_fields", &stream_counters::spilled_fields},
    {"attachments_copied", &stream_counters::attachments_copied},
    {"caught_up_rows", &stream_counters::caught_up_rows},
    {"origins_mapped", &stream_counters::origins_mapped},
    {"origins_unmapped", &stream_counters::origins_unmapped},
    {"unwritable_rows", &stream_counters::unwritable_rows},
};

/// One slice of a sliced stream (pipelines/streams/slices.hpp): the rows whose id is in [id_from, id_to)
/// ("" = unbounded on that side), read and written by their own reader with their own cursor. Every
/// version of a row has the same id, so all of them fall in one slice. Fields as in stream_state.
struct stream_slice {
  std::string id_from;
  std::string id_to;
  std::string cursor;
  bool cursor_inclusive = false;
  bool preflight_done = false;
  bool done = false;
  std::uint64_t next_seq = 1;
  stream_counters counters;
  digest256 digest;

  friend bool operator==(const stream_slice&, const stream_slice&) = default;
};

struct stream_state {
  std::string stream_id;          // e.g. "logs:<source project id>"; no '\0'
  std::string kind;               // "logs" | "experiment_events" | "dataset_events"
  std::vector<std::string> source_ids;  // the source objects the stream reads (one, or a group)
  std::string cursor;             // last committed _pagination_key ("" = from the start)
  bool cursor_inclusive = false;  // the created-after preflight start key (>=)
  bool preflight_done = false;
  bool done = false;              // reached its end at least once (a re-run still catches up from the cursor)
  std::uint64_t next_seq = 1;     // first batch sequence not committed
  stream_counters counters;
  digest256 digest;               // of the rows acknowledged by the destination
  std::string last_error;         // empty = none
  std::int64_t updated_at_ms = 0; // wall-clock ms since the epoch, set by the writer
  /// The slice layout, fixed when the stream first starts (empty = one reader on the fields above).
  /// When sliced, counters, digest and done are the slices' combined (sum, sum, all), and the cursor
  /// fields above are unused: each slice has its own.
  std::vector<stream_slice> slices;

  friend bool operator==(const stream_state&, const stream_state&) = default;
};

}  // namespace ferry::stores
