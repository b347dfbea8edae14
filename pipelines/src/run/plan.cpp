#include "plan.hpp"

#include "pipelines/resources/entry.hpp"
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

boost::asio::awaitable<plan_outcome> plan_and_launch(const migrate_config& cfg, side& src, side& dst,
                                                     stores::state_store& st, resources::migration_report& report,
                                                     streams::stream_launcher& launcher) {
  plan_outcome out;
  const auto sel = streams::selection_from(cfg);
  std::vector<streams::discovered_object> objects;
  if (resources_selected(cfg)) {
    streams::ready_collector collector(sel);
    auto hook = [&](std::string_view kind, const std::string& sid, const std::string& did) {
      collector.add(kind, sid, did);
      // A project's logs stream needs nothing else: start it while the DAG goes on.
      if (kind == "project" && sel.logs) {
        streams::discovered_object o{stream_kind::project_logs, sid, did, "", sid};
        for (auto& s : streams::build_stream_specs({o}, 1, {})) launcher.launch(std::move(s));
      }
    };
    auto rcfg = resources_view(cfg);
    out.resources_rc = co_await resources::migrate_resources(rcfg, *src.res, *dst.res, &st, report, hook);
    objects = collector.objects();
  } else {
    auto d = co_await streams::discover_objects(*src.api, *dst.api, cfg, &st);
    out.errors = std::move(d.errors);
    objects = std::move(d.objects);
  }
  streams::checkpoint_store cps(st);
  for (auto& s : streams::build_stream_specs(objects, group_size(cfg), cps.all())) launcher.launch(std::move(s));
  co_return out;
}

}  // namespace ferry::pipelines
