#pragma once
// Durable per-stream state for the streams engine, kept in the shared stores::state_store (one RocksDB
// state dir per migration, shared with the resource migration's id maps). The rule it serves: the
// cursor moves only in commit(), which writes cursor + counters + digest + the removal of the
// committed in-flight journal entries as ONE atomic synced write (state_store::commit_batch), after
// the batches were acknowledged by the destination.
//
// Mapping onto stores::stream_state: last_key = cursor, rows_written/bytes_written/batches/
// resent_rows/digest/done/last_error as named; the streams-only fields (inclusive start, preflight
// flag, next batch seq, deletes, merges, spills, attachments, source ids) ride in `extra` as JSON.
//
// Threading: thread-safe (state_store is); each stream writes only its own records, from its strand.

#include "pipelines/streams/committer.hpp"
#include "pipelines/streams/digest.hpp"

#include "stores/state_store.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::pipelines::streams {

struct stream_counters {
  std::uint64_t rows = 0;          // rows committed (acknowledged by the destination)
  std::uint64_t bytes = 0;         // request bytes committed
  std::uint64_t batches = 0;
  std::uint64_t deletes = 0;
  std::uint64_t merges = 0;
  std::uint64_t resent_rows = 0;   // re-sent after a resume (they were in an uncommitted batch)
  std::uint64_t spilled_fields = 0;
  std::uint64_t attachments_copied = 0;
};

struct stream_state {
  std::string stream_id;          // e.g. "logs:<source project id>"
  std::string kind;               // "logs" | "experiment_events" | "dataset_events"
  std::vector<std::string> source_ids;
  std::string cursor;             // last committed _pagination_key ("" = from the start)
  bool cursor_inclusive = false;  // the created-after preflight start key (>=)
  bool preflight_done = false;
  bool done = false;
  std::uint64_t next_seq = 1;     // first batch sequence not committed
  stream_counters counters;
  digest256 digest;
  std::string last_error;
  std::int64_t updated_at_ms = 0;
};

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

  stores::state_store& state() { return st_; }

 private:
  stores::state_store& st_;
};

stores::stream_state to_store(const stream_state& s);

/// Every counter as a member of `o` under its field name (the migration report and `status --json`).
void add_counters(boost::json::object& o, const stream_counters& c);
stream_state from_store(const stores::stream_state& s);

}  // namespace ferry::pipelines::streams
