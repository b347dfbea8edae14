#pragma once
// Ferry's durable state for one migration: run metadata (the resume guard), one cursor record per
// event stream, the in-flight batch journal and source->destination id maps. One column family per
// concern: meta, cursors, journal, id_map (and `seen`, left from an older Ferry, opened but unused).
//
// The streams engine's contract, which this store makes cheap to keep:
//   the cursor of a stream moves only after the batch holding those rows was acknowledged by the
//   destination, in ONE atomic synced write together with the stream's counters, its digest and
//   its journal entry (commit_batch).
// A crash anywhere therefore resumes from the last committed key; the batches that were begun but
// never committed (inflight_batches) are exactly what a resume re-sends, and the destination
// replaces rows by id, so the copy converges.
//
// Lifecycle and threading: open() once per process (a RocksDB directory is locked against other
// processes); the object is movable, not copyable, and every method may be called from any thread.
// Each stream's records have ONE writer, the strand that runs the stream: commit_batch writes the
// caller's whole stream_state, so the caller's copy is authoritative. record_error/mark_done are
// read-modify-write conveniences that serialize with each other (an internal mutex), not with a
// concurrent commit_batch of the same stream. Errors throw store_error (one line, naming the dir).

#include "stores/kv_store.hpp"
#include "stores/stream_record.hpp"

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::stores {

/// A journal entry: a batch sent (or about to be sent) but not yet acknowledged and committed.
struct batch_entry {
  std::string stream_id;
  std::uint64_t batch_seq = 0;
  std::string first_key;  // _pagination_key of the first and last rows of the batch
  std::string last_key;
  std::uint64_t row_count = 0;
  std::int64_t begun_at_ms = 0;

  friend bool operator==(const batch_entry&, const batch_entry&) = default;
};

/// What commit_batch writes besides the stream record, in the same atomic write.
struct commit_extras {
  std::string id_type;                // id map entries of this type (when `ids` is not empty)
  std::vector<std::pair<std::string, std::string>> ids;  // source id -> destination id
  /// Whose journal entries the commit removes: "" = the record's stream; a slice's id
  /// (slice_stream_id) when a slice of a sliced stream commits into its stream's record.
  std::string journal_stream_id;
};

/// The id under which slice `index` of a sliced stream journals its batches and runs
/// ("<stream id>#slice<index>"); its cursor lives in the stream's record (stream_state::slices).
std::string slice_stream_id(std::string_view stream_id, std::size_t index);

struct state_store_options {
  kv_options kv;  // RocksDB memory bounds; kv.dir_label names the directory in errors
  /// Wall clock in ms since the epoch (record_error, mark_done, begin_batch). Tests inject one.
  std::function<std::int64_t()> now_ms;
};

class state_store {
 public:
  /// Opens (creating, mode 0700 with parents) the state directory `dir`. Throws store_error when the
  /// directory is locked by another process, unusable, or holds state of a newer format.
  static state_store open(const std::string& dir, state_store_options opts = {});
  /// Opens an existing state directory to read it (status, verify): works while a migration holds the
  /// directory (RocksDB read-only open: a consistent view as of the open), on a read-only or full file
  /// system, and writes nothing. Throws store_error when `dir` holds no ferry state. Writes throw.
  static state_store open_read_only(const std::string& dir, state_store_options opts = {});
  /// A state store in memory (tests, dry runs): same semantics, nothing survives the process.
  static state_store open_memory(state_store_options opts = {});

  state_store(state_store&&) noexcept;
  state_store& operator=(state_store&&) noexcept;
  ~state_store();

  /// Where the state lives ("memory" for open_memory), as used in error messages.
  const std::string& location() const { return location_; }

  // ---- run metadata: the resume guard ---------------------------------------------------------
  /// The first run records `fingerprint` (source_url, dest_url, source_org, created_after, ...).
  /// A later run whose value differs for a key that is already recorded throws store_error naming
  /// the key and both values; keys not yet recorded are added (forward compatible); recorded keys
  /// absent from `fingerprint` are kept. Keys ending in `_url` hold URLs: they are recorded and
  /// compared by engine::url_identity (no password; `localhost` = 127.0.0.1, trailing slash and
  /// default port ignored), so only a change of deployment refuses a resume.
  void check_and_record_meta(const std::map<std::string, std::string>& fingerprint);
  /// The recorded fingerprint.
  std::map<std::string, std::string> meta() const;

  // ---- streams --------------------------------------------------------------------------------
  std::optional<stream_state> load_stream(std::string_view stream_id) const;
  /// All stream records, ordered by stream_id.
  std::vector<stream_state> list_streams() const;
  /// Writes a stream record as is (e.g. the initial record before the first batch). Synced.
  void save_stream(const stream_state& st);

  /// Journals batch `batch_seq` of a stream as in flight, before it is sent. Not synced by default:
  /// the entry survives a process crash (it is in the WAL) but maybe not a power loss, which then
  /// only makes a re-send invisible, never wrong. Beginning the same seq again overwrites the entry.
  void begin_batch(std::string_view stream_id, std::uint64_t batch_seq, std::string_view first_key,
                   std::string_view last_key, std::uint64_t row_count, bool sync = false);
  /// After the destination acknowledged batch `batch_seq`: ONE atomic synced write of the new stream
  /// record (cursor, counters, digest), the removal of the stream's journal entries with seq <=
  /// batch_seq, and `extras` (id map entries). On return the commit is on disk.
  void commit_batch(const stream_state& new_state, std::uint64_t batch_seq, const commit_extras& extras = {});
  /// Batches begun and never committed, by ascending seq. A resume re-sends at most these rows.
  std::vector<batch_entry> inflight_batches(std::string_view stream_id) const;

  /// Sets the stream's last_error and updated_at_ms (creating a bare record if none). Synced.
  void record_error(std::string_view stream_id, std::string_view message);
  /// Sets done = true, clears last_error and drops the stream's journal entries. Synced.
  void mark_done(std::string_view stream_id);
  /// Forgets a stream: record and journal (to copy it again from the start). Synced.
  void reset_stream(std::string_view stream_id);

  // ---- id maps (source id -> destination id, per resource type) ---------------------------------
  void put_id(std::string_view type, std::string_view source_id, std::string_view dest_id, bool sync = true);
  /// Many entries of one type in one atomic write.
  void put_ids(std::string_view type, const std::vector<std::pair<std::string, std::string>>& ids,
               bool sync = true);
  std::optional<std::string> get_id(std::string_view type, std::string_view source_id) const;
  /// Visits the type's entries by ascending source id until `fn` returns false.
  void for_each_id(std::string_view type,
                   const std::function<bool(std::string_view source_id, std::string_view dest_id)>& fn) const;
  /// Number of entries of a type (a scan: O(entries)).
  std::uint64_t count_ids(std::string_view type) const;

  // ---- dropped fields: what the resource migration could not carry, per migrated object -----------
  /// (field path, reason) pairs, as migration_report.json spells them ("settings.baseline_experiment_id").
  using dropped_fields = std::vector<std::pair<std::string, std::string>>;
  /// Replaces the record of the fields dropped from the source object (type, source_id) when it was
  /// written to the destination; an empty list removes it. Synced. Kept in the id_map column family
  /// under a scope of its own ("~dropped"), so a state dir of an older Ferry opens unchanged.
  void put_dropped(std::string_view type, std::string_view source_id, const dropped_fields& fields);
  /// The record of (type, source_id): empty when nothing was dropped (or the object is unknown).
  dropped_fields get_dropped(std::string_view type, std::string_view source_id) const;
  /// Visits every record, by type then source id, until `fn` returns false.
  void for_each_dropped(
      const std::function<bool(std::string_view type, std::string_view source_id, const dropped_fields&)>& fn) const;

  /// Column family names, for tools that inspect a state directory.
  static const std::vector<std::string>& column_families();

 private:
  state_store(std::unique_ptr<kv_store> kv, std::string location, state_store_options opts);
  void init_format();
  std::int64_t now_ms() const;
  [[noreturn]] void corrupt(std::string_view what, std::string_view why) const;
  stream_state decode_stream(std::string_view key, std::string_view value) const;
  void drop_journal(write_batch& b, std::string_view stream_id, std::optional<std::uint64_t> upto) const;

  std::unique_ptr<kv_store> kv_;
  std::string location_;
  state_store_options opts_;
  std::unique_ptr<std::mutex> rmw_mu_;  // serializes record_error / mark_done / meta checks
  // Per journal scope, the lowest batch seq that may still have an entry: commits drop entries up to
  // their seq, and a scan from the scope's start would walk every tombstone left since the last memtable
  // flush (each commit's cost grew with the commits before it).
  struct journal_floors;
  std::unique_ptr<journal_floors> floors_;
};

}  // namespace ferry::stores
