#pragma once
// The outcome of a resource migration (or of its dry-run plan): one entry per source object with what
// happened (created / adopted / updated / unchanged / skipped with reason / failed with error, or the
// "would_*" plan statuses of a dry run), its name, source and destination ids and the fields dropped
// while rewriting; per-stream counters are attached by whoever runs the streams.
//
// The dropped fields of the objects written to the destination are kept in the state (keep_drops_in),
// which the JSON and the summary then report. `to_json()` is migration_report.json; `summary_text()` the
// readable summary printed at the end.
// Thread-safety: add()/set_stream() may be called concurrently (one mutex); readers call after the run.

#include <boost/json/object.hpp>

#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ferry::stores {
class state_store;
}

namespace ferry::pipelines::resources {

enum class object_status { created, adopted, updated, unchanged, skipped, failed, would_create, would_update };
std::string_view to_string(object_status s);

/// The reason of a dropped-field record (path "") that stands for a whole object the migration skipped.
inline constexpr std::string_view k_skipped_prefix = "skipped: ";

struct report_entry {
  std::string type;
  std::string scope;  // "organization" or "project:<name>"
  std::string source_id;
  std::string dest_id;
  std::string name;
  object_status status = object_status::created;
  std::string reason;  // skip reason code or failure message
  std::string detail;  // one line for humans
  std::vector<std::pair<std::string, std::string>> dropped;  // field, reason
  std::vector<std::string> notes;
};

class migration_report {
 public:
  void add(report_entry e);
  /// Changes the entry of (type, source id) in place (the link pass completing an object's references);
  /// false when there is none.
  bool amend(std::string_view type, std::string_view source_id, const std::function<void(report_entry&)>& fn);
  /// Per-stream counters (rows read/written ...), keyed by a stream id.
  void set_stream(std::string stream_id, boost::json::object counters);
  /// A run-level error (a type that could not be listed, a project that failed).
  void add_error(std::string message);
  void set_dry_run(bool v) { dry_run_ = v; }
  void set_times(std::string start, std::string end, double seconds);
  /// Keeps the dropped fields of every object in the destination in `state` (stores::state_store's
  /// dropped-field records, replaced on each add/amend; `state` must outlive this report): a resume or
  /// `ferry verify` reads them there, and to_json()/summary_text() report them from there.
  void keep_drops_in(stores::state_store* state);

  std::vector<report_entry> entries() const;
  std::vector<std::string> errors() const;
  std::size_t count(object_status s) const;
  std::size_t count(std::string_view type, object_status s) const;
  /// True when nothing failed (objects or run-level errors).
  bool success() const;

  boost::json::object to_json() const;
  std::string summary_text() const;

 private:
  mutable std::mutex mutex_;
  std::vector<report_entry> entries_;
  std::map<std::string, boost::json::object> streams_;
  std::vector<std::string> errors_;
  void persist_drops(const report_entry& e) const;
  std::vector<report_entry> reported_entries() const;

  stores::state_store* drops_ = nullptr;
  bool dry_run_ = false;
  std::string start_, end_;
  double seconds_ = 0;
};

}  // namespace ferry::pipelines::resources
