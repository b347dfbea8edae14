#pragma once
// Batches of outgoing rows for POST /logs3, bounded by rows and by request bytes, and the pure
// decisions of the write path: the request body, the 413 split, and which fields to spill to
// attachments when a single row is too big.
//
// Per-id order (issue 14): a batch never holds two versions of one row id (a row whose id is already
// in the open batch closes it), and each batch carries the sorted hashes of its ids, so the writers can
// keep two batches that share an id from being in flight at once (stream_runner.hpp). Together: every
// request holds at most one version of an id, and the requests carrying an id's versions are sent one
// after the other in source order.
//
// Threading: a batcher belongs to one stream's rewriter coroutine; the free functions are pure.

#include "pipelines/streams/digest.hpp"
#include "pipelines/streams/row_rewriter.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::pipelines::streams {

/// `{"rows":[` + `],"api_version":2}`: the bytes of a /logs3 body around its rows.
constexpr std::size_t logs3_overhead_bytes = 27;

struct batch {
  std::uint64_t seq = 0;          // 1-based, consecutive per stream
  std::vector<event_row> rows;    // in source key order
  std::size_t body_bytes = 0;     // exact size of logs3_body(rows)
  std::vector<std::uint64_t> id_hashes;  // row_id_hash of every row, sorted, distinct
  const std::string& first_key() const { return rows.front().key; }
  const std::string& last_key() const { return rows.back().key; }
};

struct batch_limits {
  std::size_t max_rows = 1000;
  std::size_t max_bytes = 4'718'592;  // 6 MiB x 0.75
};

/// Row + byte bounded batch builder. A batch never exceeds max_bytes unless it holds a single row
/// bigger than that on its own (the writer then spills or splits it).
class batcher {
 public:
  batcher(batch_limits limits, std::uint64_t next_seq);
  /// Appends a row; completed batches are appended to `out` (0, 1 or 2 of them).
  void add(event_row row, std::vector<batch>& out);
  /// The partial batch, if any (end of stream or page boundary flush).
  std::optional<batch> flush();
  std::size_t pending_rows() const { return cur_.rows.size(); }
  std::size_t pending_bytes() const { return cur_.rows.empty() ? 0 : cur_.body_bytes; }
  std::uint64_t next_seq() const { return next_seq_; }
  const batch_limits& limits() const { return limits_; }

 private:
  batch take();
  bool holds_id(std::uint64_t h) const;
  void note_id(std::uint64_t h);
  batch_limits limits_;
  std::uint64_t next_seq_;
  batch cur_;
  // Open-addressing set of the open batch's id hashes: a slot is used iff its generation is gen_, so
  // emptying it for the next batch is ++gen_ (no allocation per row or per batch once grown).
  struct id_slot {
    std::uint64_t hash = 0;
    std::uint64_t gen = 0;
  };
  std::vector<id_slot> ids_;
  std::uint64_t gen_ = 1;
};

/// The hash that stands for a row id in the per-id order rule (equal ids => equal hashes; a collision
/// only orders two batches that need not be).
std::uint64_t row_id_hash(std::string_view id);
/// Whether two sorted hash lists share an element.
bool share_ids(const std::vector<std::uint64_t>& a, const std::vector<std::uint64_t>& b);

/// The /logs3 request body for rows [begin, end).
std::string logs3_body(const std::vector<event_row>& rows, std::size_t begin, std::size_t end);
inline std::string logs3_body(const std::vector<event_row>& rows) { return logs3_body(rows, 0, rows.size()); }
/// Its size without building it.
std::size_t logs3_body_size(const std::vector<event_row>& rows, std::size_t begin, std::size_t end);

/// A 413 on rows [begin, end) (end - begin >= 2): the two halves to send instead, left first.
std::pair<std::pair<std::size_t, std::size_t>, std::pair<std::size_t, std::size_t>> split_range(std::size_t begin,
                                                                                               std::size_t end);

struct field_size {
  std::string name;
  std::size_t bytes = 0;
  bool is_attachment = false;  // already a braintrust_attachment reference
};

/// Fields that spilling may move to attachments (reference-tool.md §1.9).
bool is_spillable_field(std::string_view name);
constexpr std::size_t spill_min_field_bytes = 64 * 1024;
/// Approximate size of the reference replacing a spilled field.
constexpr std::size_t spill_reference_bytes = 160;

/// The fields to spill, largest first, until (row_bytes - spilled + references) <= limit. Empty when
/// nothing is eligible (the row goes out as it is and the server decides).
std::vector<std::string> choose_spill_fields(std::vector<field_size> fields, std::size_t row_bytes, std::size_t limit);

/// Sizes of the top-level fields of one row object (for choose_spill_fields). Throws stream_error.
std::vector<field_size> measure_fields(std::string_view row_json);

/// The raw JSON of one top-level field of a row object, or nullopt.
std::optional<std::string> field_raw(std::string_view row_json, std::string_view field);
/// `row_json` with top-level field `field` replaced by `replacement_raw` (raw JSON). Throws stream_error
/// when the row is not an object or lacks the field.
std::string replace_field(std::string_view row_json, std::string_view field, std::string_view replacement_raw);

}  // namespace ferry::pipelines::streams
