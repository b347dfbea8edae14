// The REST resources of the emulator: one generic engine (create / put / get / patch / delete / list)
// driven by the table `k_specs`, plus the documented special cases. See rest.hpp for storage and threading.
#include "emulator/rest.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/url/parse_query.hpp>
#include <boost/url/params_encoded_view.hpp>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

namespace ferry::emulator {

namespace json = boost::json;
using stores::be64;

namespace {

constexpr std::string_view cf_objects = "rest_objects";
constexpr std::string_view cf_ids = "rest_ids";
constexpr std::string_view cf_names = "rest_names";
constexpr std::string_view cf_meta = "rest_meta";
// Fields that never leave the server (secret values), stored beside the object.
constexpr std::string_view hidden_prefix = "_emu_";

enum shape : unsigned {
  s_org_id = 1u << 0,      // org_id of the caller
  s_user_id = 1u << 1,     // user_id of the caller (unless given)
  s_deleted_at = 1u << 2,  // deleted_at: null
  s_xact = 1u << 3,        // prompt/function: _xact_id, log_id "p", org_id
  s_position = 1u << 4,    // position: null
  s_url_slug = 1u << 5,    // dataset url_slug
  s_settings = 1u << 6,    // project settings: null
  s_experiment = 1u << 7,  // experiment public=false, commit null
  s_updated_at = 1u << 8,  // ai_secret updated_at
  s_object_org = 1u << 9,  // acl _object_org_id
};

struct filter {
  std::string_view param;
  std::string_view field;
};

/// One REST resource, as the OpenAPI spec describes it.
struct resource_spec {
  std::string_view type;
  std::vector<std::string_view> create_fields;
  std::vector<std::string_view> required;
  std::vector<std::string_view> patch_fields;    // empty: no PATCH
  std::vector<std::string_view> patch_required;  // view: object_type, object_id
  std::vector<std::string_view> unique;          // fields of the uniqueness key (empty: none)
  bool has_put = false;
  std::string_view parent_type;   // "project" / "dataset": the parent named by parent_field must exist
  std::string_view parent_field;  // "project_id" / "dataset_id"
  std::vector<filter> filters;    // list query params mapped onto fields
  std::vector<std::string_view> list_required;  // query params a list needs
  unsigned shape = 0;
  bool writable = true;  // false: read-only (user, organization are handled specially)
  std::string_view hidden_field;  // create field kept server-side (ai_secret.secret, env_var.value)
};

// The table lists each spec positionally and leaves trailing members at their defaults on purpose.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
const std::vector<resource_spec>& specs() {
  static const std::vector<resource_spec> table = {
      {"project", {"name", "description", "org_name"}, {"name"}, {"name", "description", "user_id", "settings"}, {},
       {"name"}, false, {}, {}, {{"project_name", "name"}}, {}, s_org_id | s_user_id | s_deleted_at | s_settings},
      {"dataset", {"project_id", "name", "description", "tags", "metadata"}, {"project_id", "name"},
       {"name", "description", "tags", "metadata"}, {}, {"project_id", "name"}, false, "project", "project_id",
       {{"dataset_name", "name"}, {"project_id", "project_id"}}, {}, s_user_id | s_deleted_at | s_url_slug},
      {"experiment",
       {"project_id", "name", "description", "repo_info", "base_exp_id", "dataset_id", "dataset_version",
        "internal_metadata", "parameters_id", "parameters_version", "public", "metadata", "tags"},
       {"project_id"},
       {"name", "description", "repo_info", "base_exp_id", "dataset_id", "dataset_version", "internal_metadata",
        "parameters_id", "parameters_version", "public", "metadata", "tags"},
       {}, {"project_id", "name"}, false, "project", "project_id",
       {{"experiment_name", "name"}, {"project_id", "project_id"}}, {}, s_user_id | s_deleted_at | s_experiment},
      {"prompt", {"project_id", "name", "slug", "description", "prompt_data", "tags", "function_type"},
       {"project_id", "name", "slug"}, {"name", "slug", "description", "prompt_data", "tags"}, {},
       {"project_id", "slug"}, true, "project", "project_id",
       {{"prompt_name", "name"}, {"slug", "slug"}, {"project_id", "project_id"}}, {}, s_xact},
      {"function",
       {"project_id", "name", "slug", "description", "prompt_data", "tags", "function_type", "function_data", "origin",
        "function_schema"},
       {"project_id", "name", "slug", "function_data"}, {"name", "description", "prompt_data", "function_data", "tags"},
       {}, {"project_id", "slug"}, true, "project", "project_id",
       {{"function_name", "name"}, {"slug", "slug"}, {"project_id", "project_id"}, {"function_type", "function_type"}},
       {}, s_xact},
      {"project_score", {"project_id", "name", "description", "score_type", "categories", "config"},
       {"project_id", "name", "score_type"}, {"name", "description", "score_type", "categories", "config"}, {},
       {"project_id", "name"}, true, "project", "project_id",
       {{"project_score_name", "name"}, {"project_id", "project_id"}, {"score_type", "score_type"}}, {},
       s_user_id | s_position},
      {"project_tag", {"project_id", "name", "description", "color"}, {"project_id", "name"},
       {"name", "description", "color"}, {}, {"project_id", "name"}, true, "project", "project_id",
       {{"project_tag_name", "name"}, {"project_id", "project_id"}}, {}, s_user_id | s_position},
      // The spec's span_iframe key is "name"; it is scoped to the project here so that two projects may each
      // have an iframe of the same name (as the product allows).
      {"span_iframe", {"project_id", "name", "description", "url", "post_message"}, {"project_id", "name", "url"},
       {"name", "url", "post_message", "description"}, {}, {"project_id", "name"}, true, "project", "project_id",
       {{"span_iframe_name", "name"}}, {}, s_user_id | s_deleted_at},
      {"view", {"object_type", "object_id", "view_type", "name", "view_data", "options", "user_id", "deleted_at"},
       {"object_type", "object_id", "view_type", "name"},
       {"object_type", "object_id", "view_type", "name", "view_data", "options", "user_id"},
       {"object_type", "object_id"}, {"object_type", "object_id", "name"}, true, {}, {},
       {{"view_name", "name"}, {"view_type", "view_type"}, {"object_type", "object_type"}, {"object_id", "object_id"}},
       {"object_type", "object_id"}, 0},
      {"project_automation", {"project_id", "name", "description", "config"}, {"project_id", "name", "config"},
       {"name", "description", "config"}, {}, {"project_id", "name"}, true, "project", "project_id",
       {{"project_automation_name", "name"}, {"project_id", "project_id"}}, {}, s_user_id},
      {"role", {"name", "description", "member_permissions", "member_roles", "org_name"}, {"name"},
       {"name", "description"}, {}, {"name"}, true, {}, {}, {{"role_name", "name"}}, {},
       s_org_id | s_user_id | s_deleted_at},
      {"group", {"name", "description", "member_users", "member_groups", "org_name"}, {"name"},
       {"name", "description"}, {}, {"name"}, true, {}, {}, {{"group_name", "name"}}, {},
       s_org_id | s_user_id | s_deleted_at},
      {"ai_secret", {"name", "type", "metadata", "secret", "org_name"}, {"name"}, {"name", "type", "metadata", "secret"},
       {}, {"name"}, true, {}, {}, {{"ai_secret_name", "name"}, {"ai_secret_type", "type"}}, {},
       s_org_id | s_updated_at, true, "secret"},
      {"acl", {"object_type", "object_id", "user_id", "group_id", "permission", "restrict_object_type", "role_id"},
       {"object_type", "object_id"}, {}, {},
       {"object_type", "object_id", "user_id", "group_id", "permission", "restrict_object_type", "role_id"}, false, {},
       {},
       {{"object_type", "object_type"}, {"object_id", "object_id"}, {"user_id", "user_id"}, {"group_id", "group_id"},
        {"permission", "permission"}, {"restrict_object_type", "restrict_object_type"}, {"role_id", "role_id"}},
       {}, s_object_org},
      {"env_var", {"object_type", "object_id", "name", "value", "metadata", "secret_type"},
       {"object_type", "object_id", "name"}, {"name", "value", "metadata", "secret_type"}, {},
       {"object_type", "object_id", "name"}, true, {}, {},
       {{"env_var_name", "name"}, {"object_type", "object_type"}, {"object_id", "object_id"}}, {}, 0, true, "value"},
      {"mcp_server", {"project_id", "name", "description", "url"}, {"project_id", "name", "url"},
       {"name", "description", "url"}, {}, {"project_id", "name"}, true, "project", "project_id",
       {{"mcp_server_name", "name"}, {"project_id", "project_id"}}, {}, s_user_id | s_deleted_at},
      {"dataset_snapshot", {"dataset_id", "name", "description", "xact_id"}, {"dataset_id", "name", "xact_id"},
       {"name", "description"}, {}, {"dataset_id", "name"}, true, "dataset", "dataset_id",
       {{"dataset_snapshot_name", "name"}, {"dataset_id", "dataset_id"}}, {}, 0},
      {"user", {}, {}, {}, {}, {"email"}, false, {}, {},
       {{"given_name", "given_name"}, {"family_name", "family_name"}, {"email", "email"}}, {}, 0, false},
      {"organization", {}, {}, {}, {}, {}, false, {}, {}, {}, {}, 0, false},
  };
  return table;
}
#pragma GCC diagnostic pop

const resource_spec* find_spec(std::string_view type) {
  for (const auto& s : specs())
    if (s.type == type) return &s;
  return nullptr;
}

bool contains(const std::vector<std::string_view>& v, std::string_view x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

const std::set<std::string_view> k_acl_object_types = {
    "organization", "project", "experiment", "dataset", "prompt", "prompt_session",
    "group", "role", "org_member", "project_log", "org_project"};
const std::set<std::string_view> k_permissions = {"create", "read", "update", "delete",
                                                  "create_acls", "read_acls", "update_acls", "delete_acls"};
const std::set<std::string_view> k_score_types = {"slider", "categorical", "weighted", "minimum",
                                                  "maximum", "online", "free-form"};
const std::set<std::string_view> k_view_types = {
    "projects", "experiments", "experiment", "playgrounds", "playground", "datasets", "dataset",
    "prompts", "parameters", "tools", "scorers", "classifiers", "logs", "monitor",
    "for_review_project_log", "for_review_experiments", "for_review_datasets"};
const std::set<std::string_view> k_env_var_object_types = {"organization", "project", "function"};

std::string objects_prefix(std::string_view org, std::string_view type) {
  std::string p;
  p.reserve(org.size() + type.size() + 2);
  p.append(org).push_back('\0');
  p.append(type).push_back('\0');
  return p;
}

std::string prefix_end(std::string prefix) {
  prefix.back() = '\x01';  // the prefix ends with '\0': the next byte bounds every key under it
  return prefix;
}

std::string field_string(const json::object& o, std::string_view field) {
  auto it = o.find(field);
  if (it == o.end() || it->value().is_null()) return {};
  if (it->value().is_string()) return std::string(it->value().get_string());
  return json::serialize(it->value());
}

/// The uniqueness key of an object: its unique fields joined by \x1f (absent = \x02).
std::string unique_key(const resource_spec& spec, const json::object& o) {
  std::string k;
  for (auto f : spec.unique) {
    auto it = o.find(f);
    if (it == o.end() || it->value().is_null())
      k += '\x02';
    else if (it->value().is_string())
      k += std::string_view(it->value().get_string());
    else
      k += json::serialize(it->value());
    k += '\x1f';
  }
  return k;
}

std::string name_index_key(std::string_view org, std::string_view type, std::string_view uniq) {
  std::string k = objects_prefix(org, type);
  k.append(uniq);
  return k;
}

json::object public_view(json::object o) {
  for (auto it = o.begin(); it != o.end();) {
    if (std::string_view(it->key()).starts_with(hidden_prefix))
      it = o.erase(it);
    else
      ++it;
  }
  return o;
}

std::string to_text(const json::object& o) { return json::serialize(o); }

json::object parse_body_object(std::string_view body) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return {};
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) throw api_error(400, "request body is not valid JSON: " + ec.message());
  if (!v.is_object()) throw api_error(400, "request body must be a JSON object");
  return std::move(v.as_object());
}

void require_string(const json::object& o, std::string_view field, bool required) {
  auto it = o.find(field);
  if (it == o.end() || it->value().is_null()) {
    if (required) throw api_error(400, "missing required field: " + std::string(field));
    return;
  }
  if (!it->value().is_string())
    throw api_error(400, "field " + std::string(field) + " must be a string");
  if (required && it->value().get_string().empty())
    throw api_error(400, "field " + std::string(field) + " must not be empty");
}

void check_enum(const json::object& o, std::string_view field, const std::set<std::string_view>& allowed) {
  auto it = o.find(field);
  if (it == o.end() || it->value().is_null()) return;
  if (!it->value().is_string() || !allowed.contains(std::string_view(it->value().get_string())))
    throw api_error(400, "field " + std::string(field) + " has an invalid value: " + json::serialize(it->value()));
}

std::string slugify(std::string_view name) {
  std::string out;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u))
      out += static_cast<char>(std::tolower(u));
    else if (!out.empty() && out.back() != '-')
      out += '-';
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? std::string("dataset") : out;
}

std::string preview_of(std::string_view secret) {
  if (secret.size() < 8) return "********";
  return "********" + std::string(secret.substr(secret.size() - 4));
}

/// Deep merge for PATCH project settings: objects merge recursively, nulls cannot erase.
void deep_merge(json::object& into, const json::object& patch) {
  for (const auto& kv : patch) {
    if (kv.value().is_null()) continue;
    auto it = into.find(kv.key());
    if (it != into.end() && it->value().is_object() && kv.value().is_object())
      deep_merge(it->value().as_object(), kv.value().as_object());
    else
      into[kv.key()] = kv.value();
  }
}

using query_params = std::multimap<std::string, std::string, std::less<>>;

query_params parse_query(std::string_view query) {
  query_params out;
  if (query.empty()) return out;
  auto r = boost::urls::parse_query(query);
  if (!r) throw api_error(400, "malformed query string");
  for (auto p : *r) {
    std::string key = p.key.decode();
    std::string value = p.has_value ? p.value.decode() : std::string();
    out.emplace(std::move(key), std::move(value));
  }
  return out;
}

std::vector<std::string> param_values(const query_params& q, std::string_view name) {
  std::vector<std::string> out;
  auto [b, e] = q.equal_range(name);
  for (auto it = b; it != e; ++it) {
    // `ids=a,b` is accepted as well as repeated `ids=a&ids=b`.
    std::string_view v = it->second;
    while (!v.empty()) {
      auto comma = v.find(',');
      auto piece = v.substr(0, comma);
      if (!piece.empty()) out.emplace_back(piece);
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return out;
}

std::optional<std::string> param(const query_params& q, std::string_view name) {
  auto it = q.find(name);
  if (it == q.end()) return std::nullopt;
  return it->second;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string strip(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> segs;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    auto slash = path.find('/');
    segs.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash);
  }
  return segs;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// The engine: everything below runs with rest_store::mutex_ held for mutations.

struct rest_engine {
  rest_store& st;
  const org_identity& org;

  stores::kv_store& kv() { return st.store_; }

  std::string id_for(std::string_view type) {
    return st.ids_.uuid(std::string(org.org_id) + "/" + std::string(type), st.seq_ + 1);
  }

  std::optional<json::object> by_unique(const resource_spec& spec, std::string_view uniq) {
    auto id = kv().get(cf_names, name_index_key(org.org_id, spec.type, uniq));
    if (!id) return std::nullopt;
    return st.get(org, spec.type, *id);
  }

  void check_org_name(const json::object& body) {
    auto it = body.find("org_name");
    if (it == body.end() || it->value().is_null()) return;
    if (!it->value().is_string() || it->value().get_string() != org.org_name)
      throw api_error(403, "org_name " + json::serialize(it->value()) + " is not the organization of this API key");
  }

  /// Validates a create body against the spec and keeps only its create fields.
  json::object validated_create(const resource_spec& spec, const json::object& body) {
    check_org_name(body);
    for (auto f : spec.required) {
      auto it = body.find(f);
      if (it == body.end() || it->value().is_null()) throw api_error(400, "missing required field: " + std::string(f));
    }
    for (std::string_view f : {"name", "slug", "project_id", "dataset_id", "object_id", "url", "description"}) {
      if (contains(spec.create_fields, f)) require_string(body, f, contains(spec.required, f));
    }
    if (spec.type == "project_score") check_enum(body, "score_type", k_score_types);
    if (spec.type == "view") check_enum(body, "view_type", k_view_types);
    if (spec.type == "env_var") check_enum(body, "object_type", k_env_var_object_types);
    if (spec.type == "acl") validate_acl(body);
    if (!spec.parent_type.empty()) {
      auto parent = field_string(body, spec.parent_field);
      if (!st.object_exists(spec.parent_type, parent, org.org_id))
        throw api_error(404, std::string(spec.parent_type) + " " + parent + " not found");
    }
    json::object out;
    for (auto f : spec.create_fields) {
      if (f == "org_name") continue;
      auto it = body.find(f);
      if (it == body.end()) continue;
      if (f == spec.hidden_field)
        out[std::string(hidden_prefix) + std::string(f)] = it->value();
      else
        out[f] = it->value();
    }
    return out;
  }

  static void validate_acl(const json::object& body) {
    check_enum(body, "object_type", k_acl_object_types);
    check_enum(body, "permission", k_permissions);
    check_enum(body, "restrict_object_type", k_acl_object_types);
    auto present = [&](std::string_view f) {
      auto it = body.find(f);
      return it != body.end() && !it->value().is_null();
    };
    if (present("user_id") == present("group_id"))
      throw api_error(400, "acl needs exactly one of user_id and group_id");
    if (present("permission") == present("role_id"))
      throw api_error(400, "acl needs exactly one of permission and role_id");
  }

  /// Adds the read-shape fields (id, created, org_id, ...) of a new object.
  void add_read_shape(const resource_spec& spec, json::object& o, std::uint64_t seq, std::string id) {
    json::object out;
    out["id"] = id;
    for (auto& kv : o) out[kv.key()] = kv.value();
    out["created"] = st.ids_.timestamp(seq);
    if (spec.shape & s_org_id) out["org_id"] = org.org_id;
    if ((spec.shape & s_user_id) && !out.contains("user_id")) out["user_id"] = org.user_id;
    if (spec.shape & s_deleted_at) out["deleted_at"] = nullptr;
    if (spec.shape & s_position) out["position"] = nullptr;
    if (spec.shape & s_settings && !out.contains("settings")) out["settings"] = nullptr;
    if (spec.shape & s_url_slug) out["url_slug"] = slugify(field_string(out, "name"));
    if (spec.shape & s_experiment) {
      if (!out.contains("public") || out["public"].is_null()) out["public"] = false;
      out["commit"] = nullptr;
    }
    if (spec.shape & s_xact) {
      out["org_id"] = org.org_id;
      out["log_id"] = "p";
      out["_xact_id"] = xact_id(seq);
      if (!out.contains("metadata")) out["metadata"] = nullptr;
    }
    if (spec.shape & s_updated_at) out["updated_at"] = out["created"];
    if (spec.shape & s_object_org) out["_object_org_id"] = org.org_id;
    // DatasetSnapshot lists description as required (nullable): present even when not given.
    if (spec.type == "dataset_snapshot" && !out.contains("description")) out["description"] = nullptr;
    refresh_derived(spec, out);
    o = std::move(out);
  }

  static std::string xact_id(std::uint64_t seq) { return std::to_string(1000000000000000000ull + seq); }

  /// Fields computed from others after every change.
  void refresh_derived(const resource_spec& spec, json::object& o) {
    if (!spec.hidden_field.empty()) {
      auto hidden = std::string(hidden_prefix) + std::string(spec.hidden_field);
      if (spec.type == "ai_secret") {
        auto it = o.find(hidden);
        if (it != o.end() && it->value().is_string())
          o["preview_secret"] = preview_of(it->value().get_string());
        else
          o["preview_secret"] = nullptr;
      }
      if (spec.type == "env_var" && !o.contains("used")) o["used"] = nullptr;
    }
  }

  std::uint64_t next_seq() { return ++st.seq_; }

  /// Stores a new object with its id and name index entries (atomically, with the sequence counter).
  void insert(const resource_spec& spec, const json::object& o, std::uint64_t seq) {
    const auto id = field_string(o, "id");
    const auto key = objects_prefix(org.org_id, spec.type) + be64(seq);
    stores::write_batch b;
    b.put(cf_objects, key, to_text(o));
    b.put(cf_ids, id, key + std::string("\0L", 2));
    if (!spec.unique.empty()) b.put(cf_names, name_index_key(org.org_id, spec.type, unique_key(spec, o)), id);
    b.put(cf_meta, "seq", be64(st.seq_));
    kv().write(b, false);
  }

  /// Replaces a stored object (same key), moving its name index entry if the key fields changed.
  void update(const resource_spec& spec, const json::object& before, const json::object& after) {
    const auto id = field_string(after, "id");
    auto loc = st.locate(id);
    if (!loc || !loc->live) throw api_error(404, std::string(spec.type) + " " + id + " not found");
    stores::write_batch b;
    if (!spec.unique.empty()) {
      auto old_k = unique_key(spec, before);
      auto new_k = unique_key(spec, after);
      if (old_k != new_k) {
        auto holder = kv().get(cf_names, name_index_key(org.org_id, spec.type, new_k));
        if (holder && *holder != id)
          throw api_error(409, std::string(spec.type) + " with the same " + describe_unique(spec) + " already exists");
        b.del(cf_names, name_index_key(org.org_id, spec.type, old_k));
        b.put(cf_names, name_index_key(org.org_id, spec.type, new_k), id);
      }
    }
    b.put(cf_objects, loc->key, to_text(after));
    b.put(cf_meta, "seq", be64(st.seq_));
    kv().write(b, false);
  }

  void remove(const resource_spec& spec, const json::object& o) {
    const auto id = field_string(o, "id");
    auto loc = st.locate(id);
    if (!loc || !loc->live) throw api_error(404, std::string(spec.type) + " " + id + " not found");
    stores::write_batch b;
    b.del(cf_objects, loc->key);
    b.put(cf_ids, id, loc->key + std::string("\0D", 2));
    if (!spec.unique.empty()) b.del(cf_names, name_index_key(org.org_id, spec.type, unique_key(spec, o)));
    kv().write(b, false);
  }

  static std::string describe_unique(const resource_spec& spec) {
    std::string s;
    for (auto f : spec.unique) {
      if (!s.empty()) s += "+";
      s += f;
    }
    return s;
  }

  // ---- create / put ----

  /// POST: create, or the existing object unmodified. `replace` gives PUT semantics.
  json::object create(const resource_spec& spec, const json::object& body, bool replace) {
    json::object fields = validated_create(spec, body);
    bool ensure_new = false;
    if (auto it = body.find("ensure_new"); it != body.end() && it->value().is_bool()) ensure_new = it->value().get_bool();
    if (spec.type == "experiment") name_experiment(spec, fields, ensure_new);

    if (!spec.unique.empty()) {
      if (auto existing = by_unique(spec, unique_key(spec, fields))) {
        if (!replace) return *existing;
        // PUT: keep identity fields, replace the rest with what was provided.
        json::object after;
        for (std::string_view keep : {"id", "created", "org_id", "user_id", "log_id", "project_id", "_object_org_id"}) {
          if (auto it = existing->find(keep); it != existing->end()) after[keep] = it->value();
        }
        for (auto& kv : fields) after[kv.key()] = kv.value();
        if (spec.shape & s_deleted_at) after["deleted_at"] = nullptr;
        if (spec.shape & s_position) after["position"] = existing->contains("position") ? (*existing)["position"] : nullptr;
        if (spec.shape & s_url_slug) after["url_slug"] = slugify(field_string(after, "name"));
        if (spec.shape & s_experiment && !after.contains("public")) after["public"] = false;
        if (spec.shape & s_xact) {
          after["_xact_id"] = xact_id(next_seq());
          if (!after.contains("metadata")) after["metadata"] = nullptr;
        }
        if (spec.shape & s_updated_at) after["updated_at"] = st.ids_.timestamp(next_seq());
        refresh_derived(spec, after);
        update(spec, *existing, after);
        return after;
      }
    }
    const auto id = id_for(spec.type);
    const auto seq = next_seq();
    add_read_shape(spec, fields, seq, id);
    insert(spec, fields, seq);
    return fields;
  }

  void name_experiment(const resource_spec& spec, json::object& fields, bool ensure_new) {
    std::string base = field_string(fields, "name");
    if (base.empty()) {
      base = "experiment";
      ensure_new = true;
    }
    if (!ensure_new) return;
    std::string candidate = base;
    for (int n = 1; by_unique(spec, unique_key(spec, with_name(fields, candidate))); ++n)
      candidate = base + "-" + std::to_string(n);
    fields["name"] = candidate;
  }

  static json::object with_name(json::object o, std::string_view name) {
    o["name"] = name;
    return o;
  }

  // ---- patch ----

  json::object patch(const resource_spec& spec, json::object existing, const json::object& body) {
    if (spec.patch_fields.empty() && spec.type != "role" && spec.type != "group")
      throw api_error(405, "PATCH is not supported on " + std::string(spec.type));
    for (auto f : spec.patch_required) {
      auto it = body.find(f);
      if (it == body.end() || it->value().is_null()) throw api_error(400, "missing required field: " + std::string(f));
    }
    for (std::string_view f : {"name", "slug", "description", "url"}) {
      if (contains(spec.patch_fields, f)) require_string(body, f, false);
    }
    if (spec.type == "project_score") check_enum(body, "score_type", k_score_types);
    if (spec.type == "view") check_enum(body, "view_type", k_view_types);
    const json::object before = existing;
    json::object& o = existing;
    for (auto f : spec.patch_fields) {
      auto it = body.find(f);
      if (it == body.end()) continue;
      if (spec.type == "project" && f == "settings") {
        if (it->value().is_null()) continue;  // cannot null out
        if (!it->value().is_object()) throw api_error(400, "field settings must be an object");
        if (!o.contains("settings") || !o["settings"].is_object()) o["settings"] = json::object();
        deep_merge(o["settings"].as_object(), it->value().as_object());
        continue;
      }
      if (f == spec.hidden_field) {
        o[std::string(hidden_prefix) + std::string(f)] = it->value();
        continue;
      }
      o[f] = it->value();
    }
    if (spec.type == "role") {
      patch_list(o, body, "member_permissions", "add_member_permissions", "remove_member_permissions");
      patch_list(o, body, "member_roles", "add_member_roles", "remove_member_roles");
    } else if (spec.type == "group") {
      patch_list(o, body, "member_users", "add_member_users", "remove_member_users");
      patch_list(o, body, "member_groups", "add_member_groups", "remove_member_groups");
    }
    if (spec.shape & s_url_slug) o["url_slug"] = slugify(field_string(o, "name"));
    if (spec.shape & s_xact) o["_xact_id"] = xact_id(next_seq());
    if (spec.shape & s_updated_at) o["updated_at"] = st.ids_.timestamp(next_seq());
    refresh_derived(spec, o);
    update(spec, before, o);
    return o;
  }

  static void patch_list(json::object& o, const json::object& body, std::string_view field, std::string_view add,
                         std::string_view rem) {
    auto get_array = [&](std::string_view f) -> const json::array* {
      auto it = body.find(f);
      if (it == body.end() || it->value().is_null()) return nullptr;
      if (!it->value().is_array()) throw api_error(400, "field " + std::string(f) + " must be an array");
      return &it->value().get_array();
    };
    const auto* adds = get_array(add);
    const auto* rems = get_array(rem);
    if (!adds && !rems) return;
    json::array current;
    if (auto it = o.find(field); it != o.end() && it->value().is_array()) current = it->value().get_array();
    if (adds)
      for (const auto& v : *adds)
        if (std::find(current.begin(), current.end(), v) == current.end()) current.push_back(v);
    if (rems)
      for (const auto& v : *rems) {
        auto it = std::find(current.begin(), current.end(), v);
        if (it != current.end()) current.erase(it);
      }
    o[field] = std::move(current);
  }

  // ---- list ----

  struct list_result {
    std::vector<json::object> objects;
  };

  list_result list(const resource_spec& spec, const query_params& q) {
    for (auto p : spec.list_required)
      if (!param(q, p)) throw api_error(400, "missing required query parameter: " + std::string(p));
    std::optional<std::size_t> limit;
    if (auto l = param(q, "limit"); l && !l->empty() && *l != "null") {
      std::size_t pos = 0;
      long long v = -1;
      try {
        v = std::stoll(*l, &pos);
      } catch (const std::exception&) {
        pos = 0;
      }
      if (pos != l->size() || v < 0) throw api_error(400, "query parameter limit must be a non-negative integer");
      limit = static_cast<std::size_t>(v);
    }
    auto after = param(q, "starting_after");
    auto before = param(q, "ending_before");
    if (after && before) throw api_error(400, "starting_after and ending_before are mutually exclusive");
    list_result out;
    if (auto on = param(q, "org_name"); on && *on != org.org_name) return out;
    if (limit && *limit == 0) return out;

    // Filters.
    std::vector<std::pair<std::string_view, std::vector<std::string>>> field_filters;
    for (const auto& f : spec.filters) {
      auto vals = param_values(q, f.param);
      if (!vals.empty()) field_filters.emplace_back(f.field, std::move(vals));
    }
    auto ids = param_values(q, "ids");
    std::optional<std::set<std::string>> project_ids;
    if (auto pn = param(q, "project_name"); pn && spec.parent_type == "project") {
      project_ids.emplace();
      for (const auto& p : st.find(org, "project", "name", *pn)) project_ids->insert(field_string(p, "id"));
    }
    auto matches = [&](const json::object& o) {
      if (!ids.empty() && std::find(ids.begin(), ids.end(), field_string(o, "id")) == ids.end()) return false;
      if (project_ids && !project_ids->contains(field_string(o, "project_id"))) return false;
      for (const auto& [field, vals] : field_filters) {
        auto v = field_string(o, field);
        bool any = false;
        for (const auto& want : vals) {
          if (field == "email" ? lower(strip(v)) == lower(strip(want)) : v == want) {
            any = true;
            break;
          }
        }
        if (!any) return false;
      }
      return true;
    };

    const auto prefix = objects_prefix(org.org_id, spec.type);
    const auto end = prefix_end(prefix);
    auto visit = [&](std::string_view, std::string_view value) {
      boost::system::error_code ec;
      auto v = json::parse(value, ec);
      if (ec || !v.is_object()) return true;  // a corrupt record is skipped, not fatal
      if (matches(v.as_object())) out.objects.push_back(public_view(std::move(v.as_object())));
      return !limit || out.objects.size() < *limit;
    };
    auto cursor_key = [&](const std::string& id, std::string_view which) {
      auto loc = st.locate(id);
      if (!loc || !loc->key.starts_with(prefix))
        throw api_error(400, std::string(which) + ": no " + std::string(spec.type) + " with id " + id);
      return loc->key;
    };
    if (after) {
      kv().scan_reverse(cf_objects, cursor_key(*after, "starting_after"), prefix, visit);
    } else if (before) {
      auto from = cursor_key(*before, "ending_before");
      from.push_back('\0');
      kv().scan(cf_objects, from, end, visit);
      std::reverse(out.objects.begin(), out.objects.end());
    } else {
      kv().scan_reverse(cf_objects, end, prefix, visit);
    }
    return out;
  }

  static std::string objects_reply(const std::vector<json::object>& objs, bool bare) {
    std::string body = bare ? "[" : "{\"objects\":[";
    for (std::size_t i = 0; i < objs.size(); ++i) {
      if (i) body += ',';
      body += json::serialize(objs[i]);
    }
    body += bare ? "]" : "]}";
    return body;
  }

  // ---- organization / users ----

  json::object organization() {
    auto o = st.get(org, "organization", org.org_id);
    if (!o) throw api_error(404, "organization " + org.org_id + " not found");
    return with_urls(std::move(*o));
  }

  json::object with_urls(json::object o) {
    for (std::string_view f : {"api_url", "proxy_url"})
      if (!o.contains(f) || o[f].is_null()) o[f] = st.cfg_.base_url;
    return o;
  }

  json::object patch_members(const json::object& body) {
    if (auto it = body.find("org_id"); it != body.end() && it->value().is_string() && it->value().get_string() != org.org_id)
      throw api_error(403, "org_id " + std::string(it->value().get_string()) + " is not the organization of this API key");
    check_org_name(body);
    const auto* user_spec = find_spec("user");
    json::array added;
    if (auto it = body.find("invite_users"); it != body.end() && it->value().is_object()) {
      const auto& inv = it->value().get_object();
      if (auto e = inv.find("emails"); e != inv.end() && e->value().is_array()) {
        for (const auto& em : e->value().get_array()) {
          if (!em.is_string()) throw api_error(400, "invite_users.emails must be strings");
          const auto email = lower(strip(em.get_string()));
          json::object u;
          u["email"] = email;
          if (by_unique(*user_spec, unique_key(*user_spec, u))) continue;
          const auto id = id_for("user");
          const auto seq = next_seq();
          json::object full;
          full["id"] = id;
          full["given_name"] = nullptr;
          full["family_name"] = nullptr;
          full["email"] = email;
          full["avatar_url"] = nullptr;
          full["created"] = st.ids_.timestamp(seq);
          insert(*user_spec, full, seq);
          json::object a;
          a["id"] = id;
          a["email"] = email;
          added.push_back(std::move(a));
        }
      }
    }
    if (auto it = body.find("remove_users"); it != body.end() && it->value().is_object()) {
      const auto& rem = it->value().get_object();
      for (std::string_view f : {"ids", "emails"}) {
        auto e = rem.find(f);
        if (e == rem.end() || !e->value().is_array()) continue;
        for (const auto& v : e->value().get_array()) {
          if (!v.is_string()) continue;
          std::optional<json::object> u;
          if (f == "ids") {
            u = st.get(org, "user", v.get_string());
          } else {
            json::object probe;
            probe["email"] = lower(strip(v.get_string()));
            u = by_unique(*user_spec, unique_key(*user_spec, probe));
          }
          if (u && field_string(*u, "id") != org.user_id) remove(*user_spec, *u);
        }
      }
    }
    json::object out;
    out["status"] = "success";
    out["org_id"] = org.org_id;
    out["send_email_error"] = nullptr;
    out["added_users"] = std::move(added);
    return out;
  }

  // ---- ACL specials ----

  json::object acl_delete_by_content(const json::object& body) {
    const auto* spec = find_spec("acl");
    auto fields = validated_create(*spec, body);
    auto existing = by_unique(*spec, unique_key(*spec, fields));
    if (!existing) throw api_error(404, "acl not found");
    remove(*spec, *existing);
    return *existing;
  }

  json::object acl_batch(const json::object& body) {
    const auto* spec = find_spec("acl");
    json::array added, removed;
    auto items = [&](std::string_view f) -> json::array {
      auto it = body.find(f);
      if (it == body.end() || it->value().is_null()) return {};
      if (!it->value().is_array()) throw api_error(400, "field " + std::string(f) + " must be an array");
      return it->value().get_array();
    };
    // Validate everything before changing anything, so a bad item leaves the store untouched.
    auto adds = items("add_acls");
    auto rems = items("remove_acls");
    for (auto* list : {&adds, &rems})
      for (const auto& v : *list) {
        if (!v.is_object()) throw api_error(400, "acl items must be objects");
        validated_create(*spec, v.get_object());
      }
    for (const auto& v : adds) added.push_back(public_view(create(*spec, v.get_object(), false)));
    for (const auto& v : rems) {
      auto fields = validated_create(*spec, v.get_object());
      if (auto existing = by_unique(*spec, unique_key(*spec, fields))) {
        remove(*spec, *existing);
        removed.push_back(public_view(*existing));
      }
    }
    json::object out;
    out["added_acls"] = std::move(added);
    out["removed_acls"] = std::move(removed);
    return out;
  }

  json::object delete_by_name(const resource_spec& spec, const json::object& body) {
    check_org_name(body);
    require_string(body, "name", true);
    json::object probe;
    probe["name"] = body.at("name");
    auto existing = by_unique(spec, unique_key(spec, probe));
    if (!existing)
      throw api_error(404, std::string(spec.type) + " " + std::string(body.at("name").get_string()) + " not found");
    remove(spec, *existing);
    (*existing)["deleted_at"] = st.ids_.timestamp(st.seq_);
    return *existing;
  }
};

// ------------------------------------------------------------------------------------------------

std::vector<std::string> rest_store::column_families() {
  return {std::string(cf_objects), std::string(cf_ids), std::string(cf_names), std::string(cf_meta)};
}

rest_store::rest_store(stores::kv_store& store, rest_config cfg)
    : store_(store), cfg_(std::move(cfg)), ids_(cfg_.id_seed) {
  if (auto s = store_.get(cf_meta, "seq")) seq_ = stores::from_be64(*s);
}

std::string rest_store::remembered_id(const std::string& meta_key, const std::string& scope) {
  if (auto v = store_.get(cf_meta, meta_key)) return *v;
  auto id = ids_.uuid(scope, 0);
  store_.put(cf_meta, meta_key, id);
  return id;
}

std::string rest_store::resolve_org_id(std::string_view org_name, std::string_view requested) {
  std::lock_guard lock(mutex_);
  const std::string key = "org:" + std::string(org_name);
  if (!requested.empty()) {
    store_.put(cf_meta, key, requested);
    return std::string(requested);
  }
  return remembered_id(key, key);
}

std::string rest_store::resolve_user_id(std::string_view org_id) {
  std::lock_guard lock(mutex_);
  const std::string key = "user:" + std::string(org_id);
  return remembered_id(key, key);
}

void rest_store::set_base_url(std::string url) {
  std::lock_guard lock(mutex_);
  cfg_.base_url = std::move(url);
}

std::string rest_store::base_url() const {
  std::lock_guard lock(mutex_);
  return cfg_.base_url;
}

std::string rest_store::project_of(std::string_view type, std::string_view id) const {
  auto loc = locate(id);
  if (!loc || !loc->live) return {};
  // The key is <org>\0<type>\0<seq>: check the type segment.
  auto first = loc->key.find('\0');
  if (first == std::string::npos || loc->key.compare(first + 1, type.size() + 1, std::string(type) + '\0') != 0)
    return {};
  auto o = load(loc->key);
  return o ? field_string(*o, "project_id") : std::string();
}

void rest_store::ensure_org(const org_identity& org) {
  std::lock_guard lock(mutex_);
  rest_engine e{*this, org};
  if (!get(org, "organization", org.org_id)) {
    const auto seq = e.next_seq();
    json::object o;
    o["id"] = org.org_id;
    o["name"] = org.org_name;
    o["api_url"] = nullptr;  // filled with the current base URL on reads (the port may change)
    o["is_universal_api"] = nullptr;
    o["proxy_url"] = nullptr;
    o["realtime_url"] = nullptr;
    o["created"] = ids_.timestamp(seq);
    e.insert(*find_spec("organization"), o, seq);
  }
  if (!org.user_id.empty() && !get(org, "user", org.user_id)) {
    const auto seq = e.next_seq();
    json::object u;
    u["id"] = org.user_id;
    u["given_name"] = "Emulator";
    u["family_name"] = "User";
    u["email"] = "user@" + slugify(org.org_name) + ".example.com";
    u["avatar_url"] = nullptr;
    u["created"] = ids_.timestamp(seq);
    e.insert(*find_spec("user"), u, seq);
  }
}

std::optional<rest_store::located> rest_store::locate(std::string_view id) const {
  auto v = store_.get(cf_ids, id);
  if (!v || v->size() < 2) return std::nullopt;
  located l;
  l.live = v->back() == 'L';
  l.key = v->substr(0, v->size() - 2);
  return l;
}

std::optional<json::object> rest_store::load(std::string_view key) const {
  auto v = store_.get(cf_objects, key);
  if (!v) return std::nullopt;
  boost::system::error_code ec;
  auto parsed = json::parse(*v, ec);
  if (ec || !parsed.is_object()) return std::nullopt;
  return std::move(parsed.as_object());
}

bool rest_store::object_exists(std::string_view type, std::string_view id, std::string_view org_id) const {
  if (id.empty()) return false;
  auto loc = locate(id);
  return loc && loc->live && loc->key.starts_with(objects_prefix(org_id, type));
}

std::optional<json::object> rest_store::get(const org_identity& org, std::string_view type,
                                            std::string_view id) const {
  auto loc = locate(id);
  if (!loc || !loc->live || !loc->key.starts_with(objects_prefix(org.org_id, type))) return std::nullopt;
  return load(loc->key);
}

std::vector<json::object> rest_store::find(const org_identity& org, std::string_view type, std::string_view field,
                                           std::string_view value) const {
  std::vector<json::object> out;
  const auto prefix = objects_prefix(org.org_id, type);
  store_.scan_reverse(cf_objects, prefix_end(prefix), prefix, [&](std::string_view, std::string_view v) {
    boost::system::error_code ec;
    auto parsed = json::parse(v, ec);
    if (!ec && parsed.is_object() && field_string(parsed.as_object(), field) == value)
      out.push_back(std::move(parsed.as_object()));
    return true;
  });
  return out;
}

std::size_t rest_store::count(std::string_view org_id, std::string_view type) const {
  std::size_t n = 0;
  const auto prefix = objects_prefix(org_id, type);
  store_.scan(cf_objects, prefix, prefix_end(prefix), [&](std::string_view, std::string_view) {
    ++n;
    return true;
  });
  return n;
}

json::object rest_store::create(const org_identity& org, std::string_view type, json::object fields) {
  const auto* spec = find_spec(type);
  if (!spec || !spec->writable) throw api_error(400, "unknown resource type " + std::string(type));
  std::lock_guard lock(mutex_);
  rest_engine e{*this, org};
  return public_view(e.create(*spec, fields, false));
}

std::optional<rest_reply> rest_store::handle(std::string_view method, std::string_view target, std::string_view body,
                                             const org_identity& org) {
  const auto qpos = target.find('?');
  const auto path = target.substr(0, qpos);
  const auto query = qpos == std::string_view::npos ? std::string_view() : target.substr(qpos + 1);
  const auto segs = split_path(path);
  if (segs.size() < 2 || segs.size() > 3 || segs[0] != "v1") return std::nullopt;
  if (!find_spec(segs[1])) return std::nullopt;
  try {
    return dispatch(method, path, query, body, org);
  } catch (const api_error& e) {
    return rest_reply{e.status(), json_error_body(e.what())};
  } catch (const stores::store_error& e) {
    return rest_reply{500, json_error_body(std::string("storage error: ") + e.what())};
  }
}

rest_reply rest_store::dispatch(std::string_view method, std::string_view path, std::string_view query,
                                std::string_view body_text, const org_identity& org) {
  const auto segs = split_path(path);
  const auto& spec = *find_spec(segs[1]);
  const std::string type(spec.type);
  const bool mutating = method != "GET" && method != "HEAD";
  std::unique_lock lock(mutex_, std::defer_lock);
  if (mutating) lock.lock();
  rest_engine e{*this, org};
  auto ok = [](const json::object& o) { return rest_reply{200, json::serialize(public_view(o))}; };
  auto not_allowed = [&] {
    return api_error(405, "method " + std::string(method) + " is not allowed on " + std::string(path));
  };

  // Collection paths: /v1/<type>
  if (segs.size() == 2) {
    if (type == "organization") {
      if (method != "GET") throw not_allowed();
      auto q = parse_query(query);
      std::vector<json::object> objs;
      auto on = param(q, "org_name");
      if (!on || *on == org.org_name) objs.push_back(public_view(e.organization()));
      return {200, rest_engine::objects_reply(objs, false)};
    }
    if (method == "GET") {
      auto q = parse_query(query);
      if (type == "acl" && (!param(q, "object_type") || !param(q, "object_id")))
        throw api_error(400, "missing required query parameters: object_type and object_id");
      return {200, rest_engine::objects_reply(e.list(spec, q).objects, false)};
    }
    if (!spec.writable) throw not_allowed();
    if (method == "POST") return ok(e.create(spec, parse_body_object(body_text), false));
    if (method == "PUT" && spec.has_put) return ok(e.create(spec, parse_body_object(body_text), true));
    if (method == "DELETE" && type == "ai_secret") return ok(e.delete_by_name(spec, parse_body_object(body_text)));
    if (method == "DELETE" && type == "acl") return ok(e.acl_delete_by_content(parse_body_object(body_text)));
    throw not_allowed();
  }

  // Three segments: specials, then /v1/<type>/<id>.
  const auto third = segs[2];
  if (type == "acl" && third == "list_org") {
    if (method != "GET") throw not_allowed();
    return {200, rest_engine::objects_reply(e.list(spec, parse_query(query)).objects, true)};
  }
  if (type == "acl" && third == "batch_update") {
    if (method != "POST") throw not_allowed();
    return {200, json::serialize(e.acl_batch(parse_body_object(body_text)))};
  }
  if (type == "organization" && third == "members") {
    if (method != "PATCH") throw not_allowed();
    return {200, json::serialize(e.patch_members(parse_body_object(body_text)))};
  }
  const std::string id(third);
  if (!is_uuid(id) && type != "organization") throw api_error(400, type + "_id must be a uuid: " + id);
  auto existing = get(org, type, id);
  if (!existing) throw api_error(404, type + " " + id + " not found");
  if (type == "organization" && method == "GET") return ok(e.with_urls(*existing));
  if (method == "GET") return ok(*existing);
  if (type == "user") throw not_allowed();
  if (type == "organization") {
    if (method != "PATCH") throw not_allowed();
    auto body = parse_body_object(body_text);
    const json::object before = *existing;
    for (std::string_view f :
         {"name", "api_url", "is_universal_api", "is_dataplane_private", "proxy_url", "realtime_url",
          "image_rendering_mode"}) {
      if (auto it = body.find(f); it != body.end()) (*existing)[f] = it->value();
    }
    e.update(*find_spec("organization"), before, *existing);
    return ok(e.with_urls(*existing));
  }
  if (method == "PATCH") return ok(e.patch(spec, *existing, parse_body_object(body_text)));
  if (method == "DELETE") {
    e.remove(spec, *existing);
    if (spec.shape & s_deleted_at) (*existing)["deleted_at"] = ids_.timestamp(seq_);
    return ok(*existing);
  }
  throw not_allowed();
}

}  // namespace ferry::emulator
