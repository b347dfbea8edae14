#pragma once
// An ordered key-value store with column families, behind a plain interface so that no rocksdb::
// type leaves stores/. Two implementations: RocksDB (durable, used for Ferry's state and the
// emulator's `--data DIR`) and in-memory (tests, `ferry serve` without --data).
//
// Thread-safety: all methods may be called from any thread concurrently (RocksDB is thread-safe; the
// memory store locks). Keys compare bytewise (unsigned), so big-endian integers sort numerically.
// Errors (I/O, disk full, corruption, a locked directory) throw store_error with a one-line message
// that names the directory and the cause.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::stores {

class store_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A set of puts and deletes applied atomically by kv_store::write.
class write_batch {
 public:
  struct op {
    std::string cf;
    std::string key;
    std::optional<std::string> value;  // nullopt = delete
  };
  void put(std::string_view cf, std::string_view key, std::string_view value) {
    ops_.push_back({std::string(cf), std::string(key), std::string(value)});
  }
  /// put() that takes the key and value over instead of copying them (large values: rows).
  void put_owned(std::string_view cf, std::string key, std::string value) {
    ops_.push_back({std::string(cf), std::move(key), std::move(value)});
  }
  void del(std::string_view cf, std::string_view key) {
    ops_.push_back({std::string(cf), std::string(key), std::nullopt});
  }
  const std::vector<op>& ops() const { return ops_; }
  bool empty() const { return ops_.empty(); }
  void clear() { ops_.clear(); }

 private:
  std::vector<op> ops_;
};

/// Tuning of one column family (RocksDB only; the memory store ignores it). The defaults keep the
/// store small (lz4, zstd at the bottom); a column family of bulk data written once and read rarely
/// (the emulator's events) trades disk for CPU: no block compression, a larger memtable, fewer
/// compactions.
struct kv_cf_options {
  bool compress = true;                   // false: no block compression at any level
  std::size_t write_buffer_bytes = 0;     // memtable size; 0 = half of kv_options::write_buffer_bytes
  int level0_compaction_trigger = 0;      // L0 files that start a compaction into L1; 0 = RocksDB's 4
  bool memtable_bloom = false;            // a whole-key bloom filter in the memtable: cheap get() of absent keys
};

struct kv_options {
  bool create_if_missing = true;
  bool error_if_exists = false;
  std::size_t write_buffer_bytes = 16u << 20;  // RocksDB memtable size
  std::size_t block_cache_bytes = 32u << 20;   // RocksDB block cache (bounds read memory)
  /// How errors name the directory: "state dir /x: ..." (Ferry) or e.g. "data dir" (the emulator).
  std::string dir_label = "state dir";
  /// Free space the directory's file system must keep. Opening, and every synced write, check it
  /// (one statvfs) and throw store_error "... disk full ..." instead of letting RocksDB hit ENOSPC
  /// mid-write (Debian's RocksDB 7.8 aborts on some write-error paths). 0 = no check.
  std::uint64_t min_free_bytes = 64u << 20;
  /// Opens an existing database read-only (RocksDB OpenForReadOnly): no lock taken, so it works while
  /// the owning process runs; nothing is written to the directory (no LOG file, no free-space check),
  /// so it works on a read-only or full file system. Writes throw store_error.
  bool read_only = false;
  /// When the directory already holds a RocksDB database, it must have this column family (it marks
  /// the database as its owner's); otherwise opening throws store_error instead of adding column
  /// families to another program's database. Empty = no check.
  std::string owner_column_family;
  /// Per column family tuning by name; a column family not listed gets kv_cf_options{}.
  /// write_buffer_bytes above stays the budget of all memtables together: raise it with them.
  std::map<std::string, kv_cf_options, std::less<>> column_families;
};

/// Bytes available to unprivileged users on the file system holding `path`; nullopt when unknown.
std::optional<std::uint64_t> free_bytes(const std::string& path);

class kv_store {
 public:
  virtual ~kv_store() = default;

  /// Opens (creating if asked) a RocksDB directory with the given column families ("default" is
  /// implicit). The directory is created 0700. An existing directory that other users may write to
  /// (mode o+w), or whose parent they may rename it out of (o+w without the sticky bit), is refused.
  static std::unique_ptr<kv_store> open_rocksdb(const std::string& dir, const std::vector<std::string>& cfs,
                                                const kv_options& opts = {});
  static std::unique_ptr<kv_store> open_memory(const std::vector<std::string>& cfs);

  virtual std::optional<std::string> get(std::string_view cf, std::string_view key) const = 0;
  virtual void put(std::string_view cf, std::string_view key, std::string_view value, bool sync = false) = 0;
  virtual void del(std::string_view cf, std::string_view key, bool sync = false) = 0;
  /// Applies all operations atomically; with `sync` the write is on disk (fsync'd WAL) on return.
  virtual void write(const write_batch& batch, bool sync) = 0;
  /// Visits keys in [from, to) in ascending order (empty `to` = to the end) until `visit` returns false.
  virtual void scan(std::string_view cf, std::string_view from, std::string_view to,
                    const std::function<bool(std::string_view key, std::string_view value)>& visit) const = 0;
  /// Visits keys k with to <= k < from in descending order: it starts just below `from` (empty
  /// `from` = from the last key) and stops at `to` inclusive (empty `to` = down to the first key).
  /// scan(cf, a, b, f) and scan_reverse(cf, b, a, f) visit the same keys in opposite orders.
  ///
  /// Both scans may be called while other threads write; `visit` may itself write to the store
  /// (the memory store releases its lock between chunks). A scan sees a consistent snapshot in
  /// RocksDB; the memory store gives no snapshot across chunks of 256 keys.
  virtual void scan_reverse(std::string_view cf, std::string_view from, std::string_view to,
                            const std::function<bool(std::string_view key, std::string_view value)>& visit) const = 0;

  /// Looks up several keys of one column family at once (RocksDB MultiGet); result[i] is keys[i]'s value.
  virtual std::vector<std::optional<std::string>> multi_get(std::string_view cf,
                                                            const std::vector<std::string>& keys) const;

  /// The directory of a RocksDB store, empty for the memory store.
  virtual std::string dir() const { return {}; }
};

/// Big-endian encoding of an unsigned integer, so that byte order equals numeric order.
std::string be64(std::uint64_t v);
/// Decodes be64(); throws store_error when `s` is not exactly 8 bytes.
std::uint64_t from_be64(std::string_view s);

}  // namespace ferry::stores
