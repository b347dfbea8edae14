#pragma once
// Internal to pipelines: which objects a run touches and which streams it copies.
//
// The resources DAG is the one place destination objects are created or adopted. With resources
// selected (cfg.resources empty, or naming any resource type) it migrates the selection; with only
// stream kinds selected it migrates just the projects, experiments and datasets those streams write
// to (the created window then selects rows only, not objects). Its ready hook hands projects,
// experiments and datasets to the streams: a project's logs stream starts as soon as the destination
// project exists, the experiment and dataset streams (grouped fetch_group_size per stream, stable
// across runs) once the DAG is finished.

#include "sides.hpp"

#include "pipelines/migrate_config.hpp"
#include "pipelines/resources/report.hpp"
#include "pipelines/streams/checkpoint_store.hpp"
#include "pipelines/streams/launcher.hpp"

#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::pipelines {

class shard_units;

/// The id-map type of a stream kind's objects: "project", "experiment", "dataset".
std::string_view id_type(streams::stream_kind k);
/// The stream kind of a recorded stream's kind name ("logs", "experiment_events", ...).
std::optional<streams::stream_kind> kind_from_name(std::string_view n);

/// The resources DAG runs unless cfg.resources selects only stream kinds.
bool resources_selected(const migrate_config& cfg);
/// The config the resources DAG sees: stream-only names it does not know are removed.
migrate_config resources_view(const migrate_config& cfg);
/// Experiments and datasets per stream (fetch_group_size, at least 1).
std::size_t group_size(const migrate_config& cfg);

/// The real run's plan (see the file comment): every planned stream goes to `launcher`, or with `units`
/// (a plan's shard or phase, run/plan_file.hpp) only the streams of those units. Returns the
/// resources DAG's result (0 ok, 1 something failed, 2 a bad selection; the report says what).
boost::asio::awaitable<int> plan_and_launch(const migrate_config& cfg, side& src, side& dst,
                                                     stores::state_store& st, resources::migration_report& report,
                                                     streams::stream_launcher& launcher,
                                                     const shard_units* units = nullptr);

}  // namespace ferry::pipelines
