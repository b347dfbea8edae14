#pragma once
// Durable per-stream state: committed cursor, counters, digest, journal and in-flight batches, in a
// stores::kv_store (RocksDB under the state dir). The rule it serves: the cursor moves only in commit(),
// which writes cursor + counters + digest + journal entries + removal of the committed in-flight records
// as ONE atomic synced write, after the batches were acknowledged by the destination.
//
// Column families: `stream_state` (stream id -> state JSON), `stream_inflight` (stream id \0 be64(seq)
// -> batch range JSON, written before a batch is sent), `stream_journal` (stream id \0 be64(seq) ->
// committed batch JSON), `stream_meta` (run fingerprint, group assignments, copied attachment keys,
// id map for objects discovered by the streams).
//
// Threading: thread-safe (kv_store is); each stream writes only its own keys.

#include "pipelines/streams/committer.hpp"
#include "pipelines/streams/digest.hpp"

#include "stores/kv_store.hpp"

#include <cstdint>
#include <memory>
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
  std::string updated;            // ISO time of the last write
};

struct inflight_batch {
  std::uint64_t seq = 0;
  std::string first_key;
  std::string last_key;
  std::uint64_t rows = 0;
};

class checkpoint_store {
 public:
  static std::vector<std::string> column_families();

  /// Uses an open store that has column_families(); the store must outlive this object.
  explicit checkpoint_store(stores::kv_store& kv) : kv_(kv) {}

  std::optional<stream_state> load(std::string_view stream_id) const;
  std::vector<stream_state> all() const;
  /// In-flight batches recorded for the stream (begun, never committed), ascending seq.
  std::vector<inflight_batch> inflight(std::string_view stream_id) const;

  /// Records a batch as begun (before it is sent). Not synced: losing it only loses accounting of
  /// re-sends, never data.
  void begin_batch(std::string_view stream_id, const inflight_batch& b);
  /// Applies committed receipts to `state` (cursor, counters, digest, next_seq) and persists state,
  /// journal entries and the removal of their in-flight records in one atomic synced write.
  void commit(stream_state& state, const std::vector<batch_receipt>& receipts);
  /// Persists `state` as it is (start of a stream, done flag, errors), synced.
  void save(stream_state& state);

  /// Run fingerprint (source url, windows...): set when absent; returns the stored one when it differs.
  std::optional<std::string> check_fingerprint(std::string_view fingerprint);

  /// Small durable string map (group assignments, attachment keys, discovered id maps).
  std::optional<std::string> meta_get(std::string_view key) const;
  void meta_put(std::string_view key, std::string_view value);

 private:
  stores::kv_store& kv_;
};

std::string to_json(const stream_state& s);
stream_state stream_state_from_json(std::string_view json);

}  // namespace ferry::pipelines::streams
