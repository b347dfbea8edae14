// The REST resources of the emulator: one generic engine (create / put / get / patch / delete / list)
// driven by the table `k_specs`, plus the documented special cases. See rest.hpp for storage and threading.
#include "emulator/rest.hpp"
#include "engine/json_parse.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/url/parse_query.hpp>
#include <boost/url/params_encoded_view.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <functional>
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

}  // namespace

/// One REST resource, as the OpenAPI spec describes it (named in rest.hpp's rest_store::request).
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
  // Set after the table (see specs()):
  std::string_view store_type;                // where objects live ("" = type); prompt: "function"
  std::vector<std::string_view> extra_params;  // list params with their own handling (project_name, version...)
  unsigned common = 0;                         // the common list params it accepts (c_* bits)
  std::vector<std::string_view> get_params;    // query params a GET by id accepts
};

namespace {

enum common_params : unsigned {
  c_limit = 1u << 0,
  c_cursors = 1u << 1,  // starting_after, ending_before
  c_ids = 1u << 2,
  c_org_name = 1u << 3,
  c_all = c_limit | c_cursors | c_ids | c_org_name,
};

// The table lists each spec positionally and leaves trailing members at their defaults on purpose.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
bool contains_sv(std::initializer_list<std::string_view> v, std::string_view x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

std::vector<resource_spec>& specs() {
  static std::vector<resource_spec> table = {
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
       {{"function_name", "name"}, {"slug", "slug"}, {"project_id", "project_id"}},
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
       {{"project_automation_name", "name"}}, {}, s_user_id},
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
       {{"mcp_server_name", "name"}}, {}, s_user_id | s_deleted_at},
      {"dataset_snapshot", {"dataset_id", "name", "description", "xact_id"}, {"dataset_id", "name", "xact_id"},
       {"name", "description"}, {}, {"dataset_id", "name"}, true, "dataset", "dataset_id",
       {{"dataset_snapshot_name", "name"}}, {}, 0},
      {"environment", {"name", "slug", "description", "org_name"}, {"name", "slug"}, {"name", "slug", "description"},
       {}, {"slug"}, false, {}, {}, {{"name", "name"}}, {}, s_org_id | s_deleted_at},
      // API keys and service tokens: no de-duplication by name (the spec says so); the secret is returned once.
      {"api_key", {"name", "org_name"}, {"name"}, {}, {}, {}, false, {}, {}, {{"api_key_name", "name"}}, {},
       s_org_id | s_user_id},
      {"service_token", {"name", "org_name", "service_account_id"}, {"name", "service_account_id"}, {}, {}, {}, true,
       {}, {}, {{"service_token_name", "name"}}, {}, s_org_id},
      {"user", {}, {}, {}, {}, {"email"}, false, {}, {},
       {{"given_name", "given_name"}, {"family_name", "family_name"}, {"email", "email"}}, {}, 0, false},
      {"organization", {}, {}, {}, {}, {}, false, {}, {}, {}, {}, 0, false},
  };
  static const bool adjusted = [] {
    for (auto& s : table) {
      s.common = c_all;
      if (s.type == "prompt") s.store_type = "function";
      if (s.type == "prompt" || s.type == "function") {
        s.extra_params = {"project_name", "version", "environment"};
        s.get_params = {"version", "environment"};
      } else if (contains_sv({"dataset", "experiment", "project_score", "project_tag"}, s.type)) {
        s.extra_params = {"project_name"};
      }
      if (s.type == "view") s.get_params = {"object_type", "object_id"};
      if (s.type == "acl") s.common = c_limit | c_cursors | c_ids;  // GET /v1/acl has no org_name (list_org has)
      if (s.type == "env_var") s.common = c_limit | c_ids;
      if (s.type == "environment") s.common = c_ids | c_org_name;
    }
    return true;
  }();
  (void)adjusted;
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

std::string_view store_of(const resource_spec& spec) { return spec.store_type.empty() ? spec.type : spec.store_type; }

/// A prompt IS a function whose function_data.type is "prompt" (one id space, one slug space per project).
bool is_prompt(const json::object& o) {
  auto it = o.find("function_data");
  if (it == o.end() || !it->value().is_object()) return false;
  auto t = it->value().get_object().find("type");
  return t != it->value().get_object().end() && t->value().is_string() && t->value().get_string() == "prompt";
}

/// The fields of the Prompt schema: what /v1/prompt shows of a prompt-type function.
constexpr std::array<std::string_view, 13> k_prompt_fields = {
    "id", "_xact_id", "project_id", "log_id", "org_id", "name", "slug", "description", "created", "prompt_data", "tags",
    "metadata", "function_type"};

/// Version records of functions (and so prompts): <org>\0function_version\0<id>\0<19-digit xact> -> the object.
std::string version_prefix(std::string_view org, std::string_view id) {
  std::string k(org);
  k.push_back('\0');
  k.append("function_version");
  k.push_back('\0');
  k.append(id);
  k.push_back('\0');
  return k;
}

/// Environment assignments: <org>\0environment_object\0<object type>\0<object id>\0<env slug> -> {object_version}.
std::string env_object_prefix(std::string_view org, std::string_view object_type, std::string_view object_id) {
  std::string k(org);
  k.push_back('\0');
  k.append("environment_object");
  k.push_back('\0');
  // prompts are functions: one assignment space for both names
  k.append(object_type == "prompt" ? std::string_view("function") : object_type);
  k.push_back('\0');
  k.append(object_id);
  k.push_back('\0');
  return k;
}

/// A `version` parameter as a 19-digit transaction id: the id itself, or the SDK's 16-hex "pretty" form
/// (prettifyXact multiplies by a coprime modulo 2^64; the inverse multiplication gives the id back).
std::string parse_version(std::string_view v) {
  auto all = [&](auto pred) { return !v.empty() && std::all_of(v.begin(), v.end(), pred); };
  if (all([](char c) { return c >= '0' && c <= '9'; }) && v.size() <= 19) {
    std::string out(19 - v.size(), '0');
    return out.append(v);
  }
  if (v.size() == 16 && all([](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; })) {
    const std::uint64_t encoded = std::stoull(std::string(v), nullptr, 16);
    const std::uint64_t value = encoded * 1522336535492693385ull;  // COPRIME_INVERSE, wrapping = mod 2^64
    auto text = std::to_string(value);
    if (text.size() <= 19) return std::string(19 - text.size(), '0') + text;
  }
  throw api_error(400, "version must be a transaction id or a 16-hex version identifier: " + std::string(v));
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

std::string to_text(const json::object& o) { return to_json_text(o); }

json::object parse_body_object(std::string_view body) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return {};
  boost::system::error_code ec;
  json::value v = ferry::engine::parse_json(body, ec);
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

/// Deep merge for PATCH: objects merge recursively, nulls cannot erase (at any depth).
void deep_merge(json::object& into, const json::object& patch) {
  for (const auto& kv : patch) {
    if (kv.value().is_null()) continue;
    auto it = into.find(kv.key());
    if (kv.value().is_object()) {
      if (it == into.end() || !it->value().is_object()) it = into.insert_or_assign(kv.key(), json::object()).first;
      deep_merge(it->value().as_object(), kv.value().as_object());
    } else {
      into[kv.key()] = kv.value();
    }
  }
}

using query_params = std::multimap<std::string, std::string, std::less<>>;

query_params parse_query(std::string_view query) {
  query_params out;
  if (query.empty()) return out;
  auto r = boost::urls::parse_query(query);
  if (!r) throw api_error(400, "malformed query string");
  for (auto p : *r) {
    // Form encoding: clients (the JS SDK's URLSearchParams, Python requests) send a space as '+'.
    const boost::urls::encoding_opts form(true);
    std::string key = p.key.decode(form);
    std::string value = p.has_value ? p.value.decode(form) : std::string();
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
    auto id = kv().get(cf_names, name_index_key(org.org_id, store_of(spec), uniq));
    if (!id) return std::nullopt;
    return st.get_stored(org, store_of(spec), *id);
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
    check_references(spec, body);
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

  // ---- references: an id that does not exist in the org is a 400 naming the field ----

  /// Does `id` name a live object of the kind an ACL / view / env_var `object_type` designates?
  bool names_object(std::string_view object_type, std::string_view id) const {
    if (object_type == "organization" || object_type == "org_member" || object_type == "org_project")
      return id == org.org_id;
    if (object_type == "project_log") object_type = "project";
    if (object_type == "prompt") object_type = "function";
    static const std::set<std::string_view> served = {"project", "experiment", "dataset", "function", "group", "role"};
    return served.contains(object_type) && st.object_exists(object_type, id, org.org_id);
  }

  static api_error missing_ref(std::string_view field, std::string_view what, std::string_view id) {
    return api_error(400, std::string(field) + ": " + std::string(what) + " " + std::string(id) +
                              " does not exist in this organization");
  }

  void require_ref(std::string_view field, std::string_view type, const json::value& v) const {
    if (v.is_null()) return;
    if (!v.is_string()) throw api_error(400, "field " + std::string(field) + " must be a string id");
    if (!st.object_exists(type, v.get_string(), org.org_id)) throw missing_ref(field, type, v.get_string());
  }

  void require_ref_list(const json::object& body, std::string_view field, std::string_view type) const {
    auto it = body.find(field);
    if (it == body.end() || it->value().is_null()) return;
    if (!it->value().is_array()) throw api_error(400, "field " + std::string(field) + " must be an array");
    for (const auto& v : it->value().get_array()) require_ref(field, type, v);
  }

  void require_object_ref(const json::object& body, std::string_view type_field, std::string_view id_field) const {
    auto id = field_string(body, id_field);
    auto type = field_string(body, type_field);
    if (id.empty() && !body.contains(id_field)) return;
    if (!names_object(type, id)) throw missing_ref(id_field, type.empty() ? "object" : type, id);
  }

  /// Function references ({"type":"function","id":X}) anywhere inside `v`, plus prompt_data's own ids.
  void check_function_refs(const json::value& v, const std::string& where) const {
    if (v.is_array()) {
      const auto& a = v.get_array();
      for (std::size_t i = 0; i < a.size(); ++i) check_function_refs(a[i], where + "[" + std::to_string(i) + "]");
      return;
    }
    if (!v.is_object()) return;
    const auto& o = v.get_object();
    const auto type = field_string(o, "type");
    if (type == "function" && o.contains("id")) require_ref(where + ".id", "function", o.at("id"));
    for (const auto& kv : o) check_function_refs(kv.value(), where + "." + std::string(kv.key()));
  }

  void check_prompt_data(const json::object& body) const {
    auto it = body.find("prompt_data");
    if (it == body.end() || !it->value().is_object()) return;
    const auto& pd = it->value().get_object();
    check_function_refs(it->value(), "prompt_data");
    if (auto o = pd.find("origin"); o != pd.end() && o->value().is_object()) {
      const auto& origin = o->value().get_object();
      if (auto p = origin.find("prompt_id"); p != origin.end()) require_ref("prompt_data.origin.prompt_id", "function", p->value());
      if (auto p = origin.find("project_id"); p != origin.end()) require_ref("prompt_data.origin.project_id", "project", p->value());
    }
    if (auto m = pd.find("mcp"); m != pd.end() && m->value().is_object())
      for (const auto& kv : m->value().get_object())
        if (kv.value().is_object() && field_string(kv.value().get_object(), "type") == "id")
          if (auto id = kv.value().get_object().find("id"); id != kv.value().get_object().end())
            require_ref("prompt_data.mcp." + std::string(kv.key()) + ".id", "mcp_server", id->value());
  }

  void check_function_origin(const json::object& body) const {
    auto it = body.find("origin");
    if (it == body.end() || !it->value().is_object()) return;
    const auto& origin = it->value().get_object();
    std::string type = field_string(origin, "object_type");
    const auto id = field_string(origin, "object_id");
    if (type == "project_logs") type = "project";
    if (type == "prompt") type = "function";
    if (type != "project" && type != "experiment" && type != "dataset" && type != "function")
      throw missing_ref("origin.object_id", type.empty() ? "object" : type, id);
    if (!st.object_exists(type, id, org.org_id)) throw missing_ref("origin.object_id", type, id);
  }

  /// PATCH /v1/organization/members: invited user ids and the groups they join must exist.
  void check_invite_references(const json::object& inv) const {
    for (auto [f, type] : {std::pair{"ids", "user"}, {"group_ids", "group"}}) {
      auto it = inv.find(f);
      if (it == inv.end() || !it->value().is_array()) continue;
      for (const auto& v : it->value().get_array()) require_ref("invite_users." + std::string(f), type, v);
    }
  }

  /// The ids a create or PATCH body names must exist in the caller's org (the service's integrity checks).
  void check_references(const resource_spec& spec, const json::object& body) const {
    const auto t = spec.type;
    if (t == "project") {
      auto it = body.find("settings");
      if (it == body.end() || !it->value().is_object()) return;
      if (auto b = it->value().get_object().find("baseline_experiment_id"); b != it->value().get_object().end())
        require_ref("settings.baseline_experiment_id", "experiment", b->value());
      check_function_refs(it->value(), "settings");  // default_preprocessor
    } else if (t == "role") {
      require_ref_list(body, "member_roles", "role");
      require_ref_list(body, "add_member_roles", "role");
    } else if (t == "group") {
      require_ref_list(body, "member_groups", "group");
      require_ref_list(body, "add_member_groups", "group");
      require_ref_list(body, "member_users", "user");
      require_ref_list(body, "add_member_users", "user");
    } else if (t == "acl" || t == "view" || t == "env_var") {
      require_object_ref(body, "object_type", "object_id");
      for (auto [f, type] : {std::pair{"user_id", "user"}, {"group_id", "group"}, {"role_id", "role"}})
        if (auto it = body.find(f); it != body.end()) require_ref(f, type, it->value());
    } else if (t == "experiment") {
      for (auto [f, type] : {std::pair{"base_exp_id", "experiment"}, {"dataset_id", "dataset"}, {"parameters_id", "function"}})
        if (auto it = body.find(f); it != body.end()) require_ref(f, type, it->value());
    } else if (t == "prompt" || t == "function") {
      check_prompt_data(body);
      if (auto it = body.find("function_data"); it != body.end()) check_function_refs(it->value(), "function_data");
      check_function_origin(body);
    } else if (t == "project_score" || t == "project_automation") {
      if (auto it = body.find("config"); it != body.end()) check_function_refs(it->value(), "config");
    } else if (t == "service_token") {
      if (auto it = body.find("service_account_id"); it != body.end()) require_ref("service_account_id", "user", it->value());
    }
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

  /// Transaction ids carry the service's top 16 bits (0x0DE1), like real ones: the SDK's loadPrettyXact ORs them
  /// back in when it decodes a 16-hex version id (`braintrust pull --version`), so ids without them would not
  /// survive the round trip. 19 digits, increasing with the sequence.
  static std::string xact_id(std::uint64_t seq) { return std::to_string((0x0DE1ull << 48) + seq); }

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

  /// Every create/replace/patch of a function (prompts included) is kept as a version, keyed by its _xact_id.
  void record_version(stores::write_batch& b, const resource_spec& spec, const json::object& o) {
    if (store_of(spec) != "function") return;
    b.put(cf_objects, version_prefix(org.org_id, field_string(o, "id")) + field_string(o, "_xact_id"), to_text(o));
  }

  /// Stores a new object with its id and name index entries (atomically, with the sequence counter).
  void insert(const resource_spec& spec, const json::object& o, std::uint64_t seq) {
    const auto id = field_string(o, "id");
    const auto key = objects_prefix(org.org_id, store_of(spec)) + be64(seq);
    stores::write_batch b;
    b.put(cf_objects, key, to_text(o));
    b.put(cf_ids, id, key + std::string("\0L", 2));
    if (!spec.unique.empty()) b.put(cf_names, name_index_key(org.org_id, store_of(spec), unique_key(spec, o)), id);
    record_version(b, spec, o);
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
        auto holder = kv().get(cf_names, name_index_key(org.org_id, store_of(spec), new_k));
        if (holder && *holder != id)
          throw api_error(409, std::string(spec.type) + " with the same " + describe_unique(spec) + " already exists");
        b.del(cf_names, name_index_key(org.org_id, store_of(spec), old_k));
        b.put(cf_names, name_index_key(org.org_id, store_of(spec), new_k), id);
      }
    }
    b.put(cf_objects, loc->key, to_text(after));
    record_version(b, spec, after);
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
    if (!spec.unique.empty()) b.del(cf_names, name_index_key(org.org_id, store_of(spec), unique_key(spec, o)));
    kv().write(b, false);
  }

  /// DELETE: the object and everything that lives under it (a project's datasets, experiments, functions, ...; a
  /// dataset's snapshots; views, env vars and ACLs on a deleted object), so none of it stays listed or readable.
  void remove_cascade(const resource_spec& spec, const json::object& o) {
    remove(spec, o);
    const auto id = field_string(o, "id");
    std::vector<std::pair<std::string_view, std::string_view>> children;  // (type, field naming the parent)
    if (spec.type == "project")
      for (std::string_view t : {"dataset", "experiment", "function", "project_score", "project_tag", "span_iframe",
                                 "mcp_server", "project_automation"})
        children.emplace_back(t, "project_id");
    if (spec.type == "dataset") children.emplace_back("dataset_snapshot", "dataset_id");
    for (std::string_view t : {"view", "env_var", "acl"}) children.emplace_back(t, "object_id");
    for (auto [type, field] : children) {
      const auto* child = find_spec(type);
      for (const auto& c : st.find(org, store_of(*child), field, id))
        if (st.locate(field_string(c, "id")).value_or(rest_store::located{}).live) remove_cascade(*child, c);
    }
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
    if (spec.type == "prompt") fields["function_data"] = json::object{{"type", "prompt"}};  // a prompt IS a function

    std::string secret;  // api_key / service_token: returned once in `key`, never stored
    if (spec.type == "api_key" || spec.type == "service_token") secret = new_secret(spec, fields);
    auto with_key = [&](json::object o) {
      if (!secret.empty()) o["key"] = secret;
      return o;
    };
    if (auto existing = existing_for(spec, fields, replace)) {
      if (store_of(spec) == "function" && is_prompt(*existing) != is_prompt(fields))
        throw api_error(409, "slug " + field_string(fields, "slug") + " is already used by a " +
                                 (is_prompt(*existing) ? "prompt" : "function") + " in project " +
                                 field_string(fields, "project_id") + " (prompts and functions share slugs)");
      if (!replace) return *existing;
      return with_key(replace_existing(spec, *existing, fields));
    }
    const auto id = id_for(store_of(spec));
    const auto seq = next_seq();
    add_read_shape(spec, fields, seq, id);
    insert(spec, fields, seq);
    return with_key(std::move(fields));
  }

  /// The object a create collides with: same uniqueness key; service tokens (no de-duplication on POST) are
  /// replaced by name on PUT.
  std::optional<json::object> existing_for(const resource_spec& spec, const json::object& fields, bool replace) {
    if (!spec.unique.empty()) return by_unique(spec, unique_key(spec, fields));
    if (spec.type == "service_token" && replace) {
      auto same = st.find(org, spec.type, "name", field_string(fields, "name"));
      if (!same.empty()) return same.front();
    }
    return std::nullopt;
  }

  /// PUT onto an existing object: keep identity fields, replace the rest with what was provided.
  json::object replace_existing(const resource_spec& spec, const json::object& existing, const json::object& fields) {
    json::object after;
    for (std::string_view keep : {"id", "created", "org_id", "user_id", "log_id", "project_id", "_object_org_id"}) {
      if (auto it = existing.find(keep); it != existing.end()) after[keep] = it->value();
    }
    for (auto& kv : fields) after[kv.key()] = kv.value();
    if (spec.shape & s_deleted_at) after["deleted_at"] = nullptr;
    if (spec.shape & s_position) after["position"] = existing.contains("position") ? existing.at("position") : nullptr;
    if (spec.shape & s_url_slug) after["url_slug"] = slugify(field_string(after, "name"));
    if (spec.shape & s_experiment && !after.contains("public")) after["public"] = false;
    if (spec.shape & s_xact) {
      after["_xact_id"] = xact_id(next_seq());
      if (!after.contains("metadata")) after["metadata"] = nullptr;
    }
    if (spec.shape & s_updated_at) after["updated_at"] = st.ids_.timestamp(next_seq());
    refresh_derived(spec, after);
    update(spec, existing, after);
    return after;
  }

  /// API keys and service tokens: a new raw secret (returned once, never stored); `preview_name` (its prefix and
  /// last four characters) is what stays.
  std::string new_secret(const resource_spec& spec, json::object& fields) {
    std::string secret = spec.type == "api_key" ? "sk-" : "bt-st-";
    for (int i = 0; i < 2; ++i) {
      auto u = st.ids_.uuid(std::string(org.org_id) + "/" + std::string(spec.type) + "/key" + std::to_string(i),
                            st.seq_ + 1);
      std::erase(u, '-');
      secret += u;
    }
    fields["preview_name"] = secret.substr(0, secret.rfind('-') + 1) + "****" + secret.substr(secret.size() - 4);
    return secret;
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
    check_references(spec, body);
    const json::object before = existing;
    json::object& o = existing;
    for (auto f : spec.patch_fields) {
      auto it = body.find(f);
      if (it == body.end()) continue;
      merge_field(o, f == spec.hidden_field ? std::string(hidden_prefix) + std::string(f) : std::string(f), it->value());
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

  /// The spec's PATCH rule: "Any object-type fields will be deep-merged with existing content. Currently we do not
  /// support removing fields or setting them to null." So null never deletes (at any depth), objects merge
  /// recursively, anything else (strings, numbers, arrays) replaces.
  static void merge_field(json::object& o, const std::string& key, const json::value& v) {
    if (v.is_null()) return;
    auto cur = o.find(key);
    if (cur != o.end() && cur->value().is_object() && v.is_object()) {
      deep_merge(cur->value().as_object(), v.get_object());
      return;
    }
    if (v.is_object()) {
      json::object fresh;
      deep_merge(fresh, v.get_object());  // drops nested nulls too
      o[key] = std::move(fresh);
      return;
    }
    o[key] = v;
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

  /// Every list query parameter is one the spec defines for this endpoint; anything else is a 400 (a filter the
  /// service would not apply must not look applied).
  static void check_list_params(const resource_spec& spec, const query_params& q, bool list_org = false) {
    for (const auto& [k, v] : q) {
      bool known = contains(spec.list_required, k) || contains(spec.extra_params, k) ||
                   std::any_of(spec.filters.begin(), spec.filters.end(), [&](const filter& f) { return f.param == k; });
      const unsigned common = list_org ? c_all : spec.common;
      if (k == "limit") known = known || (common & c_limit);
      if (k == "starting_after" || k == "ending_before") known = known || (common & c_cursors);
      if (k == "ids") known = known || (common & c_ids);
      if (k == "org_name") known = known || (common & c_org_name);
      if (!known) throw api_error(400, "unknown query parameter " + k + " for a " + std::string(spec.type) + " list");
    }
  }

  /// GET by id: only the parameters the spec lists for it.
  static void check_get_params(const resource_spec& spec, const query_params& q) {
    for (const auto& [k, v] : q)
      if (!contains(spec.get_params, k))
        throw api_error(400, "unknown query parameter " + k + " for a " + std::string(spec.type) + " read");
  }

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
    if (auto pn = param(q, "project_name"); pn && contains(spec.extra_params, "project_name")) {
      project_ids.emplace();
      for (const auto& p : st.find(org, "project", "name", *pn)) project_ids->insert(field_string(p, "id"));
    }
    auto matches = [&](const json::object& o) {
      if (spec.type == "prompt" && !is_prompt(o)) return false;
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

    const auto prefix = objects_prefix(org.org_id, store_of(spec));
    const auto end = prefix_end(prefix);
    auto visit = [&](std::string_view, std::string_view value) {
      boost::system::error_code ec;
      auto v = ferry::engine::parse_json(value, ec);
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
    if (store_of(spec) == "function") out.objects = pinned(spec, std::move(out.objects), q);
    return out;
  }

  // ---- function / prompt versions ----

  /// `version=` / `environment=` on a function or prompt list: each object as it was at that version.
  std::vector<json::object> pinned(const resource_spec& spec, std::vector<json::object> objs, const query_params& q) {
    const auto version = param(q, "version");
    const auto env = param(q, "environment");
    if (!version && !env) return objs;
    if (env && objs.size() > 1)
      throw api_error(400, "environment needs the request to match a single " + std::string(spec.type) + " (" +
                               std::to_string(objs.size()) + " match); narrow it with slug, project_id or limit=1");
    std::vector<json::object> out;
    for (const auto& o : objs)
      if (auto v = at_version(o, q)) out.push_back(public_view(std::move(*v)));
    return out;
  }

  /// The object as of `version` (its newest version at or before that transaction) or as assigned to
  /// `environment`; the object itself without either; nullopt when it did not exist yet at `version`.
  std::optional<json::object> at_version(const json::object& o, const query_params& q) {
    const auto version = param(q, "version");
    const auto env = param(q, "environment");
    if (version && env) throw api_error(400, "version and environment cannot be used together");
    if (!version && !env) return o;
    const auto id = field_string(o, "id");
    std::string xact;
    if (version) {
      xact = parse_version(*version);
    } else {
      auto a = kv().get(cf_objects, env_object_prefix(org.org_id, "function", id) + *env);
      if (!a) throw api_error(404, "no version of " + id + " is assigned to environment " + *env);
      xact = parse_version(field_string(ferry::engine::parse_json(*a).as_object(), "object_version"));
    }
    std::optional<json::object> found;
    const auto vp = version_prefix(org.org_id, id);
    kv().scan_reverse(cf_objects, vp + xact + std::string(1, '\0'), vp, [&](std::string_view, std::string_view v) {
      found = ferry::engine::parse_json(v).as_object();
      return false;
    });
    if (found && env && field_string(*found, "_xact_id") != xact) found.reset();  // an assignment names one version
    if (!found && env) throw api_error(404, "version " + xact + " of " + id + " (environment " + *env + ") not found");
    return found;
  }

  /// Assigns `version` of an object to the environment `slug` (which must exist); for functions and prompts the
  /// version must be one of the object's recorded versions.
  void assign_environment(std::string_view object_type, std::string_view object_id, std::string_view slug,
                          std::string_view version) {
    json::object probe;
    probe["slug"] = slug;
    if (!by_unique(*find_spec("environment"), unique_key(*find_spec("environment"), probe)))
      throw missing_ref("environment", "environment", slug);
    const auto xact = parse_version(version);
    if ((object_type == "prompt" || object_type == "function") &&
        !kv().get(cf_objects, version_prefix(org.org_id, object_id) + xact))
      throw api_error(400, "object_version: " + std::string(object_type) + " " + std::string(object_id) +
                               " has no version " + std::string(version));
    json::object stored;
    stored["object_version"] = xact;
    kv().put(cf_objects, env_object_prefix(org.org_id, object_type, object_id) + std::string(slug), to_text(stored));
  }

  /// Every recorded version of a function, oldest first.
  std::vector<json::object> versions(std::string_view id) {
    std::vector<json::object> out;
    const auto vp = version_prefix(org.org_id, id);
    kv().scan(cf_objects, vp, prefix_end(vp), [&](std::string_view, std::string_view v) {
      out.push_back(public_view(ferry::engine::parse_json(v).as_object()));
      return true;
    });
    return out;
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
      check_invite_references(inv);
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

  /// DELETE /v1/service_token: the body names the token by id (DeleteServiceToken).
  json::object delete_by_body_id(const resource_spec& spec, const json::object& body) {
    check_org_name(body);
    require_string(body, "id", true);
    const auto id = field_string(body, "id");
    auto existing = st.get(org, spec.type, id);
    if (!existing) throw api_error(404, std::string(spec.type) + " " + id + " not found");
    remove(spec, *existing);
    return *existing;
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
  auto parsed = ferry::engine::parse_json(*v, ec);
  if (ec || !parsed.is_object()) return std::nullopt;
  return std::move(parsed.as_object());
}

bool rest_store::object_exists(std::string_view type, std::string_view id, std::string_view org_id) const {
  if (id.empty()) return false;
  if (type == "prompt") return get(org_identity{std::string(org_id), {}, {}}, type, id).has_value();
  auto loc = locate(id);
  return loc && loc->live && loc->key.starts_with(objects_prefix(org_id, type));
}

std::optional<json::object> rest_store::get_stored(const org_identity& org, std::string_view store_type,
                                                   std::string_view id) const {
  auto loc = locate(id);
  if (!loc || !loc->live || !loc->key.starts_with(objects_prefix(org.org_id, store_type))) return std::nullopt;
  return load(loc->key);
}

std::optional<json::object> rest_store::get(const org_identity& org, std::string_view type,
                                            std::string_view id) const {
  // A prompt is a function whose function_data.type is "prompt": /v1/prompt sees only those.
  if (type == "prompt") {
    auto o = get_stored(org, "function", id);
    if (o && is_prompt(*o)) return o;
    return std::nullopt;
  }
  return get_stored(org, type, id);
}

namespace {

/// A `{"type":"slug","project_id","slug"}` function reference (how `braintrust push` names a prompt's tools)
/// at a field path of an /insert-functions entry.
struct slug_ref {
  std::string where;
  std::string key;  // project_id \0 slug
};

std::string slug_key(std::string_view project_id, std::string_view slug) {
  return std::string(project_id) + '\0' + std::string(slug);
}

void find_slug_refs(const json::value& v, const std::string& where, std::vector<slug_ref>& out) {
  if (v.is_array()) {
    const auto& a = v.get_array();
    for (std::size_t i = 0; i < a.size(); ++i) find_slug_refs(a[i], where + "[" + std::to_string(i) + "]", out);
    return;
  }
  if (!v.is_object()) return;
  const auto& o = v.get_object();
  if (field_string(o, "type") == "slug") {
    for (std::string_view f : {"project_id", "slug"})
      if (!o.contains(f) || !o.at(f).is_string())
        throw api_error(400, where + "." + std::string(f) + ": a slug reference needs project_id and slug strings");
    out.push_back({where, slug_key(field_string(o, "project_id"), field_string(o, "slug"))});
    return;
  }
  for (const auto& kv : o) find_slug_refs(kv.value(), where + "." + std::string(kv.key()), out);
}

/// `v` with every slug reference replaced by `{"type":"function","id"}` (the form the service stores).
json::value resolve_slug_refs(const json::value& v, const std::function<std::string(const std::string& key)>& id_of) {
  if (v.is_array()) {
    json::array a;
    for (const auto& x : v.get_array()) a.push_back(resolve_slug_refs(x, id_of));
    return a;
  }
  if (!v.is_object()) return v;
  const auto& o = v.get_object();
  if (field_string(o, "type") == "slug")
    return json::object{{"type", "function"}, {"id", id_of(slug_key(field_string(o, "project_id"), field_string(o, "slug")))}};
  json::object out;
  for (const auto& kv : o) out[kv.key()] = resolve_slug_refs(kv.value(), id_of);
  return out;
}

/// The order to write /insert-functions entries in: each after the entries its slug references name
/// (`deps[i]`: indexes in the request). A cycle is 400 naming the first entry on it.
std::vector<std::size_t> write_order(const std::vector<std::vector<std::size_t>>& deps) {
  std::vector<std::size_t> order;
  std::vector<bool> done(deps.size(), false);
  while (order.size() < deps.size()) {
    const std::size_t before = order.size();
    for (std::size_t i = 0; i < deps.size(); ++i) {
      if (done[i]) continue;
      if (std::all_of(deps[i].begin(), deps[i].end(), [&](std::size_t d) { return done[d]; })) {
        done[i] = true;
        order.push_back(i);
      }
    }
    if (order.size() == before) {
      const auto stuck = static_cast<std::size_t>(std::find(done.begin(), done.end(), false) - done.begin());
      throw api_error(400, "functions[" + std::to_string(stuck) + "]: its slug references form a cycle");
    }
  }
  return order;
}

/// Where each slug reference of an /insert-functions request points: an entry of the request (its index,
/// a dependency of the referring entry) or a stored function (its id); 400 naming the field otherwise.
struct slug_plan {
  std::map<std::string, std::size_t> in_request;    // slug key -> first entry with it
  std::map<std::string, std::string> existing_ids;  // slug key -> id of a stored function
  std::vector<std::vector<std::size_t>> deps;       // per entry: the entries it references
};

slug_plan plan_slug_refs(rest_engine& e, const resource_spec& spec, const json::array& fns) {
  slug_plan p;
  p.deps.resize(fns.size());
  for (std::size_t i = 0; i < fns.size(); ++i)
    p.in_request.try_emplace(slug_key(field_string(fns[i].get_object(), "project_id"), field_string(fns[i].get_object(), "slug")), i);
  for (std::size_t i = 0; i < fns.size(); ++i) {
    std::vector<slug_ref> refs;
    for (std::string_view f : {"prompt_data", "function_data"})
      if (const auto* v = fns[i].get_object().if_contains(f))
        find_slug_refs(*v, "functions[" + std::to_string(i) + "]." + std::string(f), refs);
    for (const auto& ref : refs) {
      if (auto j = p.in_request.find(ref.key); j != p.in_request.end()) {
        p.deps[i].push_back(j->second);
        continue;
      }
      const auto sep = ref.key.find('\0');
      json::object probe{{"project_id", ref.key.substr(0, sep)}, {"slug", ref.key.substr(sep + 1)}};
      auto target = e.by_unique(spec, unique_key(spec, probe));
      if (!target)
        throw api_error(400, ref.where + ": function with slug " + ref.key.substr(sep + 1) + " does not exist in project " +
                                 ref.key.substr(0, sep) + " of this organization");
      p.existing_ids[ref.key] = field_string(*target, "id");
    }
  }
  return p;
}

}  // namespace

/// POST /insert-functions (`braintrust push`, `project.publish()`): {"functions": [FunctionEvent]}, each created
/// or, by `if_exists` (default "error"), refused (409), ignored or replaced; `metadata` is kept and
/// `environments: [{slug}]` assigns the new version. Slug references in `prompt_data`/`function_data`
/// (`{"type":"slug","project_id","slug"}`) are stored resolved to `{"type":"function","id"}`: the function may
/// exist already or come anywhere in the same request (written first); otherwise 400 naming the field. Every
/// entry is checked before any is written.
json::object rest_store::insert_functions(const org_identity& org, std::string_view body_text) {
  std::lock_guard lock(mutex_);
  rest_engine e{*this, org};
  const auto body = parse_body_object(body_text);
  auto it = body.find("functions");
  if (it == body.end() || !it->value().is_array()) throw api_error(400, "missing required field: functions (an array)");
  const auto& spec = *find_spec("function");
  struct entry {
    const json::object* fn;
    std::string if_exists;
    std::optional<json::object> existing;
  };
  std::vector<entry> plan;
  const auto& fns = it->value().get_array();
  for (std::size_t i = 0; i < fns.size(); ++i) {
    const auto where = "functions[" + std::to_string(i) + "]";
    if (!fns[i].is_object()) throw api_error(400, where + " must be an object");
    entry en{&fns[i].get_object(), field_string(fns[i].get_object(), "if_exists"), std::nullopt};
    if (en.if_exists.empty()) en.if_exists = "error";
    if (en.if_exists != "error" && en.if_exists != "ignore" && en.if_exists != "replace")
      throw api_error(400, where + ".if_exists must be error, ignore or replace");
    json::object fields;
    try {
      fields = e.validated_create(spec, *en.fn);
    } catch (const api_error& err) {
      throw api_error(err.status(), where + ": " + err.what());
    }
    en.existing = e.by_unique(spec, unique_key(spec, fields));
    if (en.existing && (en.if_exists == "error" || is_prompt(*en.existing) != is_prompt(fields)))
      throw api_error(409, where + ": slug " + field_string(fields, "slug") + " already exists in project " +
                               field_string(fields, "project_id"));
    if (auto envs = en.fn->find("environments"); envs != en.fn->end() && envs->value().is_array())
      for (const auto& env : envs->value().get_array()) {
        json::object probe;
        probe["slug"] = env.is_object() ? field_string(env.get_object(), "slug") : std::string();
        if (!e.by_unique(*find_spec("environment"), unique_key(*find_spec("environment"), probe)))
          throw rest_engine::missing_ref(where + ".environments", "environment", field_string(probe, "slug"));
      }
    plan.push_back(std::move(en));
  }
  const auto refs = plan_slug_refs(e, spec, fns);
  const auto order = write_order(refs.deps);
  std::vector<json::object> written(plan.size());
  const auto id_of = [&](const std::string& key) {
    auto j = refs.in_request.find(key);
    return j != refs.in_request.end() ? field_string(written[j->second], "id") : refs.existing_ids.at(key);
  };
  std::size_t ignored = 0;
  for (const auto i : order) {
    const auto& en = plan[i];
    json::object& o = written[i];
    if (en.existing && en.if_exists == "ignore") {
      o = *en.existing;
      ++ignored;
      continue;
    }
    json::object fn = *en.fn;
    for (std::string_view f : {"prompt_data", "function_data"})
      if (auto v = fn.find(f); v != fn.end()) v->value() = resolve_slug_refs(v->value(), id_of);
    o = e.create(spec, fn, true);
    if (auto m = fn.find("metadata"); m != fn.end() && !m->value().is_null()) {
      const json::object before = o;
      o["metadata"] = m->value();
      e.update(spec, before, o);
    }
    if (auto envs = fn.find("environments"); envs != fn.end() && envs->value().is_array())
      for (const auto& env : envs->value().get_array())
        e.assign_environment("function", field_string(o, "id"), field_string(env.get_object(), "slug"),
                             field_string(o, "_xact_id"));
  }
  json::array out;
  for (auto& o : written) {
    json::object brief;
    for (std::string_view f : {"id", "project_id", "name", "slug", "_xact_id"}) brief[f] = o[f];
    out.push_back(std::move(brief));
  }
  return json::object{{"functions", std::move(out)}, {"ignored_count", ignored}};
}

std::vector<json::object> rest_store::function_versions(const org_identity& org, std::string_view id) {
  std::lock_guard lock(mutex_);
  rest_engine e{*this, org};
  return e.versions(id);
}

std::optional<std::vector<json::object>> rest_store::btql_function_rows(std::string_view org_id, std::string_view project_id,
                                                                       bool prompts_only, bool history) {
  const org_identity org{std::string(org_id), {}, {}};
  if (!object_exists("project", project_id, org_id)) return std::nullopt;
  auto current = find(org, "function", "project_id", project_id);  // newest first
  std::vector<json::object> out;
  for (auto it = current.rbegin(); it != current.rend(); ++it) {
    if (prompts_only && !is_prompt(*it)) continue;
    if (!history) {
      out.push_back(std::move(*it));
      continue;
    }
    for (auto& v : function_versions(org, field_string(*it, "id"))) {
      v["audit_data"] = json::object{{"action", "upsert"}};
      out.push_back(std::move(v));
    }
  }
  // 19-digit transaction ids: string order is commit order.
  if (history)
    std::stable_sort(out.begin(), out.end(), [](const json::object& a, const json::object& b) {
      return field_string(a, "_xact_id") < field_string(b, "_xact_id");
    });
  return out;
}

std::vector<json::object> rest_store::find(const org_identity& org, std::string_view type, std::string_view field,
                                           std::string_view value) const {
  std::vector<json::object> out;
  const auto prefix = objects_prefix(org.org_id, type);
  store_.scan_reverse(cf_objects, prefix_end(prefix), prefix, [&](std::string_view, std::string_view v) {
    boost::system::error_code ec;
    auto parsed = ferry::engine::parse_json(v, ec);
    if (!ec && parsed.is_object() && field_string(parsed.as_object(), field) == value)
      out.push_back(public_view(std::move(parsed.as_object())));  // secret values never leave
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
  // /v1/<type>[/<id>], and the spec's two unversioned paths: /environment[/<id>], /environment-object/...
  std::string_view type;
  std::optional<std::string_view> third;
  const bool env_object = !segs.empty() && segs[0] == "environment-object";
  if (!segs.empty() && segs[0] == "environment" && segs.size() <= 2) {
    type = "environment";
    if (segs.size() == 2) third = segs[1];
  } else if (segs.size() >= 2 && segs.size() <= 3 && segs[0] == "v1" && segs[1] != "environment" && find_spec(segs[1])) {
    type = segs[1];
    if (segs.size() == 3) third = segs[2];
  } else if (!env_object) {
    return std::nullopt;
  }
  try {
    if (env_object) return environment_object(method, segs, query, body, org);
    return dispatch(method, path, type, third, query, body, org);
  } catch (const api_error& e) {
    return rest_reply{e.status(), json_error_body(e.what())};
  } catch (const stores::store_error& e) {
    return rest_reply{500, json_error_body(std::string("storage error: ") + e.what())};
  }
}

namespace {

/// What a read shows of an object: no server-side fields; a prompt as the Prompt schema has it.
json::object render(const resource_spec& spec, json::object o) {
  o = public_view(std::move(o));
  if (spec.type != "prompt") return o;
  json::object out;
  for (auto f : k_prompt_fields)
    if (auto it = o.find(f); it != o.end()) out[f] = it->value();
  return out;
}

std::string render_list(const resource_spec& spec, std::vector<json::object> objs, bool bare) {
  std::string body = bare ? "[" : "{\"objects\":[";
  for (std::size_t i = 0; i < objs.size(); ++i) {
    if (i) body += ',';
    body += to_json_text(render(spec, std::move(objs[i])));
  }
  body += bare ? "]" : "]}";
  return body;
}

}  // namespace

/// /environment-object/{object_type}/{object_id}[/{environment_slug}]: which version of an object an environment
/// uses. GET one (404 when unassigned) or all of an object; PUT/POST {object_version} assigns; DELETE unassigns.
rest_reply rest_store::environment_object(std::string_view method, const std::vector<std::string_view>& segs,
                                          std::string_view query, std::string_view body_text,
                                          const org_identity& org) {
  if (segs.size() < 3 || segs.size() > 4) throw api_error(404, "no route for environment-object with that path");
  const std::string object_type(segs[1]), object_id(segs[2]);
  const bool mutating = method != "GET";
  std::unique_lock lock(mutex_, std::defer_lock);
  if (mutating) lock.lock();
  rest_engine e{*this, org};
  for (const auto& [k, v] : parse_query(query)) {
    if (k != "org_name") throw api_error(400, "unknown query parameter " + k + " for environment-object");
    if (v != org.org_name) throw api_error(403, "org_name " + v + " is not the organization of this API key");
  }
  static const std::set<std::string_view> types = {"prompt", "function", "dataset", "experiment", "project"};
  if (!types.contains(object_type)) throw api_error(400, "object_type " + object_type + " cannot have environments");
  if (!e.names_object(object_type, object_id)) throw rest_engine::missing_ref("object_id", object_type, object_id);
  const auto prefix = env_object_prefix(org.org_id, object_type, object_id);
  auto shape = [&](std::string_view slug, std::string_view stored) {
    json::object o = ferry::engine::parse_json(stored).as_object();
    o["object_type"] = object_type;
    o["object_id"] = object_id;
    o["environment_slug"] = slug;
    return o;
  };
  if (segs.size() == 3) {
    if (method != "GET") throw api_error(405, "method " + std::string(method) + " is not allowed here");
    json::array all;
    store_.scan(cf_objects, prefix, prefix_end(prefix), [&](std::string_view k, std::string_view v) {
      all.push_back(shape(k.substr(prefix.size()), v));
      return true;
    });
    return {200, to_json_text(json::object{{"objects", std::move(all)}})};
  }
  const std::string slug(segs[3]);
  const auto key = prefix + slug;
  auto current = store_.get(cf_objects, key);
  if (method == "GET" || method == "DELETE") {
    if (!current) throw api_error(404, object_type + " " + object_id + " has no version in environment " + slug);
    if (method == "DELETE") store_.del(cf_objects, key);
    return {200, to_json_text(shape(slug, *current))};
  }
  if (method != "PUT" && method != "POST") throw api_error(405, "method " + std::string(method) + " is not allowed here");
  auto body = parse_body_object(body_text);
  const auto version = field_string(body, "object_version");
  if (version.empty()) throw api_error(400, "missing required field: object_version");
  e.assign_environment(object_type, object_id, slug, version);
  return {200, to_json_text(shape(slug, *store_.get(cf_objects, key)))};
}

rest_reply rest_store::dispatch(std::string_view method, std::string_view path, std::string_view type_name,
                                std::optional<std::string_view> third, std::string_view query,
                                std::string_view body_text, const org_identity& org) {
  const auto& spec = *find_spec(type_name);
  const bool mutating = method != "GET" && method != "HEAD";
  std::unique_lock lock(mutex_, std::defer_lock);
  if (mutating) lock.lock();
  rest_engine e{*this, org};
  request r{method, path, query, body_text, spec, e};
  if (!third) return collection(r);
  if (spec.type == "acl" && *third == "list_org") {
    if (method != "GET") throw r.not_allowed();
    auto q = parse_query(query);
    rest_engine::check_list_params(spec, q, true);
    return {200, render_list(spec, e.list(spec, q).objects, true)};
  }
  if (spec.type == "acl" && *third == "batch_update") {
    if (method != "POST") throw r.not_allowed();
    return {200, to_json_text(e.acl_batch(parse_body_object(body_text)))};
  }
  if (spec.type == "organization" && *third == "members") {
    if (method != "PATCH") throw r.not_allowed();
    return {200, to_json_text(e.patch_members(parse_body_object(body_text)))};
  }
  return item(r, std::string(*third));
}

api_error rest_store::request::not_allowed() const {
  return api_error(405, "method " + std::string(method) + " is not allowed on " + std::string(path));
}

rest_reply rest_store::request::ok(const json::object& o) const { return {200, to_json_text(render(spec, o))}; }

/// /v1/<type>: list, create (POST), create-or-replace (PUT) and the spec's delete-by-body forms.
rest_reply rest_store::collection(request& r) {
  const auto& spec = r.spec;
  auto& e = r.engine;
  const std::string type(spec.type);
  if (r.method == "GET") {
    auto q = parse_query(r.query);
    rest_engine::check_list_params(spec, q);
    if (type == "organization") {
      std::vector<json::object> objs;
      if (auto on = param(q, "org_name"); !on || *on == e.org.org_name) objs.push_back(e.organization());
      return {200, render_list(spec, std::move(objs), false)};
    }
    if (type == "acl" && (!param(q, "object_type") || !param(q, "object_id")))
      throw api_error(400, "missing required query parameters: object_type and object_id");
    return {200, render_list(spec, e.list(spec, q).objects, false)};
  }
  if (!spec.writable) throw r.not_allowed();
  if (r.method == "POST") return r.ok(e.create(spec, parse_body_object(r.body), false));
  if (r.method == "PUT" && spec.has_put) return r.ok(e.create(spec, parse_body_object(r.body), true));
  if (r.method == "DELETE" && type == "ai_secret") return r.ok(e.delete_by_name(spec, parse_body_object(r.body)));
  if (r.method == "DELETE" && type == "acl") return r.ok(e.acl_delete_by_content(parse_body_object(r.body)));
  if (r.method == "DELETE" && type == "service_token") return r.ok(e.delete_by_body_id(spec, parse_body_object(r.body)));
  throw r.not_allowed();
}

/// /v1/<type>/<id>: read (with version/environment for functions and prompts), PATCH, DELETE.
rest_reply rest_store::item(request& r, const std::string& id) {
  const auto& spec = r.spec;
  auto& e = r.engine;
  const std::string type(spec.type);
  if (!is_uuid(id) && type != "organization") throw api_error(400, type + "_id must be a uuid: " + id);
  auto existing = get(e.org, type, id);
  if (!existing) throw api_error(404, type + " " + id + " not found");
  if (r.method == "GET") {
    auto q = parse_query(r.query);
    rest_engine::check_get_params(spec, q);
    if (type == "organization") return r.ok(e.with_urls(*existing));
    auto at = e.at_version(*existing, q);
    if (!at) throw api_error(404, type + " " + id + " did not exist at version " + *param(q, "version"));
    return r.ok(*at);
  }
  if (type == "organization") {
    if (r.method != "PATCH") throw r.not_allowed();
    auto body = parse_body_object(r.body);
    const json::object before = *existing;
    for (std::string_view f :
         {"name", "api_url", "is_universal_api", "is_dataplane_private", "proxy_url", "realtime_url",
          "image_rendering_mode"}) {
      if (auto it = body.find(f); it != body.end()) rest_engine::merge_field(*existing, std::string(f), it->value());
    }
    e.update(spec, before, *existing);
    return r.ok(e.with_urls(*existing));
  }
  if (!spec.writable) throw r.not_allowed();
  if (r.method == "PATCH") return r.ok(e.patch(spec, *existing, parse_body_object(r.body)));
  if (r.method == "DELETE") {
    e.remove_cascade(spec, *existing);
    if (spec.shape & s_deleted_at) (*existing)["deleted_at"] = ids_.timestamp(seq_);
    return r.ok(*existing);
  }
  throw r.not_allowed();
}

}  // namespace ferry::emulator
