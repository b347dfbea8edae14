#pragma once
// Which event streams exist and the destination object each one writes to. Creating destination
// objects is the resources DAG's alone (org_migrator; run/plan.cpp feeds the streams from its ready
// hook); this file only reads.
//
//  - discover_objects(): read-only (dry runs, and verify without recorded streams). Lists the source
//    projects (cfg.projects / cfg.exclude) and their experiments and datasets, and finds each one's
//    destination counterpart: the state's id map first (written by the resources DAG), else a
//    destination object with the same name (GET listings), else none (empty dest_id).
//  - ready_collector: an adapter for resources::object_ready_fn (org_migrator's on_object_ready hook):
//    collects the (kind, source id, destination id) triples the resource DAG reports.
//  - build_stream_specs(): objects -> stream specs: one logs stream per project; experiments and
//    datasets in groups of `fetch_group_size`. Grouping is stable across runs: a group recorded by an
//    earlier run (its source ids are in the stream state) is reused as long as all its members are
//    still there; the remaining objects are sorted by source id and chunked. The stream id of a new
//    group is "<kind>:<first source id>+<n-1>#<hash of all ids>".
//
// Selection: cfg.resources empty or "all" = every kind; otherwise "logs", "experiments" (or
// "experiment_events"), "datasets" (or "dataset_events") select the streams of that kind. cfg.exclude
// accepts the same names, anything else is a project name.
//
// Threading: discover_objects runs on the awaiting coroutine's executor, one request at a time.
// ready_collector is thread-safe.

#include "pipelines/migrate_config.hpp"
#include "pipelines/streams/checkpoint_store.hpp"
#include "pipelines/streams/stream_runner.hpp"

#include <boost/asio/awaitable.hpp>

#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::transports {
class api_client;
}
namespace ferry::stores {
class state_store;
}

namespace ferry::pipelines::streams {

/// A source object with a stream and its destination counterpart. For project_logs the object is
/// the project itself.
struct discovered_object {
  stream_kind kind = stream_kind::project_logs;
  std::string source_id;
  std::string dest_id;
  std::string name;               // for messages
  std::string source_project_id;  // the project it lives in (== source_id for project_logs)
};

struct stream_selection {
  bool logs = true;
  bool experiments = true;
  bool datasets = true;
  std::vector<std::string> exclude_projects;
};

/// The selection from cfg.resources / cfg.exclude (see the file comment). Resource names that are not
/// stream kinds ("prompts", ...) are ignored here (they belong to the resources migration).
stream_selection selection_from(const migrate_config& cfg);

struct discovery_result {
  std::vector<discovered_object> objects;  // projects (one logs stream each), experiments, datasets
  std::vector<std::string> errors;         // one line each: a project or listing that failed
};

/// Read-only discovery (see the file comment). `state` may be null. Throws transports::api_error when
/// the source project listing fails; other listing failures go to `errors`. Objects without a
/// destination counterpart are kept with an empty dest_id (build_stream_specs skips them).
boost::asio::awaitable<discovery_result> discover_objects(transports::api_client& source, transports::api_client& dest,
                                                          const migrate_config& cfg, stores::state_store* state);

/// The stream specs for `objects` (see the file comment). `recorded` = the stream states of earlier
/// runs (for stable groups); `group_size` >= 1.
std::vector<stream_spec> build_stream_specs(const std::vector<discovered_object>& objects, std::size_t group_size,
                                            const std::vector<stream_state>& recorded);

/// Collects the resources DAG's ready objects. Pass `collector.hook()` (or a lambda calling add) as
/// the resources' object_ready_fn; kinds "project" / "experiment" / "dataset" are kept, others ignored.
class ready_collector {
 public:
  explicit ready_collector(stream_selection sel = {}) : sel_(std::move(sel)) {}
  void add(std::string_view kind, const std::string& source_id, const std::string& dest_id);
  /// A copy of what was collected so far, in arrival order.
  std::vector<discovered_object> objects() const;

 private:
  stream_selection sel_;
  mutable std::mutex mu_;
  std::vector<discovered_object> objects_;
};

}  // namespace ferry::pipelines::streams
