#pragma once
// Internal to pipelines: which objects a run touches and which streams it copies.
//
// With resources selected (cfg.resources empty, or naming any resource type), the resources DAG
// creates or adopts every destination object and its ready hook hands projects, experiments and
// datasets to the streams: a project's logs stream starts as soon as the destination project exists,
// the experiment and dataset streams (grouped fetch_group_size per stream, stable across runs) once
// the DAG is finished. With only stream kinds selected, streams::discover_objects finds or creates the
// destination projects/experiments/datasets by name.

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

struct plan_outcome {
  int resources_rc = 0;             // the resources DAG's result (0 when it did not run)
  std::vector<std::string> errors;  // discovery failures, one line each
};

/// The real run's plan (see the file comment): every planned stream goes to `launcher`.
boost::asio::awaitable<plan_outcome> plan_and_launch(const migrate_config& cfg, side& src, side& dst,
                                                     stores::state_store& st, resources::migration_report& report,
                                                     streams::stream_launcher& launcher);

}  // namespace ferry::pipelines
