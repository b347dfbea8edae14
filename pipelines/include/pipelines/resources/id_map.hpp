#pragma once
// Source id -> destination id maps, one namespace per resource type (plus "user" and "organization"),
// persisted so that a re-run or a resumed run remaps through what earlier runs created.
//
// `state_id_map` keeps them in stores::state_store (put_id/get_id, the `id_map` column family), written
// synced so a crash never loses the mapping of an object that already exists in the destination. `memory_id_map` is for tests
// and dry runs (a dry run must not write the state of a real run either).
//
// Thread-safety: all methods may be called concurrently from any thread.

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::stores {
class state_store;
}

namespace ferry::pipelines::resources {

/// Id-map namespace prefix of the create journal and pending links ("pending:<type>": source id -> value).
/// Every create writes the intent (k_pending_intent) first, synced; then the value becomes the destination
/// id while the object waits for the link pass (a reference whose target was not mapped yet), and "" once
/// nothing is left to do (the state has no delete). A non-empty value makes the object Ferry's own on a
/// later run: its destination twin is adopted whatever on_name_conflict says, and linked.
inline constexpr std::string_view k_pending_prefix = "pending:";
/// Id-map namespace prefix of the version pins mapped ("pin:function", "pin:dataset"): source version ->
/// the destination version the pins of it were given, "" when ambiguous (see version_pins.hpp). A reader
/// such as `ferry verify` maps a pin field's value through it as it maps ids through the id maps.
inline constexpr std::string_view k_pin_prefix = "pin:";
/// The value of a journal record written before the create (its destination id not known yet).
inline constexpr std::string_view k_pending_intent = "+";

class id_map {
 public:
  virtual ~id_map() = default;
  virtual std::optional<std::string> get(std::string_view type, std::string_view source_id) const = 0;
  virtual void put(std::string_view type, std::string_view source_id, std::string_view dest_id) = 0;
  /// Visits every mapping (type, source, dest).
  virtual void for_each(const std::function<void(std::string_view, std::string_view, std::string_view)>& fn) const = 0;
};

class memory_id_map final : public id_map {
 public:
  std::optional<std::string> get(std::string_view type, std::string_view source_id) const override;
  void put(std::string_view type, std::string_view source_id, std::string_view dest_id) override;
  void for_each(const std::function<void(std::string_view, std::string_view, std::string_view)>& fn) const override;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, std::string, std::less<>> map_;
};

class state_id_map final : public id_map {
 public:
  /// `store` must outlive this object.
  explicit state_id_map(stores::state_store& store);
  std::optional<std::string> get(std::string_view type, std::string_view source_id) const override;
  void put(std::string_view type, std::string_view source_id, std::string_view dest_id) override;
  /// Visits the types Ferry writes (every resource spec type, "user", "organization").
  void for_each(const std::function<void(std::string_view, std::string_view, std::string_view)>& fn) const override;

 private:
  stores::state_store& store_;
};

}  // namespace ferry::pipelines::resources
