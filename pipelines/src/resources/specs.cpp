#include "pipelines/resources/specs.hpp"

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

std::vector<resource_spec> build_specs() {
  const json::object schemas = json::parse(detail::k_openapi_schemas).as_object();
  struct row {
    const char* type;
    const char* path;
    bool project_scoped;
    list_mode list;
    std::vector<std::string> unique;
    const char* create_schema;
    const char* patch_schema;  // "" = none
    update_style update;
    const char* hidden;
  };
  // Order = the order of the org DAG (org phase, then per project by tier, ACLs last).
  const std::vector<row> rows = {
      {"ai_secret", "/v1/ai_secret", false, list_mode::org, {"name"}, "CreateAISecret", "PatchAISecret",
       update_style::patch, "secret"},
      {"role", "/v1/role", false, list_mode::org, {"name"}, "CreateRole", "PatchRole", update_style::member_delta, ""},
      {"group", "/v1/group", false, list_mode::org, {"name"}, "CreateGroup", "PatchGroup", update_style::member_delta,
       ""},
      {"project", "/v1/project", false, list_mode::org, {"name"}, "CreateProject", "PatchProject",
       update_style::patch, ""},
      {"env_var", "/v1/env_var", false, list_mode::parent_object, {"object_type", "object_id", "name"},
       "CreateEnvVar", "", update_style::patch, "value"},
      {"dataset", "/v1/dataset", true, list_mode::project_param, {"name"}, "CreateDataset", "PatchDataset",
       update_style::patch, ""},
      {"project_tag", "/v1/project_tag", true, list_mode::project_param, {"name"}, "CreateProjectTag",
       "PatchProjectTag", update_style::patch, ""},
      {"span_iframe", "/v1/span_iframe", true, list_mode::project_local, {"name"}, "CreateSpanIFrame",
       "PatchSpanIFrame", update_style::patch, ""},
      {"mcp_server", "/v1/mcp_server", true, list_mode::project_local, {"name"}, "CreateMCPServer", "PatchMCPServer",
       update_style::patch, ""},
      {"function", "/v1/function", true, list_mode::project_param, {"slug"}, "CreateFunction", "PatchFunction",
       update_style::patch, ""},
      {"prompt", "/v1/prompt", true, list_mode::project_param, {"slug"}, "CreatePrompt", "PatchPrompt",
       update_style::patch, ""},
      {"project_score", "/v1/project_score", true, list_mode::project_param, {"name"}, "CreateProjectScore",
       "PatchProjectScore", update_style::patch, ""},
      {"experiment", "/v1/experiment", true, list_mode::project_param, {"name"}, "CreateExperiment",
       "PatchExperiment", update_style::patch, ""},
      {"dataset_snapshot", "/v1/dataset_snapshot", true, list_mode::dataset_local, {"dataset_id", "name"},
       "CreateDatasetSnapshot", "PatchDatasetSnapshot", update_style::patch, ""},
      {"view", "/v1/view", true, list_mode::parent_object, {"object_type", "object_id", "name"}, "CreateView",
       "PatchView", update_style::patch, ""},
      {"project_automation", "/v1/project_automation", true, list_mode::project_local, {"name"},
       "CreateProjectAutomation", "PatchProjectAutomation", update_style::patch, ""},
      {"acl", "/v1/acl", false, list_mode::acl_list_org, {}, "AclItem", "", update_style::none, ""},
  };
  std::vector<resource_spec> out;
  for (const auto& r : rows) {
    resource_spec s;
    s.type = r.type;
    s.path = r.path;
    s.project_scoped = r.project_scoped;
    s.list = r.list;
    s.unique = r.unique;
    s.create_fields = schema_list(schemas, r.create_schema, "properties");
    s.required = schema_list(schemas, r.create_schema, "required");
    if (*r.patch_schema) s.patch_fields = schema_list(schemas, r.patch_schema, "properties");
    if (s.type == "env_var") s.patch_fields = {"name", "metadata", "secret_type"};  // no PatchEnvVar schema
    s.update = r.update;
    s.hidden_value_field = r.hidden;
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
  };
  return t;
}

// ---------------------------------------------------------------------------------------------------------
// rewrite helpers

struct rewriter {
  const rewrite_context& ctx;
  rewrite_result& res;

  std::optional<std::string> map(std::string_view type, std::string_view id) const {
    if (!ctx.ids.lookup) return std::nullopt;
    return ctx.ids.lookup(type, id);
  }
  /// Functions and prompts share one id space in Braintrust (a prompt is a function): a function
  /// reference resolves through either map.
  std::optional<std::string> map_function(std::string_view id) const {
    if (auto d = map("function", id)) return d;
    return map("prompt", id);
  }
  void drop(std::string field, std::string reason) { res.dropped.push_back({std::move(field), std::move(reason)}); }
  void skip(std::string code, std::string detail) {
    if (res.skip) return;
    res.skip = true;
    res.skip_reason = std::move(code);
    res.skip_detail = std::move(detail);
  }

  /// Maps a string field in place; unmapped => dropped with the reason.
  void map_field(json::object& o, std::string_view field, std::string_view type, std::string_view where) {
    auto it = o.find(field);
    if (it == o.end()) return;
    if (it->value().is_null()) {
      o.erase(it);
      return;
    }
    if (!it->value().is_string()) return;
    std::string src(it->value().as_string());
    if (auto d = map(type, src)) {
      it->value() = *d;
    } else {
      o.erase(it);
      drop(std::string(where), std::string(type) + " " + src + " has no destination mapping");
    }
  }

  /// A SavedFunctionId {"type":"function","id":X,"version"?}: remapped (version dropped: it is a source
  /// transaction id); false when unmapped. Other shapes (global, url...) are left as they are.
  bool map_function_ref(json::object& ref, const std::string& where) {
    auto t = ref.find("type");
    if (t == ref.end() || !t->value().is_string() || t->value().as_string() != "function") return true;
    auto idv = ref.find("id");
    if (idv == ref.end() || !idv->value().is_string()) return true;
    std::string src(idv->value().as_string());
    auto d = map_function(src);
    if (!d) return false;
    idv->value() = *d;
    if (ref.erase("version")) drop(where + ".version", "source function version (transaction id) means nothing in the destination");
    return true;
  }

  /// An array of function refs: unmapped entries dropped with their index.
  void map_function_array(json::object& parent, std::string_view field, const std::string& where) {
    auto it = parent.find(field);
    if (it == parent.end() || !it->value().is_array()) return;
    json::array out;
    auto& arr = it->value().as_array();
    for (std::size_t i = 0; i < arr.size(); ++i) {
      auto& v = arr[i];
      std::string w = where + "[" + std::to_string(i) + "]";
      if (v.is_object()) {
        if (!map_function_ref(v.as_object(), w)) {
          drop(w, "function " + std::string(v.as_object().at("id").as_string()) + " has no destination mapping");
          continue;
        }
      }
      out.push_back(std::move(v));
    }
    it->value() = std::move(out);
  }

  /// Function refs anywhere inside a blob (graph nodes, topic automations): unmapped => the object is skipped,
  /// because removing a node from a graph would change what it does.
  void map_refs_deep(json::value& v, const std::string& where) {
    if (v.is_object()) {
      auto& o = v.as_object();
      if (!map_function_ref(o, where)) {
        skip("unresolved_function_reference",
             where + " references function " + std::string(o.at("id").as_string()) + " with no destination mapping");
        return;
      }
      for (auto& kv : o) map_refs_deep(kv.value(), where + "." + std::string(kv.key()));
    } else if (v.is_array()) {
      auto& a = v.as_array();
      for (std::size_t i = 0; i < a.size(); ++i) map_refs_deep(a[i], where + "[" + std::to_string(i) + "]");
    }
  }

  /// Known source ids embedded in free text (BTQL queries, filters) replaced by their destination ids.
  void map_ids_in_strings(json::value& v) {
    if (v.is_string()) {
      std::string s(v.as_string());
      bool changed = false;
      for (std::size_t i = 0; i + 36 <= s.size(); ++i) {
        std::string_view cand(s.data() + i, 36);
        if (!looks_like_uuid(cand)) continue;
        if (ctx.ids.lookup_any) {
          if (auto d = ctx.ids.lookup_any(cand); d && d->size() == 36) {
            s.replace(i, 36, *d);
            changed = true;
          }
        }
        i += 35;
      }
      if (changed) v = json::string(s);
    } else if (v.is_object()) {
      for (auto& kv : v.as_object()) map_ids_in_strings(kv.value());
    } else if (v.is_array()) {
      for (auto& x : v.as_array()) map_ids_in_strings(x);
    }
  }

  void map_prompt_data(json::object& payload) {
    auto it = payload.find("prompt_data");
    if (it == payload.end() || !it->value().is_object()) return;
    auto& pd = it->value().as_object();
    map_function_array(pd, "tool_functions", "prompt_data.tool_functions");
    if (auto o = pd.find("origin"); o != pd.end()) {
      if (o->value().is_object()) {
        auto& origin = o->value().as_object();
        bool ok = true;
        if (auto p = origin.find("prompt_id"); p != origin.end() && p->value().is_string()) {
          std::string src(p->value().as_string());
          if (auto d = map("prompt", src)) {
            p->value() = *d;
          } else if (auto f = map("function", src)) {
            p->value() = *f;
          } else {
            ok = false;
            drop("prompt_data.origin", "origin prompt " + src + " has no destination mapping");
          }
        }
        if (ok) {
          if (auto p = origin.find("project_id"); p != origin.end() && p->value().is_string()) {
            std::string src(p->value().as_string());
            if (auto d = map("project", src)) {
              p->value() = *d;
            } else {
              ok = false;
              drop("prompt_data.origin", "origin project " + src + " has no destination mapping");
            }
          }
        }
        if (ok && origin.erase("prompt_version"))
          drop("prompt_data.origin.prompt_version", "source prompt version (transaction id) means nothing in the destination");
        if (!ok) pd.erase(o);
      }
    }
    if (auto m = pd.find("mcp"); m != pd.end() && m->value().is_object()) {
      auto& servers = m->value().as_object();
      std::vector<std::string> gone;
      for (auto& kv : servers) {
        if (!kv.value().is_object()) continue;
        auto& entry = kv.value().as_object();
        auto t = entry.find("type");
        if (t == entry.end() || !t->value().is_string() || t->value().as_string() != "id") continue;
        auto idv = entry.find("id");
        if (idv == entry.end() || !idv->value().is_string()) continue;
        std::string src(idv->value().as_string());
        if (auto d = map("mcp_server", src)) {
          idv->value() = *d;
        } else {
          gone.emplace_back(kv.key());
          drop("prompt_data.mcp." + std::string(kv.key()), "mcp_server " + src + " has no destination mapping");
        }
      }
      for (const auto& g : gone) servers.erase(g);
    }
  }
};

json::object filter_fields(const resource_spec& spec, const json::object& src) {
  json::object out;
  for (const auto& f : spec.create_fields) {
    auto it = src.find(f);
    if (it == src.end() || it->value().is_null()) continue;  // nulls: let the destination default them
    out[f] = it->value();
  }
  return out;
}

void set_project(rewriter& rw, json::object& payload, const json::object& src) {
  // The project of a project-scoped object: its own source project mapped, else the project being migrated.
  std::string src_project;
  if (auto it = src.find("project_id"); it != src.end() && it->value().is_string())
    src_project = std::string(it->value().as_string());
  if (!src_project.empty()) {
    if (auto d = rw.map("project", src_project)) {
      payload["project_id"] = *d;
      return;
    }
    if (src_project == rw.ctx.source_project_id && !rw.ctx.dest_project_id.empty()) {
      payload["project_id"] = rw.ctx.dest_project_id;
      return;
    }
    rw.skip("unresolved_project", "project " + src_project + " has no destination mapping");
    return;
  }
  if (!rw.ctx.dest_project_id.empty()) {
    payload["project_id"] = rw.ctx.dest_project_id;
  } else {
    rw.skip("unresolved_project", "object has no project_id and no destination project is known");
  }
}

/// Maps a list of ids (member_roles, member_groups, member_users); unmapped entries are dropped, the
/// field is removed when nothing is left. Never forwards a source id.
void map_id_list(rewriter& rw, json::object& payload, std::string_view field, std::string_view type) {
  auto it = payload.find(field);
  if (it == payload.end()) return;
  if (!it->value().is_array()) {
    payload.erase(it);
    return;
  }
  json::array out;
  std::set<std::string> seen;
  for (const auto& v : it->value().as_array()) {
    if (!v.is_string()) continue;
    std::string src(v.as_string());
    auto d = rw.map(type, src);
    if (!d) {
      rw.drop(std::string(field) + "[" + src + "]", std::string(type) + " " + src + " has no destination mapping");
      continue;
    }
    if (seen.insert(*d).second) out.emplace_back(*d);
  }
  if (out.empty() && !it->value().as_array().empty()) {
    payload.erase(it);
  } else {
    it->value() = std::move(out);
  }
}

/// ACL / env var / view targets: maps (object_type, object_id). Returns false (and skips) when impossible.
bool map_object_ref(rewriter& rw, json::object& payload, const std::set<std::string_view>& allowed) {
  std::string ot, oid;
  if (auto it = payload.find("object_type"); it != payload.end() && it->value().is_string())
    ot = std::string(it->value().as_string());
  if (auto it = payload.find("object_id"); it != payload.end() && it->value().is_string())
    oid = std::string(it->value().as_string());
  if (!allowed.count(ot)) {
    rw.skip("unsupported_object_type", "object_type '" + ot + "' is not migratable");
    return false;
  }
  std::optional<std::string> d;
  if (ot == "organization" || ot == "org_project" || ot == "org_member") {
    if (!rw.ctx.dest_org_id.empty()) d = rw.ctx.dest_org_id;
  } else if (ot == "project" || ot == "project_log") {
    d = rw.map("project", oid);
  } else if (ot == "experiment" || ot == "dataset" || ot == "group" || ot == "role") {
    d = rw.map(ot, oid);
  } else if (ot == "prompt") {
    d = rw.map("prompt", oid);
    if (!d) d = rw.map("function", oid);
  } else if (ot == "function") {
    d = rw.map_function(oid);
  }
  if (!d) {
    rw.skip("unresolved_object_dependency", ot + " " + oid + " has no destination mapping");
    return false;
  }
  payload["object_id"] = *d;
  return true;
}

void rewrite_by_type(std::string_view type, const json::object& src, rewriter& rw, json::object& p) {
  const auto& spec = spec_of(type);
  if (spec.project_scoped && type != "view" && type != "dataset_snapshot") set_project(rw, p, src);

  if (type == "ai_secret") {
    if (p.erase("secret")) rw.drop("secret", "secret values are write-only");
    p.erase("org_name");
    rw.res.notes.push_back("secret value must be re-entered in the destination");
  } else if (type == "role") {
    p.erase("org_name");
    map_id_list(rw, p, "member_roles", "role");
  } else if (type == "group") {
    p.erase("org_name");
    map_id_list(rw, p, "member_groups", "group");
    if (p.contains("member_users")) {
      if (rw.ctx.map_users) {
        map_id_list(rw, p, "member_users", "user");
      } else {
        p.erase("member_users");
        rw.drop("member_users", "group_map_users is off: user memberships are not copied");
      }
    }
  } else if (type == "project") {
    p.erase("org_name");
  } else if (type == "env_var") {
    map_object_ref(rw, p, {"organization", "project", "function"});
    rw.res.notes.push_back("env var value is write-only and must be re-entered in the destination");
  } else if (type == "function") {
    if (auto fd = src.find("function_data"); fd != src.end() && fd->value().is_object()) {
      const auto& fdo = fd->value().as_object();
      auto t = fdo.find("type");
      if (t != fdo.end() && t->value().is_string() && t->value().as_string() == "code") {
        auto data = fdo.find("data");
        bool inline_code = data != fdo.end() && data->value().is_object() && data->value().as_object().contains("type") &&
                           data->value().as_object().at("type").is_string() &&
                           data->value().as_object().at("type").as_string() == "inline";
        if (!inline_code) {
          rw.skip("code_bundle_not_migratable",
                  "code bundle functions cannot be read back from the API; re-push them (braintrust push)");
          return;
        }
      }
    }
    if (auto o = p.find("origin"); o != p.end()) {
      bool keep = false;
      if (o->value().is_object()) {
        auto& origin = o->value().as_object();
        std::string ot = origin.contains("object_type") && origin.at("object_type").is_string()
                             ? std::string(origin.at("object_type").as_string())
                             : "";
        std::string oid = origin.contains("object_id") && origin.at("object_id").is_string()
                              ? std::string(origin.at("object_id").as_string())
                              : "";
        std::optional<std::string> d;
        if (ot == "project_logs" || ot == "project") d = rw.map("project", oid);
        else if (ot == "experiment" || ot == "dataset") d = rw.map(ot, oid);
        else if (ot == "prompt" || ot == "function") d = rw.map_function(oid);
        if (d) {
          origin["object_id"] = *d;
          keep = true;
          if (origin.erase("_xact_id"))
            rw.drop("origin._xact_id", "source transaction id means nothing in the destination");
        } else {
          rw.drop("origin", "origin " + (ot.empty() ? std::string("object") : ot) + " " + oid +
                                " has no destination mapping");
        }
      }
      if (!keep) p.erase("origin");
    }
    rw.map_prompt_data(p);
    if (auto fd = p.find("function_data"); fd != p.end()) rw.map_refs_deep(fd->value(), "function_data");
  } else if (type == "prompt") {
    rw.map_prompt_data(p);
  } else if (type == "project_score") {
    if (auto c = p.find("config"); c != p.end() && c->value().is_object()) {
      auto& cfg = c->value().as_object();
      if (auto on = cfg.find("online"); on != cfg.end() && on->value().is_object())
        rw.map_function_array(on->value().as_object(), "scorers", "config.online.scorers");
    }
  } else if (type == "experiment") {
    rw.map_field(p, "base_exp_id", "experiment", "base_exp_id");
    rw.map_field(p, "dataset_id", "dataset", "dataset_id");
    if (p.erase("dataset_version"))
      rw.drop("dataset_version", "source dataset transaction id means nothing in the destination (events get new ids)");
    if (auto it = p.find("parameters_id"); it != p.end() && it->value().is_string()) {
      std::string srcid(it->value().as_string());
      if (auto d = rw.map_function(srcid)) {
        it->value() = *d;
      } else {
        p.erase(it);
        rw.drop("parameters_id", "parameters " + srcid + " have no destination mapping");
      }
    }
    if (p.erase("parameters_version"))
      rw.drop("parameters_version", "source parameters version (transaction id) means nothing in the destination");
    p.erase("ensure_new");  // adopt-by-name needs the name kept
  } else if (type == "dataset_snapshot") {
    rw.skip("snapshot_xact_not_mappable",
            "a dataset snapshot pins a source transaction id; destination rows get new transaction ids, so the "
            "snapshot must be re-taken in the destination");
  } else if (type == "view") {
    map_object_ref(rw, p, {"project", "experiment", "dataset"});
    if (p.erase("deleted_at")) rw.drop("deleted_at", "deleted views are not recreated as deleted");
    if (auto it = p.find("user_id"); it != p.end() && it->value().is_string()) {
      std::string u(it->value().as_string());
      std::optional<std::string> d;
      if (rw.ctx.map_users) d = rw.map("user", u);
      if (d) {
        it->value() = *d;
      } else {
        p.erase(it);
        rw.drop("user_id", rw.ctx.map_users ? "user " + u + " has no destination user with the same email"
                                            : "user mapping is off: the view becomes the API key user's");
      }
    }
  } else if (type == "project_automation") {
    if (auto c = p.find("config"); c != p.end()) {
      rw.map_refs_deep(c->value(), "config");
      rw.map_ids_in_strings(c->value());
    }
  } else if (type == "acl") {
    if (!map_object_ref(rw, p, {"organization", "project", "experiment", "dataset", "prompt", "group", "role",
                                "project_log", "org_project"}))
      return;
    bool has_user = p.contains("user_id") && p.at("user_id").is_string();
    if (has_user) {
      if (!rw.ctx.map_users) {
        rw.skip("user_acl_mapping_disabled", "ACL for a user and acl_map_users is off");
        return;
      }
      std::string u(p.at("user_id").as_string());
      auto d = rw.map("user", u);
      if (!d) {
        rw.skip("unresolved_user_dependency", "user " + u + " has no destination user with the same email");
        return;
      }
      p["user_id"] = *d;
      p.erase("group_id");
    } else if (p.contains("group_id") && p.at("group_id").is_string()) {
      std::string g(p.at("group_id").as_string());
      auto d = rw.map("group", g);
      if (!d) {
        rw.skip("unresolved_group_dependency", "group " + g + " has no destination mapping");
        return;
      }
      p["group_id"] = *d;
    } else {
      rw.skip("not_migratable", "ACL names neither a user nor a group");
      return;
    }
    if (p.contains("role_id") && p.at("role_id").is_string()) {
      std::string r(p.at("role_id").as_string());
      auto d = rw.map("role", r);
      if (!d) {
        rw.skip("unresolved_role_dependency", "role " + r + " has no destination mapping");
        return;
      }
      p["role_id"] = *d;
    }
  }
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

const resource_spec& spec_of(std::string_view type) {
  for (const auto& s : resource_specs())
    if (s.type == type) return s;
  throw std::out_of_range("unknown resource type '" + std::string(type) + "'");
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

rewrite_result rewrite(std::string_view type, const json::object& source, const rewrite_context& ctx) {
  rewrite_result res;
  rewriter rw{ctx, res};
  const auto& spec = spec_of(type);
  res.payload = filter_fields(spec, source);
  rewrite_by_type(type, source, rw, res.payload);
  if (res.skip) {
    res.payload = {};
    return res;
  }
  for (const auto& r : spec.required) {
    if (!res.payload.contains(r)) {
      rw.skip("missing_required_field", "required field '" + r + "' is missing after rewriting");
      res.payload = {};
      return res;
    }
  }
  return res;
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
  // PatchView requires object_type/object_id even though they do not change.
  if (spec.type == "view") {
    for (std::string_view f : {"object_type", "object_id"})
      if (auto it = dest.find(f); it != dest.end()) body[f] = it->value();
  }
  return body;
}

std::vector<std::string> in_type_dependencies(std::string_view type, const json::object& o) {
  std::vector<std::string> out;
  auto add_list = [&](std::string_view f) {
    if (auto it = o.find(f); it != o.end() && it->value().is_array())
      for (const auto& v : it->value().as_array())
        if (v.is_string()) out.emplace_back(v.as_string());
  };
  if (type == "role") add_list("member_roles");
  if (type == "group") add_list("member_groups");
  if (type == "experiment")
    if (auto it = o.find("base_exp_id"); it != o.end() && it->value().is_string())
      out.emplace_back(it->value().as_string());
  if (type == "prompt") {
    // A prompt derived from another prompt (origin) or calling one as a tool must come after it, or its
    // reference would be dropped as unmapped.
    auto pd = o.find("prompt_data");
    if (pd != o.end() && pd->value().is_object()) {
      const auto& d = pd->value().as_object();
      if (auto og = d.find("origin"); og != d.end() && og->value().is_object())
        if (auto p = og->value().as_object().find("prompt_id"); p != og->value().as_object().end() && p->value().is_string())
          out.emplace_back(p->value().as_string());
      if (auto tf = d.find("tool_functions"); tf != d.end() && tf->value().is_array())
        for (const auto& t : tf->value().as_array())
          if (t.is_object())
            if (auto id = t.as_object().find("id"); id != t.as_object().end() && id->value().is_string())
              out.emplace_back(id->value().as_string());
    }
  }
  return out;
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
