#pragma once
// Internal to pipelines: the plan-driven runs of pipelines/cluster.hpp. `migrate` is the one-process
// migration of migrate.cpp, run here on a role's own state dir (resources phase, shard I, finalize) with
// the role's stream units, so a shard is the ordinary migration with a narrower scope, not a twin of it.

#include "run_context.hpp"

#include "pipelines/migrate.hpp"
#include "pipelines/migrate_config.hpp"

namespace ferry::pipelines {

using migration_fn = int (*)(run_context& c);

/// `ferry migrate --plan FILE [--phase resources | --shard I/N]`.
int run_planned(const migrate_config& cfg, const run_options& ro, migration_fn migrate);
/// `ferry finalize --plan FILE`.
int finalize_planned(const migrate_config& cfg, const run_options& ro, migration_fn migrate);

}  // namespace ferry::pipelines
