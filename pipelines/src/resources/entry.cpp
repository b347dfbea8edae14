#include "pipelines/resources/entry.hpp"

#include "transports/api_client.hpp"
#include "../json_fields.hpp"
#include "engine/files.hpp"

#include "pipelines/resources/id_map.hpp"
#include "pipelines/resources/specs.hpp"

#include "engine/log.hpp"
#include "stores/state_store.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>

namespace ferry::pipelines::resources {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

std::string utc_now(std::chrono::seconds back = std::chrono::seconds(0)) {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now() - back);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}


/// Days between an ISO timestamp and now (0 when unparsable).
double age_days(std::string_view iso) {
  std::string t = comparable_time(iso);
  if (t.empty()) return 0;
  std::tm tm{};
  tm.tm_year = std::stoi(t.substr(0, 4)) - 1900;
  tm.tm_mon = std::stoi(t.substr(5, 2)) - 1;
  tm.tm_mday = std::stoi(t.substr(8, 2));
  tm.tm_hour = std::stoi(t.substr(11, 2));
  tm.tm_min = std::stoi(t.substr(14, 2));
  tm.tm_sec = std::stoi(t.substr(17, 2));
  auto then = timegm(&tm);
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  return static_cast<double>(now - then) / 86400.0;
}

// GCC 12 rejects braced initialisers holding string literals inside coroutines ("array used as
// initializer"): coroutine bodies build checks and queries through these plain functions.
void add_check(std::vector<check_result>& out, check_level level, std::string side, std::string check,
               std::string message) {
  out.push_back({level, std::move(side), std::move(check), std::move(message)});
}

std::string btql_body(const std::string& q) {
  json::object body{{"query", q}, {"fmt", "json"}, {"api_version", 1}, {"use_brainstore", true}};
  return json::serialize(body);
}

}  // namespace

asio::awaitable<int> migrate_resources(const migrate_config& cfg, resource_api& source, resource_api& dest,
                                       stores::state_store* state, migration_report& report, object_ready_fn on_ready) {
  resource_options opts;
  try {
    opts = options_from(cfg);
  } catch (const std::exception& e) {
    report.add_error(e.what());
    co_return 2;
  }
  co_return co_await migrate_resources(std::move(opts), source, dest, state, report, std::move(on_ready));
}

asio::awaitable<int> migrate_resources(resource_options opts, resource_api& source, resource_api& dest,
                                       stores::state_store* state, migration_report& report, object_ready_fn on_ready) {
  auto started = std::chrono::steady_clock::now();
  std::string start = utc_now();
  if (state && !opts.dry_run) report.keep_drops_in(state);
  memory_id_map memory;
  std::unique_ptr<state_id_map> persistent;
  if (state) persistent = std::make_unique<state_id_map>(*state);
  id_map& ids = persistent ? static_cast<id_map&>(*persistent) : memory;
  org_migrator m(std::move(opts), source, dest, ids, report);
  if (on_ready) m.on_object_ready(std::move(on_ready));
  if (state) m.on_object_replaced([state](std::string_view kind, const std::string& source_id) {
    // Its rows were copied into the object that is gone: forget the progress of the stream(s) reading it.
    const std::string stream_kind = kind == "project" ? "logs" : std::string(kind) + "_events";
    for (const auto& st : state->list_streams())
      if (st.kind == stream_kind && std::find(st.source_ids.begin(), st.source_ids.end(), source_id) != st.source_ids.end())
        state->reset_stream(st.stream_id);
  });
  co_await m.run();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  report.set_times(start, utc_now(), secs);
  co_return report.success() ? 0 : 1;
}

std::string_view to_string(check_level l) {
  switch (l) {
    case check_level::ok: return "ok";
    case check_level::warn: return "WARN";
    case check_level::fail: return "FAIL";
  }
  return "?";
}

namespace {

// The checks of one side: connectivity, auth (the projects it lists go to `projects`), and a harmless
// read (limit=1) of every resource type. Stops at the first check that makes the rest meaningless.
asio::awaitable<void> check_side(resource_api& api, std::string who, std::string key_var, std::string url_var,
                                 std::vector<json::object>& projects, std::vector<check_result>& out) {
  resource_client c(api);
  // Connectivity: GET /v1 needs no auth, so a failure here is the network or the URL.
  try {
    co_await c.send("GET", "/v1", {});
    add_check(out, check_level::ok, who, "connectivity", c.api().describe() + " answers");
  } catch (const api_failure& f) {
    // Some deployments answer /v1 with text; a non-JSON 200 is still connectivity.
    if (f.status() >= 200 && f.status() < 300) {
      add_check(out, check_level::ok, who, "connectivity", c.api().describe() + " answers");
    } else if (f.status() == 0) {
      add_check(out, check_level::fail, who, "connectivity",
                std::string(f.what()) + " (check " + url_var + ", proxy settings and the network)");
      co_return;
    } else {
      add_check(out, check_level::warn, who, "connectivity", f.what());
    }
  }
  // Auth: listing projects needs a valid key.
  try {
    projects = co_await c.list("/v1/project", {}, 100);
    add_check(out, check_level::ok, who, "auth", "API key accepted; " + std::to_string(projects.size()) + " project(s) visible");
  } catch (const api_failure& f) {
    std::string hint = f.status() == 401   ? " (the key is invalid or expired: set " + key_var + ")"
                       : f.status() == 403 ? " (the key cannot list projects: use an org member's key)"
                                           : "";
    add_check(out, check_level::fail, who, "auth", std::string(f.what()) + hint);
    co_return;
  }
  std::string any_project = projects.empty() ? "" : str_field(projects.front(), "id");
  for (const auto& spec : resource_specs()) {
    if (spec.type == "project" || spec.list == list_mode::path_assignment) continue;  // read per object
    query_params q;
    if (spec.cursors) q = one_param("limit", "1");  // a list without cursors may take no limit (/environment)
    std::string path = spec.path;
    if (spec.list == list_mode::acl_list_org) path = "/v1/acl/list_org";
    if (spec.list == list_mode::parent_object) {
      if (any_project.empty()) continue;
      q.emplace_back("object_type", "project");
      q.emplace_back("object_id", any_project);
    }
    try {
      co_await c.send("GET", transports::with_query(path, q), {});
      add_check(out, check_level::ok, who, "read " + spec.type, "readable");
    } catch (const api_failure& f) {
      bool acl = spec.type == "acl";
      add_check(out, f.status() == 404 ? check_level::warn : check_level::fail, who, "read " + spec.type,
                std::string(f.what()) + (f.status() == 404 ? " (this deployment lacks the endpoint: the type will be skipped)"
                                         : acl             ? " (ACLs need an org owner's key; or exclude acls)"
                                                           : " (grant the key read access, or exclude this type)"));
    }
  }
}

// Destination write permission: nothing can be created without writing, so we probe what creation
// needs: reading the org's ACL list requires the org-level read_acls permission that org owners/admins
// hold; a key that can read the org ACLs can create projects and objects in it.
asio::awaitable<void> check_write_permission(resource_api& dest, std::vector<check_result>& out) {
  try {
    resource_client d(dest);
    co_await d.send("GET", "/v1/acl/list_org?limit=1", {});
    add_check(out, check_level::ok, "destination", "write permission probe",
              "the key reads the org's ACLs (org admin): creates are expected to succeed");
  } catch (const api_failure& f) {
    add_check(out, check_level::warn, "destination", "write permission probe",
              std::string(f.what()) + " (the key is not an org admin: creating projects, roles, groups and "
                                      "ACLs may fail; use an owner's key)");
  }
}

// The `created` of a source row or object of `object_type` in the project older than `days`, or "".
// Logs: one BTQL row at most; `created <` is a filter every BTQL deployment supports (it is what the
// reference tool pages with), a sort on it is not. Experiments/datasets: the oldest object.
asio::awaitable<std::string> oldest_source(resource_client& s, std::string object_type, std::string project_id,
                                           double days) {
  std::string oldest;
  if (object_type == "project_logs") {
    auto cutoff = utc_now(std::chrono::seconds(static_cast<long long>(days * 86400)));
    std::string q = "select: *\nfrom: project_logs('" + project_id + "') spans\nfilter: created < '" + cutoff +
                    "'\nlimit: 1";
    auto r = co_await s.send("POST", "/btql", btql_body(q));
    if (r.is_object() && r.as_object().contains("data") && r.as_object().at("data").is_array() &&
        !r.as_object().at("data").as_array().empty() && r.as_object().at("data").as_array()[0].is_object())
      oldest = str_field(r.as_object().at("data").as_array()[0].as_object(), "created");
  } else if (object_type == "experiment" || object_type == "dataset") {
    for (const auto& o : co_await s.list("/v1/" + object_type, one_param("project_id", project_id))) {
      std::string c = str_field(o, "created");
      if (!c.empty() && (oldest.empty() || comparable_time(c) < comparable_time(oldest))) oldest = c;
    }
  }
  co_return oldest;
}

// Retention hazards: a destination project (matched by name) whose retention automation is shorter than
// the age of the oldest source rows would delete migrated rows right after they arrive.
asio::awaitable<void> check_retention(resource_api& source, resource_api& dest, const std::vector<json::object>& src_projects,
                                      const std::vector<json::object>& dst_projects, std::vector<check_result>& out) {
  try {
    resource_client s(source), d(dest);
    auto autos = co_await d.list("/v1/project_automation", {});
    std::map<std::string, std::string> dest_name;  // dest project id -> name
    for (const auto& p : dst_projects) dest_name[str_field(p, "id")] = str_field(p, "name");
    std::map<std::string, std::string> src_by_name;
    for (const auto& p : src_projects) src_by_name[str_field(p, "name")] = str_field(p, "id");
    for (const auto& a : autos) {
      auto cit = a.find("config");
      if (cit == a.end() || !cit->value().is_object()) continue;
      const auto& conf = cit->value().as_object();
      if (str_field(conf, "event_type") != "retention") continue;
      auto dit = conf.find("retention_days");
      if (dit == conf.end() || !dit->value().is_number()) continue;
      double days = dit->value().to_number<double>();
      std::string pname = dest_name[str_field(a, "project_id")];
      auto sit = src_by_name.find(pname);
      if (pname.empty() || sit == src_by_name.end()) continue;
      std::string object_type = str_field(conf, "object_type");
      std::string oldest = co_await oldest_source(s, object_type, sit->second, days);
      if (oldest.empty()) continue;
      double age = age_days(oldest);
      // Logs: the query only returns a row older than the window. Objects: retention 0 deletes everything.
      if (age >= days || object_type == "project_logs")
        add_check(out, check_level::warn, "destination", "retention",
                  "project '" + pname + "': retention automation '" + str_field(a, "name") + "' keeps " + object_type +
                      " for " + json::serialize(dit->value()) + " day(s) but the source has " + object_type + " " +
                      std::to_string(static_cast<long>(age)) +
                      " day(s) old: migrated rows would be deleted; raise or remove the retention first");
    }
    add_check(out, check_level::ok, "destination", "retention", "retention automations checked");
  } catch (const api_failure& f) {
    add_check(out, check_level::warn, "destination", "retention", std::string("could not check: ") + f.what());
  }
}

}  // namespace

asio::awaitable<std::vector<check_result>> validate(const migrate_config&, resource_api& source, resource_api& dest) {
  std::vector<check_result> out;
  std::vector<json::object> src_projects, dst_projects;
  co_await check_side(source, "source", "BT_SOURCE_API_KEY", "BT_SOURCE_URL", src_projects, out);
  co_await check_side(dest, "destination", "BT_DEST_API_KEY", "BT_DEST_URL", dst_projects, out);
  co_await check_write_permission(dest, out);
  co_await check_retention(source, dest, src_projects, dst_projects, out);
  co_return out;
}

int print_checks(const std::vector<check_result>& results, std::ostream& out) {
  bool failed = false;
  for (const auto& r : results) {
    out << to_string(r.level) << " " << r.side << " " << r.check << ": " << r.message << "\n";
    failed = failed || r.level == check_level::fail;
  }
  return failed ? 1 : 0;
}

}  // namespace ferry::pipelines::resources
