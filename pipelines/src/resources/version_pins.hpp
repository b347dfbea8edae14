#pragma once
// Internal to pipelines/resources: version pins. A pin names a version of another object by a SOURCE
// transaction id (a prompt origin's prompt_version, a SavedFunctionId's version, an experiment's
// parameters_version and dataset_version, a dataset snapshot's xact_id, an environment's object_version),
// which means nothing in the destination. A pin is mapped when an equivalent destination version can be
// established, else it is dropped (never forwarded) with the reason:
//
//  - function space (prompts, functions, parameters): Ferry copies an object's CURRENT version only. A pin
//    of the source object's current _xact_id maps to the destination object's current _xact_id, read after
//    the link pass and after the pinned object's own pins were set (org_migrator's pin pass runs in
//    dependency order); a pin of an older version has no destination equivalent.
//  - dataset space: a dataset version selects rows by their source _xact_id; the rows are written by the
//    dataset's event stream after the resources, with destination transaction ids that no API call returns
//    per row (/logs3 answers row ids only). The resource phase drops such a pin; the pass after the streams
//    (dataset_pins.hpp) maps it when exact and records pin:dataset, which lookup() answers from afterwards.
//
// prefetch() reads what the pins of one source object need (both sides' current versions of the pinned
// objects); lookup() answers from that, synchronously (it is the rewriter's id_lookup::version).
// Thread-safety: one mutex around the caches; prefetch/lookup may run on any strand concurrently.

#include "pipelines/resources/api.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::pipelines::resources {

/// The object a pin names: its id space ("function", "dataset") and source id.
struct pin_target {
  std::string space;
  std::string source_id;
};

/// Every pin inside a source object (any type: the pin fields are the same wherever they occur).
std::vector<pin_target> pin_targets(const boost::json::object& source);

class version_pins {
 public:
  /// `dest_id(space, source id)`: the destination id of a source object of that id space, if mapped.
  using dest_id_fn = std::function<std::optional<std::string>(std::string_view space, std::string_view source_id)>;
  /// The clients must outlive this object.
  version_pins(const resource_client& src, const resource_client& dst, dest_id_fn dest_id);

  /// Reads the source's current version of each target (once per run: the source is not written) and the
  /// destination's current version of its mapped twin (every time: patches move it).
  boost::asio::awaitable<void> prefetch(std::vector<pin_target> targets);
  /// The destination version equivalent to `version` of `source_id`, or nullopt with the reason in `why`.
  std::optional<std::string> lookup(std::string_view space, std::string_view source_id, std::string_view version,
                                    std::string& why) const;

 private:
  const resource_client& src_;
  const resource_client& dst_;
  dest_id_fn dest_id_;
  mutable std::mutex mu_;
  std::map<std::string, std::string> src_current_;  // source function id -> current _xact_id ("" = gone)
  std::map<std::string, std::string> dst_current_;  // destination function id -> current _xact_id
};

}  // namespace ferry::pipelines::resources
