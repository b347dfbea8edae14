#include "version_pins.hpp"

#include "../json_fields.hpp"
#include "pipelines/resources/id_map.hpp"

namespace ferry::pipelines::resources {

namespace json = boost::json;

namespace {

std::string field(const json::object& o, std::string_view f) {
  auto it = o.find(f);
  return it != o.end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
}

bool has(const json::object& o, std::string_view f) {
  auto it = o.find(f);
  return it != o.end() && !it->value().is_null();
}

/// SavedFunctionId {"type":"function","id","version"}, FunctionId {"function_id","version"} and a prompt
/// origin {"prompt_id","prompt_version"}, anywhere inside `v`.
void function_pins(const json::value& v, std::vector<pin_target>& out) {
  if (v.is_array()) {
    for (const auto& x : v.as_array()) function_pins(x, out);
    return;
  }
  if (!v.is_object()) return;
  const auto& o = v.as_object();
  if (has(o, "version")) {
    if (field(o, "type") == "function" && !field(o, "id").empty()) out.push_back({"function", field(o, "id")});
    else if (!field(o, "function_id").empty()) out.push_back({"function", field(o, "function_id")});
  }
  if (has(o, "prompt_version") && !field(o, "prompt_id").empty()) out.push_back({"function", field(o, "prompt_id")});
  for (const auto& kv : o) function_pins(kv.value(), out);
}

}  // namespace

std::vector<pin_target> pin_targets(const json::object& source) {
  std::vector<pin_target> out;
  for (std::string_view blob : {"prompt_data", "function_data", "config", "settings"})
    if (auto it = source.find(blob); it != source.end()) function_pins(it->value(), out);
  if (has(source, "parameters_version") && !field(source, "parameters_id").empty())
    out.push_back({"function", field(source, "parameters_id")});
  if (has(source, "dataset_version") && !field(source, "dataset_id").empty())
    out.push_back({"dataset", field(source, "dataset_id")});
  if (has(source, "xact_id") && !field(source, "dataset_id").empty())  // a dataset snapshot
    out.push_back({"dataset", field(source, "dataset_id")});
  return out;
}

version_pins::version_pins(const resource_client& src, const resource_client& dst, dest_id_fn dest_id)
    : src_(src), dst_(dst), dest_id_(std::move(dest_id)) {}

namespace {

/// The current _xact_id of a function (prompts are functions), "" when it does not exist.
boost::asio::awaitable<std::string> current_version(const resource_client& c, std::string id) {
  json::value v;
  try {
    v = co_await c.get("/v1/function/" + id);
  } catch (const api_failure& f) {
    if (f.status() != 404) throw;
    co_return std::string{};
  }
  co_return v.is_object() ? str_field(v.as_object(), "_xact_id") : std::string{};
}

}  // namespace

boost::asio::awaitable<void> version_pins::prefetch(std::vector<pin_target> targets) {
  for (const auto& t : targets) {
    if (t.space != "function") continue;  // dataset pins: nothing to read (see lookup)
    bool known;
    {
      std::lock_guard lock(mu_);
      known = src_current_.count(t.source_id) > 0;
    }
    if (!known) {
      auto cur = co_await current_version(src_, t.source_id);
      std::lock_guard lock(mu_);
      src_current_[t.source_id] = cur;
    }
    auto d = dest_id_(t.space, t.source_id);
    if (!d || d->find(':') != std::string::npos) continue;  // unmapped, or a dry run's placeholder
    auto cur = co_await current_version(dst_, *d);
    std::lock_guard lock(mu_);
    dst_current_[*d] = cur;
  }
}

std::optional<std::string> version_pins::lookup(std::string_view space, std::string_view source_id,
                                                std::string_view version, std::string& why) const {
  const std::string sid(source_id), ver(version);
  if (space == "dataset") {
    // Mapped by an earlier run's pass after the dataset's stream (dataset_pins.hpp), or not (yet).
    if (auto d = dest_id_(std::string(k_pin_prefix) + "dataset", ver); d && !d->empty()) return d;
    why = "dataset version " + ver + " selects rows by their source transaction ids; it is mapped after the "
          "dataset's rows are copied only when no row of the dataset is newer than it (rows changed after the "
          "pin have no destination version holding exactly the pinned rows: re-create the pin there)";
    return std::nullopt;
  }
  std::lock_guard lock(mu_);
  auto s = src_current_.find(sid);
  if (s == src_current_.end() || s->second.empty()) {
    why = "pinned " + std::string(space) + " " + sid + " was not found at the source";
    return std::nullopt;
  }
  if (s->second != ver) {
    why = "pins version " + ver + " of " + std::string(space) + " " + sid + ", not its current version " + s->second +
          ": only current versions are migrated, so the pinned one has no destination version";
    return std::nullopt;
  }
  auto d = dest_id_(space, sid);
  if (!d) {
    why = std::string(space) + " " + sid + " has no destination mapping";
    return std::nullopt;
  }
  auto dv = dst_current_.find(*d);
  if (dv == dst_current_.end() || dv->second.empty()) {
    why = "the destination version of " + std::string(space) + " " + sid + " (" + *d + ") could not be read";
    return std::nullopt;
  }
  return dv->second;
}

}  // namespace ferry::pipelines::resources
