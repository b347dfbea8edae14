#include "verification.hpp"

#include "../json_fields.hpp"

#include "../for_each_bounded.hpp"
#include "plan.hpp"
#include "reports.hpp"
#include "run_context.hpp"
#include "sides.hpp"
#include "source_count.hpp"

#include "pipelines/resources/specs.hpp"
#include "pipelines/streams/checkpoint_store.hpp"
#include "pipelines/streams/discovery.hpp"
#include "pipelines/streams/verify.hpp"

#include "engine/retry.hpp"
#include "engine/runtime.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <ostream>
#include <set>

namespace ferry::pipelines {

namespace asio = boost::asio;
namespace json = boost::json;
using streams::stream_kind;

namespace {



/// Every row of one stream on one side: streams::read_all with the side's page policy (the streams' page
/// size rule, the side's retries) through its client (request semaphore, rate limits).
asio::awaitable<std::uint64_t> read_stream(side& s, stream_kind kind, std::vector<std::string> ids,
                                           const migrate_config& cfg, const std::function<void(const json::object&)>& fn) {
  co_return co_await streams::read_all(*s.api, first_page_query(cfg, kind, std::move(ids)), s.reads, fn);
}

}  // namespace

/// The streams recorded in the state dir, with their destination ids from its id maps.
std::vector<streams::stream_spec> verification::recorded_specs(stores::state_store& st) {
  std::vector<streams::stream_spec> out_specs;
  streams::checkpoint_store cps(st);
  for (const auto& s : cps.all()) {
    auto kind = kind_from_name(s.kind);
    if (!kind || s.source_ids.empty()) continue;
    streams::stream_spec spec;
    spec.kind = *kind;
    spec.stream_id = s.stream_id;
    spec.source_ids = s.source_ids;
    bool complete = true;
    for (const auto& sid : s.source_ids) {
      auto did = st.get_id(id_type(*kind), sid);
      if (!did) {
        failures.push_back("stream " + s.stream_id + ": no destination id recorded for " + std::string(id_type(*kind)) +
                           " " + sid);
        complete = false;
        break;
      }
      spec.dest_ids[sid] = *did;
    }
    if (complete) out_specs.push_back(std::move(spec));
  }
  return out_specs;
}

/// The recorded streams, else (no state dir, or nothing recorded) the ones discovered read-only by name.
asio::awaitable<std::vector<streams::stream_spec>> verification::specs() {
  if (c.state) {
    auto recorded = recorded_specs(*c.state);
    if (!recorded.empty()) co_return recorded;
  }
  auto d = co_await streams::discover_objects(*c.src.api, *c.dst.api, c.cfg, c.state_or_null());
  for (auto& e : d.errors) failures.push_back(std::move(e));
  for (const auto& o : d.objects)
    if (o.dest_id.empty())
      failures.push_back(std::string(id_type(o.kind)) + " '" + o.name + "' (" + o.source_id +
                         "): no destination object with that name");
  co_return streams::build_stream_specs(d.objects, group_size(c.cfg), {});
}

asio::awaitable<void> verification::verify_stream(const streams::stream_spec& spec) {
  streams::verify_tally tally(spec.stream_id, spec.kind);
  std::vector<std::string> dest_ids;
  for (const auto& sid : spec.source_ids) dest_ids.push_back(spec.dest_ids.at(sid));
  try {
    co_await read_stream(c.src, spec.kind, spec.source_ids, c.cfg, [&](const json::object& r) { tally.add_source(r); });
    co_await read_stream(c.dst, spec.kind, dest_ids, c.cfg, [&](const json::object& r) { tally.add_dest(r); });
  } catch (const std::exception& e) {
    std::lock_guard lk(mu);
    failures.push_back("stream " + spec.stream_id + " (" + streams::describe(spec) + "): " + e.what());
    c.out << "FAIL " << spec.stream_id << ": " << e.what() << '\n';
    co_return;
  }
  auto rep = tally.finish();
  std::lock_guard lk(mu);
  c.out << (rep.ok() ? "ok   " : "DIFF ") << rep.summary() << '\n';
  reports.push_back(std::move(rep));
}

/// The resources DAG copies only the experiments and datasets created inside the window (discovery
/// copies them all); the count check follows the path the migration took.
bool verification::in_window(const json::object& o) const {
  const auto& cfg = c.cfg;
  if (!resources_selected(cfg)) return true;
  auto created = resources::comparable_time(str_field(o, "created"));
  if (created.empty()) return true;
  if (cfg.created_after && created < resources::comparable_time(*cfg.created_after)) return false;
  if (cfg.created_before && created >= resources::comparable_time(*cfg.created_before)) return false;
  return true;
}

/// One project's experiments and datasets by name (source, in the window) against its destination twin.
asio::awaitable<void> verification::count_children(const json::object& p, const std::string& dest_project_id, type_counts& counts,
                                     std::vector<std::string>& missing_names) {
  const auto name = str_field(p, "name");
  for (std::string_view type : {"experiment", "dataset"}) {
    std::string path = "/v1/" + std::string(type);
    std::set<std::string> dnames;
    auto dst_objs = co_await c.dst.api->list_objects(path, one_param("project_id", dest_project_id));
    for (const auto& o : dst_objs) dnames.insert(str_field(o, "name"));
    auto& cnt = counts[std::string(type)];
    auto src_objs = co_await c.src.api->list_objects(path, one_param("project_id", str_field(p, "id")));
    for (const auto& o : src_objs) {
      if (!in_window(o)) continue;
      ++cnt[0];
      if (dnames.count(str_field(o, "name"))) {
        ++cnt[1];
      } else {
        ++cnt[2];
        if (missing_names.size() < 10) missing_names.push_back(std::string(type) + " " + name + "/" + str_field(o, "name"));
      }
    }
  }
}

/// Projects, experiments and datasets by name: source (selected projects) vs destination.
asio::awaitable<void> verification::check_resources() {
  const auto& cfg = c.cfg;
  auto sel = streams::selection_from(cfg);
  std::map<std::string, std::string> dest_projects;
  // (co_await results are named first: GCC 12 mishandles temporaries around co_await)
  auto dest_listing = co_await c.dst.api->list_objects("/v1/project", {});
  for (const auto& p : dest_listing) dest_projects[str_field(p, "name")] = str_field(p, "id");
  type_counts counts;
  std::vector<std::string> missing_names;
  auto src_listing = co_await c.src.api->list_objects("/v1/project", {});
  for (const auto& p : src_listing) {
    auto name = str_field(p, "name");
    if (!cfg.projects.empty() && std::find(cfg.projects.begin(), cfg.projects.end(), name) == cfg.projects.end()) continue;
    if (std::find(sel.exclude_projects.begin(), sel.exclude_projects.end(), name) != sel.exclude_projects.end()) continue;
    auto& pc = counts["project"];
    ++pc[0];
    auto dit = dest_projects.find(name);
    if (dit == dest_projects.end()) {
      ++pc[2];
      missing_names.push_back("project " + name);
      continue;
    }
    ++pc[1];
    co_await count_children(p, dit->second, counts, missing_names);
  }
  for (const auto& [type, cnt] : counts) {
    c.out << (cnt[2] ? "DIFF " : "ok   ") << "resources type=" << type << " source=" << cnt[0]
          << " dest_by_name=" << cnt[1] << " missing=" << cnt[2] << '\n';
    json::object rc;
    rc["type"] = type;
    rc["source"] = cnt[0];
    rc["dest_by_name"] = cnt[1];
    rc["missing"] = cnt[2];
    resource_checks.push_back(std::move(rc));
    if (cnt[2]) failures.push_back(std::to_string(cnt[2]) + " " + type + "(s) missing in the destination");
  }
  for (const auto& m : missing_names) c.out << "     missing " << m << '\n';
}

asio::awaitable<void> verification::run() {
  auto problems = co_await probe_sides(c.src, c.dst, c.cfg);
  for (auto& p : problems) failures.push_back(std::move(p));
  if (!problems.empty()) co_return;
  auto list = co_await specs();
  // Streams are read side by side, as many at once as a migration runs (lines print as streams end;
  // the report lists them sorted).
  co_await for_each_bounded(co_await asio::this_coro::executor, list.size(),
                            static_cast<std::size_t>(std::max(c.cfg.max_concurrent_streams, 1)),
                            [&](std::size_t i) { return verify_stream(list[i]); });
  std::sort(reports.begin(), reports.end(), [](const auto& a, const auto& b) { return a.stream < b.stream; });
  try {
    co_await check_resources();
  } catch (const std::exception& e) {
    failures.push_back(std::string("resource count check failed: ") + e.what());
  }
}

}  // namespace ferry::pipelines
