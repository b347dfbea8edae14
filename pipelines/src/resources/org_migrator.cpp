#include "pipelines/resources/org_migrator.hpp"

#include "transports/api_client.hpp"
#include "../json_fields.hpp"

#include "pipelines/resources/specs.hpp"

#include "version_pins.hpp"

#include "../for_each_bounded.hpp"

#include "engine/dag.hpp"
#include "engine/log.hpp"
#include "engine/semaphore.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>

namespace ferry::pipelines::resources {

using pipelines::for_each_bounded;

namespace asio = boost::asio;
namespace json = boost::json;

resource_options options_from(const migrate_config& cfg) {
  resource_options o;
  auto all_types = [] {
    std::set<std::string> s;
    for (const auto& sp : resource_specs()) s.insert(sp.type);
    return s;
  };
  if (cfg.resources.empty() || (cfg.resources.size() == 1 && cfg.resources[0] == "all")) {
    o.types = all_types();
  } else {
    o.logs = false;
    for (const auto& r : cfg.resources) {
      auto t = type_for_selection(r);
      if (!t) {
        std::string names;
        for (const auto& n : selection_names()) names += (names.empty() ? "" : ", ") + n;
        throw std::invalid_argument("resources: unknown resource '" + r + "' (known: all, " + names + ")");
      }
      if (*t == "logs") o.logs = true;
      else o.types.insert(*t);
    }
  }
  for (const auto& e : cfg.exclude) {
    if (auto t = type_for_selection(e)) {
      if (*t == "logs") o.logs = false;
      else o.types.erase(*t);
    } else {
      o.exclude_projects.push_back(e);  // not a resource name: a project name
    }
  }
  o.types.erase("project");  // projects are always resolved: everything else lives in one
  o.projects = cfg.projects;
  if (cfg.created_after) o.created_after = comparable_time(*cfg.created_after);
  if (cfg.created_before) o.created_before = comparable_time(*cfg.created_before);
  o.on_name_conflict = cfg.on_name_conflict;
  o.dry_run = cfg.dry_run;
  o.max_concurrent_projects = static_cast<std::size_t>(std::max(1, cfg.max_concurrent_projects));
  o.max_concurrent_resources = static_cast<std::size_t>(std::max(1, cfg.max_concurrent_resources));
  o.acl_map_users = cfg.acl_map_users;
  o.acl_auto_invite_users = cfg.acl_auto_invite_users;
  o.group_map_users = cfg.group_map_users;
  o.group_auto_invite_users = cfg.group_auto_invite_users;
  return o;
}

namespace {

/// A function listed by /v1/prompt too (prompts are functions) whose function form holds what the prompt
/// form neither shows nor takes (origin, function_schema): migrated by the function pass, not the prompt
/// pass, so those fields are not dropped.
bool own_form_only(const json::object& o) {
  for (std::string_view f : {"origin", "function_schema"})
    if (auto it = o.find(f); it != o.end() && !it->value().is_null()) return true;
  return false;
}

constexpr std::string_view k_placeholder = "dry-run:";

bool is_placeholder(std::string_view id) { return id.substr(0, k_placeholder.size()) == k_placeholder; }


std::string display_name(std::string_view type, const json::object& o) {
  if (type == "acl") {
    std::string who = !str_field(o, "user_id").empty() ? "user " + str_field(o, "user_id")
                                                        : "group " + str_field(o, "group_id");
    std::string what = !str_field(o, "role_id").empty() ? "role " + str_field(o, "role_id")
                                                         : str_field(o, "permission");
    return str_field(o, "object_type") + ":" + str_field(o, "object_id") + " " + who + " " + what;
  }
  for (std::string_view f : {"name", "slug", "email"}) {
    auto s = str_field(o, f);
    if (!s.empty()) return s;
  }
  return str_field(o, "id");
}

/// The destination objects of one type in one scope, indexed for matching.
struct dest_index {
  std::map<std::string, json::object> by_id;
  std::map<std::string, std::string> by_key;  // uniqueness key -> id (first wins: newest first)

  void add(const resource_spec& spec, json::object o) {
    std::string id = str_field(o, "id");
    if (id.empty()) return;
    std::string key = uniqueness_key(spec, spec.unique.empty() ? filtered(spec, o) : o);
    if (!key.empty()) by_key.emplace(key, id);
    by_id.emplace(id, std::move(o));
  }
  static json::object filtered(const resource_spec& spec, const json::object& o) {
    json::object out;
    for (const auto& f : spec.create_fields)
      if (auto it = o.find(f); it != o.end() && !it->value().is_null()) out[f] = it->value();
    return out;
  }
};

// GCC 12 rejects braced initialisers holding string literals inside coroutines ("array used as
// initializer"), so coroutine bodies build queries and bodies through these plain functions.
query_params params(std::string k, std::string v, std::string k2, std::string v2) {
  auto q = one_param(std::move(k), std::move(v));
  q.emplace_back(std::move(k2), std::move(v2));
  return q;
}
std::vector<std::pair<std::string, std::string>> one_parent(const std::string& type, const std::string& id) {
  std::vector<std::pair<std::string, std::string>> out;
  out.emplace_back(type, id);
  return out;
}
json::object invite_body(const std::string& email) {
  return json::object{{"invite_users", json::object{{"emails", json::array{json::value(email)}}, {"send_invite_emails", false}}}};
}

// A named function, not a conditional inside the co_await expression: GCC 12 destroys the temporary
// std::string of `cond ? "literal" : str` twice when it is an argument of an awaited coroutine.
std::string list_path(const resource_spec& spec) {
  return spec.list == list_mode::acl_list_org ? std::string("/v1/acl/list_org") : spec.path;
}
resource_client::paging paging_of(const resource_spec& spec) {
  return spec.cursors ? resource_client::paging::cursor : resource_client::paging::single;
}

/// The id space of an environment-object's object_type whose versions can be pinned ("" = none).
std::string pin_space_of(const std::string& object_type) {
  const auto fs = id_space_types("function");
  if (std::find(fs.begin(), fs.end(), object_type) != fs.end()) return "function";
  return object_type == "dataset" ? "dataset" : "";
}
std::string version_body(const std::string& version) {
  return json::serialize(json::object{{"object_version", version}});
}

struct scope_info {
  std::string label;  // "organization" / "project:<name>"
  std::string source_project;
  std::string dest_project;
};

/// An object created (or found ours) without some references whose targets had no mapping yet: patched
/// by the link pass once they have one.
struct pending_link {
  std::string type;
  json::object source;
  scope_info scope;
  std::string dest_id;
};

/// An object that cannot be created yet (a graph node whose function is not mapped): retried after the DAG.
struct deferred_object {
  json::object source;
  scope_info scope;
  report_entry entry;  // what the first attempt found (its type and skip reason)
};

struct cache_slot {
  engine::semaphore sem{1};
  std::optional<std::vector<json::object>> value;
};

}  // namespace

struct org_migrator::impl {
  resource_options opts;
  resource_client src;
  resource_client dst;
  id_map& persistent;
  memory_id_map overlay;  // dry-run placeholders, never persisted
  migration_report& report;
  object_ready_fn ready;
  object_replaced_fn on_replaced;
  std::shared_ptr<spdlog::logger> log = engine::logger("pipeline");

  asio::any_io_executor base_ex;
  std::string src_org, dst_org;

  std::mutex mu;
  std::mutex pin_mu;  // record_pin's read-modify-write
  std::map<std::string, std::string> any_ids;  // source id -> dest id, every type (text remapping)
  std::map<std::string, std::shared_ptr<cache_slot>> caches;
  std::vector<pending_link> pending;       // create-then-patch: linked after the DAG
  std::vector<deferred_object> deferred;   // retried after the DAG
  std::vector<pending_link> pinned;        // objects holding version pins: pinned again after the links
  std::vector<pending_link> assignable;    // objects an environment may pin (environment-object pass)
  bool last_chance = false;                // the final retry round (set between rounds, after the DAG)
  version_pins pins;

  impl(resource_options o, resource_api& s, resource_api& d, id_map& ids, migration_report& r)
      : opts(std::move(o)), src(s), dst(d), persistent(ids), report(r),
        pins(src, dst, [this](std::string_view space, std::string_view id) { return lookup_space(space, id); }) {}

  bool selected(std::string_view t) const { return opts.types.count(std::string(t)) > 0; }

  // ---- id maps ----------------------------------------------------------------------------------
  std::optional<std::string> lookup(std::string_view type, std::string_view id) {
    if (opts.dry_run)
      if (auto v = overlay.get(type, id)) return v;
    return persistent.get(type, id);
  }
  /// Records a mapped pin for `ferry verify`: "pin:<space>" maps the source version to the destination
  /// version; a source version mapped to two destination versions (one transaction wrote two objects) is
  /// recorded as "" (ambiguous: a reader must not map it).
  void record_pin(std::string_view space, std::string_view version, const std::string& dest) {
    const std::string type = std::string(k_pin_prefix) + std::string(space);
    std::lock_guard lock(pin_mu);
    auto had = persistent.get(type, version);
    if (!had) persistent.put(type, version, dest);
    else if (*had != dest && !had->empty()) persistent.put(type, version, "");
  }
  /// The destination id of a source object of an id space ("function": prompts too) or type.
  std::optional<std::string> lookup_space(std::string_view space, std::string_view id) {
    if (auto d = lookup(space, id)) return d;
    for (const auto& t : id_space_types(space))
      if (auto d = lookup(t, id)) return d;
    return std::nullopt;
  }
  void record(std::string_view type, const std::string& source_id, const std::string& dest_id) {
    if (opts.dry_run && is_placeholder(dest_id)) {
      overlay.put(type, source_id, dest_id);
    } else if (opts.dry_run) {
      overlay.put(type, source_id, dest_id);  // adopted in a plan: still nothing persisted
    } else {
      persistent.put(type, source_id, dest_id);
    }
    std::lock_guard lock(mu);
    any_ids[source_id] = dest_id;
  }
  rewrite_context context(const scope_info& scope, bool map_users) {
    rewrite_context ctx;
    ctx.ids.lookup = [this](std::string_view t, std::string_view id) { return lookup(t, id); };
    ctx.ids.lookup_any = [this](std::string_view id) -> std::optional<std::string> {
      std::lock_guard lock(mu);
      if (auto it = any_ids.find(std::string(id)); it != any_ids.end() && !is_placeholder(it->second)) return it->second;
      return std::nullopt;
    };
    ctx.ids.version = [this](std::string_view space, std::string_view id, std::string_view version, std::string& why) {
      auto d = pins.lookup(space, id, version, why);
      if (d && !opts.dry_run) record_pin(space, version, *d);
      return d;
    };
    ctx.source_project_id = scope.source_project;
    ctx.dest_project_id = scope.dest_project;
    ctx.dest_org_id = dst_org;
    ctx.map_users = map_users;
    ctx.last_chance = last_chance;
    return ctx;
  }

  // ---- cached listings --------------------------------------------------------------------------
  asio::awaitable<std::vector<json::object>> cached(const std::string& key, const resource_client& c, std::string path,
                                                    query_params q, resource_client::paging mode) {
    std::shared_ptr<cache_slot> slot;
    {
      std::lock_guard lock(mu);
      auto& s = caches[key];
      if (!s) s = std::make_shared<cache_slot>();
      slot = s;
    }
    auto permit = co_await slot->sem.acquire();
    if (!slot->value) slot->value = co_await c.list(std::move(path), std::move(q), 1000, mode);
    co_return *slot->value;
  }

  /// Source objects of a type for a scope: project-scoped types filtered to the project (dataset
  /// snapshots to the project's datasets); with the table's created_window, to the created window.
  asio::awaitable<std::vector<json::object>> source_objects(const resource_spec& spec, const scope_info& scope) {
    std::vector<json::object> out;
    switch (spec.list) {
      case list_mode::org:
      case list_mode::acl_list_org:
        out = co_await cached("src:" + spec.type, src, list_path(spec), {}, paging_of(spec));
        break;
      case list_mode::project_param:
        out = co_await cached("src:" + spec.type + ":" + scope.source_project, src, spec.path,
                              one_param("project_id", scope.source_project), paging_of(spec));
        break;
      case list_mode::project_local: {
        auto all = co_await cached("src:" + spec.type, src, spec.path, {}, paging_of(spec));
        for (auto& o : all)
          if (str_field(o, "project_id") == scope.source_project) out.push_back(std::move(o));
        break;
      }
      case list_mode::dataset_local: {
        auto datasets = co_await source_objects(spec_of("dataset"), scope);
        std::set<std::string> ids;
        for (const auto& d : datasets) ids.insert(str_field(d, "id"));
        auto all = co_await cached("src:" + spec.type, src, spec.path, {}, paging_of(spec));
        for (auto& o : all)
          if (ids.count(str_field(o, "dataset_id"))) out.push_back(std::move(o));
        break;
      }
      case list_mode::parent_object:
      case list_mode::path_assignment:
        break;  // listed per parent by the caller
    }
    if (spec.created_window && opts.window_selects_objects) {
      // created_after/created_before select the objects created in [after, before).
      std::vector<json::object> kept;
      for (auto& o : out) {
        std::string created = comparable_time(str_field(o, "created"));
        bool in = (opts.created_after.empty() || created >= opts.created_after) &&
                  (opts.created_before.empty() || created < opts.created_before);
        if (in || created.empty()) kept.push_back(std::move(o));
      }
      out = std::move(kept);
    }
    co_return out;
  }

  asio::awaitable<dest_index> dest_objects(const resource_spec& spec, const scope_info& scope) {
    dest_index idx;
    if (is_placeholder(scope.dest_project)) co_return idx;  // a project that would be created: empty
    std::vector<json::object> all;
    switch (spec.list) {
      case list_mode::org:
      case list_mode::acl_list_org:
        all = co_await cached("dst:" + spec.type, dst, list_path(spec), {}, paging_of(spec));
        break;
      case list_mode::project_param:
        all = co_await dst.list(spec.path, one_param("project_id", scope.dest_project), 1000, paging_of(spec));
        break;
      case list_mode::project_local:
        all = co_await cached("dst:" + spec.type, dst, spec.path, {}, paging_of(spec));
        std::erase_if(all, [&](const json::object& o) { return str_field(o, "project_id") != scope.dest_project; });
        break;
      case list_mode::dataset_local:
        all = co_await cached("dst:" + spec.type, dst, spec.path, {}, paging_of(spec));
        break;
      case list_mode::parent_object:
      case list_mode::path_assignment:
        break;
    }
    for (auto& o : all) idx.add(spec, std::move(o));
    co_return idx;
  }

  // ---- users --------------------------------------------------------------------------------------
  /// The destination user id with this (lower-case) email, or "".
  asio::awaitable<std::string> dest_user_by_email(std::string email) {
    auto v = co_await dst.get(transports::with_query("/v1/user", params("email", email, "limit", "100")));
    const json::array* arr = v.is_array() ? &v.as_array() : nullptr;
    if (v.is_object() && v.as_object().contains("objects") && v.as_object().at("objects").is_array())
      arr = &v.as_object().at("objects").as_array();
    if (arr)
      for (const auto& x : *arr) {
        if (!x.is_object()) continue;
        std::string em = str_field(x.as_object(), "email");
        for (auto& c : em) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (em == email) co_return str_field(x.as_object(), "id");
      }
    co_return std::string{};
  }

  /// Invites `email` into the destination org; its user id once the destination lists it (a few
  /// tries, the listing may lag), else "".
  asio::awaitable<std::string> invite_user(std::string email) {
    std::string dest;
    json::object body = invite_body(email);
    auto r = co_await dst.patch("/v1/organization/members", body);
    if (auto au = r.find("added_users"); au != r.end() && au->value().is_array())
      for (const auto& x : au->value().as_array())
        if (x.is_object() && !str_field(x.as_object(), "id").empty()) dest = str_field(x.as_object(), "id");
    auto timer = asio::steady_timer(co_await asio::this_coro::executor);
    for (int attempt = 1; dest.empty() && attempt <= 4; ++attempt) {
      dest = co_await dest_user_by_email(email);
      if (dest.empty() && attempt < 4) {
        timer.expires_after(std::chrono::milliseconds(500 * attempt));
        co_await timer.async_wait(asio::use_awaitable);
      }
    }
    co_return dest;
  }

  asio::awaitable<void> resolve_user(const std::string& src_user, bool invite) {
    if (lookup("user", src_user)) co_return;
    {
      std::lock_guard lock(mu);
      if (!caches.emplace("user:" + src_user, nullptr).second) co_return;  // resolved (or failed) once already
    }
    report_entry e;
    e.type = "user";
    e.scope = "organization";
    e.source_id = src_user;
    try {
      std::string email;
      try {
        auto u = co_await src.get("/v1/user/" + src_user);
        if (u.is_object()) email = str_field(u.as_object(), "email");
      } catch (const api_failure& f) {
        if (f.status() != 404) throw;
      }
      for (auto& c : email) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      e.name = email;
      if (email.empty()) {
        e.status = object_status::skipped;
        e.reason = "user_has_no_email";
        e.detail = "the source user has no email to match in the destination";
        report.add(std::move(e));
        co_return;
      }
      std::string dest = co_await dest_user_by_email(email);
      if (!dest.empty()) {
        record("user", src_user, dest);
        e.dest_id = dest;
        e.status = object_status::adopted;
        e.detail = "mapped by email";
      } else if (!invite) {
        e.status = object_status::skipped;
        e.reason = "no_destination_user";
        e.detail = "no destination user has this email (enable the auto-invite option to invite)";
      } else if (opts.dry_run) {
        record("user", src_user, std::string(k_placeholder) + "user:" + src_user);
        e.status = object_status::would_create;
        e.detail = "would be invited";
      } else {
        dest = co_await invite_user(email);
        if (dest.empty()) {
          e.status = object_status::failed;
          e.reason = "invited " + email + " but the destination does not list the user yet; re-run later";
        } else {
          record("user", src_user, dest);
          e.dest_id = dest;
          e.status = object_status::created;
          e.detail = "invited";
        }
      }
    } catch (const std::exception& ex) {
      e.status = object_status::failed;
      e.reason = ex.what();
    }
    report.add(std::move(e));
  }

  asio::awaitable<void> resolve_users_of(std::string_view type, const json::object& o) {
    std::vector<std::string> users;
    bool invite = false;
    if (type == "group" && opts.group_map_users) {
      invite = opts.group_auto_invite_users;
      if (auto it = o.find("member_users"); it != o.end() && it->value().is_array())
        for (const auto& v : it->value().as_array())
          if (v.is_string()) users.emplace_back(v.as_string());
    } else if ((type == "acl" || type == "view") && opts.acl_map_users) {
      invite = opts.acl_auto_invite_users && type == "acl";
      if (auto u = str_field(o, "user_id"); !u.empty()) users.push_back(u);
    }
    for (const auto& u : users) co_await resolve_user(u, invite);
  }

  /// An object that already has a destination twin (`match`; `ours` when our id map says so): decides
  /// abort / unchanged / update (PATCH) / adopt per on_name_conflict and records the mapping. False
  /// when on_name_conflict=abort refused it (`e` says why).
  asio::awaitable<bool> settle_match(const resource_spec& spec, const json::object& payload, const json::object& match,
                                     bool ours, report_entry& e) {
    std::string dest_id = str_field(match, "id");
    e.dest_id = dest_id;
    if (!ours && opts.on_name_conflict == name_conflict_policy::abort) {
      e.status = object_status::failed;
      e.reason = "destination already has " + spec.type + " '" + e.name + "' (id " + dest_id +
                 ") and on_name_conflict=abort: rename or delete it there, or use on_name_conflict=adopt|update";
      e.dest_id.clear();
      co_return false;
    }
    if (same_content(spec, payload, match)) {
      e.status = object_status::unchanged;
    } else if (opts.on_name_conflict == name_conflict_policy::update) {
      auto body = patch_body(spec, payload, match);
      if (!body || body->empty()) {
        e.status = object_status::adopted;
        e.detail = "content differs but this type cannot be updated";
      } else if (opts.dry_run) {
        e.status = object_status::would_update;
      } else {
        co_await dst.patch(spec.path + "/" + dest_id, *body);
        e.status = object_status::updated;
      }
    } else {
      e.status = object_status::adopted;
      e.detail = "destination content differs (on_name_conflict=update would patch it)";
    }
    record(spec.type, e.source_id, dest_id);
    co_return true;
  }

  /// The mapped destination object, or nullopt when it answers 404 (or, for a project-scoped object, now
  /// lives outside the destination project: its project was deleted and re-created).
  asio::awaitable<std::optional<json::object>> dest_still_there(const resource_spec& spec, std::string dest_id,
                                                                scope_info scope) {
    json::value v;
    try {
      v = co_await dst.get(spec.path + "/" + dest_id);
    } catch (const api_failure& f) {
      if (f.status() == 404) co_return std::nullopt;
      throw;
    }
    if (!v.is_object()) co_return std::nullopt;
    auto& o = v.as_object();
    if (spec.sets_project && !scope.dest_project.empty() && str_field(o, "project_id") != scope.dest_project)
      co_return std::nullopt;
    co_return std::move(o);
  }

  // ---- create-then-patch ---------------------------------------------------------------------------
  bool pending_in_state(std::string_view type, const std::string& source_id) const {
    if (opts.dry_run) return false;
    auto v = persistent.get(std::string(k_pending_prefix) + std::string(type), source_id);
    return v && !v->empty();
  }
  /// Records the object as pending: in memory (with its source, for the link pass) and in the state, so
  /// that a later run links it even when it does not list it again (another project selection).
  void add_pending(const std::string& type, const json::object& source, const scope_info& scope,
                   const std::string& dest_id) {
    if (!opts.dry_run) persistent.put(std::string(k_pending_prefix) + type, str_field(source, "id"), dest_id);
    std::lock_guard lock(mu);
    pending.push_back({type, source, scope, dest_id});
  }

  /// Whether the link pass has work on this object: an unresolved reference in a field it can PATCH, or
  /// (`with_after_create`) a field set only after the create (project settings).
  static bool needs_link(const resource_spec& spec, const rewrite_result& rw, bool with_after_create) {
    auto top = [](const std::string& f) { return f.substr(0, f.find_first_of(".[")); };
    auto linkable = linkable_fields(spec, json::object{}, true);
    for (const auto& d : rw.dropped)
      if (d.reference && linkable.contains(top(d.field))) return true;
    if (with_after_create)
      for (const auto& f : spec.set_after_create)
        if (rw.payload.contains(f)) return true;
    return false;
  }

  /// The top-level id-holding fields (the table's ref_fields) the type's update takes, from `payload`
  /// (`names_only`: every such field, with a null value).
  static json::object linkable_fields(const resource_spec& spec, const json::object& payload, bool names_only = false) {
    json::object out;
    for (const auto& f : spec.ref_fields) {
      bool patchable = spec.update == update_style::member_delta ||  // member lists go as add_/remove_ deltas
                       std::find(spec.patch_fields.begin(), spec.patch_fields.end(), f) != spec.patch_fields.end();
      if (patchable && names_only) out[f] = nullptr;
      else if (patchable)
        if (auto it = payload.find(f); it != payload.end()) out[f] = it->value();
    }
    return out;
  }

  /// The PATCH that brings the destination object's id-holding fields to `want`, or empty when equal.
  static json::object link_body(const resource_spec& spec, const json::object& want, const json::object& dest) {
    json::object body;
    if (spec.update == update_style::member_delta) {
      body = patch_body(spec, want, dest).value_or(json::object{});
    } else {
      for (const auto& kv : want) {
        auto it = dest.find(kv.key());
        if (it == dest.end() || it->value() != kv.value()) body[kv.key()] = kv.value();
      }
    }
    if (body.empty()) return body;
    for (const auto& f : spec.patch_keeps)
      if (auto it = dest.find(f); it != dest.end()) body[f] = it->value();
    return body;
  }

  /// Rewrites a pending object again with today's id maps and patches what now resolves. The report entry
  /// is amended with the references still unmapped (never forwarded); the state's pending record is
  /// cleared once none is left.
  asio::awaitable<void> link_one(pending_link p) {
    const auto& spec = spec_of(p.type);
    std::string source_id = str_field(p.source, "id");
    bool map_users = spec.type == "group" ? opts.group_map_users : opts.acl_map_users;
    co_await pins.prefetch(pin_targets(p.source));
    auto rw = rewrite(spec.type, p.source, context(p.scope, map_users));
    if (rw.skip) co_return;
    bool still_unlinked = needs_link(spec, rw, false);
    std::string error;
    bool patched = false;
    if (!opts.dry_run && !is_placeholder(p.dest_id)) {
      try {
        auto cur = co_await dst.get(spec.path + "/" + p.dest_id);
        auto body = link_body(spec, linkable_fields(spec, rw.payload), cur.is_object() ? cur.as_object() : json::object{});
        if (!body.empty()) {
          co_await dst.patch(spec.path + "/" + p.dest_id, body);
          patched = true;
        }
        if (!still_unlinked) persistent.put(std::string(k_pending_prefix) + spec.type, source_id, "");
      } catch (const std::exception& ex) {
        error = std::string("linking its references: ") + ex.what();
      }
    }
    auto amend = [&](report_entry& e) {
      e.dropped.clear();
      for (const auto& d : rw.dropped) e.dropped.emplace_back(d.field, d.reason);
      if (!error.empty()) {
        e.status = object_status::failed;
        e.reason = error;
      } else if (patched) {
        if (e.status != object_status::created) e.status = object_status::updated;
        e.detail = "references or version pins set after creation";
      }
    };
    if (!report.amend(spec.type, source_id, amend)) {
      report_entry e;
      e.type = spec.type;
      e.scope = p.scope.label;
      e.source_id = source_id;
      e.dest_id = p.dest_id;
      e.name = display_name(spec.type, p.source);
      e.status = object_status::unchanged;
      amend(e);
      report.add(std::move(e));
    }
  }

  /// Objects a retry may now create (their targets were created meanwhile), round after round until a
  /// round creates nothing; then one last round where what still cannot resolve is dropped (origin) or
  /// skipped with its reason (graph nodes).
  asio::awaitable<void> retry_deferred() {
    for (;;) {
      std::vector<deferred_object> round;
      {
        std::lock_guard lock(mu);
        round.swap(deferred);
      }
      if (round.empty()) co_return;
      for (auto& d : round) {
        const auto& spec = spec_of(d.entry.type);
        auto dest = co_await dest_objects(spec, d.scope);
        co_await migrate_one(spec, d.source, dest, d.scope);
        std::string id = str_field(d.source, "id");
        if (!lookup(spec.type, id)) continue;
        // Created now: the children listed per parent object (a function's env vars) missed it in the DAG.
        for (const auto& child : resource_specs())
          if (selected(child.type) && child.list == list_mode::parent_object)
            for (const auto& p : child.parents)
              if (p.type == spec.type) co_await migrate_children(child.type, d.scope, one_parent(spec.type, id));
      }
      std::lock_guard lock(mu);
      if (deferred.size() >= round.size()) last_chance = true;
    }
  }

  /// The pending records of earlier runs whose objects this run did not list (another project selection):
  /// read back from the source, to be linked too.
  asio::awaitable<std::vector<pending_link>> pending_from_state(std::set<std::string> known) {
    std::vector<pending_link> out;
    if (opts.dry_run) co_return out;
    std::vector<std::pair<std::string, std::pair<std::string, std::string>>> records;
    persistent.for_each([&](std::string_view t, std::string_view src_id, std::string_view dst_id) {
      // "" = linked; the intent mark = created or not, the id unknown: linked when its object is listed.
      if (!t.starts_with(k_pending_prefix) || dst_id.empty() || dst_id == k_pending_intent) return;
      std::string type(t.substr(k_pending_prefix.size()));
      if (!known.count(type + "/" + std::string(src_id))) records.push_back({type, {std::string(src_id), std::string(dst_id)}});
    });
    for (auto& [type, ids] : records) {
      const auto* spec = find_spec(type);
      if (!spec) continue;
      json::value v;
      try {
        v = co_await src.get(spec->path + "/" + ids.first);
      } catch (const api_failure& f) {
        if (f.status() == 404) persistent.put(std::string(k_pending_prefix) + type, ids.first, "");  // gone at the source
        else report.add_error(type + " " + ids.first + ": cannot read it to link its references: " + f.what());
        continue;
      }
      if (!v.is_object()) continue;
      scope_info scope{"organization", {}, {}};
      if (auto sp = str_field(v.as_object(), "project_id"); !sp.empty())
        scope = scope_info{"project:" + sp, sp, lookup("project", sp).value_or("")};
      out.push_back({type, std::move(v.as_object()), scope, ids.second});
    }
    co_return out;
  }

  /// After the DAG: deferred objects, then every pending link (this run's and earlier runs').
  asio::awaitable<void> link_pending() {
    co_await retry_deferred();
    std::vector<pending_link> todo;
    {
      std::lock_guard lock(mu);
      todo.swap(pending);
    }
    std::set<std::string> known;
    for (const auto& p : todo) known.insert(p.type + "/" + str_field(p.source, "id"));
    for (auto& p : co_await pending_from_state(std::move(known))) todo.push_back(std::move(p));
    for (auto& p : todo) co_await link_one(std::move(p));
  }

  // ---- version pins ---------------------------------------------------------------------------------
  /// Remembers an object in the destination for the pin pass (it holds pins) and for the environment-object
  /// pass (an environment may pin one of its versions).
  void note_pins(const resource_spec& spec, const json::object& obj, const scope_info& scope, const std::string& dest_id,
                 bool holds_pins) {
    const auto& env = spec_of("environment_object");
    bool pinnable = std::any_of(env.parents.begin(), env.parents.end(), [&](const auto& p) { return p.type == spec.type; });
    std::lock_guard lock(mu);
    if (holds_pins && spec.update != update_style::none) pinned.push_back({spec.type, obj, scope, dest_id});
    if (pinnable) assignable.push_back({spec.type, obj, scope, dest_id});
  }

  /// After the links: every object holding pins is rewritten with the pinned objects' final destination
  /// versions and patched where they differ (link_one), an object after the objects its pins name (setting
  /// their own pins moves their versions).
  asio::awaitable<void> pin_pass() {
    std::vector<pending_link> todo;
    {
      std::lock_guard lock(mu);
      todo.swap(pinned);
    }
    std::vector<json::object> sources;
    for (const auto& p : todo) sources.push_back(p.source);
    auto lv = dependency_levels(sources, [](const json::object& o) {
      std::vector<std::string> ids;
      for (const auto& t : pin_targets(o)) ids.push_back(t.source_id);
      return ids;
    });
    for (const auto& level : lv.order)
      for (auto i : level) co_await link_one(todo[i]);
    for (auto i : lv.cyclic) co_await link_one(todo[i]);
  }

  /// Which version of each migrated object an environment uses (the table's path_assignment row): listed
  /// per object on the source, its version mapped like any pin, PUT on the destination when it differs.
  asio::awaitable<void> migrate_environment_objects() {
    if (opts.dry_run || !selected("environment_object")) co_return;
    const auto& spec = spec_of("environment_object");
    const auto& env_spec = spec_of("environment");
    auto environments = co_await cached("src:" + env_spec.type, src, env_spec.path, {}, paging_of(env_spec));
    if (environments.empty()) co_return;  // no environment at the source: nothing can be assigned
    std::vector<pending_link> todo;
    {
      std::lock_guard lock(mu);
      todo.swap(assignable);
    }
    std::set<std::string> seen;  // source object id + slug: an assignment listed under both types is one
    for (const auto& o : todo) {
      // Prompts are functions: an assignment may be filed under either type.
      for (const auto& ptype : types_sharing_ids(o.type)) {
        std::string path = spec.path + "/" + ptype + "/" + str_field(o.source, "id");
        auto listed = co_await src.list(std::move(path), {}, 1000, paging_of(spec));
        for (const auto& a : listed)
          if (seen.insert(str_field(o.source, "id") + "/" + str_field(a, "environment_slug")).second)
            co_await assign_one(spec, o, a);
      }
    }
  }

  asio::awaitable<void> assign_one(const resource_spec& spec, const pending_link& o, const json::object& a) {
    const std::string ptype = str_field(a, "object_type"), slug = str_field(a, "environment_slug");
    report_entry e;
    e.type = spec.type;
    e.scope = o.scope.label;
    e.source_id = ptype + "/" + str_field(o.source, "id") + "/" + slug;
    e.name = ptype + " '" + display_name(o.type, o.source) + "' in environment " + slug;
    try {
      const std::string space = pin_space_of(ptype);
      std::string why = ptype + " versions are not mapped: an environment pin of one names a source transaction id";
      std::optional<std::string> version;
      if (!space.empty()) {
        std::vector<pin_target> targets;
        targets.push_back(pin_target{space, str_field(o.source, "id")});
        co_await pins.prefetch(std::move(targets));
        version = pins.lookup(space, str_field(o.source, "id"), str_field(a, "object_version"), why);
      }
      if (!version) {
        e.status = object_status::skipped;
        e.reason = "version_not_mappable";
        e.detail = why;
        report.add(std::move(e));
        co_return;
      }
      const std::string target = spec.path + "/" + ptype + "/" + o.dest_id + "/" + slug;
      std::string current;
      try {
        auto v = co_await dst.get(target);
        if (v.is_object()) current = str_field(v.as_object(), "object_version");
      } catch (const api_failure& f) {
        if (f.status() != 404) throw;
      }
      e.dest_id = ptype + "/" + o.dest_id + "/" + slug;
      if (current == *version) {
        e.status = object_status::unchanged;
      } else {
        co_await dst.send("PUT", target, version_body(*version));
        e.status = current.empty() ? object_status::created : object_status::updated;
      }
      record(spec.type, e.source_id, e.dest_id);
    } catch (const std::exception& ex) {
      e.status = object_status::failed;
      e.reason = ex.what();
      e.dest_id.clear();
    }
    report.add(std::move(e));
  }

  // ---- one object ---------------------------------------------------------------------------------
  struct found {
    std::optional<json::object> match;
    bool ours = false;     // matched through our id map
    std::string replaced;  // the mapped destination id that no longer exists
  };

  /// The destination twin of an object: our own earlier mapping first (a re-run, even after a rename),
  /// checked rather than trusted (a mapped object missing from the listing is read by id: gone => the
  /// object is created again), then the uniqueness key.
  asio::awaitable<found> find_match(const resource_spec& spec, std::string source_id, const json::object& payload,
                                    const dest_index& dest, scope_info scope) {
    found f;
    if (auto mapped = lookup(spec.type, source_id)) {
      if (auto it = dest.by_id.find(*mapped); it != dest.by_id.end()) {
        f.match = it->second;
        f.ours = true;
      } else if (!opts.dry_run && !is_placeholder(*mapped)) {
        f.match = co_await dest_still_there(spec, *mapped, scope);
        f.ours = f.match.has_value();
        if (!f.match) f.replaced = *mapped;
      }
    }
    if (!f.match) {
      auto key = uniqueness_key(spec, payload);
      if (auto it = dest.by_key.find(key); !key.empty() && it != dest.by_key.end()) f.match = dest.by_id.at(it->second);
    }
    co_return f;
  }
  /// Creates the object: the intent is journalled (synced) before the POST, so a crash after the server
  /// created it but before its id is recorded leaves the next run a record that the object is ours.
  asio::awaitable<void> create_object(const resource_spec& spec, const json::object& payload, report_entry& e) {
    json::object body = payload;
    for (const auto& f : spec.set_after_create) body.erase(f);  // the link pass sets them
    persistent.put(std::string(k_pending_prefix) + spec.type, e.source_id, std::string(k_pending_intent));
    auto created = co_await dst.post(spec.path, body);
    std::string dest_id = str_field(created, "id");
    if (dest_id.empty()) throw std::runtime_error("POST " + spec.path + " returned no id");
    record(spec.type, e.source_id, dest_id);
    e.dest_id = dest_id;
    e.status = object_status::created;
  }

  asio::awaitable<void> migrate_one(const resource_spec& spec, const json::object& obj, const dest_index& dest,
                                    const scope_info& scope) {
    report_entry e;
    e.type = spec.type;
    e.scope = scope.label;
    e.source_id = str_field(obj, "id");
    e.name = display_name(spec.type, obj);
    try {
      co_await resolve_users_of(spec.type, obj);
      bool map_users = spec.type == "group" ? opts.group_map_users : opts.acl_map_users;
      const auto pin_list = pin_targets(obj);
      co_await pins.prefetch(pin_list);
      auto rw = rewrite(spec.type, obj, context(scope, map_users));
      for (const auto& d : rw.dropped) e.dropped.emplace_back(d.field, d.reason);
      e.notes = std::move(rw.notes);
      if (rw.skip) {
        e.status = object_status::skipped;
        e.reason = rw.skip_reason;
        e.detail = rw.skip_detail;
        if (rw.deferrable && !last_chance) {
          std::lock_guard lock(mu);
          deferred.push_back({obj, scope, std::move(e)});
        } else {
          report.add(std::move(e));
        }
        co_return;
      }
      bool unlinked = needs_link(spec, rw, true);
      // The journal (an intent written before an earlier run's create, or its pending record) marks the
      // object as ours even when that run died between the create and recording its id: whatever the
      // conflict policy its destination twin is adopted into the id map (never refused, never created
      // twice), and linked, not just adopted.
      const bool recorded_pending = pending_in_state(spec.type, e.source_id);
      auto [match, ours, replaced] = co_await find_match(spec, e.source_id, rw.payload, dest, scope);
      if (match) {
        if (!co_await settle_match(spec, rw.payload, *match, ours || recorded_pending, e)) {
          report.add(std::move(e));
          co_return;
        }
      } else if (opts.dry_run) {
        e.dest_id = std::string(k_placeholder) + e.source_id;
        record(spec.type, e.source_id, e.dest_id);
        e.status = object_status::would_create;
      } else {
        co_await create_object(spec, rw.payload, e);
      }
      if (!replaced.empty() && !e.dest_id.empty() && e.dest_id != replaced) {
        e.detail = "its destination object " + replaced + " no longer exists: replaced by " + e.dest_id;
        if (spec.has_streams && on_replaced) on_replaced(spec.type, e.source_id);  // before its stream starts
      }
      // Ours (created now or by an earlier run) and missing a reference, or linked by an earlier run's
      // pending record: the link pass completes it. Otherwise the journal entry is closed.
      bool ours_now = e.status == object_status::created || e.status == object_status::would_create || ours ||
                      recorded_pending;
      if (ours_now && spec.update != update_style::none && !e.dest_id.empty() && (unlinked || recorded_pending))
        add_pending(spec.type, obj, scope, e.dest_id);
      else if (!opts.dry_run && !e.dest_id.empty() && (recorded_pending || e.status == object_status::created))
        persistent.put(std::string(k_pending_prefix) + spec.type, e.source_id, "");
      // Only Ferry's own objects are re-pinned after the links (an adopted object is someone else's).
      if (!opts.dry_run && !e.dest_id.empty()) note_pins(spec, obj, scope, e.dest_id, !pin_list.empty() && ours_now);
      if (!opts.dry_run && ready && spec.has_streams)
        ready(spec.type, e.source_id, e.dest_id);
    } catch (const boost::system::system_error& ex) {
      if (ex.code() == asio::error::operation_aborted) throw;
      e.status = object_status::failed;
      e.reason = ex.what();
      e.dest_id.clear();
    } catch (const std::exception& ex) {
      e.status = object_status::failed;
      e.reason = ex.what();
      e.dest_id.clear();
    }
    if (e.status == object_status::failed)
      log->warn("resource failed type={} name={} scope={} error={}", e.type, e.name, e.scope, e.reason);
    report.add(std::move(e));
  }

  /// A list of objects of one type: in dependency levels, each level with bounded concurrency.
  asio::awaitable<void> migrate_all(const resource_spec& spec, std::vector<json::object> objects, const dest_index& dest,
                                    const scope_info& scope) {
    auto lv = dependency_levels(objects, [&](const json::object& o) { return in_type_dependencies(spec.type, o); });
    auto ex = co_await asio::this_coro::executor;
    for (const auto& level : lv.order) {
      co_await for_each_bounded(ex, level.size(), opts.max_concurrent_resources,
                                [&](std::size_t i) { return migrate_one(spec, objects[level[i]], dest, scope); });
    }
    // Objects on a cycle: created without the references that are not mapped yet, linked by the link pass.
    co_await for_each_bounded(ex, lv.cyclic.size(), opts.max_concurrent_resources,
                              [&](std::size_t i) { return migrate_one(spec, objects[lv.cyclic[i]], dest, scope); });
  }

  // Coroutine parameters are taken by value: DAG node lambdas call these with temporaries that die as
  // soon as the lambda returns the (lazy) awaitable.
  asio::awaitable<void> migrate_type(std::string type, scope_info scope) {
    const auto& spec = spec_of(type);
    auto objects = co_await source_objects(spec, scope);
    if (!spec.listed_by.empty() && selected(spec.listed_by)) {
      // The listing repeats another type's objects (Braintrust prompts are functions too): they are
      // migrated by that type's pass (which remaps their references), so they are not created twice;
      // except an object holding what only this type's form shows and takes (own_form_only), which this
      // pass creates.
      auto others = co_await source_objects(spec_of(spec.listed_by), scope);
      std::set<std::string> ids;
      for (const auto& p : others) ids.insert(str_field(p, "id"));
      std::erase_if(objects, [&](const json::object& o) { return ids.count(str_field(o, "id")) && !own_form_only(o); });
    }
    for (const auto& twin : resource_specs())
      if (twin.listed_by == type && selected(twin.type)) {
        // ... and the pass of the type whose listing repeats this one leaves out what that pass creates.
        std::set<std::string> there;
        for (const auto& f : co_await source_objects(twin, scope))
          if (own_form_only(f)) there.insert(str_field(f, "id"));
        std::erase_if(objects, [&](const json::object& o) { return there.count(str_field(o, "id")) > 0; });
    }
    auto dest = co_await dest_objects(spec, scope);
    co_await migrate_all(spec, std::move(objects), dest, scope);
  }

  /// Views and env vars hang off parent objects: list them per parent on both sides.
  asio::awaitable<void> migrate_children(std::string type, scope_info scope,
                                         std::vector<std::pair<std::string, std::string>> parents /* type, src id */) {
    const auto& spec = spec_of(type);
    for (const auto& [ptype, psrc] : parents) {
      if (psrc.empty()) {
        report.add_error(scope.label + " " + type + ": the source " + ptype + " id is unknown; its " + type +
                         " objects were not listed");
        continue;
      }
      std::optional<std::string> pdst = ptype == "organization" ? std::optional<std::string>(dst_org) : lookup(ptype, psrc);
      auto objects = co_await src.list(spec.path, params("object_type", ptype, "object_id", psrc), 1000, paging_of(spec));
      dest_index dest;
      if (pdst && !is_placeholder(*pdst) && !pdst->empty()) {
        for (auto& o : co_await dst.list(spec.path, params("object_type", ptype, "object_id", *pdst), 1000, paging_of(spec)))
          dest.add(spec, std::move(o));
      }
      co_await migrate_all(spec, std::move(objects), dest, scope);
    }
  }

  // ---- project -------------------------------------------------------------------------------------
  asio::awaitable<void> migrate_project(const json::object& project, const dest_index& dest_projects) {
    scope_info org_scope{"organization", {}, {}};
    co_await migrate_one(spec_of("project"), project, dest_projects, org_scope);
    std::string src_id = str_field(project, "id");
    auto dest_id = lookup("project", src_id);
    if (!dest_id) {
      report.add_error("project '" + str_field(project, "name") + "': not available in the destination; its " +
                       "resources were not migrated");
      co_return;
    }
    scope_info scope{"project:" + str_field(project, "name"), src_id, *dest_id};
    engine::dag graph;
    build_dag(graph, dag_level::project, scope);
    co_await graph.run();
    note_dag(graph, scope.label);
  }

  // ---- the DAGs, from the table -----------------------------------------------------------------
  enum class dag_level { organization, project };

  /// Whether `spec` has a node in the organization DAG or in each project's DAG.
  static bool at_level(const resource_spec& spec, dag_level level) {
    if (spec.list == list_mode::path_assignment) return false;  // the pin pass migrates them
    bool org_parent = false, project_parent = false;
    for (const auto& p : spec.parents) (p.type == "organization" ? org_parent : project_parent) = true;
    // A project-scoped type listed per parent object may have the org as a parent too (org-level views).
    if (level == dag_level::organization) return org_parent || (!spec.project_scoped && spec.parents.empty());
    return spec.project_scoped || project_parent;
  }
  bool node_selected(const resource_spec& spec) const { return spec.type == "project" || selected(spec.type); }

  /// One node per selected type of the level, named by its type; its edges are the table's `after`
  /// plus the parent types, kept when that node is in the same DAG.
  void build_dag(engine::dag& graph, dag_level level, const scope_info& scope) {
    std::set<std::string> present;
    for (const auto& spec : resource_specs())
      if (at_level(spec, level) && node_selected(spec)) present.insert(spec.type);
    for (const auto& spec : resource_specs()) {
      if (!present.count(spec.type)) continue;
      std::vector<std::string> deps;
      for (const auto& d : spec.after)
        if (present.count(d)) deps.push_back(d);
      for (const auto& p : spec.parents)
        if (present.count(p.type) && std::find(deps.begin(), deps.end(), p.type) == deps.end()) deps.push_back(p.type);
      graph.add_node(spec.type, std::move(deps), node_task(spec, level, scope));
    }
  }

  engine::dag::node_fn node_task(const resource_spec& spec, dag_level level, const scope_info& scope) {
    std::string type = spec.type;
    if (type == "project") return [this]() { return migrate_projects(); };
    if (spec.parents.empty()) return [this, type, scope]() { return migrate_type(type, scope); };
    return [this, type, level, scope]() -> asio::awaitable<void> {
      auto parents = co_await parents_of(spec_of(type), level, scope);
      co_await migrate_children(type, scope, std::move(parents));
    };
  }

  /// The parent objects (type, source id) whose children of `spec` are listed at this level: the org,
  /// the project being migrated, or each selected source object of a parent type (only the mapped ones
  /// when the table says so).
  asio::awaitable<std::vector<std::pair<std::string, std::string>>> parents_of(const resource_spec& spec, dag_level level,
                                                                                scope_info scope) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& p : spec.parents) {
      if ((p.type == "organization") != (level == dag_level::organization)) continue;
      if (p.type == "organization") {
        out.emplace_back(p.type, src_org);
      } else if (p.type == "project") {
        out.emplace_back(p.type, scope.source_project);
      } else if (selected(p.type)) {
        auto objects = co_await source_objects(spec_of(p.type), scope);
        for (const auto& o : objects)
          if (!p.mapped_only || lookup(p.type, str_field(o, "id"))) out.emplace_back(p.type, str_field(o, "id"));
      }
    }
    co_return out;
  }

  void note_dag(const engine::dag& graph, const std::string& label) {
    for (const auto& r : graph.results()) {
      if (r.state == engine::node_state::failed || r.state == engine::node_state::skipped ||
          r.state == engine::node_state::cancelled)
        report.add_error(label + " " + r.name + " " + std::string(engine::to_string(r.state)) + ": " + r.message);
    }
  }

  asio::awaitable<void> migrate_projects() {
    const auto& spec = spec_of("project");
    auto sources = co_await src.list(spec.path, {}, 100);
    std::vector<json::object> chosen;
    for (auto& p : sources) {
      std::string name = str_field(p, "name");
      if (str_field(p, "id").empty() || name.empty()) continue;
      if (!opts.projects.empty() && std::find(opts.projects.begin(), opts.projects.end(), name) == opts.projects.end())
        continue;
      if (std::find(opts.exclude_projects.begin(), opts.exclude_projects.end(), name) != opts.exclude_projects.end())
        continue;
      chosen.push_back(std::move(p));
    }
    for (const auto& want : opts.projects) {
      bool found = std::any_of(chosen.begin(), chosen.end(), [&](const auto& p) { return str_field(p, "name") == want; });
      if (!found) report.add_error("project '" + want + "' (from --projects) does not exist in the source organization");
    }
    dest_index dest;
    for (auto& o : co_await dst.list(spec.path, {}, 100)) dest.add(spec, std::move(o));
    co_await for_each_bounded(base_ex, chosen.size(), opts.max_concurrent_projects,
                              [&](std::size_t i) { return migrate_project(chosen[i], dest); });
  }

  asio::awaitable<std::string> org_id(const resource_client& c) {
    try {
      auto v = co_await c.get("/v1/organization?limit=1");
      const json::array* arr = v.is_array() ? &v.as_array() : nullptr;
      if (v.is_object() && v.as_object().contains("objects") && v.as_object().at("objects").is_array())
        arr = &v.as_object().at("objects").as_array();
      if (arr && !arr->empty() && arr->front().is_object()) {
        auto id = str_field(arr->front().as_object(), "id");
        if (!id.empty()) co_return id;
      }
    } catch (const api_failure&) {
      // Older deployments: fall back to a project's org_id below.
    }
    auto projects = co_await c.get("/v1/project?limit=1");  // one project is enough: not the whole list
    if (projects.is_object() && projects.as_object().contains("objects") && projects.as_object().at("objects").is_array())
      for (const auto& p : projects.as_object().at("objects").as_array())
        if (p.is_object())
          if (auto id = str_field(p.as_object(), "org_id"); !id.empty()) co_return id;
    co_return std::string{};
  }

  asio::awaitable<void> run() {
    base_ex = co_await asio::this_coro::executor;
    report.set_dry_run(opts.dry_run);
    persistent.for_each([&](std::string_view t, std::string_view s, std::string_view d) {
      if (!t.starts_with(k_pending_prefix)) any_ids[std::string(s)] = std::string(d);
    });
    try {
      src_org = co_await org_id(src);
      dst_org = co_await org_id(dst);
    } catch (const std::exception& ex) {
      report.add_error(std::string("cannot read the organizations: ") + ex.what());
      co_return;
    }
    if (!src_org.empty() && !dst_org.empty()) record("organization", src_org, dst_org);

    engine::dag graph;
    build_dag(graph, dag_level::organization, scope_info{"organization", {}, {}});
    co_await graph.run();
    note_dag(graph, "organization");
    co_await link_pending();
    co_await pin_pass();
    co_await migrate_environment_objects();
  }
};

org_migrator::org_migrator(resource_options opts, resource_api& source, resource_api& dest, id_map& ids,
                           migration_report& report)
    : impl_(std::make_shared<impl>(std::move(opts), source, dest, ids, report)) {}

org_migrator::~org_migrator() = default;

void org_migrator::on_object_ready(object_ready_fn fn) { impl_->ready = std::move(fn); }

void org_migrator::on_object_replaced(object_replaced_fn fn) { impl_->on_replaced = std::move(fn); }

asio::awaitable<void> org_migrator::run() { co_await impl_->run(); }

}  // namespace ferry::pipelines::resources
