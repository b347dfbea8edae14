#pragma once
// Entry points of the streams engine for the CLI (apps/). Many streams are driven by
// stream_launcher (launcher.hpp), the one driver production, tests and bench share.
//
// - run_status: prints each stream's committed state from a state dir (text, or JSON with `json`).
// - options_from_config: stream knobs from the typed migrate config.

#include "pipelines/migrate_config.hpp"
#include "pipelines/streams/slices.hpp"
#include "pipelines/streams/stream_runner.hpp"

#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

namespace ferry::pipelines::streams {

/// Stream options for `kind` from the config (fetch limit per kind, windows, batch caps, retries).
/// `payload_max_bytes` is the destination's /version value when known; `budget` the process's one
/// memory budget (make_memory_budget), shared by every stream it is given to (null: none accounted).
stream_options options_from_config(const migrate_config& cfg, stream_kind kind,
                                   std::optional<std::uint64_t> payload_max_bytes = std::nullopt,
                                   std::shared_ptr<engine::memory_budget> budget = nullptr);

/// The budget of MIGRATION_MEMORY_BUDGET for one run's streams (give the same one to all of them).
std::shared_ptr<engine::memory_budget> make_memory_budget(const migrate_config& cfg);
/// What the streams' rows may hold of MIGRATION_MEMORY_BUDGET: half of it. The rest is what the budget
/// does not count: the process itself (~45 MB: code, RocksDB, TLS, HTTP buffers, JSON parsers), the
/// allocator's slack and the readers' overshoot (a page larger than its estimate is charged without
/// waiting). Measured (bench/README.md "Scale curve, 10M rows and the memory budget"): 1M rows with 1%
/// 100 KB-1.4 MB rows, 6 slices, 150/100 ms: rows held 111 MB, peak RSS 201.6 MiB against 192 MiB (5/8:
/// 239 MB; before the budget counted pages: 365 MB).
std::uint64_t stream_rows_budget(std::uint64_t memory_budget_bytes);

/// Slicing knobs from the config: max_slices_per_stream, min_slice_rows, slice_min_latency_ms, and K's
/// request cap = max_concurrent_requests (a slice keeps one page read in flight on the source; its
/// writes queue on the destination's own semaphore, so half of it left source permits unused).
slice_config slicing_from_config(const migrate_config& cfg);

/// `ferry status`: one line (or one JSON object) per stream: id, cursor, rows, bytes, batches,
/// resent rows, done, last error. Returns 0, or 1 with a one-line error when the state dir cannot be
/// opened.
int run_status(const std::string& state_dir, bool json, std::ostream& out, std::ostream& err);

}  // namespace ferry::pipelines::streams
