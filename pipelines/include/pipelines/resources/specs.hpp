#pragma once
// The table of Braintrust resource types Ferry migrates (specs.cpp, one row per type), and the per-type
// rewrite of a source object into a destination create payload (rewrite.cpp, one hook per type). One
// generic engine (org_migrator) reads this table and builds its DAGs from it; nothing here does I/O.
//
// A row says: where the type is listed (path + server-side filter, org-wide with a local project
// filter, or per parent object for views / env vars, with the parents' types), where it is created,
// its scope (organization or project), which types it runs after (the DAG edges; a parent type is an
// edge too), its uniqueness key (what "the same object" means for adopt-by-name), the create and PATCH
// field allow-lists (from the OpenAPI `Create*`/`Patch*` schemas, bundled into the binary at build
// time from openapi_schemas.json), how an update is expressed (plain PATCH, or the add_/remove_ member
// lists of roles and groups), its id space (prompts are functions: one id space, looked up through
// either map), whether the created window selects its objects, whether event streams hang off it, and
// its rewrite and in-list dependency hooks. Adding a type is one row plus, if its objects reference
// others, one rewrite function.
//
// rewrite() remaps EVERY reference of a source object through the id maps, also inside JSON blobs
// (prompt_data.tool_functions / origin / mcp, function origin and function_data refs, project score
// scorers, automation configs...). An id with no mapping is never forwarded: the field (or the array
// entry) is dropped with the reason recorded, or the whole object is skipped with a reason.
//
// Thread-safety: the table is immutable after first use (built once, thread-safe static init); rewrite()
// is a pure function of its arguments.

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::pipelines::resources {

/// Where the source objects of a type are found.
enum class list_mode {
  org,               // GET <path> (whole org)
  project_param,     // GET <path>?project_id=<source project>
  project_local,     // GET <path> org-wide once, filtered locally on project_id (no server filter)
  parent_object,     // GET <path>?object_type=<t>&object_id=<id> per parent (views, env vars)
  acl_list_org,      // GET /v1/acl/list_org (bare array)
  dataset_local,     // org-wide, filtered locally on dataset_id (dataset snapshots)
  /// GET <path>/<parent type>/<parent id> per parent object: assignments addressed by path, not objects
  /// with an id (environment-object: which version of an object an environment uses), written by PUT
  /// <path>/<parent type>/<destination id>/<key>. Not a DAG node: migrated by the version-pin pass, once
  /// every pinned object has its final destination version.
  path_assignment,
};

/// How an existing destination object is brought to the source's content (on_name_conflict=update).
enum class update_style {
  patch,         // PATCH <path>/<id> with the payload restricted to the patch fields
  member_delta,  // roles/groups: PATCH with add_/remove_ member lists computed against the destination
  none,          // ACLs: content-identical or different object; nothing to update
};

namespace detail {
struct rewriter;
}
/// A type's rewrite: adjusts `payload` (the source object filtered to the create fields) through `rw`
/// (id lookups, drops, skips). See rewrite.cpp.
using rewrite_hook = void (*)(detail::rewriter& rw, const boost::json::object& source, boost::json::object& payload);
/// The source ids an object depends on inside its own type's list (member_roles, base_exp_id...).
using in_type_deps_hook = std::vector<std::string> (*)(const boost::json::object& o);

/// A parent whose children are listed per object (list_mode::parent_object): "organization" (the org),
/// "project" (the project being migrated), or a resource type (each of its selected source objects;
/// with `mapped_only`, only those already mapped to the destination).
struct parent_kind {
  std::string type;
  bool mapped_only = false;
};

struct resource_spec {
  std::string type;   // "dataset"; also the id-map namespace, the report key and the DAG node name
  std::string path;   // "/v1/dataset"
  bool project_scoped = false;  // lives in a project (its create payload carries project_id)
  list_mode list = list_mode::org;
  bool cursors = true;  // the list takes starting_after (OpenAPI StartingAfter); false: one unpaged request
  std::vector<std::string> unique;         // uniqueness key fields; empty = whole content (ACLs)
  std::vector<std::string> create_fields;  // OpenAPI Create* properties
  std::vector<std::string> required;       // OpenAPI Create* required
  std::vector<std::string> patch_fields;   // OpenAPI Patch* properties
  update_style update = update_style::patch;
  std::string hidden_value_field;  // a write-only value the API never returns (ai_secret.secret, env_var.value)
  std::vector<std::string> after;      // DAG: the types (of the same DAG) this one runs after
  std::vector<parent_kind> parents;    // list_mode::parent_object: whose children are listed
  std::string id_space;                // types sharing one id space (prompt, function: "function")
  std::string listed_by;               // objects this type's listing repeats from another type, migrated there
  bool created_window = false;         // created_after/before select the objects (experiment, dataset)
  bool has_streams = false;            // project / experiment / dataset: the ready hook fires for it
  bool sets_project = false;           // the payload's project_id is the (mapped) project
  std::vector<std::string> patch_keeps;  // destination fields every PATCH repeats (PatchView's object ref)
  /// The top-level fields that can hold ids of other objects (also inside JSON blobs), the ones rewrite()
  /// remaps: the one list of id-holding fields per type. The link pass (create-then-patch) re-sends those
  /// of them the type's PATCH takes.
  std::vector<std::string> ref_fields;
  /// Fields the create does not take but the PATCH does (project settings): kept in the rewritten payload,
  /// left out of the POST and set by the link pass.
  std::vector<std::string> set_after_create;
  rewrite_hook rewrite = nullptr;
  in_type_deps_hook in_type_deps = nullptr;
};

/// Every type, in the order the org DAG runs them (see org_migrator).
const std::vector<resource_spec>& resource_specs();
/// The spec of a type; throws std::out_of_range naming the type when unknown.
const resource_spec& spec_of(std::string_view type);
/// The spec of a type, or null ("user", "organization" are id-map types with no spec).
const resource_spec* find_spec(std::string_view type);
/// The types of one id space, in table order (empty for a type without one).
std::vector<std::string> id_space_types(std::string_view space);
/// `type` first, then the other types of its id space (prompts are functions): the types an object of
/// `type` may be filed or mapped under. Just `type` when it has no id space (or is not in the table).
std::vector<std::string> types_sharing_ids(std::string_view type);
/// The user-facing selection names ("datasets", "acls", ...) accepted by `--resources`/`--exclude`, each
/// mapped to a spec type ("dataset", "acl"); "logs" and "projects" are selection names with no spec.
std::optional<std::string> type_for_selection(std::string_view name);
std::vector<std::string> selection_names();

/// Id lookups a rewrite needs. `lookup(type, source_id)` answers from the persistent id maps; types are
/// spec types plus "user" (users mapped by email) and "organization" (the one org id).
struct id_lookup {
  std::function<std::optional<std::string>(std::string_view type, std::string_view source_id)> lookup;
  /// Any type (used to remap ids embedded in free text such as BTQL queries of automations).
  std::function<std::optional<std::string>(std::string_view source_id)> lookup_any;
  /// A version pin: the destination version equivalent to `version` of the source object `source_id` of
  /// the id space `space` ("function", "dataset"), or nullopt with the reason in `why` (see version_pins).
  std::function<std::optional<std::string>(std::string_view space, std::string_view source_id, std::string_view version,
                                            std::string& why)>
      version;
};

struct rewrite_context {
  id_lookup ids;
  std::string dest_project_id;  // for project-scoped types: the destination project being migrated
  std::string source_project_id;
  std::string dest_org_id;
  bool map_users = false;  // group member_users / ACL user_id / view user_id mapped via the "user" map
  /// The last retry of deferred objects: a reference that only a later create could resolve (a function's
  /// origin) is dropped and reported instead of deferring the object again.
  bool last_chance = false;
};

struct dropped_field {
  std::string field;   // "dataset_version", "prompt_data.tool_functions[2]"
  std::string reason;  // one line
  bool reference = false;  // an id whose target is not mapped (yet): linked later when it is (create-then-patch)
  bool pin = false;        // a version pin with no destination version (yet): the pin pass retries it
};

struct rewrite_result {
  bool skip = false;
  std::string skip_reason;  // stable code, e.g. "code_bundle_not_migratable"
  std::string skip_detail;  // one line for humans
  bool deferrable = false;  // skipped only because a referenced object is not mapped yet: retry later
  boost::json::object payload;
  std::vector<dropped_field> dropped;
  std::vector<std::string> notes;  // e.g. "secret value must be re-entered"
};

/// Rewrites one source object of `type` into the destination create payload (see file comment).
rewrite_result rewrite(std::string_view type, const boost::json::object& source, const rewrite_context& ctx);

/// The uniqueness key of an object (source payload after rewrite, or a destination object): the unique
/// fields joined; for ACLs the whole content. Empty when a unique field is missing.
std::string uniqueness_key(const resource_spec& spec, const boost::json::object& o);

/// True when every field of `payload` equals the same field of `dest` (what "unchanged" means). Fields
/// the API never returns (hidden values) are ignored; member lists compare as sets.
bool same_content(const resource_spec& spec, const boost::json::object& payload, const boost::json::object& dest);

/// The PATCH body that brings `dest` to `payload`, or nullopt when the type cannot be updated.
std::optional<boost::json::object> patch_body(const resource_spec& spec, const boost::json::object& payload,
                                              const boost::json::object& dest);

/// Objects grouped into levels so that every object comes after the objects it depends on inside the same
/// list (role member_roles, group member_groups, experiment base_exp_id). `deps(i)` lists the source ids
/// object i depends on; ids not in the list are ignored (resolved through the id maps or dropped). Objects
/// on a cycle are returned in `cyclic` (never in a level).
struct levels {
  std::vector<std::vector<std::size_t>> order;
  std::vector<std::size_t> cyclic;
};
levels dependency_levels(const std::vector<boost::json::object>& objects,
                         const std::function<std::vector<std::string>(const boost::json::object&)>& deps);
/// The in-list dependencies of an object of `type` (its spec's in_type_deps hook: member_roles,
/// member_groups, base_exp_id, a prompt's origin and tools).
std::vector<std::string> in_type_dependencies(std::string_view type, const boost::json::object& o);

/// True when `s` has the 8-4-4-4-12 hex uuid shape.
bool looks_like_uuid(std::string_view s);
/// `created` timestamps normalised for ordering ("2024-01-02T03:04:05.000Z" and "...05Z" compare equal);
/// empty when unparsable.
std::string comparable_time(std::string_view iso);

}  // namespace ferry::pipelines::resources
