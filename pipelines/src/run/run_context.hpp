#pragma once
// Internal to pipelines: what one `ferry migrate` / `ferry verify` run holds from start to end, opened
// in this order (and destroyed in reverse): the state dir with its resume guard, the --record
// recorder, the runtime (io_context threads, signals, two-phase shutdown) and the two sides.

#include "metrics.hpp"
#include "sides.hpp"

#include "pipelines/migrate.hpp"

#include "engine/metrics.hpp"
#include "engine/runtime.hpp"
#include "stores/state_store.hpp"
#include "transports/recorder.hpp"

#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

namespace ferry::pipelines {

class shard_units;

/// How a command uses the state dir.
enum class state_use {
  memory,          // dry run: an in-memory store; the state dir is neither created nor read
  guarded,         // migrate: opened (created 0700) and the resume guard checked/recorded
  read_if_exists,  // verify: opened read-only when a state exists there, else none
};

struct run_context {
  const migrate_config& cfg;
  const run_options& ro;
  std::ostream& out;  // ro.out or std::cout
  std::ostream& err;  // ro.err or std::cerr
  std::optional<stores::state_store> state;
  std::optional<transports::recorder> recorder;  // --record (outlives the sides, which report to it)
  engine::metrics_registry metrics;  // fed by the sides and the streams when metrics_http is on
  std::unique_ptr<engine::runtime> rt;
  side src;
  side dst;
  /// With --plan (run/plan_file.hpp): the only streams this run copies (none for the resources and
  /// finalize phases); null: every selected stream.
  const shard_units* units = nullptr;
  std::unique_ptr<metrics_service> metrics_http;  // --metrics-addr (migrate); stops before the sides go

  run_context(const migrate_config& c, const run_options& r);
  stores::state_store* state_or_null() { return state ? &*state : nullptr; }
  /// The registry the run's counters feed, or null without --metrics-addr (nothing is counted then).
  engine::metrics_registry* metrics_or_null() { return cfg.metrics_addr.empty() ? nullptr : &metrics; }
};

/// Opens everything above for `command` ("migrate", "verify"); on a bad config, a refused resume or an
/// unusable state dir prints one line "ferry <command>: ..." on err and returns null (exit 2). The
/// API keys are registered with the log redactor first. A migration (guarded or dry run) whose source
/// and destination are the same deployment (engine::url_identity, as the resume guard compares them) and the same organization (the org id each
/// key resolves to, or the same key) is refused there, before the state dir is created or anything is
/// written, naming both sides; two organizations of one deployment are allowed. Calls ro.on_runtime once the runtime exists.
/// A migration (guarded) with cfg.metrics_addr serves the metrics from here on and logs their URL; an
/// address it cannot bind is a bad config (null).
std::unique_ptr<run_context> open_run_context(const migrate_config& cfg, const run_options& ro, std::string_view command,
                                              state_use use);

/// The runtime a command runs on: ro's threads (at least 1), shutdown grace and signal handling.
engine::runtime_config runtime_config_for(const run_options& ro);

}  // namespace ferry::pipelines
