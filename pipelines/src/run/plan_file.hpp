#pragma once
// Internal to pipelines: the plan file of a cluster run (`ferry plan --out FILE`, read by
// `ferry migrate --plan FILE [--phase resources | --shard I/N]`, `ferry finalize` and `ferry status --plan`).
// Pure data and decisions, no I/O but the file itself: testable without sockets.
//
// The plan (JSON, format "ferry-plan/1") lists the work units with their estimates:
//   - "org"              kind org_resources:     the organization's own objects (phase resources)
//   - "project:<src id>" kind project_resources: one project's objects (phase resources)
//   - "<stream id>"      kind stream:            one event stream (a project's logs, or a group of
//                        experiments / datasets exactly as the migration groups them), with source
//                        ids, estimated rows and bytes and the shard it is assigned to
// the options that decide what is copied (`options`, their fingerprint), the shard count, totals per
// shard, and `hash`: a 128-bit hash of the canonical JSON of everything else. There is no timestamp,
// so the same source state and options give the same file byte for byte. A plan whose hash does not
// match its content is refused (edited or truncated), as is a run whose options differ from the plan's.
//
// Shard assignment: longest-processing-time bin packing over the stream units, heaviest first (weight =
// estimated bytes + 256 per row; ties by unit id), each onto the least loaded shard (ties: lowest
// index). Deterministic; one huge stream ends up alone on its shard instead of beside many others.
//
// State layout: <state_dir>/<plan hash>/{resources,shard-<I>,finalize}, each a state dir of its own
// (RocksDB: id maps, stream cursors, migration_report.json) beside a lock file <role>.lock that
// one process at a time holds (flock: released by the kernel when the holder dies, even on SIGKILL).

#include "pipelines/migrate_config.hpp"
#include "pipelines/streams/discovery.hpp"

#include <boost/json/object.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ferry::pipelines {

/// Exit codes of the cluster commands (and of `ferry migrate` in general), for schedulers:
/// Kubernetes podFailurePolicy (FailIndex on exit_config) and Slurm requeue (all but 0 and 2).
constexpr int exit_done = 0;
constexpr int exit_retryable = 1;   // something failed; running the same command again resumes
constexpr int exit_config = 2;      // bad flags/config/plan, refused state: retrying cannot help
constexpr int exit_busy = 75;       // another process runs this shard/phase now (EX_TEMPFAIL): retry later
constexpr int exit_interrupted = 130;

struct plan_unit {
  std::string id;
  std::string kind;         // "org_resources" | "project_resources" | "stream"
  std::string phase;        // "resources" | "shards"
  std::string name;         // project name (resource units)
  std::string stream_kind;  // streams: "logs" | "experiment_events" | "dataset_events"
  std::vector<std::string> source_ids;  // streams: the objects read, in the stream's order
  std::uint64_t objects = 0;  // resource units: objects the resources phase creates or adopts
  std::uint64_t rows = 0;     // streams: rows counted on the source (key-only BTQL pages)
  std::uint64_t bytes = 0;    // streams: rows x average row size of one sampled page
  int shard = -1;             // streams: the shard that copies it
};

struct plan_doc {
  boost::json::object options;  // options_of(cfg) when the plan was made
  std::size_t shards = 1;
  std::vector<plan_unit> units;
  std::string hash;  // filled by to_json / load_plan
};

/// The settings that decide what a run copies (deployments by URL identity, selection, window,
/// grouping, name conflicts, attachments), as a JSON object in a fixed key order.
boost::json::object options_of(const migrate_config& cfg);

/// Assigns every stream unit a shard in [0, n) (see the file comment); resource units keep -1.
void assign_shards(std::vector<plan_unit>& units, std::size_t n);

/// The plan as written (with "hash"; doc.hash is set too).
boost::json::object to_json(plan_doc& doc);
/// Reads and checks a plan file; throws engine::config_error (one line naming the file and the cause).
plan_doc load_plan(const std::string& path);

/// The options that differ between the plan and `cfg`, one "key (plan: a, now: b)" each.
std::vector<std::string> option_differences(const plan_doc& plan, const migrate_config& cfg);

/// <state_dir>/<plan hash>: where every role of this plan keeps its state dir and lock.
std::filesystem::path plan_state_root(const migrate_config& cfg, const plan_doc& plan);
/// "shard-<i>".
std::string shard_role(std::size_t i);

/// Which shard a process is: --shard I/N (setting `shard`), else shard_index + shard_count
/// (JOB_COMPLETION_INDEX + FERRY_SHARD_COUNT, or SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN +
/// SLURM_ARRAY_TASK_COUNT). Called by load_migrate_config; throws engine::config_error.
struct shard_ref {
  std::size_t index = 0;
  std::size_t count = 1;
};
std::optional<shard_ref> shard_from_settings(const engine::settings& s);
/// The settings schema entries of plans and shards (appended to migrate_settings_schema()).
std::vector<engine::setting_binding> cluster_settings_schema();

/// The stream units of one shard, and the specs the shard runs for the objects the resources DAG made
/// ready: exactly one spec per unit whose objects are all ready, with the plan's stream id. A unit with
/// an object not ready is not copied in part (that would be another stream): it is named in `waiting`,
/// one line each, and the run fails retryably.
class shard_units {
 public:
  shard_units() = default;  // no unit: a phase that runs no stream (resources, finalize)
  shard_units(const plan_doc& plan, std::size_t shard);
  bool includes(streams::stream_kind kind, const std::string& source_id) const;
  std::vector<streams::stream_spec> specs(const std::vector<streams::discovered_object>& ready,
                                          const std::vector<streams::stream_state>& recorded,
                                          std::vector<std::string>& waiting) const;
  const std::vector<plan_unit>& units() const { return units_; }

 private:
  std::vector<plan_unit> units_;
  std::map<std::pair<streams::stream_kind, std::string>, std::size_t> member_;  // object -> unit index
};

}  // namespace ferry::pipelines
