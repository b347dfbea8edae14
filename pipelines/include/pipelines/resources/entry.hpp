#pragma once
// The resources migration's entry points (the CLI reaches them through pipelines/migrate.hpp and
// resources/http_api.hpp):
//
//   migrate_resources(cfg | opts, source, dest, state, report, on_ready)
//        the org DAG (org -> projects -> per-project types -> ACLs, built from the table in specs.hpp),
//        honouring dry_run (GET only, the plan in `report`). `state` (may be null: ids then live in
//        memory for this run only) persists the id maps; a dry run never writes it. `on_ready` is the
//        hook event streams start from (see org_migrator). Returns 0, 1 when anything failed, 2 for a
//        bad selection.
//   validate(cfg, source, dest)
//        connectivity, auth and permission probes on both sides and retention hazards; print_checks
//        prints one line per check (http_api.hpp's run_validate(cfg, out) is the blocking command).
//
// The APIs are passed in (an adapter over transports' api_client in production, in-process emulators
// in tests).

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
/// Prints one line per check ("FAIL destination auth: ..."); 0 when nothing FAILed, else 1.
int print_checks(const std::vector<check_result>& results, std::ostream& out);

}  // namespace ferry::pipelines::resources
