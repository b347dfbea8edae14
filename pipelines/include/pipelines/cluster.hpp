#pragma once
// A migration as many processes on a cluster scheduler (Kubernetes Indexed Jobs, Slurm job arrays):
// a plan file, a resources phase run once, N shards that each copy their share of the event streams,
// and a finalize phase. The plan file's format, the shard assignment and the state layout are described
// in pipelines/src/run/plan_file.hpp; the README's "Running on a cluster" has both recipes.
//
//   ferry plan --out FILE [--shards N]   run_plan: reads both sides (GET/BTQL only: the resources plan
//        of a dry run, every stream's rows counted with key-only BTQL pages and its bytes estimated
//        from one sampled page), assigns the stream units to N shards by size and writes the plan.
//        Same source state and options => the same file. Writes nothing else.
//   ferry migrate --plan FILE --phase resources   (run_migrate with plan_path and phase "resources")
//        creates or adopts every destination object except ACLs and automations; copies no stream.
//        State: <state_dir>/<plan hash>/resources.
//   ferry migrate --plan FILE --shard I/N   (or JOB_COMPLETION_INDEX + FERRY_SHARD_COUNT, or
//        SLURM_ARRAY_TASK_ID + SLURM_ARRAY_TASK_COUNT) runs the resources DAG against a destination
//        that refuses every write (objects are found by name, their ids recorded in the shard's own id
//        maps; nothing is created, so N shards never create an object twice), then copies only the
//        streams of shard I's units. State: <state_dir>/<plan hash>/shard-I. An object still missing
//        (the resources phase has not finished) fails that object: exit 1, retry later.
//   ferry finalize --plan FILE   run_finalize: refuses (exit 1) until every shard's streams are done;
//        then the resources DAG with every type (ACLs and automations are created now, after the
//        backfill, so automations never act on copied rows), then `verify` across the whole org.
//        State: <state_dir>/<plan hash>/finalize.
//   ferry status --plan FILE [--json]   run_plan_status: every phase and shard from its state dir,
//        read-only, beside running shards.
//
// Every phase and shard holds <state_dir>/<plan hash>/<role>.lock (flock) while it runs: a second
// process on the same shard is refused with one line and exit 75. A run whose options differ from the
// plan's (or whose shard count differs from the plan's) is refused with exit 2.
//
// Exit codes (schedulers): 0 done; 1 retryable (something failed: the same command resumes); 2
// configuration error (bad flags, config, plan file or options; never retry: podFailurePolicy
// FailIndex); 75 the shard is being run by another process (retry later); 130 interrupted (retry).

#include "pipelines/migrate.hpp"
#include "pipelines/migrate_config.hpp"

#include <iosfwd>

namespace ferry::pipelines {

int run_plan(const migrate_config& cfg, const run_options& opts = {});
int run_finalize(const migrate_config& cfg, const run_options& opts = {});
int run_plan_status(const migrate_config& cfg, bool json, std::ostream& out, std::ostream& err);

}  // namespace ferry::pipelines
