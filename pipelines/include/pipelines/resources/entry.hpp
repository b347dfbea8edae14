#pragma once
// Entry points the CLI wires in (apps/ is the lead's):
//
//   run_migrate(cfg, source, dest, out)   resources DAG (org -> projects -> per-project types -> ACLs),
//                                          honouring dry_run (GET only, the plan printed), then
//                                          migration_report.json written to cfg.report_path (default
//                                          <state_dir>/migration_report.json; a dry run writes
//                                          migration_plan.json instead) and the summary printed to `out`.
//                                          Returns 0 on success, 1 when anything failed.
//   run_validate(cfg, source, dest, out)   connectivity, auth and permission probes on both sides and
//                                          retention hazards; one line per check; 0 when nothing FAILed.
//   (http_api.hpp has the HTTP forms: make_http_sides(cfg, ex) and run_validate(cfg, out).)
//
// The APIs are passed in (an adapter over transports' api_client in production, in-process emulators in
// tests). `state` (may be null: ids then live in memory for this run only) persists the id maps; a dry
// run never writes it. `on_ready` is the hook event streams start from (see org_migrator).
// Both functions block the calling thread on their own io_context unless an executor-driven variant is used.

#include "pipelines/migrate_config.hpp"
#include "pipelines/resources/api.hpp"
#include "pipelines/resources/org_migrator.hpp"
#include "pipelines/resources/report.hpp"

#include <boost/asio/awaitable.hpp>

#include <ostream>
#include <string>
#include <vector>

namespace ferry::stores {
class state_store;
}

namespace ferry::pipelines::resources {

/// Coroutine form: runs the migration on the awaiting executor (use one that is not a strand).
boost::asio::awaitable<int> migrate_resources(const migrate_config& cfg, resource_api& source, resource_api& dest,
                                              stores::state_store* state, migration_report& report,
                                              object_ready_fn on_ready = {});
/// The same with the options already derived (options_from(cfg), possibly narrowed by the caller).
boost::asio::awaitable<int> migrate_resources(resource_options opts, resource_api& source, resource_api& dest,
                                              stores::state_store* state, migration_report& report,
                                              object_ready_fn on_ready = {});

/// Blocking form for the CLI: own io_context, report file, summary on `out`.
int run_migrate(const migrate_config& cfg, resource_api& source, resource_api& dest, stores::state_store* state,
                std::ostream& out, object_ready_fn on_ready = {});

enum class check_level { ok, warn, fail };
struct check_result {
  check_level level = check_level::ok;
  std::string side;     // "source" / "destination"
  std::string check;    // "connectivity", "auth", "read dataset", "acl probe", "retention"
  std::string message;  // one line, actionable
};
std::string_view to_string(check_level l);

boost::asio::awaitable<std::vector<check_result>> validate(const migrate_config& cfg, resource_api& source,
                                                           resource_api& dest);
int run_validate(const migrate_config& cfg, resource_api& source, resource_api& dest, std::ostream& out);
/// Prints one line per check ("FAIL destination auth: ..."); 0 when nothing FAILed, else 1.
int print_checks(const std::vector<check_result>& results, std::ostream& out);

}  // namespace ferry::pipelines::resources
