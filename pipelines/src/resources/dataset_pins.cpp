#include "dataset_pins.hpp"

#include "../json_fields.hpp"
#include "pipelines/resources/id_map.hpp"
#include "stores/state_store.hpp"

#include "engine/log.hpp"

#include <boost/json/serialize.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace ferry::pipelines::resources {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

using dropped_fields = stores::state_store::dropped_fields;

/// A dropped dataset pin found in the state: what holds it and the source dataset and version it names.
struct dropped_pin {
  std::string type;       // experiment | dataset_snapshot | environment_object
  std::string source_id;  // the holder's source id (an assignment: "dataset/<dataset id>/<slug>")
  dropped_fields fields;  // the holder's drop record
  json::object source;    // the holder read from the source
  std::string dataset;    // source dataset id
  std::string version;    // the pinned source version
};

/// Transaction ids are decimal strings: shorter is smaller, then by characters.
bool xact_after(const std::string& a, const std::string& b) {
  return a.size() != b.size() ? a.size() > b.size() : a > b;
}

std::string btql_body(const std::string& q) {
  return json::serialize(json::object{{"query", q}, {"fmt", "json"}, {"api_version", 1}, {"use_brainstore", true}});
}


const json::object* first_row(const json::value& r) {
  const json::array* rows = nullptr;
  if (r.is_object())
    if (auto* d = r.as_object().if_contains("data"); d && d->is_array()) rows = &d->as_array();
  return rows && !rows->empty() && (*rows)[0].is_object() ? &(*rows)[0].as_object() : nullptr;
}

/// How many rows a dataset holds (-1 = not answered), as the streams' slice probe counts them.
asio::awaitable<std::int64_t> dataset_rows(const resource_client& c, std::string dataset_id) {
  const std::string q = "measures: count(1) as n\nfrom: dataset('" + dataset_id + "') spans";
  auto r = co_await c.send("POST", "/btql", btql_body(q));
  const auto* row = first_row(r);
  const auto* n = row ? row->if_contains("n") : nullptr;
  co_return n && n->is_number() ? n->to_number<std::int64_t>() : -1;
}

bool has_field(const dropped_fields& f, std::string_view path, std::string_view reason_prefix = {}) {
  for (const auto& [p, r] : f)
    if (p == path && r.starts_with(reason_prefix)) return true;
  return false;
}

/// The drop records that name a dataset pin the resource phase could not map.
std::vector<dropped_pin> dropped_pins(const stores::state_store& st) {
  std::vector<dropped_pin> out;
  const std::string skipped(k_skipped_prefix);
  st.for_each_dropped([&](std::string_view type, std::string_view sid, const dropped_fields& f) {
    const bool pin = (type == "experiment" && has_field(f, "dataset_version")) ||
                     (type == "dataset_snapshot" && has_field(f, "", skipped + "snapshot_version_not_mappable")) ||
                     (type == "environment_object" && sid.starts_with("dataset/") &&
                      has_field(f, "", skipped + "version_not_mappable"));
    if (pin) out.push_back({std::string(type), std::string(sid), f, {}, {}, {}});
    return true;
  });
  return out;
}

/// Reads the holder at the source and fills in the dataset and version it pins; false when it is gone.
asio::awaitable<bool> read_source(const resource_client& src, dropped_pin& p) {
  std::string path, dataset_field = "dataset_id", version_field;
  if (p.type == "experiment") {
    path = "/v1/experiment/" + p.source_id;
    version_field = "dataset_version";
  } else if (p.type == "dataset_snapshot") {
    path = "/v1/dataset_snapshot/" + p.source_id;
    version_field = "xact_id";
  } else {  // dataset/<id>/<slug>
    path = "/environment-object/" + p.source_id;
    version_field = "object_version";
    p.dataset = p.source_id.substr(8, p.source_id.find('/', 8) - 8);
  }
  json::value v;
  try {
    v = co_await src.get(path);
  } catch (const api_failure& f) {
    if (f.status() != 404) throw;
    co_return false;
  }
  if (!v.is_object()) co_return false;
  p.source = v.as_object();
  if (p.dataset.empty()) p.dataset = str_field(p.source, dataset_field);
  p.version = str_field(p.source, version_field);
  co_return !p.dataset.empty() && !p.version.empty();
}

// GCC 12 ("array used as initializer"): coroutine bodies build JSON and queries through plain functions.
json::object one_field(const std::string& name, const std::string& value) {
  json::object o;
  o[name] = value;
  return o;
}
json::object snapshot_body(const dropped_pin& p, const std::string& dest_dataset, const std::string& version) {
  json::object body;
  body["dataset_id"] = dest_dataset;
  body["name"] = str_field(p.source, "name");
  body["xact_id"] = version;
  if (auto* d = p.source.if_contains("description")) body["description"] = *d;
  return body;
}

dropped_fields without(dropped_fields f, std::string_view path) {
  std::erase_if(f, [&](const auto& d) { return d.first == path; });
  return f;
}

struct pass {
  resource_client src, dst;
  stores::state_store& st;
  state_id_map ids;
  migration_report& report;
  std::set<std::string> complete;
  std::map<std::string, std::optional<std::string>> mapped;  // "<dataset>@<version>" -> destination version

  /// The destination version holding exactly the rows of `version` of the source dataset, if exact.
  asio::awaitable<std::optional<std::string>> map(const std::string& dataset, const std::string& version) {
    const std::string key = dataset + "@" + version;
    if (auto it = mapped.find(key); it != mapped.end()) co_return it->second;
    std::optional<std::string> out;
    auto dest = ids.get("dataset", dataset);
    if (complete.count(dataset) && dest && !dest->empty()) {
      // A side that cannot answer the probe (an archive source has no /btql) leaves the reasoned drop.
      // The destination must hold as many rows as the source (an adopted dataset with rows of its own,
      // or rows missing there, has no version equal to the pin).
      std::string src_newest, dst_newest, failed;
      try {
        src_newest = co_await newest_dataset_xact(src, dataset);
        if (!src_newest.empty() && !xact_after(src_newest, version)) {
          const auto src_rows = co_await dataset_rows(src, dataset);
          const auto dst_rows = co_await dataset_rows(dst, *dest);
          if (src_rows >= 0 && src_rows == dst_rows) dst_newest = co_await newest_dataset_xact(dst, *dest);
        }
      } catch (const api_failure& f) {
        failed = f.what();
      }
      if (!failed.empty())
        engine::logger("pipeline")->warn("dataset version pins of dataset {} not mapped: probe failed: {}", dataset, failed);
      else if (!dst_newest.empty())
        out = dst_newest;
    }
    mapped[key] = out;
    co_return out;
  }

  /// As org_migrator's record_pin: a source version mapped to two destination versions is ambiguous ("").
  void record_pin(const std::string& version, const std::string& dest) {
    const std::string type = std::string(k_pin_prefix) + "dataset";
    auto had = ids.get(type, version);
    if (!had) ids.put(type, version, dest);
    else if (*had != dest && !had->empty()) ids.put(type, version, "");
  }

  asio::awaitable<void> apply(dropped_pin& p, const std::string& dest_version) {
    const auto dest_dataset = *ids.get("dataset", p.dataset);
    if (p.type == "experiment") {
      auto dest = ids.get("experiment", p.source_id);
      if (!dest || dest->empty()) co_return;
      co_await dst.patch("/v1/experiment/" + *dest, one_field("dataset_version", dest_version));
      report.amend(p.type, p.source_id, [](report_entry& e) {
        std::erase_if(e.dropped, [](const auto& d) { return d.first == "dataset_version"; });
      });
      st.put_dropped(p.type, p.source_id, without(p.fields, "dataset_version"));
    } else if (p.type == "dataset_snapshot") {
      const std::string name = str_field(p.source, "name");
      std::string dest_id;  // a snapshot of that name already there (an earlier attempt): ours, kept
      for (const auto& o : co_await dst.list("/v1/dataset_snapshot", {}))
        if (str_field(o, "dataset_id") == dest_dataset && str_field(o, "name") == name) dest_id = str_field(o, "id");
      if (dest_id.empty())
        dest_id = str_field(co_await dst.post("/v1/dataset_snapshot", snapshot_body(p, dest_dataset, dest_version)), "id");
      ids.put(p.type, p.source_id, dest_id);
      settle(p, dest_id);
    } else {
      const std::string slug = p.source_id.substr(p.source_id.rfind('/') + 1);
      const std::string dest_id = "dataset/" + dest_dataset + "/" + slug;
      co_await dst.send("PUT", "/environment-object/" + dest_id,
                        json::serialize(one_field("object_version", dest_version)));
      ids.put(p.type, p.source_id, dest_id);
      settle(p, dest_id);
    }
    record_pin(p.version, dest_version);
  }

  /// A skipped holder now in the destination: its report entry and its drop record say so.
  void settle(const dropped_pin& p, const std::string& dest_id) {
    report.amend(p.type, p.source_id, [&](report_entry& e) {
      e.status = object_status::created;
      e.dest_id = dest_id;
      e.reason.clear();
      e.detail = "dataset version mapped after the dataset's rows were copied";
    });
    st.put_dropped(p.type, p.source_id, without(p.fields, ""));
  }
};

}  // namespace

asio::awaitable<std::string> newest_dataset_xact(const resource_client& c, std::string dataset_id) {
  const std::string q = "select: *\nfrom: dataset('" + dataset_id + "') spans\nsort: _xact_id desc\nlimit: 1";
  auto r = co_await c.send("POST", "/btql", btql_body(q));
  const auto* row = first_row(r);
  co_return row ? str_field(*row, "_xact_id") : std::string{};
}

asio::awaitable<void> map_dataset_pins(resource_api& source, resource_api& dest, stores::state_store& state,
                                       migration_report& report, std::set<std::string> complete) {
  auto found = dropped_pins(state);
  if (found.empty()) co_return;
  pass ps{resource_client(source), resource_client(dest), state, state_id_map(state), report, std::move(complete), {}};
  for (auto& p : found) {
    try {
      if (!co_await read_source(ps.src, p)) continue;
      if (auto v = co_await ps.map(p.dataset, p.version)) co_await ps.apply(p, *v);
    } catch (const std::exception& ex) {
      report.add_error("dataset version pin of " + p.type + " " + p.source_id + " not mapped: " + ex.what());
    }
  }
}

}  // namespace ferry::pipelines::resources
