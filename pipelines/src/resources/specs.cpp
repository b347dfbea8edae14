#include "pipelines/resources/specs.hpp"

#include "rewrite.hpp"
#include "engine/json_parse.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <stdexcept>

namespace ferry::pipelines::resources {

namespace detail {
extern const char* const k_openapi_schemas;  // generated from openapi_schemas.json at build time
}

namespace json = boost::json;

namespace {

std::vector<std::string> schema_list(const json::object& schemas, std::string_view name, std::string_view key) {
  std::vector<std::string> out;
  auto it = schemas.find(name);
  if (it == schemas.end()) throw std::logic_error("bundled OpenAPI extract lacks schema " + std::string(name));
  for (const auto& v : it->value().as_object().at(key).as_array()) out.emplace_back(v.as_string());
  return out;
}

// One row per type; the columns are resource_spec's (specs.hpp). Row order = validate's probe order and
// the order nodes are added to the DAGs; the edges are `after` plus the parent types.
struct row {
  const char* type;
  const char* path;
  bool project_scoped = false;
  list_mode list = list_mode::org;
  bool cursors = true;
  std::vector<std::string> unique{};
  const char* create_schema = "";
  const char* patch_schema = "";  // "" = none
  update_style update = update_style::patch;
  const char* hidden = "";
  std::vector<std::string> after{};
  std::vector<parent_kind> parents{};
  const char* id_space = "";
  const char* listed_by = "";
  bool created_window = false;
  bool has_streams = false;
  bool sets_project = false;
  std::vector<std::string> patch_keeps{};
  std::vector<std::string> refs{};  // id-holding fields (resource_spec::ref_fields)
  std::vector<std::string> after_create{};  // resource_spec::set_after_create
  rewrite_hook rewrite = nullptr;
  in_type_deps_hook in_type_deps = nullptr;
};

// The table is data, one row per type: the function is long because the table is.
std::vector<row> table_rows() {
  const auto org = list_mode::org, by_project = list_mode::project_param, local = list_mode::project_local;
  return {
      {.type = "ai_secret", .path = "/v1/ai_secret", .unique = {"name"}, .create_schema = "CreateAISecret",
       .patch_schema = "PatchAISecret", .hidden = "secret", .rewrite = rewrite_ai_secret},
      {.type = "role", .path = "/v1/role", .unique = {"name"}, .create_schema = "CreateRole", .patch_schema = "PatchRole",
       .update = update_style::member_delta, .refs = {"member_roles"}, .rewrite = rewrite_role, .in_type_deps = deps_role},
      {.type = "group", .path = "/v1/group", .unique = {"name"}, .create_schema = "CreateGroup",
       .patch_schema = "PatchGroup", .update = update_style::member_delta,
       .refs = {"member_groups", "member_users"}, .rewrite = rewrite_group,
       .in_type_deps = deps_group},
      // Environments (the spec's unversioned /environment path; no limit, no cursor): before every type
      // whose versions they pin.
      {.type = "environment", .path = "/environment", .cursors = false, .unique = {"slug"},
       .create_schema = "CreateEnvironment", .patch_schema = "PatchEnvironment", .rewrite = rewrite_environment},
      {.type = "project", .path = "/v1/project", .list = org, .unique = {"name"}, .create_schema = "CreateProject",
       .patch_schema = "PatchProject", .has_streams = true, .refs = {"settings"}, .after_create = {"settings"},
       .rewrite = rewrite_project},
      {.type = "env_var", .path = "/v1/env_var", .list = list_mode::parent_object, .cursors = false,
       .unique = {"object_type", "object_id", "name"}, .create_schema = "CreateEnvVar", .hidden = "value",
       .parents = {{"organization"}, {"project"}, {"function", true}}, .refs = {"object_id"}, .rewrite = rewrite_env_var},
      {.type = "dataset", .path = "/v1/dataset", .project_scoped = true, .list = by_project, .unique = {"name"},
       .create_schema = "CreateDataset", .patch_schema = "PatchDataset", .created_window = true, .has_streams = true,
       .sets_project = true, .refs = {"project_id"}},
      {.type = "project_tag", .path = "/v1/project_tag", .project_scoped = true, .list = by_project, .unique = {"name"},
       .create_schema = "CreateProjectTag", .patch_schema = "PatchProjectTag", .sets_project = true,
       .refs = {"project_id"}},
      {.type = "span_iframe", .path = "/v1/span_iframe", .project_scoped = true, .list = local, .unique = {"name"},
       .create_schema = "CreateSpanIFrame", .patch_schema = "PatchSpanIFrame", .sets_project = true,
       .refs = {"project_id"}},
      {.type = "mcp_server", .path = "/v1/mcp_server", .project_scoped = true, .list = local, .unique = {"name"},
       .create_schema = "CreateMCPServer", .patch_schema = "PatchMCPServer", .sets_project = true,
       .refs = {"project_id"}},
      {.type = "function", .path = "/v1/function", .project_scoped = true, .list = by_project, .unique = {"slug"},
       .create_schema = "CreateFunction", .patch_schema = "PatchFunction", .after = {"dataset", "mcp_server"},
       .id_space = "function", .listed_by = "prompt", .sets_project = true,
       .refs = {"project_id", "prompt_data", "function_data", "origin"}, .rewrite = rewrite_function,
       .in_type_deps = deps_function},
      {.type = "prompt", .path = "/v1/prompt", .project_scoped = true, .list = by_project, .unique = {"slug"},
       .create_schema = "CreatePrompt", .patch_schema = "PatchPrompt", .after = {"function", "mcp_server"},
       .id_space = "function", .sets_project = true, .refs = {"project_id", "prompt_data"}, .rewrite = rewrite_prompt,
       .in_type_deps = deps_prompt},
      {.type = "project_score", .path = "/v1/project_score", .project_scoped = true, .list = by_project,
       .unique = {"name"}, .create_schema = "CreateProjectScore", .patch_schema = "PatchProjectScore",
       .after = {"function", "prompt"}, .sets_project = true, .refs = {"project_id", "config"},
       .rewrite = rewrite_project_score},
      {.type = "experiment", .path = "/v1/experiment", .project_scoped = true, .list = by_project, .unique = {"name"},
       .create_schema = "CreateExperiment", .patch_schema = "PatchExperiment",
       .after = {"dataset", "function", "prompt"}, .created_window = true, .has_streams = true, .sets_project = true,
       .refs = {"project_id", "base_exp_id", "dataset_id", "parameters_id", "dataset_version", "parameters_version"}, .rewrite = rewrite_experiment, .in_type_deps = deps_experiment},
      {.type = "dataset_snapshot", .path = "/v1/dataset_snapshot", .project_scoped = true,
       .list = list_mode::dataset_local, .unique = {"dataset_id", "name"}, .create_schema = "CreateDatasetSnapshot",
       .patch_schema = "PatchDatasetSnapshot", .after = {"dataset"}, .refs = {"dataset_id"},
       .rewrite = rewrite_dataset_snapshot},
      {.type = "view", .path = "/v1/view", .project_scoped = true, .list = list_mode::parent_object,
       .unique = {"object_type", "object_id", "name"}, .create_schema = "CreateView", .patch_schema = "PatchView",
       .parents = {{"organization"}, {"project"}, {"experiment"}, {"dataset"}},
       .patch_keeps = {"object_type", "object_id"},
       .refs = {"object_id", "user_id", "options", "view_data"}, .rewrite = rewrite_view},
      {.type = "project_automation", .path = "/v1/project_automation", .project_scoped = true, .list = local,
       .unique = {"name"}, .create_schema = "CreateProjectAutomation", .patch_schema = "PatchProjectAutomation",
       .after = {"function", "prompt", "experiment", "dataset"}, .sets_project = true, .refs = {"project_id", "config"},
       .rewrite = rewrite_project_automation},
      // Which version of an object each environment uses: migrated by the version-pin pass (org_migrator),
      // after every object and link, its object_version mapped like any version pin.
      {.type = "environment_object", .path = "/environment-object", .list = list_mode::path_assignment,
       .cursors = false, .unique = {"object_type", "object_id", "environment_slug"}, .update = update_style::none,
       .after = {"environment"},
       .parents = {{"prompt", true}, {"function", true}, {"dataset", true}, {"experiment", true}, {"project", true}},
       .refs = {"object_id", "object_version"}},
      {.type = "acl", .path = "/v1/acl", .list = list_mode::acl_list_org, .unique = {}, .create_schema = "AclItem",
       .update = update_style::none, .after = {"role", "group", "project"},
       .refs = {"object_id", "user_id", "group_id", "role_id"}, .rewrite = rewrite_acl},
  };
}

std::vector<resource_spec> build_specs() {
  const json::object schemas = ferry::engine::parse_json(detail::k_openapi_schemas).as_object();
  std::vector<resource_spec> out;
  for (auto& r : table_rows()) {
    resource_spec s;
    s.type = r.type;
    s.path = r.path;
    s.project_scoped = r.project_scoped;
    s.list = r.list;
    s.cursors = r.cursors;
    s.unique = std::move(r.unique);
    if (*r.create_schema) {  // "" = not created by a POST of an OpenAPI Create* body (environment-object)
      s.create_fields = schema_list(schemas, r.create_schema, "properties");
      s.required = schema_list(schemas, r.create_schema, "required");
    }
    if (*r.patch_schema) s.patch_fields = schema_list(schemas, r.patch_schema, "properties");
    if (s.type == "env_var") s.patch_fields = {"name", "metadata", "secret_type"};  // no PatchEnvVar schema
    if (s.list == list_mode::path_assignment)  // PUT <path>/<object_type>/<object_id>/<slug> {object_version}
      s.create_fields = {"object_type", "object_id", "environment_slug", "object_version"};
    s.update = r.update;
    s.hidden_value_field = r.hidden;
    s.after = std::move(r.after);
    s.parents = std::move(r.parents);
    s.id_space = r.id_space;
    s.listed_by = r.listed_by;
    s.created_window = r.created_window;
    s.has_streams = r.has_streams;
    s.sets_project = r.sets_project;
    s.patch_keeps = std::move(r.patch_keeps);
    s.ref_fields = std::move(r.refs);
    s.set_after_create = std::move(r.after_create);
    s.rewrite = r.rewrite;
    s.in_type_deps = r.in_type_deps;
    out.push_back(std::move(s));
  }
  return out;
}

const std::map<std::string, std::string, std::less<>>& selection_table() {
  static const std::map<std::string, std::string, std::less<>> t = {
      {"ai_secrets", "ai_secret"},   {"roles", "role"},
      {"groups", "group"},           {"projects", "project"},
      {"env_vars", "env_var"},       {"datasets", "dataset"},
      {"project_tags", "project_tag"}, {"span_iframes", "span_iframe"},
      {"mcp_servers", "mcp_server"}, {"functions", "function"},
      {"prompts", "prompt"},         {"project_scores", "project_score"},
      {"experiments", "experiment"}, {"dataset_snapshots", "dataset_snapshot"},
      {"views", "view"},             {"project_automations", "project_automation"},
      {"acls", "acl"},               {"logs", "logs"},
      {"environments", "environment"}, {"environment_objects", "environment_object"},
  };
  return t;
}

std::string value_text(const json::value& v) {
  if (v.is_string()) return std::string(v.as_string());
  return json::serialize(v);
}

bool is_member_list(std::string_view f) {
  return f == "member_roles" || f == "member_groups" || f == "member_users" || f == "member_permissions";
}

std::set<std::string> as_set(const json::value* v) {
  std::set<std::string> s;
  if (v && v->is_array())
    for (const auto& x : v->as_array()) s.insert(value_text(x));
  return s;
}

}  // namespace

const std::vector<resource_spec>& resource_specs() {
  static const std::vector<resource_spec> specs = build_specs();
  return specs;
}

const resource_spec* find_spec(std::string_view type) {
  for (const auto& s : resource_specs())
    if (s.type == type) return &s;
  return nullptr;
}

const resource_spec& spec_of(std::string_view type) {
  if (const auto* s = find_spec(type)) return *s;
  throw std::out_of_range("unknown resource type '" + std::string(type) + "'");
}

std::vector<std::string> id_space_types(std::string_view space) {
  std::vector<std::string> out;
  if (space.empty()) return out;
  for (const auto& s : resource_specs())
    if (s.id_space == space) out.push_back(s.type);
  return out;
}

std::vector<std::string> types_sharing_ids(std::string_view type) {
  std::vector<std::string> out{std::string(type)};
  if (const auto* spec = find_spec(type))
    for (auto& t : id_space_types(spec->id_space))
      if (t != type) out.push_back(std::move(t));
  return out;
}

std::optional<std::string> type_for_selection(std::string_view name) {
  const auto& t = selection_table();
  if (auto it = t.find(name); it != t.end()) return it->second;
  // Accept the singular spec type too ("dataset").
  for (const auto& [sel, type] : t)
    if (type == name) return type;
  return std::nullopt;
}

std::vector<std::string> selection_names() {
  std::vector<std::string> out;
  for (const auto& [sel, type] : selection_table()) out.push_back(sel);
  return out;
}

std::string uniqueness_key(const resource_spec& spec, const json::object& o) {
  std::string k;
  if (spec.unique.empty()) {
    // Content identity (ACLs): every create field, absent/null = empty.
    for (const auto& f : spec.create_fields) {
      auto it = o.find(f);
      k += f;
      k += '=';
      if (it != o.end() && !it->value().is_null()) k += value_text(it->value());
      k += '\x1f';
    }
    return k;
  }
  for (const auto& f : spec.unique) {
    auto it = o.find(f);
    if (it == o.end() || it->value().is_null()) return {};
    k += value_text(it->value());
    k += '\x1f';
  }
  return k;
}

bool same_content(const resource_spec& spec, const json::object& payload, const json::object& dest) {
  for (const auto& kv : payload) {
    std::string_view f = kv.key();
    if (f == spec.hidden_value_field) continue;
    auto it = dest.find(f);
    const json::value* dv = it == dest.end() ? nullptr : &it->value();
    if (is_member_list(f)) {
      if (as_set(&kv.value()) != as_set(dv)) return false;
      continue;
    }
    if (!dv) {
      if (kv.value().is_null()) continue;
      return false;
    }
    if (kv.value() != *dv) return false;
  }
  return true;
}

std::optional<json::object> patch_body(const resource_spec& spec, const json::object& payload, const json::object& dest) {
  if (spec.update == update_style::none) return std::nullopt;
  json::object body;
  if (spec.update == update_style::member_delta) {
    for (std::string_view f : {"name", "description"})
      if (auto it = payload.find(f); it != payload.end()) body[f] = it->value();
    for (std::string_view f : {"member_permissions", "member_roles", "member_users", "member_groups"}) {
      auto it = payload.find(f);
      if (it == payload.end()) continue;
      auto want = as_set(&it->value());
      auto dit = dest.find(f);
      auto have = as_set(dit == dest.end() ? nullptr : &dit->value());
      json::array add, remove;
      // member_permissions entries are objects; compare by serialized form and send the originals.
      for (const auto& v : it->value().as_array())
        if (!have.count(value_text(v))) add.push_back(v);
      if (dit != dest.end() && dit->value().is_array())
        for (const auto& v : dit->value().as_array())
          if (!want.count(value_text(v))) remove.push_back(v);
      std::string name(f);
      if (!add.empty()) body["add_" + name] = std::move(add);
      if (!remove.empty()) body["remove_" + name] = std::move(remove);
    }
    return body;
  }
  for (const auto& f : spec.patch_fields) {
    if (auto it = payload.find(f); it != payload.end()) body[f] = it->value();
  }
  // e.g. PatchView requires object_type/object_id even though they do not change.
  for (const auto& f : spec.patch_keeps)
    if (auto it = dest.find(f); it != dest.end()) body[f] = it->value();
  return body;
}

levels dependency_levels(const std::vector<json::object>& objects,
                         const std::function<std::vector<std::string>(const json::object&)>& deps) {
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < objects.size(); ++i)
    if (auto it = objects[i].find("id"); it != objects[i].end() && it->value().is_string())
      index.emplace(std::string(it->value().as_string()), i);
  std::vector<std::vector<std::size_t>> in(objects.size());
  for (std::size_t i = 0; i < objects.size(); ++i)
    for (const auto& d : deps(objects[i]))
      if (auto it = index.find(d); it != index.end() && it->second != i) in[i].push_back(it->second);
  // Longest-path levels by repeated relaxation (Kahn): level = 1 + max level of dependencies.
  std::vector<int> level(objects.size(), -1);
  levels out;
  std::size_t placed = 0;
  for (int l = 0; placed < objects.size(); ++l) {
    std::vector<std::size_t> now;
    for (std::size_t i = 0; i < objects.size(); ++i) {
      if (level[i] >= 0) continue;
      bool ready = std::all_of(in[i].begin(), in[i].end(), [&](std::size_t d) { return level[d] >= 0 && level[d] < l; });
      if (ready) now.push_back(i);
    }
    if (now.empty()) break;
    for (auto i : now) level[i] = l;
    placed += now.size();
    out.order.push_back(std::move(now));
  }
  for (std::size_t i = 0; i < objects.size(); ++i)
    if (level[i] < 0) out.cyclic.push_back(i);
  return out;
}

bool looks_like_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < 36; ++i) {
    char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

std::string comparable_time(std::string_view iso) {
  // "YYYY-MM-DD[THH:MM:SS[.f+]][Z|+HH:MM]" => "YYYY-MM-DDTHH:MM:SS.ffffff" (UTC assumed; offsets are rare in
  // API output and were canonicalised in the config).
  if (iso.size() < 10) return {};
  std::string date(iso.substr(0, 10));
  std::string time = "00:00:00";
  std::string frac = "000000";
  if (iso.size() >= 19 && (iso[10] == 'T' || iso[10] == ' ')) {
    time = std::string(iso.substr(11, 8));
    std::size_t i = 19;
    if (i < iso.size() && iso[i] == '.') {
      std::string f;
      for (++i; i < iso.size() && std::isdigit(static_cast<unsigned char>(iso[i])); ++i) f += iso[i];
      f.resize(6, '0');
      frac = f.substr(0, 6);
    }
  }
  return date + "T" + time + "." + frac;
}

}  // namespace ferry::pipelines::resources
