#include "pipelines/streams/discovery.hpp"

#include "../json_fields.hpp"

#include "pipelines/streams/digest.hpp"

#include "engine/log.hpp"
#include "engine/semaphore.hpp"
#include "stores/state_store.hpp"
#include "transports/api_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

namespace ferry::pipelines::streams {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {


std::string_view id_type(stream_kind k) {
  return k == stream_kind::project_logs ? "project" : k == stream_kind::experiment ? "experiment" : "dataset";
}

std::string_view list_path(stream_kind k) {
  return k == stream_kind::project_logs ? "/v1/project" : k == stream_kind::experiment ? "/v1/experiment" : "/v1/dataset";
}

// GCC 12 rejects braced initialisers holding string literals inside coroutines ("array used as
// initializer"): coroutine bodies build queries and bodies through these plain functions.

bool contains(const std::vector<std::string>& v, std::string_view s) { return std::find(v.begin(), v.end(), s) != v.end(); }

}  // namespace

stream_selection selection_from(const migrate_config& cfg) {
  stream_selection s;
  auto kind_of = [](std::string_view n) -> int {
    if (n == "logs" || n == "project_logs") return 0;
    if (n == "experiments" || n == "experiment_events") return 1;
    if (n == "datasets" || n == "dataset_events") return 2;
    return -1;
  };
  bool all = cfg.resources.empty() || (cfg.resources.size() == 1 && cfg.resources[0] == "all");
  if (!all) {
    s.logs = s.experiments = s.datasets = false;
    for (const auto& r : cfg.resources) {
      int k = kind_of(r);
      if (k == 0) s.logs = true;
      if (k == 1) s.experiments = true;
      if (k == 2) s.datasets = true;
    }
  }
  // Names of other resource types ("prompts", "acls"...) are the resources migration's business; any
  // name that is not a stream kind is also treated as a project name (the resources side does the same).
  for (const auto& e : cfg.exclude) {
    int k = kind_of(e);
    if (k == 0) s.logs = false;
    else if (k == 1) s.experiments = false;
    else if (k == 2) s.datasets = false;
    else s.exclude_projects.push_back(e);
  }
  return s;
}

asio::awaitable<discovery_result> discover_objects(transports::api_client& source, transports::api_client& dest,
                                                   const migrate_config& cfg, stores::state_store* state) {
  using name_map = std::map<std::string, std::string>;  // destination name -> id
  auto by_name = [](const std::vector<json::object>& objs) {
    name_map m;
    for (const auto& o : objs)
      if (auto n = str_field(o, "name"); !n.empty()) m.emplace(n, str_field(o, "id"));
    return m;
  };
  const auto sel = selection_from(cfg);
  discovery_result out;
  auto projects = co_await source.list_objects("/v1/project", {});
  std::sort(projects.begin(), projects.end(),
            [](const json::object& a, const json::object& b) { return str_field(a, "id") < str_field(b, "id"); });
  std::set<std::string> found_names;
  std::vector<json::object> selected;
  for (auto& p : projects) {
    auto name = str_field(p, "name");
    if (str_field(p, "id").empty() || name.empty()) continue;
    if (!cfg.projects.empty() && !contains(cfg.projects, name)) continue;
    if (contains(sel.exclude_projects, name)) continue;
    found_names.insert(name);
    selected.push_back(std::move(p));
  }
  for (const auto& want : cfg.projects)
    if (!found_names.count(want)) out.errors.push_back("project '" + want + "' (from projects) does not exist in the source");
  // (co_await kept out of call arguments: GCC 12 mishandles temporaries around it)
  auto dest_listing = co_await dest.list_objects("/v1/project", transports::query_params{});
  const auto dest_projects = by_name(dest_listing);
  // The destination object of a source object: the state's id map, else the same name; "" when none.
  auto dest_of = [&](stream_kind kind, const json::object& o, const name_map& existing) {
    if (state)
      if (auto known = state->get_id(id_type(kind), str_field(o, "id"))) return *known;
    auto it = existing.find(str_field(o, "name"));
    return it == existing.end() ? std::string() : it->second;
  };
  for (const auto& p : selected) {
    const auto spid = str_field(p, "id");
    const auto pname = str_field(p, "name");
    const auto dpid = dest_of(stream_kind::project_logs, p, dest_projects);
    if (sel.logs) out.objects.push_back({stream_kind::project_logs, spid, dpid, pname, spid});
    for (auto kind : {stream_kind::experiment, stream_kind::dataset}) {
      if (kind == stream_kind::experiment ? !sel.experiments : !sel.datasets) continue;
      std::vector<json::object> objs;
      try {
        objs = co_await source.list_objects(list_path(kind), one_param("project_id", spid));
      } catch (const std::exception& e) {
        out.errors.push_back("project '" + pname + "': listing " + std::string(id_type(kind)) + "s failed: " + e.what());
        continue;
      }
      std::sort(objs.begin(), objs.end(),
                [](const json::object& a, const json::object& b) { return str_field(a, "id") < str_field(b, "id"); });
      name_map dest_objs;
      if (!dpid.empty()) {
        try {
          auto listing = co_await dest.list_objects(list_path(kind), one_param("project_id", dpid));
          dest_objs = by_name(listing);
        } catch (const std::exception& e) {
          out.errors.push_back("project '" + pname + "': listing destination " + std::string(id_type(kind)) +
                               "s failed: " + e.what());
        }
      }
      for (const auto& o : objs)
        out.objects.push_back({kind, str_field(o, "id"), dest_of(kind, o, dest_objs), str_field(o, "name"), spid});
    }
  }
  engine::logger("pipeline")->info("discovery projects={} objects={} errors={}", selected.size(), out.objects.size(),
                                    out.errors.size());
  co_return out;
}

std::vector<stream_spec> build_stream_specs(const std::vector<discovered_object>& objects, std::size_t group_size,
                                            const std::vector<stream_state>& recorded) {
  group_size = std::max<std::size_t>(group_size, 1);
  std::vector<stream_spec> specs;
  // kind -> source id -> dest id
  std::map<stream_kind, std::map<std::string, std::string>> by_kind;
  for (const auto& o : objects) {
    if (o.source_id.empty() || o.dest_id.empty()) continue;
    if (o.kind == stream_kind::project_logs) {
      stream_spec s;
      s.kind = o.kind;
      s.source_ids = {o.source_id};
      s.dest_ids[o.source_id] = o.dest_id;
      s.stream_id = std::string(resource_name(o.kind)) + ":" + o.source_id;
      if (std::none_of(specs.begin(), specs.end(), [&](const stream_spec& x) { return x.stream_id == s.stream_id; }))
        specs.push_back(std::move(s));
    } else {
      by_kind[o.kind][o.source_id] = o.dest_id;
    }
  }
  for (auto& [kind, ids] : by_kind) {
    const std::string kname(resource_name(kind));
    std::set<std::string> taken;
    // Groups of earlier runs first, so a stream keeps its id (and cursor) when objects were added.
    for (const auto& st : recorded) {
      if (st.kind != kname || st.source_ids.empty()) continue;
      bool complete = std::all_of(st.source_ids.begin(), st.source_ids.end(),
                                  [&](const std::string& id) { return ids.count(id) && !taken.count(id); });
      if (!complete) continue;
      stream_spec s;
      s.kind = kind;
      s.source_ids = st.source_ids;
      for (const auto& id : st.source_ids) {
        s.dest_ids[id] = ids[id];
        taken.insert(id);
      }
      s.stream_id = st.stream_id;
      specs.push_back(std::move(s));
    }
    std::vector<std::string> rest;
    for (const auto& [sid, did] : ids)
      if (!taken.count(sid)) rest.push_back(sid);  // std::map: sorted by source id
    for (std::size_t i = 0; i < rest.size(); i += group_size) {
      stream_spec s;
      s.kind = kind;
      std::string all;
      for (std::size_t j = i; j < std::min(rest.size(), i + group_size); ++j) {
        s.source_ids.push_back(rest[j]);
        s.dest_ids[rest[j]] = ids[rest[j]];
        all += rest[j];
        all += '\n';
      }
      char h[17];
      std::snprintf(h, sizeof h, "%016llx", static_cast<unsigned long long>(hash_bytes(all).a));
      s.stream_id = kname + ":" + s.source_ids.front() + "+" + std::to_string(s.source_ids.size() - 1) + "#" + std::string(h, 8);
      specs.push_back(std::move(s));
    }
  }
  return specs;
}

void ready_collector::add(std::string_view kind, const std::string& source_id, const std::string& dest_id) {
  discovered_object o;
  if (kind == "project") {
    if (!sel_.logs) return;
    o.kind = stream_kind::project_logs;
    o.source_project_id = source_id;
  } else if (kind == "experiment") {
    if (!sel_.experiments) return;
    o.kind = stream_kind::experiment;
  } else if (kind == "dataset") {
    if (!sel_.datasets) return;
    o.kind = stream_kind::dataset;
  } else {
    return;
  }
  o.source_id = source_id;
  o.dest_id = dest_id;
  std::lock_guard lk(mu_);
  objects_.push_back(std::move(o));
}

std::vector<discovered_object> ready_collector::objects() const {
  std::lock_guard lk(mu_);
  return objects_;
}

}  // namespace ferry::pipelines::streams
