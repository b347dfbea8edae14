// The per-type rewrite hooks of the resource table (specs.cpp names one per row) and what they share:
// id lookups through the id maps (one id space per the table), drops and skips with their reasons.
#include "rewrite.hpp"

#include <boost/json/serialize.hpp>

#include <set>

namespace ferry::pipelines::resources {

namespace json = boost::json;

namespace detail {

struct rewriter {
  const rewrite_context& ctx;
  rewrite_result& res;

  /// The destination id of a source id of `type`. A type with an id space (the table's `id_space`:
  /// prompts are functions in Braintrust) resolves through its own map first, then the others of its
  /// space, so a function reference finds a prompt and a prompt reference a function.
  std::optional<std::string> map(std::string_view type, std::string_view id) const {
    if (!ctx.ids.lookup) return std::nullopt;
    for (const auto& t : types_sharing_ids(type))
      if (auto d = ctx.ids.lookup(t, id)) return d;
    return std::nullopt;
  }
  void drop(std::string field, std::string reason) { res.dropped.push_back({std::move(field), std::move(reason)}); }
  /// An id whose target has no destination mapping (yet): dropped now, linked later once it has one.
  void drop_ref(std::string field, std::string reason) {
    res.dropped.push_back({std::move(field), std::move(reason), true});
  }
  /// A version pin `o[field]` of the source object `target` (id space `space`): replaced by the
  /// destination version when one is established, else removed and reported with the reason.
  void map_pin(json::object& o, std::string_view field, std::string_view space, const std::string& target,
               const std::string& where) {
    auto it = o.find(field);
    if (it == o.end()) return;
    if (it->value().is_null()) {
      o.erase(it);
      return;
    }
    const std::string version = it->value().is_string() ? std::string(it->value().as_string()) : json::serialize(it->value());
    std::string why;
    auto d = ctx.ids.version ? ctx.ids.version(space, target, version, why) : std::nullopt;
    if (d) {
      it->value() = *d;
      return;
    }
    o.erase(it);
    res.dropped.push_back({where, why.empty() ? std::string(space) + " version " + version + " has no destination version" : why,
                           false, true});
  }
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
      drop_ref(std::string(where), std::string(type) + " " + src + " has no destination mapping");
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
    auto d = map("function", src);
    if (!d) return false;
    idv->value() = *d;
    map_pin(ref, "version", "function", src, where + ".version");
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
          drop_ref(w, "function " + std::string(v.as_object().at("id").as_string()) + " has no destination mapping");
          continue;
        }
      }
      out.push_back(std::move(v));
    }
    it->value() = std::move(out);
  }

  /// Function refs anywhere inside a blob (graph nodes' {"function_id"}, facet preprocessors, topic
  /// automations): unmapped => the object is skipped (deferrable: retried once its targets exist), because
  /// removing a node from a graph would change what it does.
  void map_refs_deep(json::value& v, const std::string& where) {
    if (v.is_object()) {
      auto& o = v.as_object();
      if (!map_function_ref(o, where)) {
        skip("unresolved_function_reference",
             where + " references function " + std::string(o.at("id").as_string()) + " with no destination mapping");
        res.deferrable = true;
        return;
      }
      if (auto fid = o.find("function_id"); fid != o.end() && fid->value().is_string()) {
        std::string src(fid->value().as_string());
        auto d = map("function", src);
        if (!d) {
          skip("unresolved_function_reference",
               where + ".function_id references function " + src + " with no destination mapping");
          res.deferrable = true;
          return;
        }
        fid->value() = *d;
        map_pin(o, "version", "function", src, where + ".version");
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

  /// Ids inside a JSON blob (view options such as projectId, view_data filters): every uuid-shaped string
  /// (whole or inside text) that is a source id of any mapped object is replaced by its destination id.
  /// A string holding a uuid with no mapping is removed (its key / array entry) and reported as an
  /// unresolved reference, never forwarded; false when `v` itself must go.
  bool map_embedded_ids(json::value& v, const std::string& where) {
    if (v.is_string()) {
      std::string s(v.as_string());
      for (std::size_t i = 0; i + 36 <= s.size(); ++i) {
        std::string_view cand(s.data() + i, 36);
        if (!looks_like_uuid(cand)) continue;
        auto d = ctx.ids.lookup_any ? ctx.ids.lookup_any(cand) : std::nullopt;
        if (!d || d->size() != 36) {
          drop_ref(where, "id " + std::string(cand) + " has no destination mapping");
          return false;
        }
        s.replace(i, 36, *d);
        i += 35;
      }
      v = json::string(s);
      return true;
    }
    if (v.is_object()) {
      auto& o = v.as_object();
      std::vector<std::string> gone;
      for (auto& kv : o)
        if (!map_embedded_ids(kv.value(), where + "." + std::string(kv.key()))) gone.emplace_back(kv.key());
      for (const auto& g : gone) o.erase(g);
    } else if (v.is_array()) {
      json::array kept;
      auto& a = v.as_array();
      for (std::size_t i = 0; i < a.size(); ++i)
        if (map_embedded_ids(a[i], where + "[" + std::to_string(i) + "]")) kept.push_back(std::move(a[i]));
      v = std::move(kept);
    }
    return true;
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
        std::string origin_prompt;  // its source id (the pin's target)
        if (auto p = origin.find("prompt_id"); p != origin.end() && p->value().is_string()) {
          std::string src(p->value().as_string());
          origin_prompt = src;
          if (auto d = map("prompt", src)) {
            p->value() = *d;
          } else if (auto f = map("function", src)) {
            p->value() = *f;
          } else {
            ok = false;
            drop_ref("prompt_data.origin", "origin prompt " + src + " has no destination mapping");
          }
        }
        if (ok) {
          if (auto p = origin.find("project_id"); p != origin.end() && p->value().is_string()) {
            std::string src(p->value().as_string());
            if (auto d = map("project", src)) {
              p->value() = *d;
            } else {
              ok = false;
              drop_ref("prompt_data.origin", "origin project " + src + " has no destination mapping");
            }
          }
        }
        if (ok && !origin_prompt.empty())
          map_pin(origin, "prompt_version", "function", origin_prompt, "prompt_data.origin.prompt_version");
        else if (ok && origin.erase("prompt_version"))
          drop("prompt_data.origin.prompt_version", "a prompt version with no origin prompt_id names no object");
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
          drop_ref("prompt_data.mcp." + std::string(kv.key()), "mcp_server " + src + " has no destination mapping");
        }
      }
      for (const auto& g : gone) servers.erase(g);
    }
  }
};

}  // namespace detail

namespace {

std::string str_of(const json::object& o, std::string_view field) {
  auto it = o.find(field);
  return it != o.end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
}

json::object filter_fields(const resource_spec& spec, const json::object& src) {
  json::object out;
  auto take = [&](const std::string& f) {
    auto it = src.find(f);
    if (it == src.end() || it->value().is_null()) return;  // nulls: let the destination default them
    out[f] = it->value();
  };
  for (const auto& f : spec.create_fields) take(f);
  for (const auto& f : spec.set_after_create) take(f);
  return out;
}

void set_project(detail::rewriter& rw, json::object& payload, const json::object& src) {
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
void map_id_list(detail::rewriter& rw, json::object& payload, std::string_view field, std::string_view type) {
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
      rw.drop_ref(std::string(field) + "[" + src + "]", std::string(type) + " " + src + " has no destination mapping");
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
bool map_object_ref(detail::rewriter& rw, json::object& payload, const std::set<std::string_view>& allowed) {
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
  } else if (ot == "prompt" || ot == "function") {
    d = rw.map(ot, oid);
  }
  if (!d) {
    rw.skip("unresolved_object_dependency", ot + " " + oid + " has no destination mapping");
    return false;
  }
  payload["object_id"] = *d;
  return true;
}

}  // namespace

// ---- one hook per type (see the table in specs.cpp) ------------------------------------------------

void rewrite_ai_secret(detail::rewriter& rw, const json::object&, json::object& p) {
  if (p.erase("secret")) rw.drop("secret", "secret values are write-only");
  p.erase("org_name");
  rw.res.notes.push_back("secret value must be re-entered in the destination");
}

void rewrite_environment(detail::rewriter&, const json::object&, json::object& p) { p.erase("org_name"); }

void rewrite_role(detail::rewriter& rw, const json::object&, json::object& p) {
  p.erase("org_name");
  map_id_list(rw, p, "member_roles", "role");
}

void rewrite_group(detail::rewriter& rw, const json::object&, json::object& p) {
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
}

// settings (set after the create, by the link pass): baseline_experiment_id and default_preprocessor mapped.
void rewrite_project(detail::rewriter& rw, const json::object&, json::object& p) {
  p.erase("org_name");
  auto it = p.find("settings");
  if (it == p.end()) return;
  if (!it->value().is_object()) {
    p.erase(it);
    return;
  }
  auto& st = it->value().as_object();
  rw.map_field(st, "baseline_experiment_id", "experiment", "settings.baseline_experiment_id");
  if (auto dp = st.find("default_preprocessor"); dp != st.end() && dp->value().is_object()) {
    if (!rw.map_function_ref(dp->value().as_object(), "settings.default_preprocessor")) {
      rw.drop_ref("settings.default_preprocessor",
                  "function " + std::string(dp->value().as_object().at("id").as_string()) + " has no destination mapping");
      st.erase(dp);
    }
  }
}

void rewrite_env_var(detail::rewriter& rw, const json::object&, json::object& p) {
  map_object_ref(rw, p, {"organization", "project", "function"});
  rw.res.notes.push_back("env var value is write-only and must be re-entered in the destination");
}

void rewrite_function(detail::rewriter& rw, const json::object& src, json::object& p) {
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
      else if (ot == "prompt" || ot == "function") d = rw.map("function", oid);
      if (d) {
        origin["object_id"] = *d;
        keep = true;
        if (origin.erase("_xact_id"))
          rw.drop("origin._xact_id", "no PATCH takes a function's origin, so its version pin cannot be set once the "
                                     "origin object's destination version is final");
      } else if (!rw.ctx.last_chance && !oid.empty()) {
        // No PATCH takes an origin: wait for its object (an experiment is created after the functions).
        rw.skip("unresolved_origin", "origin " + ot + " " + oid + " has no destination mapping yet");
        rw.res.deferrable = true;
        return;
      } else {
        rw.drop_ref("origin", "origin " + (ot.empty() ? std::string("object") : ot) + " " + oid +
                                  " has no destination mapping");
      }
    }
    if (!keep) p.erase("origin");
  }
  rw.map_prompt_data(p);
  if (auto fd = p.find("function_data"); fd != p.end()) rw.map_refs_deep(fd->value(), "function_data");
}

void rewrite_prompt(detail::rewriter& rw, const json::object&, json::object& p) {
  rw.map_prompt_data(p);
}

void rewrite_project_score(detail::rewriter& rw, const json::object&, json::object& p) {
  if (auto c = p.find("config"); c != p.end() && c->value().is_object()) {
    auto& cfg = c->value().as_object();
    if (auto on = cfg.find("online"); on != cfg.end() && on->value().is_object())
      rw.map_function_array(on->value().as_object(), "scorers", "config.online.scorers");
  }
}

void rewrite_experiment(detail::rewriter& rw, const json::object& src, json::object& p) {
  rw.map_field(p, "base_exp_id", "experiment", "base_exp_id");
  const std::string src_dataset = str_of(src, "dataset_id"), src_parameters = str_of(src, "parameters_id");
  rw.map_field(p, "dataset_id", "dataset", "dataset_id");
  if (p.contains("dataset_id")) rw.map_pin(p, "dataset_version", "dataset", src_dataset, "dataset_version");
  else if (p.erase("dataset_version")) rw.drop("dataset_version", "a dataset version without its dataset names no rows");
  if (auto it = p.find("parameters_id"); it != p.end() && it->value().is_string()) {
    if (auto d = rw.map("function", src_parameters)) {
      it->value() = *d;
    } else {
      p.erase(it);
      rw.drop_ref("parameters_id", "parameters " + src_parameters + " have no destination mapping");
    }
  }
  if (p.contains("parameters_id")) rw.map_pin(p, "parameters_version", "function", src_parameters, "parameters_version");
  else if (p.erase("parameters_version"))
    rw.drop("parameters_version", "a parameters version without its parameters names no object");
  p.erase("ensure_new");  // adopt-by-name needs the name kept
}

// A snapshot is its pin: created once the pin has a destination version (else skipped with the reason; a
// later run, after the dataset's rows were copied, creates it).
void rewrite_dataset_snapshot(detail::rewriter& rw, const json::object& src, json::object& p) {
  const std::string dataset = str_of(src, "dataset_id");
  rw.map_field(p, "dataset_id", "dataset", "dataset_id");
  if (!p.contains("dataset_id")) {
    rw.skip("unresolved_dataset", "dataset " + dataset + " has no destination mapping");
    return;
  }
  const std::size_t before = rw.res.dropped.size();
  rw.map_pin(p, "xact_id", "dataset", dataset, "xact_id");
  if (rw.res.dropped.size() > before) rw.skip("snapshot_version_not_mappable", rw.res.dropped.back().reason);
}

void rewrite_view(detail::rewriter& rw, const json::object&, json::object& p) {
  map_object_ref(rw, p, {"organization", "project", "experiment", "dataset"});
  for (std::string_view f : {"options", "view_data"})
    if (auto it = p.find(f); it != p.end())
      if (!rw.map_embedded_ids(it->value(), std::string(f))) p.erase(f);
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
}

void rewrite_project_automation(detail::rewriter& rw, const json::object&, json::object& p) {
  if (auto c = p.find("config"); c != p.end()) {
    rw.map_refs_deep(c->value(), "config");
    rw.map_ids_in_strings(c->value());
  }
}

namespace {

/// Maps the string id in p[field] through `type`'s map; unmapped => the ACL is skipped (an ACL without
/// its principal or role would grant something else). False when skipped.
bool map_acl_id(detail::rewriter& rw, json::object& p, std::string_view field, std::string_view type,
                const std::string& unmapped_detail) {
  std::string src(p.at(field).as_string());
  auto d = rw.map(type, src);
  if (!d) {
    rw.skip("unresolved_" + std::string(type) + "_dependency", std::string(type) + " " + src + unmapped_detail);
    return false;
  }
  p[field] = *d;
  return true;
}

bool has_string(const json::object& p, std::string_view field) { return p.contains(field) && p.at(field).is_string(); }

}  // namespace

void rewrite_acl(detail::rewriter& rw, const json::object&, json::object& p) {
  if (!map_object_ref(rw, p, {"organization", "project", "experiment", "dataset", "prompt", "group", "role",
                              "project_log", "org_project"}))
    return;
  if (has_string(p, "user_id")) {
    if (!rw.ctx.map_users) {
      rw.skip("user_acl_mapping_disabled", "ACL for a user and acl_map_users is off");
      return;
    }
    if (!map_acl_id(rw, p, "user_id", "user", " has no destination user with the same email")) return;
    p.erase("group_id");
  } else if (has_string(p, "group_id")) {
    if (!map_acl_id(rw, p, "group_id", "group", " has no destination mapping")) return;
  } else {
    rw.skip("not_migratable", "ACL names neither a user nor a group");
    return;
  }
  if (has_string(p, "role_id")) map_acl_id(rw, p, "role_id", "role", " has no destination mapping");
}

// ---- in-list dependencies ----------------------------------------------------------------------------

namespace {

void add_list(std::vector<std::string>& out, const json::object& o, std::string_view f) {
  if (auto it = o.find(f); it != o.end() && it->value().is_array())
    for (const auto& v : it->value().as_array())
      if (v.is_string()) out.emplace_back(v.as_string());
}

}  // namespace

std::vector<std::string> deps_role(const json::object& o) {
  std::vector<std::string> out;
  add_list(out, o, "member_roles");
  return out;
}

std::vector<std::string> deps_group(const json::object& o) {
  std::vector<std::string> out;
  add_list(out, o, "member_groups");
  return out;
}

std::vector<std::string> deps_experiment(const json::object& o) {
  std::vector<std::string> out;
  if (auto it = o.find("base_exp_id"); it != o.end() && it->value().is_string()) out.emplace_back(it->value().as_string());
  return out;
}

// A prompt derived from another prompt (origin) or calling one as a tool must come after it, or its
// reference would be dropped as unmapped.
std::vector<std::string> deps_prompt(const json::object& o) {
  std::vector<std::string> out;
  auto pd = o.find("prompt_data");
  if (pd == o.end() || !pd->value().is_object()) return out;
  const auto& d = pd->value().as_object();
  if (auto og = d.find("origin"); og != d.end() && og->value().is_object())
    if (auto p = og->value().as_object().find("prompt_id"); p != og->value().as_object().end() && p->value().is_string())
      out.emplace_back(p->value().as_string());
  if (auto tf = d.find("tool_functions"); tf != d.end() && tf->value().is_array())
    for (const auto& t : tf->value().as_array())
      if (t.is_object())
        if (auto id = t.as_object().find("id"); id != t.as_object().end() && id->value().is_string())
          out.emplace_back(id->value().as_string());
  return out;
}

namespace {

/// Function ids anywhere inside a blob: SavedFunctionId {"type":"function","id"} and FunctionId {"function_id"}.
void add_function_ids(std::vector<std::string>& out, const json::value& v) {
  if (v.is_array()) {
    for (const auto& x : v.as_array()) add_function_ids(out, x);
    return;
  }
  if (!v.is_object()) return;
  const auto& o = v.as_object();
  auto t = o.find("type");
  auto id = o.find("id");
  if (t != o.end() && t->value().is_string() && t->value().as_string() == "function" && id != o.end() &&
      id->value().is_string())
    out.emplace_back(id->value().as_string());
  if (auto f = o.find("function_id"); f != o.end() && f->value().is_string()) out.emplace_back(f->value().as_string());
  for (const auto& kv : o) add_function_ids(out, kv.value());
}

}  // namespace

// A function calling others (graph nodes, facet preprocessors, prompt tools, origin) comes after them in its
// own list, so a first run finds them mapped.
std::vector<std::string> deps_function(const json::object& o) {
  std::vector<std::string> out = deps_prompt(o);
  if (auto fd = o.find("function_data"); fd != o.end()) add_function_ids(out, fd->value());
  if (auto og = o.find("origin"); og != o.end() && og->value().is_object())
    if (auto id = og->value().as_object().find("object_id"); id != og->value().as_object().end() && id->value().is_string())
      out.emplace_back(id->value().as_string());
  return out;
}

std::vector<std::string> in_type_dependencies(std::string_view type, const json::object& o) {
  const auto& spec = spec_of(type);
  return spec.in_type_deps ? spec.in_type_deps(o) : std::vector<std::string>{};
}

rewrite_result rewrite(std::string_view type, const json::object& source, const rewrite_context& ctx) {
  rewrite_result res;
  detail::rewriter rw{ctx, res};
  const auto& spec = spec_of(type);
  res.payload = filter_fields(spec, source);
  if (spec.sets_project) set_project(rw, res.payload, source);
  if (spec.rewrite) spec.rewrite(rw, source, res.payload);
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

}  // namespace ferry::pipelines::resources
