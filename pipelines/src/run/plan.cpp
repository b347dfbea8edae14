#include "plan.hpp"

#include "plan_file.hpp"

#include "pipelines/resources/entry.hpp"
#include "pipelines/resources/org_migrator.hpp"
#include "pipelines/streams/discovery.hpp"

#include "stores/state_store.hpp"

#include <algorithm>

namespace ferry::pipelines {

using streams::stream_kind;

namespace {

// Names in cfg.resources that only select event streams (the resources DAG does not know them, or,
// for "logs", has nothing to migrate for them).
bool is_stream_only_name(std::string_view n) {
  return n == "logs" || n == "project_logs" || n == "experiment_events" || n == "dataset_events";
}

}  // namespace

std::string_view id_type(stream_kind k) {
  return k == stream_kind::project_logs ? "project" : k == stream_kind::experiment ? "experiment" : "dataset";
}

std::optional<stream_kind> kind_from_name(std::string_view n) {
  for (auto k : {stream_kind::project_logs, stream_kind::experiment, stream_kind::dataset})
    if (streams::resource_name(k) == n) return k;
  return std::nullopt;
}

bool resources_selected(const migrate_config& cfg) {
  if (cfg.resources.empty()) return true;
  return std::any_of(cfg.resources.begin(), cfg.resources.end(), [](const std::string& r) { return !is_stream_only_name(r); });
}

migrate_config resources_view(const migrate_config& cfg) {
  migrate_config r = cfg;
  std::erase_if(r.resources, [](const std::string& n) { return is_stream_only_name(n) && n != "logs"; });
  std::erase_if(r.exclude, [](const std::string& n) { return is_stream_only_name(n) && n != "logs"; });
  return r;
}

std::size_t group_size(const migrate_config& cfg) { return static_cast<std::size_t>(std::max(cfg.fetch_group_size, 1)); }

namespace {

/// What the resources DAG migrates for this run: the selection, or, when only event streams are
/// selected, just the objects those streams write to (projects always; experiments, datasets as
/// selected), with the created window applying to rows only.
resources::resource_options dag_options(const migrate_config& cfg, const streams::stream_selection& sel) {
  auto opts = resources::options_from(resources_view(cfg));
  if (!resources_selected(cfg)) {
    opts.types.clear();
    if (sel.experiments) opts.types.insert("experiment");
    if (sel.datasets) opts.types.insert("dataset");
    opts.window_selects_objects = false;
  }
  return opts;
}

}  // namespace

boost::asio::awaitable<int> plan_and_launch(const migrate_config& cfg, side& src, side& dst,
                                                     stores::state_store& st, resources::migration_report& report,
                                                     streams::stream_launcher& launcher,
                                                     const shard_units* units) {
  const auto sel = streams::selection_from(cfg);
  resources::resource_options opts;
  try {
    opts = dag_options(cfg, sel);
  } catch (const std::exception& e) {
    report.add_error(e.what());
    co_return 2;
  }
  streams::ready_collector collector(sel);
  auto hook = [&](std::string_view kind, const std::string& sid, const std::string& did) {
    collector.add(kind, sid, did);
    // A project's logs stream needs nothing else: start it while the DAG goes on.
    if (kind == "project" && sel.logs && (!units || units->includes(stream_kind::project_logs, sid))) {
      streams::discovered_object o{stream_kind::project_logs, sid, did, "", sid};
      for (auto& s : streams::build_stream_specs({o}, 1, {})) launcher.launch(std::move(s));
    }
  };
  const int rc = co_await resources::migrate_resources(std::move(opts), *src.res, *dst.res, &st, report, hook);
  streams::checkpoint_store cps(st);
  std::vector<std::string> waiting;  // a plan's units whose objects are not all in the destination
  auto specs = units ? units->specs(collector.objects(), cps.all(), waiting)
                     : streams::build_stream_specs(collector.objects(), group_size(cfg), cps.all());
  for (auto& s : specs) launcher.launch(std::move(s));
  for (auto& w : waiting) report.add_error(std::move(w));
  co_return waiting.empty() ? rc : std::max(rc, 1);
}

}  // namespace ferry::pipelines
