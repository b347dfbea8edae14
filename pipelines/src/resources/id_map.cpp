#include "pipelines/resources/id_map.hpp"

#include "pipelines/resources/specs.hpp"

#include "stores/state_store.hpp"

namespace ferry::pipelines::resources {

std::optional<std::string> memory_id_map::get(std::string_view type, std::string_view source_id) const {
  std::lock_guard lock(mutex_);
  auto it = map_.find(std::pair<std::string, std::string>(type, source_id));
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

void memory_id_map::put(std::string_view type, std::string_view source_id, std::string_view dest_id) {
  std::lock_guard lock(mutex_);
  map_[{std::string(type), std::string(source_id)}] = std::string(dest_id);
}

void memory_id_map::for_each(const std::function<void(std::string_view, std::string_view, std::string_view)>& fn) const {
  std::lock_guard lock(mutex_);
  for (const auto& [k, v] : map_) fn(k.first, k.second, v);
}

state_id_map::state_id_map(stores::state_store& store) : store_(store) {}

std::optional<std::string> state_id_map::get(std::string_view type, std::string_view source_id) const {
  return store_.get_id(type, source_id);
}

void state_id_map::put(std::string_view type, std::string_view source_id, std::string_view dest_id) {
  store_.put_id(type, source_id, dest_id, /*sync=*/true);
}

void state_id_map::for_each(const std::function<void(std::string_view, std::string_view, std::string_view)>& fn) const {
  std::vector<std::string> types{"user", "organization"};
  for (const auto& s : resource_specs()) {
    types.push_back(s.type);
    types.push_back(std::string(k_pending_prefix) + s.type);
  }
  for (const auto& t : types)
    store_.for_each_id(t, [&](std::string_view src, std::string_view dst) {
      fn(t, src, dst);
      return true;
    });
}

}  // namespace ferry::pipelines::resources
