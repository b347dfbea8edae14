#pragma once
// Dataset version pins, mapped after the datasets' streams (issue 13). A dataset version (an experiment's
// dataset_version, a snapshot's xact_id, an environment's object_version of a dataset) selects the rows
// whose SOURCE _xact_id is <= the pin. The resource phase cannot map it (the rows are written later, by
// the dataset's stream), so it drops the pin with its reason (state drops: the experiment's field, the
// snapshot or assignment skipped whole). Once the dataset's stream reached its end in this run, the pin
// is exact when no row of the source dataset is newer than the pin (max source _xact_id <= pin, a BTQL
// probe) and the destination dataset holds as many rows as the source one (count probe: an adopted
// dataset with rows of its own has no equal version): the destination then holds exactly those rows, and
// the pin maps to the destination dataset's newest _xact_id. The pass records it as pin:dataset (read by later runs' pin lookups and by verify),
// patches the experiment, creates the snapshot, PUTs the assignment, and replaces the drop records.
// A pin older than a later row stays dropped with its reason. Re-runs: the resource phase maps the pin
// through the pin:dataset record, so nothing is left for this pass (idempotent).

#include "pipelines/resources/api.hpp"
#include "pipelines/resources/report.hpp"

#include <boost/asio/awaitable.hpp>

#include <set>
#include <string>

namespace ferry::stores {
class state_store;
}

namespace ferry::pipelines::resources {

/// The newest _xact_id of a dataset's rows ("" = no row), by a one-row BTQL probe (sorted by _xact_id).
boost::asio::awaitable<std::string> newest_dataset_xact(const resource_client& side, std::string dataset_id);

/// `complete`: the source datasets whose event stream reached its end in this run with every row written.
boost::asio::awaitable<void> map_dataset_pins(resource_api& source, resource_api& dest, stores::state_store& state,
                                              migration_report& report, std::set<std::string> complete);

}  // namespace ferry::pipelines::resources
