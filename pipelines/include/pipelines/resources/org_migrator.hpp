#pragma once
// The organisation run of resource migration, as a DAG (engine::dag):
//
//   org:   ai_secret   role (parents first)   group (parents first)   env_var(org)   projects
//                                                                                      │ per project, at most
//                                                                                      │ max_concurrent_projects
//   project:  dataset  project_tag  span_iframe  mcp_server  env_var(project)          │ at once, a DAG of its own:
//               │  function (after dataset, mcp_server) ── env_var(function)           │
//               │  prompt (after function, mcp_server)                                 │
//               │  project_score (after function, prompt)                              │
//               │  experiment (after dataset, function, prompt; base experiments first) │
//               └─ dataset_snapshot, view (after experiment, dataset), project_automation (after all)
//   acl (after role, group, projects: every object an ACL can name)
//
// Each node lists its source objects once (org-wide lists shared between projects are fetched once and
// cached), lists the destination once per type/scope, and handles objects with at most
// `max_concurrent_resources` in flight, level by level when objects of one type depend on each other.
// Per object: rewrite (specs.hpp) -> match the destination by the persisted id map, else by uniqueness
// key -> adopt / abort / update per `on_name_conflict`, or create -> record the mapping -> report.
// A second run therefore creates nothing and reports adopted/unchanged.
//
// dry_run: only GETs are sent; the plan is recorded in the report as would_create / would_update /
// adopted / unchanged / skipped, with dependents resolved through placeholder ids (never persisted).
//
// Hook: on_object_ready(kind, source_id, dest_id) is called as soon as a project, experiment or dataset
// exists in the destination (created or adopted; not in a dry run), so its event stream can start.
// The id map is checked, not trusted: a mapped object missing from the destination listing is read by id;
// a 404 means it was deleted there, so it is created again, its mapping replaced, and (for those three
// kinds) on_object_replaced(kind, source_id) fires first so its stream's recorded progress is forgotten.
//
// Threading: run() is awaited once, from a coroutine on the io_context executor (not a strand), so DAG
// nodes run in parallel on their own strands. Shared state (caches, id maps, report) is locked.
// Lifetime: the apis, id map and report must outlive run(). Failures of single objects are reported and
// never stop the run; a type whose listing fails fails its DAG node (its dependents are skipped and the
// reason is in the report's errors).

#include "pipelines/migrate_config.hpp"
#include "pipelines/resources/api.hpp"
#include "pipelines/resources/id_map.hpp"
#include "pipelines/resources/report.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace ferry::pipelines::resources {

struct resource_options {
  std::set<std::string> types;  // spec types to migrate ("dataset", ...); projects are always resolved
  bool logs = true;             // project logs streams selected (for the hook's consumers)
  std::vector<std::string> projects;          // exact names; empty = all
  std::vector<std::string> exclude_projects;  // exact names
  std::string created_after;   // comparable_time() form; applies to experiments and datasets
  std::string created_before;  // exclusive
  /// The window selects the experiments and datasets themselves (the table's created_window types).
  /// Off when only event streams are selected: the window then applies to rows only.
  bool window_selects_objects = true;
  name_conflict_policy on_name_conflict = name_conflict_policy::adopt;
  bool dry_run = false;
  std::size_t max_concurrent_projects = 2;
  std::size_t max_concurrent_resources = 5;
  bool acl_map_users = false;
  bool acl_auto_invite_users = false;
  bool group_map_users = false;
  bool group_auto_invite_users = false;
};

/// Translates the migrate config: `resources` / `exclude` accept the selection names ("datasets",
/// "acls", "logs", ... see selection_names()) — exclude also accepts project names. Throws
/// std::invalid_argument naming an unknown resource name.
resource_options options_from(const migrate_config& cfg);

using object_ready_fn = std::function<void(std::string_view kind, const std::string& source_id,
                                           const std::string& dest_id)>;

/// A project / experiment / dataset whose mapped destination object no longer existed and was created
/// again (its event stream must then be copied again). Called before on_object_ready for it.
using object_replaced_fn = std::function<void(std::string_view kind, const std::string& source_id)>;

class org_migrator {
 public:
  org_migrator(resource_options opts, resource_api& source, resource_api& dest, id_map& ids,
               migration_report& report);
  ~org_migrator();
  org_migrator(const org_migrator&) = delete;
  org_migrator& operator=(const org_migrator&) = delete;

  void on_object_ready(object_ready_fn fn);
  void on_object_replaced(object_replaced_fn fn);
  /// Runs the whole org DAG (see the file comment). Never throws for API failures (they are in the report).
  boost::asio::awaitable<void> run();

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace ferry::pipelines::resources
