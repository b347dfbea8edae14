#pragma once
// Durable per-stream state for the streams engine, kept in the shared stores::state_store (one RocksDB
// state dir per migration, shared with the resource migration's id maps). The rule it serves: the
// cursor moves only in commit(), which writes cursor + counters + digest + the removal of the
// committed in-flight journal entries as ONE atomic synced write (state_store::commit_batch), after
// the batches were acknowledged by the destination.
//
// The record is stores::stream_state (stores/stream_record.hpp), used as is.
//
// Sliced streams (slices.hpp): slice i of stream S runs as a stream of its own under the id
// stores::slice_stream_id(S, i). load/commit/save of such an id read and write slice i inside S's
// record (the slice's cursor, flags, counters and digest; S's counters and digest become the sum of its
// slices, S is done when every slice is), so one synced write still moves one slice's cursor together
// with S's totals; its journal entries are kept under the slice's id.
//
// Threading: thread-safe (state_store is; the read-modify-write of a sliced stream's record is under
// this object's mutex); each stream or slice writes only its own records, from its strand.

#include "pipelines/streams/committer.hpp"
#include "pipelines/streams/digest.hpp"

#include "stores/state_store.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::pipelines::streams {

using stores::stream_counters;
using stores::stream_state;

struct inflight_batch {
  std::uint64_t seq = 0;
  std::string first_key;
  std::string last_key;
  std::uint64_t rows = 0;
};

class checkpoint_store {
 public:
  /// The state store must outlive this object.
  explicit checkpoint_store(stores::state_store& st) : st_(st) {}

  std::optional<stream_state> load(std::string_view stream_id) const;
  std::vector<stream_state> all() const;
  /// In-flight batches recorded for the stream (begun, never committed), ascending seq.
  std::vector<inflight_batch> inflight(std::string_view stream_id) const;

  /// Records a batch as begun (before it is sent). Not synced: losing it only loses accounting of
  /// re-sends, never data.
  void begin_batch(std::string_view stream_id, const inflight_batch& b);
  /// Applies committed receipts to `state` (cursor, counters, digest, next_seq) and persists it with
  /// the removal of their in-flight entries in one atomic synced write.
  void commit(stream_state& state, const std::vector<batch_receipt>& receipts);
  /// Persists `state` as it is (start of a stream, done flag, errors), synced.
  void save(stream_state& state);

  /// A sliced stream's layout change (slice_split.hpp): `change` edits the stream's record under the
  /// same mutex as the slices' commits (none of them can write an older copy over it), and the record
  /// is saved synced when it returns true. False when there is no record or `change` said no.
  bool change_layout(std::string_view stream_id, const std::function<bool(stream_state&)>& change);

  stores::state_store& state() { return st_; }

  /// "<S>#slice<i>" -> {S, i} when S's record holds a slice i; nullopt for any other id.
  std::optional<std::pair<std::string, std::size_t>> slice_of(std::string_view stream_id) const;

 private:
  // Writes slice `index` of `parent` from `s` and recomputes the parent's totals.
  static void merge_slice(stream_state& parent, std::size_t index, const stream_state& s);

  stores::state_store& st_;
  mutable std::mutex mu_;  // the read-modify-write of a sliced stream's record
};

/// The view of slice `index` of `parent` as a stream_state of its own (stream id `slice_id`).
stream_state slice_view(const stream_state& parent, std::size_t index, const std::string& slice_id);

/// Every counter as a member of `o` under its field name (the migration report and `status --json`).
void add_counters(boost::json::object& o, const stream_counters& c);

}  // namespace ferry::pipelines::streams
