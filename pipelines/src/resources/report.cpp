#include "pipelines/resources/report.hpp"

#include "stores/state_store.hpp"

#include <boost/json/array.hpp>

#include <algorithm>
#include <optional>
#include <cstdio>
#include <set>
#include <sstream>

namespace ferry::pipelines::resources {

namespace json = boost::json;

std::string_view to_string(object_status s) {
  switch (s) {
    case object_status::created: return "created";
    case object_status::adopted: return "adopted";
    case object_status::updated: return "updated";
    case object_status::unchanged: return "unchanged";
    case object_status::skipped: return "skipped";
    case object_status::failed: return "failed";
    case object_status::would_create: return "would_create";
    case object_status::would_update: return "would_update";
  }
  return "unknown";
}

namespace {
constexpr object_status k_all[] = {object_status::created,   object_status::adopted, object_status::updated,
                                   object_status::unchanged, object_status::skipped, object_status::failed,
                                   object_status::would_create, object_status::would_update};
}

namespace {

/// Whether the entry's object is in the destination as migrated (its dropped fields are a fact to keep).
bool in_destination(const report_entry& e) {
  return !e.dest_id.empty() && !e.source_id.empty() &&
         (e.status == object_status::created || e.status == object_status::adopted ||
          e.status == object_status::updated || e.status == object_status::unchanged);
}

}  // namespace

void migration_report::keep_drops_in(stores::state_store* state) { drops_ = state; }

void migration_report::persist_drops(const report_entry& e) const {
  if (!drops_ || e.source_id.empty()) return;
  if (in_destination(e)) drops_->put_dropped(e.type, e.source_id, e.dropped);
  // A skipped object is left out whole: recorded as the drop of the whole value (path ""), so what the
  // migration left out survives without the report file (verify reads it; a later run that migrates
  // the object replaces the record).
  else if (e.status == object_status::skipped)
    drops_->put_dropped(e.type, e.source_id,
                        {{"", std::string(k_skipped_prefix) + e.reason + (e.detail.empty() ? "" : ": " + e.detail)}});
}

void migration_report::add(report_entry e) {
  persist_drops(e);
  std::lock_guard lock(mutex_);
  entries_.push_back(std::move(e));
}

bool migration_report::amend(std::string_view type, std::string_view source_id,
                             const std::function<void(report_entry&)>& fn) {
  std::optional<report_entry> changed;
  {
    std::lock_guard lock(mutex_);
    for (auto& e : entries_)
      if (e.type == type && e.source_id == source_id) {
        fn(e);
        changed = e;
        break;
      }
  }
  if (changed) persist_drops(*changed);
  return changed.has_value();
}

std::vector<report_entry> migration_report::reported_entries() const {
  auto ents = entries();
  if (drops_)
    for (auto& e : ents)
      if (in_destination(e)) e.dropped = drops_->get_dropped(e.type, e.source_id);
  return ents;
}

void migration_report::set_stream(std::string stream_id, json::object counters) {
  std::lock_guard lock(mutex_);
  streams_[std::move(stream_id)] = std::move(counters);
}

void migration_report::add_error(std::string message) {
  std::lock_guard lock(mutex_);
  errors_.push_back(std::move(message));
}

void migration_report::set_times(std::string start, std::string end, double seconds) {
  std::lock_guard lock(mutex_);
  start_ = std::move(start);
  end_ = std::move(end);
  seconds_ = seconds;
}

std::vector<report_entry> migration_report::entries() const {
  std::lock_guard lock(mutex_);
  return entries_;
}

std::vector<std::string> migration_report::errors() const {
  std::lock_guard lock(mutex_);
  return errors_;
}

std::size_t migration_report::count(object_status s) const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(std::count_if(entries_.begin(), entries_.end(), [&](const auto& e) { return e.status == s; }));
}

std::size_t migration_report::count(std::string_view type, object_status s) const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(
      std::count_if(entries_.begin(), entries_.end(), [&](const auto& e) { return e.type == type && e.status == s; }));
}

bool migration_report::success() const { return count(object_status::failed) == 0 && errors().empty(); }

json::object migration_report::to_json() const {
  auto ents = reported_entries();
  json::object root;
  json::object summary;
  summary["success"] = success();
  summary["dry_run"] = dry_run_;
  summary["start_time"] = start_;
  summary["end_time"] = end_;
  summary["duration_seconds"] = seconds_;
  summary["total_objects"] = ents.size();
  for (auto s : k_all) summary[to_string(s)] = count(s);
  root["summary"] = std::move(summary);

  json::object by_type;
  json::object id_map;
  for (const auto& e : ents) {
    auto& t = by_type[e.type];
    if (!t.is_object()) {
      json::object o;
      for (auto s : k_all) o[to_string(s)] = 0;
      o["objects"] = json::array();
      t = std::move(o);
    }
    auto& to = t.as_object();
    to[to_string(e.status)] = to[to_string(e.status)].as_int64() + 1;
    json::object item;
    item["scope"] = e.scope;
    item["name"] = e.name;
    item["source_id"] = e.source_id;
    item["dest_id"] = e.dest_id.empty() ? json::value(nullptr) : json::value(e.dest_id);
    item["status"] = to_string(e.status);
    if (!e.reason.empty()) item[e.status == object_status::failed ? "error" : "reason"] = e.reason;
    if (!e.detail.empty()) item["detail"] = e.detail;
    if (!e.dropped.empty()) {
      json::array d;
      for (const auto& [f, r] : e.dropped) d.push_back(json::object{{"field", f}, {"reason", r}});
      item["dropped_fields"] = std::move(d);
    }
    if (!e.notes.empty()) {
      json::array n;
      for (const auto& x : e.notes) n.emplace_back(x);
      item["notes"] = std::move(n);
    }
    to["objects"].as_array().push_back(std::move(item));
    if (!e.dest_id.empty() && !e.source_id.empty()) {
      auto& m = id_map[e.type];
      if (!m.is_object()) m = json::object();
      m.as_object()[e.source_id] = e.dest_id;
    }
  }
  root["resources"] = std::move(by_type);
  root["id_map"] = std::move(id_map);
  json::object streams;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [k, v] : streams_) streams[k] = v;
  }
  root["streams"] = std::move(streams);
  json::array errs;
  for (const auto& e : errors()) errs.emplace_back(e);
  root["errors"] = std::move(errs);
  return root;
}

std::string migration_report::summary_text() const {
  auto ents = reported_entries();
  std::ostringstream out;
  out << "Ferry resource migration" << (dry_run_ ? " plan (dry run: nothing was written)" : "") << ": "
      << (success() ? "SUCCESS" : "FAILED") << "\n";
  std::vector<std::string> types;
  for (const auto& e : ents)
    if (std::find(types.begin(), types.end(), e.type) == types.end()) types.push_back(e.type);
  char line[256];
  std::snprintf(line, sizeof line, "%-20s %8s %8s %8s %9s %8s %8s\n", "type", dry_run_ ? "create" : "created",
                "adopted", dry_run_ ? "update" : "updated", "unchanged", "skipped", "failed");
  out << line;
  for (const auto& t : types) {
    std::snprintf(line, sizeof line, "%-20s %8zu %8zu %8zu %9zu %8zu %8zu\n", t.c_str(),
                  count(t, object_status::created) + count(t, object_status::would_create),
                  count(t, object_status::adopted),
                  count(t, object_status::updated) + count(t, object_status::would_update),
                  count(t, object_status::unchanged), count(t, object_status::skipped), count(t, object_status::failed));
    out << line;
  }
  if (dry_run_) {
    // The plan names what it would write (first 20 per type and action); the JSON plan lists every object.
    for (object_status st : {object_status::would_create, object_status::would_update}) {
      for (const auto& t : types) {
        std::vector<const report_entry*> list;
        for (const auto& e : ents)
          if (e.type == t && e.status == st) list.push_back(&e);
        if (list.empty()) continue;
        out << (st == object_status::would_create ? "would create " : "would update ") << t << ": " << list.size()
            << "\n";
        for (std::size_t i = 0; i < list.size() && i < 20; ++i)
          out << "  - '" << list[i]->name << "' (" << list[i]->scope << ")\n";
        if (list.size() > 20) out << "  ... and " << list.size() - 20 << " more\n";
      }
    }
  }
  // Skips grouped by reason (first 10 names each), then failures, then action items.
  std::map<std::string, std::vector<const report_entry*>> skipped;
  for (const auto& e : ents)
    if (e.status == object_status::skipped) skipped[e.reason].push_back(&e);
  for (const auto& [reason, list] : skipped) {
    out << "skipped (" << reason << "): " << list.size() << "\n";
    for (std::size_t i = 0; i < list.size() && i < 10; ++i)
      out << "  - " << list[i]->type << " '" << list[i]->name << "' (" << list[i]->scope << ")"
          << (list[i]->detail.empty() ? "" : ": " + list[i]->detail) << "\n";
    if (list.size() > 10) out << "  ... and " << list.size() - 10 << " more\n";
  }
  for (const auto& e : ents)
    if (e.status == object_status::failed)
      out << "FAILED " << e.type << " '" << e.name << "' (" << e.scope << "): " << e.reason << "\n";
  for (const auto& e : errors()) out << "ERROR " << e << "\n";
  std::set<std::string> reenter;
  for (const auto& e : ents)
    for (const auto& n : e.notes)
      if (n.find("re-entered") != std::string::npos) reenter.insert(e.type + " '" + e.name + "'");
  if (!reenter.empty()) {
    out << "values to re-enter in the destination (write-only secrets):\n";
    for (const auto& r : reenter) out << "  - " << r << "\n";
  }
  std::size_t dropped = 0;
  for (const auto& e : ents) dropped += e.dropped.size();
  if (dropped) out << dropped << " field(s) dropped while remapping ids; see dropped_fields in the JSON report\n";
  std::size_t streams = 0;
  {
    std::lock_guard lock(mutex_);
    streams = streams_.size();
  }
  if (streams) out << streams << " event stream(s); counters in the JSON report\n";
  return out.str();
}

}  // namespace ferry::pipelines::resources
