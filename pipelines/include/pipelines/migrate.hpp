#pragma once
// `ferry migrate` and `ferry verify` end to end: the two commands the CLI wires in (apps/).
//
// run_migrate(cfg):
//   1. opens the state dir once (stores::state_store, mode 0700) and refuses a resume whose source URL,
//      destination URL or created-after/before window differ from the recorded run (exit 2, one line
//      naming the key). A dry run opens nothing and writes nothing (state stays untouched).
//   2. builds one transports::braintrust_client per side (side_config_for), reads the destination's
//      GET /version (logs3_payload_max_bytes caps the batches) and its organization id (attachments).
//   3. resources: runs resources::migrate_resources (the org DAG, the one place destination objects are
//      created); with cfg.resources naming only stream kinds, just the projects/experiments/datasets
//      the streams write to (the created window then selects rows, not objects). Its on_ready hook
//      starts each project's logs stream as soon as the destination project exists (overlapping the
//      rest of the DAG); experiment and dataset streams are grouped (fetch_group_size, stable across
//      runs) and start once the DAG is finished.
//   4. every stream runs (streams::stream_launcher) as an engine::runtime task on its own strand, at
//      most max_concurrent_streams at once. SIGINT/SIGTERM: graceful phase (in-flight batches finish and commit), a second signal
//      or the runtime's shutdown grace makes it terminal; the exit code is then 130.
//   5. progress: a live line on stderr when it is a TTY, else one structured log line per active
//      stream every progress_interval; then a summary (stdout) and migration_report.json (resources'
//      report + one `streams` entry per stream) in the state dir or cfg.report_path.
//   Exit: 0 all done, 1 anything failed (each failure one line naming the object/stream), 2 bad
//   config / refused resume / unusable state dir, 130 interrupted.
//   Dry run: GET/BTQL reads only; nothing is written to the destination, and no state dir is opened
//   or created (an in-memory store stands in). Resources print their plan; then, per stream, what it
//   would copy with its source row count (key-only BTQL pages of dry_run_count_page keys, created
//   window honoured, through the request semaphore and rate limits, at most max_concurrent_streams
//   streams counted at once, stopped by SIGINT/SIGTERM), estimated bytes (average row size of one
//   full sampled page x rows) and estimated time (run_options::plan_rows_per_s / plan_bytes_per_s,
//   printed as the assumption), then totals (rows, GB, time). The plan (resources' report + `streams`
//   entries + `streams_plan` totals) goes to migration_plan.json at cfg.report_path if set, else in
//   the state dir only if it already exists, else in the current directory. Exit 130 when
//   interrupted (the plan written so far lists uncounted streams with `"counted": false`).
//   Any directory Ferry creates for a report is made 0700.
//
// run_verify(cfg): for each stream recorded in the state dir (or, when there is none, discovered
//   read-only by name), reads the source and destination fully with BTQL keyset paging and compares
//   them row by row with streams::verify_tally (canonical content hashes; see streams/verify.hpp);
//   prints `ok` / `DIFF` per stream with rows, missing / extra / mismatched ids, checks project,
//   experiment and dataset counts by name, writes verify_report.json next to the migration report.
//   Exit: 0 all equal, 1 any difference or failure, 2 bad config.
//
// run_status is streams::run_status(state_dir, json, out, err) (pipelines/streams/entry.hpp).
//
// Threading: both block the calling thread; they own their io_context (engine::runtime with
// `threads` threads). Not re-entrant with another run on the same state dir (RocksDB locks it).

#include "pipelines/migrate_config.hpp"

#include <chrono>
#include <cstddef>
#include <functional>
#include <iosfwd>
#include <optional>

namespace ferry::engine {
class runtime;
}

namespace ferry::pipelines {

/// How a run talks to its surroundings; the defaults are the CLI's.
struct run_options {
  std::ostream* out = nullptr;  // summary, plan, verify lines; default std::cout
  std::ostream* err = nullptr;  // failures, live progress line; default std::cerr
  std::size_t threads = 2;      // io_context threads
  bool handle_signals = true;   // SIGINT/SIGTERM drive the two-phase shutdown
  std::chrono::milliseconds shutdown_grace{30'000};    // graceful -> terminal
  std::chrono::milliseconds progress_interval{10'000};  // structured progress log lines
  std::optional<bool> live_progress;  // live stderr line; default: stderr is a TTY
  /// The command an interrupted run prints to resume with (`ferry` passes its own command line).
  std::string resume_command = "ferry migrate (the same command)";
  /// Called once the runtime exists, before anything runs (tests schedule shutdowns with it).
  std::function<void(engine::runtime&)> on_runtime;
  /// Dry run: the aggregate copy rate the time estimate assumes; the slower of the two bounds wins.
  /// Default: bench/results/summary.md, emulator -> emulator, 100k events on 2 cores (28,251 events/s,
  /// 38.4 MB/s); a real deployment over a WAN is usually slower, so this is a lower bound on time.
  double plan_rows_per_s = 28'000;
  double plan_bytes_per_s = 38e6;
  /// Dry run: keys per key-only BTQL count page (bounded pages; the server may cap it lower).
  std::size_t dry_run_count_page = 10'000;
};

int run_migrate(const migrate_config& cfg);
int run_migrate(const migrate_config& cfg, const run_options& opts);

int run_verify(const migrate_config& cfg);
int run_verify(const migrate_config& cfg, const run_options& opts);

}  // namespace ferry::pipelines
