// kv_store on RocksDB: column families, a small bounded memory footprint, and rocksdb::Status mapped
// to one-line store_errors that name the directory and the cause. No rocksdb:: type leaves this file.
#include "stores/kv_store.hpp"

#include "engine/log.hpp"

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <rocksdb/write_buffer_manager.h>

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

namespace ferry::stores {
namespace {

namespace fs = std::filesystem;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool is_lock_error(const rocksdb::Status& s) {
  if (!s.IsIOError() && !s.IsBusy()) return false;
  const std::string msg = s.ToString();
  return msg.find("/LOCK") != std::string::npos || msg.find("lock hold") != std::string::npos;
}

/// The cause of a failed status in a few words an operator can act on.
std::string describe(const rocksdb::Status& s) {
  const std::string full = s.ToString();
  const std::string l = lower(full);
  if (s.IsNoSpace() || l.find("no space left") != std::string::npos) return "no space left on device";
  if (l.find("permission denied") != std::string::npos) return "permission denied (" + full + ")";
  if (l.find("read-only file system") != std::string::npos) return "read-only file system (" + full + ")";
  if (s.IsCorruption())
    return "data is corrupt (" + full + "); restore a backup or move the directory away to start afresh";
  return full;
}

[[noreturn]] void fail(const std::string& label, const std::string& dir, std::string_view what,
                       const rocksdb::Status& s) {
  throw store_error(label + " " + dir + ": " + std::string(what) + " failed: " + describe(s));
}

/// Creates `dir` and any missing parents with mode 0700, and checks that it is a writable directory.
void ensure_dir(const std::string& label, const std::string& dir) {
  fs::path p = fs::absolute(fs::path(dir)).lexically_normal();
  fs::path prefix;
  for (const auto& part : p) {
    prefix /= part;
    struct stat st {};
    if (::stat(prefix.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode))
        throw store_error(label + " " + dir + ": cannot create directory: " + prefix.string() + " is not a directory");
      continue;
    }
    if (errno != ENOENT)
      throw store_error(label + " " + dir + ": cannot access " + prefix.string() + ": " + std::strerror(errno));
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST)
      throw store_error(label + " " + dir + ": cannot create directory " + prefix.string() + ": " +
                        std::strerror(errno));
    ::chmod(prefix.c_str(), 0700);  // exact mode whatever the umask
  }
  if (::access(p.c_str(), W_OK | X_OK) != 0)
    throw store_error(label + " " + dir + ": directory is not writable: " + std::strerror(errno));
}

/// Refuses a directory that other users could tamper with: writable by others itself (they could plant
/// files RocksDB then opens), or inside a parent writable by others without the sticky bit (they could
/// rename the directory away). /tmp (1777) as a parent is fine; a 1777 state dir is not.
void check_private(const std::string& label, const std::string& dir) {
  const fs::path p = fs::absolute(fs::path(dir)).lexically_normal();
  struct stat st {};
  if (::stat(p.c_str(), &st) == 0 && (st.st_mode & S_IWOTH)) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw store_error(label + " " + dir + ": directory is writable by every user (mode " + mode +
                      "): use a private directory (chmod 700, or a new path that ferry creates 0700)");
  }
  for (fs::path parent = p.parent_path(); !parent.empty(); parent = parent.parent_path()) {
    if (::stat(parent.c_str(), &st) == 0 && (st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX))
      throw store_error(label + " " + dir + ": parent directory " + parent.string() +
                        " is writable by every user without the sticky bit: move the state elsewhere");
    if (parent == parent.root_path()) break;
  }
}

/// A RocksDB logger that drops everything: a read-only open must not create LOG files.
class null_logger final : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char*, va_list) override {}
};

rocksdb::CompressionType pick_compression(std::initializer_list<rocksdb::CompressionType> prefs) {
  const auto supported = rocksdb::GetSupportedCompressions();
  for (auto c : prefs)
    if (std::find(supported.begin(), supported.end(), c) != supported.end()) return c;
  return rocksdb::kNoCompression;
}

/// A RocksDB database with column families. Thread-safe (RocksDB is); the handle map is fixed after
/// open. Owns the DB: the destructor releases the handles and closes it (which releases the LOCK).
class rocksdb_store final : public kv_store {
 public:
  rocksdb_store(std::string dir, const std::vector<std::string>& cfs, const kv_options& opts)
      : dir_(std::move(dir)),
        label_(opts.dir_label.empty() ? "state dir" : opts.dir_label),
        min_free_(opts.read_only ? 0 : opts.min_free_bytes) {
    if (opts.create_if_missing && !opts.read_only) {
      check_private(label_, dir_);
      ensure_dir(label_, dir_);
    } else if (!fs::is_directory(dir_)) {
      throw store_error(label_ + " " + dir_ + ": does not exist");
    } else if (!opts.read_only) {
      check_private(label_, dir_);
    }
    check_free_space();

    rocksdb::Options base;
    base.create_if_missing = opts.create_if_missing;
    base.create_missing_column_families = true;
    base.error_if_exists = opts.error_if_exists;
    // Small, bounded footprint: few background threads, a bounded number of open tables, all
    // memtables under one budget, and index/filter blocks living inside the bounded block cache
    // (otherwise they grow with the key count and memory is not flat at 10M keys).
    base.max_background_jobs = 2;
    base.max_open_files = 512;
    base.keep_log_file_num = 2;
    base.max_log_file_size = 1u << 20;
    base.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
    if (opts.read_only) base.info_log = std::make_shared<null_logger>();
    base.bytes_per_sync = 1u << 20;
    base.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(opts.write_buffer_bytes);
    // Several column families share one WAL; a rarely written cf would otherwise pin old WAL files.
    base.max_total_wal_size = std::max<std::uint64_t>(4 * opts.write_buffer_bytes, 64u << 20);
    base.write_buffer_size = std::max<std::size_t>(opts.write_buffer_bytes / 2, 1u << 20);
    base.max_write_buffer_number = 2;
    base.level_compaction_dynamic_level_bytes = true;
    base.compression = pick_compression({rocksdb::kLZ4Compression, rocksdb::kSnappyCompression});
    base.bottommost_compression = pick_compression({rocksdb::kZSTD, rocksdb::kLZ4Compression});

    // Few cache shards: an entry larger than a shard cannot be cached, and the default 64 shards of
    // a 32 MiB cache are 512 KiB each. Partitioned index and filters keep every cached block small,
    // so lookups in a 10M-key seen set hit the cache instead of re-reading whole filters from disk.
    cache_ = rocksdb::NewLRUCache(opts.block_cache_bytes, /*num_shard_bits=*/2);
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = cache_;
    table.cache_index_and_filter_blocks = true;
    table.cache_index_and_filter_blocks_with_high_priority = true;
    table.pin_l0_filter_and_index_blocks_in_cache = true;
    table.index_type = rocksdb::BlockBasedTableOptions::IndexType::kTwoLevelIndexSearch;
    table.partition_filters = true;
    table.metadata_block_size = 4096;
    table.optimize_filters_for_memory = true;
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    table.block_size = 16 * 1024;
    table.format_version = 5;
    base.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

    // Every existing column family must be opened; add the requested ones (created if missing).
    std::set<std::string> names{rocksdb::kDefaultColumnFamilyName};
    names.insert(cfs.begin(), cfs.end());
    if (fs::exists(fs::path(dir_) / "CURRENT")) {
      std::vector<std::string> existing;
      auto s = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(base), dir_, &existing);
      if (!s.ok()) {
        if (is_lock_error(s)) throw_locked();
        fail(label_, dir_, "open", s);
      }
      if (!opts.owner_column_family.empty() &&
          std::find(existing.begin(), existing.end(), opts.owner_column_family) == existing.end())
        refuse_foreign(base, existing, names, opts);
      if (opts.read_only) names.clear();  // a read-only open cannot create the missing ones
      names.insert(existing.begin(), existing.end());
    } else if (opts.read_only) {
      throw store_error(label_ + " " + dir_ + ": no state here (no RocksDB database)");
    }
    std::vector<rocksdb::ColumnFamilyDescriptor> descs;
    for (const auto& n : names) {
      rocksdb::ColumnFamilyOptions cf(base);
      if (auto it = opts.column_families.find(n); it != opts.column_families.end()) tune(cf, it->second);
      descs.emplace_back(n, cf);
    }

    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    auto s = opts.read_only ? rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(base), dir_, descs, &handles, &db)
                            : rocksdb::DB::Open(rocksdb::DBOptions(base), dir_, descs, &handles, &db);
    if (!s.ok()) {
      if (is_lock_error(s)) throw_locked();
      fail(label_, dir_, "open", s);
    }
    db_.reset(db);
    for (auto* h : handles) handles_.emplace(h->GetName(), h);
    engine::logger("store")->debug("opened rocksdb dir={} column_families={}", dir_, handles_.size());
  }

  ~rocksdb_store() override {
    for (auto& [name, h] : handles_) db_->DestroyColumnFamilyHandle(h);
    handles_.clear();
    auto s = db_->Close();
    if (!s.ok()) engine::logger("store")->warn("close failed dir={} error={}", dir_, s.ToString());
  }

  std::string dir() const override { return dir_; }

  std::optional<std::string> get(std::string_view cf, std::string_view key) const override {
    std::string value;
    auto s = db_->Get(rocksdb::ReadOptions(), handle(cf), slice(key), &value);
    if (s.IsNotFound()) return std::nullopt;
    if (!s.ok()) fail(label_, dir_, "read", s);
    return value;
  }

  std::vector<std::optional<std::string>> multi_get(std::string_view cf,
                                                    const std::vector<std::string>& keys) const override {
    // The batched form (one column family, PinnableSlice values): lookups share the filter and index
    // probes of each file instead of one full Get per key.
    std::vector<rocksdb::Slice> ks;
    ks.reserve(keys.size());
    for (const auto& k : keys) ks.emplace_back(k);
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    if (!keys.empty())
      db_->MultiGet(rocksdb::ReadOptions(), handle(cf), ks.size(), ks.data(), values.data(), statuses.data());
    std::vector<std::optional<std::string>> out;
    out.reserve(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (statuses[i].IsNotFound()) {
        out.emplace_back(std::nullopt);
      } else if (!statuses[i].ok()) {
        fail(label_, dir_, "read", statuses[i]);
      } else {
        out.emplace_back(values[i].ToString());
      }
    }
    return out;
  }

  void put(std::string_view cf, std::string_view key, std::string_view value, bool sync) override {
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    auto s = db_->Put(wo, handle(cf), slice(key), slice(value));
    if (!s.ok()) fail(label_, dir_, "write", s);
  }

  void del(std::string_view cf, std::string_view key, bool sync) override {
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    auto s = db_->Delete(wo, handle(cf), slice(key));
    if (!s.ok()) fail(label_, dir_, "write", s);
  }

  void write(const write_batch& batch, bool sync) override {
    // Sized once: a 1-2 MB batch grown by doubling was copied ~log2(size/4k) times.
    std::size_t bytes = 12;
    for (const auto& op : batch.ops()) bytes += op.key.size() + (op.value ? op.value->size() : 0) + 16;
    rocksdb::WriteBatch wb(bytes);
    for (const auto& op : batch.ops()) {
      auto* h = handle(op.cf);  // throws before anything is written: the batch stays atomic
      rocksdb::Status s = op.value ? wb.Put(h, op.key, *op.value) : wb.Delete(h, op.key);
      if (!s.ok()) fail(label_, dir_, "write", s);
    }
    if (sync) check_free_space();
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    auto s = db_->Write(wo, &wb);
    if (!s.ok()) fail(label_, dir_, "write", s);
  }

  void scan(std::string_view cf, std::string_view from, std::string_view to,
            const std::function<bool(std::string_view, std::string_view)>& visit) const override {
    rocksdb::ReadOptions ro;
    rocksdb::Slice upper = slice(to);
    if (!to.empty()) ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handle(cf)));
    for (it->Seek(slice(from)); it->Valid(); it->Next())
      if (!visit(view(it->key()), view(it->value()))) return;
    if (!it->status().ok()) fail(label_, dir_, "read", it->status());
  }

  void scan_reverse(std::string_view cf, std::string_view from, std::string_view to,
                    const std::function<bool(std::string_view, std::string_view)>& visit) const override {
    rocksdb::ReadOptions ro;
    rocksdb::Slice lower_bound = slice(to);
    if (!to.empty()) ro.iterate_lower_bound = &lower_bound;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handle(cf)));
    if (from.empty()) {
      it->SeekToLast();
    } else {
      it->SeekForPrev(slice(from));
      if (it->Valid() && view(it->key()) == from) it->Prev();  // `from` is exclusive
    }
    for (; it->Valid(); it->Prev())
      if (!visit(view(it->key()), view(it->value()))) return;
    if (!it->status().ok()) fail(label_, dir_, "read", it->status());
  }

 private:
  /// Throws "disk full" while the file system has less than min_free_ bytes available: the write
  /// that would have been attempted did not happen, so the state stays consistent and a later run
  /// resumes from the last committed batch.
  void check_free_space() const {
    if (min_free_ == 0) return;
    auto avail = free_bytes(dir_);
    if (!avail || *avail >= min_free_) return;
    throw store_error(label_ + " " + dir_ + ": disk full: " + std::to_string(*avail >> 20) + " MiB free, at least " +
                      std::to_string(min_free_ >> 20) +
                      " MiB needed; free some space and run again (everything committed so far is kept)");
  }

  /// Applies one column family's tuning over the shared defaults.
  static void tune(rocksdb::ColumnFamilyOptions& cf, const kv_cf_options& t) {
    if (!t.compress) {
      cf.compression = rocksdb::kNoCompression;
      cf.bottommost_compression = rocksdb::kNoCompression;
    }
    if (t.write_buffer_bytes) cf.write_buffer_size = t.write_buffer_bytes;
    if (t.memtable_bloom) {
      cf.memtable_whole_key_filtering = true;
      cf.memtable_prefix_bloom_size_ratio = 0.02;  // of the memtable size; ~10 bits per small key
    }
    if (t.level0_compaction_trigger > 0) {
      cf.level0_file_num_compaction_trigger = t.level0_compaction_trigger;
      // Keep RocksDB's write slowdown/stop well above the trigger (defaults 20/36 assume a trigger of 4).
      cf.level0_slowdown_writes_trigger = std::max(cf.level0_slowdown_writes_trigger, 5 * t.level0_compaction_trigger);
      cf.level0_stop_writes_trigger = std::max(cf.level0_stop_writes_trigger, 8 * t.level0_compaction_trigger);
      // L1 sized like L0 at its trigger, so an L0->L1 compaction rewrites about as much as it reads.
      cf.max_bytes_for_level_base = std::max<std::uint64_t>(cf.max_bytes_for_level_base,
                                                             cf.write_buffer_size * t.level0_compaction_trigger);
    }
  }

  static rocksdb::Slice slice(std::string_view s) { return {s.data(), s.size()}; }
  static std::string_view view(const rocksdb::Slice& s) { return {s.data(), s.size()}; }

  /// A database without the owner's column family: one whose column families are all among those the
  /// owner opens (`wanted`; "default" at least) and all empty is one whose creation was interrupted
  /// (RocksDB writes CURRENT first, then creates the column families one by one: a SIGKILL may land in
  /// between): the owner's, being created; it is refused read-only ("no state yet") and adopted
  /// otherwise. Anything else is another program's.
  void refuse_foreign(const rocksdb::Options& base, const std::vector<std::string>& existing,
                      const std::set<std::string>& wanted, const kv_options& opts) const {
    bool empty = std::all_of(existing.begin(), existing.end(), [&](const std::string& n) { return wanted.count(n) > 0; });
    if (empty) {
      rocksdb::DBOptions ro(base);
      ro.info_log = std::make_shared<null_logger>();
      std::vector<rocksdb::ColumnFamilyDescriptor> descs;
      for (const auto& n : existing) descs.emplace_back(n, rocksdb::ColumnFamilyOptions(base));
      std::vector<rocksdb::ColumnFamilyHandle*> handles;
      rocksdb::DB* raw = nullptr;
      empty = rocksdb::DB::OpenForReadOnly(ro, dir_, descs, &handles, &raw).ok();
      if (empty) {
        std::unique_ptr<rocksdb::DB> db(raw);
        for (auto* h : handles) {
          std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), h));
          it->SeekToFirst();
          empty = empty && !it->Valid() && it->status().ok();
        }
        for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
      }
    }
    if (empty && opts.read_only) throw store_error(label_ + " " + dir_ + ": no state yet (it is being created)");
    if (empty) return;
    throw store_error(label_ + " " + dir_ + " holds a RocksDB database of another program (no '" +
                      opts.owner_column_family + "' column family): use another directory");
  }

  [[noreturn]] void throw_locked() const {
    throw store_error(label_ + " " + dir_ + " is in use by another ferry process (lock held)");
  }

  rocksdb::ColumnFamilyHandle* handle(std::string_view cf) const {
    auto it = handles_.find(cf);
    if (it == handles_.end())
      throw store_error(label_ + " " + dir_ + ": unknown column family '" + std::string(cf) + "'");
    return it->second;
  }

  struct db_closer {
    void operator()(rocksdb::DB* db) const { delete db; }
  };

  std::string dir_;
  std::string label_;
  std::uint64_t min_free_ = 0;
  std::shared_ptr<rocksdb::Cache> cache_;
  std::unique_ptr<rocksdb::DB, db_closer> db_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*, std::less<>> handles_;
};

}  // namespace

std::optional<std::uint64_t> free_bytes(const std::string& path) {
  struct statvfs st {};
  if (::statvfs(path.c_str(), &st) != 0) return std::nullopt;
  return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

std::unique_ptr<kv_store> kv_store::open_rocksdb(const std::string& dir, const std::vector<std::string>& cfs,
                                                 const kv_options& opts) {
  if (dir.empty()) throw store_error((opts.dir_label.empty() ? "state dir" : opts.dir_label) + ": path is empty");
  return std::make_unique<rocksdb_store>(dir, cfs, opts);
}

}  // namespace ferry::stores
