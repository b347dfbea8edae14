#pragma once
// Internal to pipelines: `ferry verify`'s independent check of the resources (issue 13 item 5), for
// EVERY type of the resource table (resources::resource_specs(): a type added there is checked here
// without further edits).
//
// Both sides are read with the resources' own lister (paged to an empty page, whatever the server's
// page size), each type the way its table row says it is listed (org-wide, per project, per parent
// object, per dataset), restricted to what the migration selects (projects, types, created window).
// Objects are paired through the state dir's id map; an object the map does not know (or every object
// when there is no state dir) is paired by its natural key (the table's uniqueness key, ids mapped,
// within its project), and the pairs found that way map the ids of the objects after it (types are
// visited parents first). Users are paired by email when no state dir maps them.
//
// For every pair, each field the type's create (and after-create) schema names is compared canonically:
// the source value with every id mapped (map_ids), member lists as sets, server-managed fields and
// write-only values (AI secret and env var values: never read, never printed) left out. What the
// migration reported dropping (drops) or skipping (migration_report.json) is a NOTE, not a difference.
// Then every reference held by a destination object (its table row's ref_fields: typed ids such as
// role_id or member_groups, and ids inside JSON blobs that the id map knows) must name an existing
// destination object of the right type (looked up in the listings, else GET <path>/<id>).
//
// Each difference is one line "resource <type> '<name>' (<source id>)[ field <f>]: <why>". Destination
// objects no source object pairs with are not differences (a destination may hold more: its built-in
// roles, objects made there) but are counted and named per type, so a duplicate shows.

#include "run_context.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace ferry::pipelines {

/// Source object id -> (field path, reason) the migration reported dropping.
using drops_by_id = std::map<std::string, std::vector<std::pair<std::string, std::string>>>;

struct resource_verify_result {
  std::vector<std::string> diffs;  // one line each, without the leading "DIFF "
  std::vector<std::string> notes;  // dropped or skipped by the migration as it reported
  std::vector<std::string> dest_only;  // per type: destination objects no source object pairs with (not compared)
  std::vector<std::string> failures;   // per type that could not be listed: "resource <type>: not compared: <why>"
  boost::json::array checks;  // per type: {"type": "fields:<type>", objects, differences, as_reported, dest_only}
  std::size_t objects = 0;         // source objects checked
};

/// Reads both sides and compares every selected object of every resource type (see the file comment).
/// A type whose listing fails is one line in `failures` (its objects not compared, never equal); other
/// failures (organization ids, a GET other than a 404, a cancellation) throw.
boost::asio::awaitable<resource_verify_result> verify_resources(run_context& c, const drops_by_id& drops);

/// The same comparison with the source objects answered by `source` instead of c.src (`ferry verify
/// --archive`: an archive's resource_api, whose organization is `source_org`; c.src is not used) and the
/// drops the state dir recorded (an import's), if any.
boost::asio::awaitable<resource_verify_result> verify_resources_from(run_context& c, resources::resource_api& source,
                                                                     std::string source_org);

/// `v` with every id `lookup` maps replaced by its destination id, recursively and also inside text
/// ("experiment_id = '<id>'"); ids of listed source objects (`known`) that map nowhere are kept and
/// collected in `unmapped`.
boost::json::value map_ids(const boost::json::value& v,
                           const std::function<std::optional<std::string>(const std::string&)>& lookup,
                           const std::set<std::string>& known, std::set<std::string>& unmapped);

/// `expected` (the source field `f`, ids mapped) without what the migration reported dropping from it;
/// the reasons in `why`.
boost::json::value without_reported_drops(boost::json::value expected, const std::string& f,
                                          const std::vector<std::pair<std::string, std::string>>* drops,
                                          std::string& why);

}  // namespace ferry::pipelines
