#include "verification.hpp"

#include "../json_fields.hpp"

#include "../for_each_bounded.hpp"
#include "plan.hpp"
#include "reports.hpp"
#include "run_context.hpp"
#include "sides.hpp"
#include "source_count.hpp"

#include "pipelines/resources/specs.hpp"
#include "pipelines/streams/checkpoint_store.hpp"
#include "pipelines/streams/discovery.hpp"
#include "pipelines/streams/verify.hpp"

#include "engine/retry.hpp"
#include "engine/runtime.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <functional>
#include <optional>
#include <array>
#include <map>
#include <mutex>
#include <ostream>
#include <set>

namespace ferry::pipelines {

namespace asio = boost::asio;
namespace json = boost::json;
using streams::stream_kind;

namespace {



/// Every row of one stream on one side: streams::read_all with the side's page policy (the streams' page
/// size rule, the side's retries) through its client (request semaphore, rate limits).
asio::awaitable<std::uint64_t> read_stream(side& s, stream_kind kind, std::vector<std::string> ids,
                                           const migrate_config& cfg, const std::function<void(const json::object&)>& fn) {
  co_return co_await streams::read_all(*s.api, first_page_query(cfg, kind, std::move(ids)), s.reads, fn);
}

}  // namespace

/// The streams recorded in the state dir, with their destination ids from its id maps.
std::vector<streams::stream_spec> verification::recorded_specs(stores::state_store& st) {
  std::vector<streams::stream_spec> out_specs;
  streams::checkpoint_store cps(st);
  for (const auto& s : cps.all()) {
    auto kind = kind_from_name(s.kind);
    if (!kind || s.source_ids.empty()) continue;
    streams::stream_spec spec;
    spec.kind = *kind;
    spec.stream_id = s.stream_id;
    spec.source_ids = s.source_ids;
    bool complete = true;
    for (const auto& sid : s.source_ids) {
      auto did = st.get_id(id_type(*kind), sid);
      if (!did) {
        failures.push_back("stream " + s.stream_id + ": no destination id recorded for " + std::string(id_type(*kind)) +
                           " " + sid);
        complete = false;
        break;
      }
      spec.dest_ids[sid] = *did;
    }
    if (complete) out_specs.push_back(std::move(spec));
  }
  return out_specs;
}

/// The recorded streams, else (no state dir, or nothing recorded) the ones discovered read-only by name.
asio::awaitable<std::vector<streams::stream_spec>> verification::specs() {
  if (c.state) {
    auto recorded = recorded_specs(*c.state);
    if (!recorded.empty()) co_return recorded;
  }
  auto d = co_await streams::discover_objects(*c.src.api, *c.dst.api, c.cfg, c.state_or_null());
  for (auto& e : d.errors) failures.push_back(std::move(e));
  for (const auto& o : d.objects)
    if (o.dest_id.empty())
      failures.push_back(std::string(id_type(o.kind)) + " '" + o.name + "' (" + o.source_id +
                         "): no destination object with that name");
  co_return streams::build_stream_specs(d.objects, group_size(c.cfg), {});
}

bool verification::stopping() const { return c.rt->phase() != engine::shutdown_phase::running; }

asio::awaitable<void> verification::verify_stream(const streams::stream_spec& spec) {
  auto skip = [&] {
    std::lock_guard lk(mu);
    ++not_compared;
    c.out << "SKIP " << spec.stream_id << ": not compared (interrupted)\n";
  };
  if (stopping()) {
    skip();
    co_return;
  }
  // Rows are paired by (object, id); the id map (or discovery by name) pairs the objects.
  std::unordered_map<std::string, std::string> objects;
  std::vector<std::string> dest_ids;
  for (const auto& sid : spec.source_ids) {
    dest_ids.push_back(spec.dest_ids.at(sid));
    objects[spec.dest_ids.at(sid)] = sid;
  }
  streams::verify_tally tally(spec.stream_id, spec.kind, std::move(objects));
  try {
    co_await read_stream(c.src, spec.kind, spec.source_ids, c.cfg, [&](const json::object& r) { tally.add_source(r); });
    co_await read_stream(c.dst, spec.kind, dest_ids, c.cfg, [&](const json::object& r) {
      tally.add_dest(r);
      note_attachments(r);
    });
  } catch (const std::exception& e) {
    // A read cut short by the shutdown (or a cancellation) is not a difference, nor a comparison.
    if (stopping() || engine::is_cancellation(std::current_exception())) {
      skip();
      co_return;
    }
    std::lock_guard lk(mu);
    failures.push_back("stream " + spec.stream_id + " (" + streams::describe(spec) + "): " + e.what());
    c.out << "FAIL " << spec.stream_id << ": " << e.what() << '\n';
    co_return;
  }
  // A shutdown that began during the reads may have cut them short without an error: not compared.
  if (stopping()) {
    skip();
    co_return;
  }
  auto rep = tally.finish();
  std::lock_guard lk(mu);
  c.out << (rep.ok() ? "ok   " : "DIFF ") << rep.summary() << '\n';
  reports.push_back(std::move(rep));
}

/// Remembers every attachment reference ({"type":"braintrust_attachment","key":..}) inside a destination row.
void verification::note_attachments(const json::value& v) {
  if (v.is_array()) {
    for (const auto& e : v.get_array()) note_attachments(e);
    return;
  }
  if (!v.is_object()) return;
  const auto& o = v.get_object();
  if (str_field(o, "type") == "braintrust_attachment" && !str_field(o, "key").empty()) {
    std::lock_guard lk(mu);
    attachment_refs_.emplace(str_field(o, "key"), attachment_ref{str_field(o, "filename"), str_field(o, "content_type")});
    return;
  }
  for (const auto& kv : o) note_attachments(kv.value());
}

/// With --copy-attachments (this run's setting or a migration recorded in the state dir), every
/// attachment a destination row references must exist there (GET /attachment answers, upload done);
/// without it, the output says plainly that attachments were not copied and how many rows' references
/// therefore do not resolve in the destination.
asio::awaitable<void> verification::check_attachments() {
  const bool copied = c.cfg.copy_attachments || (c.state && c.state->meta()["copy_attachments"] == "true");
  attachments = json::object{{"copied", copied}, {"referenced", attachment_refs_.size()}};
  if (attachment_refs_.empty()) co_return;
  if (!copied) {
    c.out << "NOTE attachments were not copied (--copy-attachments was off): " << attachment_refs_.size()
          << " attachment(s) referenced by destination rows are not checked and do not resolve there\n";
    co_return;
  }
  const auto org = co_await organization_id(c.dst);
  std::vector<std::pair<std::string, attachment_ref>> refs(attachment_refs_.begin(), attachment_refs_.end());
  std::vector<std::string> missing;
  co_await for_each_bounded(co_await asio::this_coro::executor, refs.size(), 8, [&](std::size_t i) -> asio::awaitable<void> {
    const auto& [key, ref] = refs[i];
    auto r = co_await c.dst.api->attachment_info(key, ref.filename, ref.content_type, org);
    std::string why;
    if (!r.ok()) {
      why = r.error;
    } else if (const auto* st = r.json.is_object() ? r.json.get_object().if_contains("status") : nullptr;
               !st || !st->is_object() || str_field(st->get_object(), "upload_status") != "done") {
      why = "upload not done";
    }
    if (why.empty()) co_return;
    std::lock_guard lk(mu);
    missing.push_back(key + " (" + ref.filename + "): " + why);
  });
  std::sort(missing.begin(), missing.end());
  attachments["missing"] = missing.size();
  c.out << (missing.empty() ? "ok   " : "DIFF ") << "attachments referenced=" << refs.size() << " missing=" << missing.size()
        << '\n';
  for (std::size_t i = 0; i < missing.size() && i < 10; ++i) c.out << "     missing attachment " << missing[i] << '\n';
  if (!missing.empty())
    failures.push_back(std::to_string(missing.size()) + " attachment(s) referenced by destination rows missing there");
}

/// The resources DAG copies only the experiments and datasets created inside the window (discovery
/// copies them all); the count check follows the path the migration took.
bool verification::in_window(const json::object& o) const {
  const auto& cfg = c.cfg;
  if (!resources_selected(cfg)) return true;
  auto created = resources::comparable_time(str_field(o, "created"));
  if (created.empty()) return true;
  if (cfg.created_after && created < resources::comparable_time(*cfg.created_after)) return false;
  if (cfg.created_before && created >= resources::comparable_time(*cfg.created_before)) return false;
  return true;
}

/// One project's experiments and datasets by name (source, in the window) against its destination twin.
asio::awaitable<void> verification::count_children(const json::object& p, const std::string& dest_project_id, type_counts& counts,
                                     std::vector<std::string>& missing_names) {
  const auto name = str_field(p, "name");
  for (std::string_view type : {"experiment", "dataset"}) {
    std::string path = "/v1/" + std::string(type);
    std::set<std::string> dnames;
    auto dst_objs = co_await c.dst.api->list_objects(path, one_param("project_id", dest_project_id));
    for (const auto& o : dst_objs) dnames.insert(str_field(o, "name"));
    auto& cnt = counts[std::string(type)];
    auto src_objs = co_await c.src.api->list_objects(path, one_param("project_id", str_field(p, "id")));
    for (const auto& o : src_objs) {
      if (!in_window(o)) continue;
      ++cnt[0];
      if (dnames.count(str_field(o, "name"))) {
        ++cnt[1];
      } else {
        ++cnt[2];
        if (missing_names.size() < 10) missing_names.push_back(std::string(type) + " " + name + "/" + str_field(o, "name"));
      }
    }
  }
}

/// Projects, experiments and datasets by name: source (selected projects) vs destination.
asio::awaitable<void> verification::check_resources() {
  const auto& cfg = c.cfg;
  auto sel = streams::selection_from(cfg);
  std::map<std::string, std::string> dest_projects;
  // (co_await results are named first: GCC 12 mishandles temporaries around co_await)
  auto dest_listing = co_await c.dst.api->list_objects("/v1/project", {});
  for (const auto& p : dest_listing) dest_projects[str_field(p, "name")] = str_field(p, "id");
  type_counts counts;
  std::vector<std::string> missing_names;
  auto src_listing = co_await c.src.api->list_objects("/v1/project", {});
  for (const auto& p : src_listing) {
    auto name = str_field(p, "name");
    if (!cfg.projects.empty() && std::find(cfg.projects.begin(), cfg.projects.end(), name) == cfg.projects.end()) continue;
    if (std::find(sel.exclude_projects.begin(), sel.exclude_projects.end(), name) != sel.exclude_projects.end()) continue;
    auto& pc = counts["project"];
    ++pc[0];
    auto dit = dest_projects.find(name);
    if (dit == dest_projects.end()) {
      ++pc[2];
      missing_names.push_back("project " + name);
      continue;
    }
    ++pc[1];
    co_await count_children(p, dit->second, counts, missing_names);
  }
  for (const auto& [type, cnt] : counts) {
    c.out << (cnt[2] ? "DIFF " : "ok   ") << "resources type=" << type << " source=" << cnt[0]
          << " dest_by_name=" << cnt[1] << " missing=" << cnt[2] << '\n';
    json::object rc;
    rc["type"] = type;
    rc["source"] = cnt[0];
    rc["dest_by_name"] = cnt[1];
    rc["missing"] = cnt[2];
    resource_checks.push_back(std::move(rc));
    if (cnt[2]) failures.push_back(std::to_string(cnt[2]) + " " + type + "(s) missing in the destination");
  }
  for (const auto& m : missing_names) c.out << "     missing " << m << '\n';
}

namespace {

/// `v` with every id the id maps know (lookup) replaced by its destination id, recursively (ids in JSON
/// blobs included), whether a string is the id or holds it inside text (a view filter such as
/// "experiment_id = '<id>'", which the migration remaps the same way); ids of listed source objects
/// (`known`) that map nowhere are kept and collected in `unmapped`.
json::value map_ids(const json::value& v, const std::function<std::optional<std::string>(const std::string&)>& lookup,
                    const std::set<std::string>& known, std::set<std::string>& unmapped) {
  if (v.is_string()) {
    std::string s(v.get_string());
    // A version pin (a source transaction id, all digits): the destination version the migration gave it
    // (the state's pin:<space> records, read through `lookup` like ids).
    if (s.size() >= 10 && std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
      if (auto d = lookup(s); d && !d->empty()) return json::value(*d);
    bool changed = false;
    for (std::size_t i = 0; i + 36 <= s.size(); ++i) {
      const std::string id = s.substr(i, 36);
      if (!resources::looks_like_uuid(id)) continue;
      if (auto d = lookup(id); d && d->size() == 36) {
        s.replace(i, 36, *d);
        changed = true;
      } else if (known.count(id)) {
        unmapped.insert(id);
      }
      i += 35;
    }
    return changed ? json::value(s) : v;
  }
  if (v.is_array()) {
    json::array out;
    for (const auto& e : v.get_array()) out.push_back(map_ids(e, lookup, known, unmapped));
    return out;
  }
  if (v.is_object()) {
    json::object out;
    for (const auto& kv : v.get_object()) out[kv.key()] = map_ids(kv.value(), lookup, known, unmapped);
    return out;
  }
  return v;
}

std::string shorten(std::string s) { return s.size() > 80 ? s.substr(0, 77) + "..." : s; }

std::string joined(const std::set<std::string>& ids) {
  std::string out;
  for (const auto& i : ids) out += (out.empty() ? "" : ",") + i;
  return out;
}

/// The fields the migration recorded dropping (the state's dropped-field records, which
/// migration_report.json is written from), by source object id: (field path, reason).
std::map<std::string, std::vector<std::pair<std::string, std::string>>> reported_drops(const stores::state_store& state) {
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> out;
  state.for_each_dropped([&](std::string_view, std::string_view source_id, const stores::state_store::dropped_fields& f) {
    auto& v = out[std::string(source_id)];
    v.insert(v.end(), f.begin(), f.end());
    return true;
  });
  return out;
}

/// Removes the element at `path` (".key", "[index]" segments, as the migration report spells them)
/// from `v`; "" makes `v` null. A path that does not lead anywhere changes nothing.
void erase_path(json::value& v, std::string_view path) {
  if (path.empty()) {
    v = nullptr;
    return;
  }
  const bool index = path.front() == '[';
  const auto end = index ? path.find(']') : path.find_first_of(".[", 1);
  if (index && end == std::string_view::npos) return;
  const auto seg = index ? path.substr(1, end - 1) : path.substr(1, end == std::string_view::npos ? end : end - 1);
  const auto rest = index ? path.substr(end + 1) : (end == std::string_view::npos ? std::string_view() : path.substr(end));
  if (index && v.is_array()) {
    std::size_t i = 0;
    for (char ch : seg) {
      if (ch < '0' || ch > '9') return;
      i = i * 10 + static_cast<std::size_t>(ch - '0');
    }
    auto& a = v.get_array();
    if (i >= a.size()) return;
    if (rest.empty()) a.erase(a.begin() + static_cast<std::ptrdiff_t>(i));
    else erase_path(a[i], rest);
  } else if (!index && v.is_object()) {
    auto& o = v.get_object();
    auto it = o.find(seg);
    if (it == o.end()) return;
    if (rest.empty()) o.erase(it);
    else erase_path(it->value(), rest);
  }
}

/// `expected` (the source field `f`, ids mapped) without what the migration reported dropping from it;
/// the reasons in `why`. Later array entries go first, so earlier indexes stay valid.
json::value without_reported_drops(json::value expected, const std::string& f,
                                   const std::vector<std::pair<std::string, std::string>>* drops, std::string& why) {
  if (!drops) return expected;
  std::vector<const std::pair<std::string, std::string>*> mine;
  for (const auto& d : *drops)
    if (d.first == f || d.first.rfind(f + ".", 0) == 0 || d.first.rfind(f + "[", 0) == 0) mine.push_back(&d);
  std::sort(mine.begin(), mine.end(), [](auto* a, auto* b) {
    return a->first.size() != b->first.size() ? a->first.size() > b->first.size() : a->first > b->first;
  });
  for (const auto* d : mine) {
    erase_path(expected, std::string_view(d->first).substr(f.size()));
    why += (why.empty() ? "" : "; ") + d->first + ": " + d->second;
  }
  return expected;
}

/// Field by field is done for projects and the project-scoped types listed per project.
bool fields_checked(const resources::resource_spec& spec) {
  if (spec.type == "project") return true;
  return spec.project_scoped &&
         (spec.list == resources::list_mode::project_param || spec.list == resources::list_mode::project_local);
}

}  // namespace

/// The destination id the state's id map records for a source object (the type's map, then its id space's).
std::optional<std::string> verification::dest_id_of(const resources::resource_spec& spec, const std::string& sid) {
  if (auto d = c.state->get_id(spec.type, sid)) return d;
  for (const auto& t : resources::id_space_types(spec.id_space))
    if (auto d = c.state->get_id(t, sid)) return d;
  return std::nullopt;
}

/// Any id map's destination id for `sid` (references may point at any type).
std::optional<std::string> verification::mapped_any(const std::string& sid) {
  for (const auto& spec : resources::resource_specs())
    if (auto d = c.state->get_id(spec.type, sid)) return d;
  for (std::string_view t : {"user", "organization", "pin:function", "pin:dataset"})
    if (auto d = c.state->get_id(t, sid)) return d;
  return std::nullopt;
}

asio::awaitable<std::vector<json::object>> verification::list_type(side& s, const resources::resource_spec& spec,
                                                                   const std::string& project_id) {
  if (spec.list == resources::list_mode::project_param)
    co_return co_await s.api->list_objects(spec.path, one_param("project_id", project_id));
  auto all = co_await s.api->list_objects(spec.path, {});
  if (spec.list == resources::list_mode::project_local)
    std::erase_if(all, [&](const json::object& o) { return str_field(o, "project_id") != project_id; });
  co_return all;
}

/// One line per field of `p` whose destination value is not the source value with its ids mapped.
void verification::compare_object(const object_pair& p, const json::object* dest, const std::set<std::string>& known,
                                  const drops_by_id& drops, std::vector<std::string>& diffs,
                                  std::vector<std::string>& explained) {
  const auto& spec = *p.spec;
  const std::string what = "resource " + spec.type + " '" + str_field(p.source, "name") + "' (" + str_field(p.source, "id") + ")";
  if (!dest) {
    diffs.push_back(what + ": deleted in the destination (id map: " + p.dest_id + ")");
    return;
  }
  auto lookup = [this](const std::string& id) { return mapped_any(id); };
  for (const auto& f : spec.create_fields) {
    if (f == spec.hidden_value_field) continue;
    const json::value* sv = p.source.if_contains(f);
    const json::value* dv = dest->if_contains(f);
    std::set<std::string> unmapped;
    auto expected = map_ids(sv ? *sv : json::value(), lookup, known, unmapped);
    const auto ce = streams::canonical_json(expected);
    const auto cd = streams::canonical_json(dv ? *dv : json::value());
    std::set<std::string> forwarded;
    for (const auto& id : unmapped)
      if (cd.find('"' + id + '"') != std::string::npos) forwarded.insert(id);
    if (ce == cd && forwarded.empty()) continue;
    std::string why;
    if (!forwarded.empty()) why = "unmapped reference forwarded: " + joined(forwarded);
    else if (!unmapped.empty()) why = "reference dropped or unmapped: " + joined(unmapped) + " has no destination object";
    else if (cd == "null") why = "missing in the destination (source: " + shorten(ce) + ")";
    else if (ce == "null") why = "set in the destination only: " + shorten(cd);
    else why = "differs: source " + shorten(ce) + ", destination " + shorten(cd);
    // What the migration reported dropping (an id it could not map, a version pin) is not a silent
    // difference: with it taken out, the rest of the field must be equal.
    auto d = drops.find(str_field(p.source, "id"));
    std::string reason;
    auto rest = without_reported_drops(expected, f, d == drops.end() ? nullptr : &d->second, reason);
    if (!reason.empty() && forwarded.empty() && streams::canonical_json(rest) == cd)
      explained.push_back(what + " field " + f + ": " + why + " (dropped by the migration, reported: " + reason + ")");
    else
      diffs.push_back(what + " field " + f + ": " + why);
  }
}

/// Objects listed per parent (views of projects, experiments and datasets): each paired parent's
/// children on both sides, added to `pairs` / `dest_objects`.
asio::awaitable<void> verification::pair_children(std::vector<object_pair>& pairs, std::set<std::string>& known,
                                                  std::map<std::string, json::object>& dest_objects) {
  struct parent {
    std::string type, source_id, dest_id;
  };
  std::vector<parent> parents;
  for (const auto& p : pairs) parents.push_back(parent{p.spec->type, str_field(p.source, "id"), p.dest_id});
  for (const auto& spec : resources::resource_specs()) {
    if (spec.list != resources::list_mode::parent_object) continue;
    for (const auto& pa : parents) {
      if (std::none_of(spec.parents.begin(), spec.parents.end(), [&](const auto& k) { return k.type == pa.type; })) continue;
      // (query params built before the co_await: GCC 12 mishandles temporaries around it)
      transports::query_params src_q{{"object_type", pa.type}, {"object_id", pa.source_id}};
      transports::query_params dst_q{{"object_type", pa.type}, {"object_id", pa.dest_id}};
      auto src_objs = co_await c.src.api->list_objects(spec.path, src_q);
      for (auto& o : src_objs) {
        known.insert(str_field(o, "id"));
        if (auto d = dest_id_of(spec, str_field(o, "id"))) pairs.push_back({&spec, std::move(o), *d});
      }
      auto dst_objs = co_await c.dst.api->list_objects(spec.path, dst_q);
      for (auto& o : dst_objs) dest_objects[str_field(o, "id")] = std::move(o);
    }
  }
}

/// Projects and their project-scoped objects, read from both sides and compared field by field
/// through the state's id map (independently of the migrator's rewrite): an object deleted in the
/// destination, a field edited there, a reference dropped or forwarded unmapped are one line each.
asio::awaitable<void> verification::check_resource_fields() {
  if (!c.state) {
    c.out << "NOTE resource fields not compared: no state dir (its id map pairs the objects)\n";
    co_return;
  }
  const auto& cfg = c.cfg;
  auto sel = streams::selection_from(cfg);
  const auto& project_spec = resources::spec_of("project");
  std::vector<object_pair> pairs;
  std::set<std::string> known;
  std::map<std::string, json::object> dest_objects;  // destination id -> object
  auto dest_projects = co_await c.dst.api->list_objects("/v1/project", {});
  for (auto& o : dest_projects) dest_objects[str_field(o, "id")] = std::move(o);
  auto src_projects = co_await c.src.api->list_objects("/v1/project", {});
  for (const auto& sp : src_projects) {
    const auto name = str_field(sp, "name");
    if (!cfg.projects.empty() && std::find(cfg.projects.begin(), cfg.projects.end(), name) == cfg.projects.end()) continue;
    if (std::find(sel.exclude_projects.begin(), sel.exclude_projects.end(), name) != sel.exclude_projects.end()) continue;
    auto dp = dest_id_of(project_spec, str_field(sp, "id"));
    if (!dp) continue;  // not migrated: the count check names it
    known.insert(str_field(sp, "id"));
    pairs.push_back({&project_spec, sp, *dp});
    std::map<std::string, std::vector<json::object>> listed;  // type -> this project's source objects
    for (const auto& spec : resources::resource_specs()) {
      if (spec.type == "project" || !fields_checked(spec)) continue;
      listed[spec.type] = co_await list_type(c.src, spec, str_field(sp, "id"));
      auto dst_objs = co_await list_type(c.dst, spec, *dp);
      for (auto& o : dst_objs) dest_objects[str_field(o, "id")] = std::move(o);
    }
    for (const auto& spec : resources::resource_specs()) {
      if (!listed.count(spec.type)) continue;
      // A listing that repeats another type's objects (prompts are functions too): compared as that type.
      std::set<std::string> twins;
      if (auto t = listed.find(spec.listed_by); !spec.listed_by.empty() && t != listed.end())
        for (const auto& o : t->second) twins.insert(str_field(o, "id"));
      for (auto& o : listed[spec.type]) {
        if (twins.count(str_field(o, "id")) || (spec.created_window && !in_window(o))) continue;
        known.insert(str_field(o, "id"));
        if (auto did = dest_id_of(spec, str_field(o, "id"))) pairs.push_back({&spec, std::move(o), *did});
      }
    }
  }
  co_await pair_children(pairs, known, dest_objects);
  std::vector<std::string> diffs, explained;
  const auto drops = reported_drops(*c.state);
  for (const auto& p : pairs) {
    auto it = dest_objects.find(p.dest_id);
    compare_object(p, it == dest_objects.end() ? nullptr : &it->second, known, drops, diffs, explained);
  }
  c.out << (diffs.empty() ? "ok   " : "DIFF ") << "resource fields: " << pairs.size() << " object(s) compared, "
        << diffs.size() << " difference(s), " << explained.size() << " dropped by the migration as reported\n";
  for (const auto& d : diffs) c.out << "DIFF " << d << '\n';
  for (const auto& d : explained) c.out << "NOTE " << d << '\n';
  resource_checks.push_back(json::object{{"type", "fields"},
                                         {"objects", pairs.size()},
                                         {"differences", diffs.size()},
                                         {"dropped_as_reported", explained.size()}});
  if (!diffs.empty()) failures.push_back(std::to_string(diffs.size()) + " resource field difference(s) (lines above)");
}

asio::awaitable<void> verification::run() {
  auto problems = co_await probe_sides(c.src, c.dst, c.cfg);
  for (auto& p : problems) failures.push_back(std::move(p));
  if (!problems.empty()) co_return;
  auto list = co_await specs();
  streams_total = list.size();
  listed = true;
  // Streams are read side by side, as many at once as a migration runs (lines print as streams end;
  // the report lists them sorted).
  co_await for_each_bounded(co_await asio::this_coro::executor, list.size(),
                            static_cast<std::size_t>(std::max(c.cfg.max_concurrent_streams, 1)),
                            [&](std::size_t i) { return verify_stream(list[i]); });
  std::sort(reports.begin(), reports.end(), [](const auto& a, const auto& b) { return a.stream < b.stream; });
  if (stopping()) {
    failures.push_back("interrupted before the attachment and resource checks");
    co_return;
  }
  try {
    co_await check_attachments();
  } catch (const std::exception& e) {
    if (stopping()) co_return;
    failures.push_back(std::string("attachment check failed: ") + e.what());
  }
  try {
    co_await check_resources();
  } catch (const std::exception& e) {
    if (stopping()) co_return;
    failures.push_back(std::string("resource count check failed: ") + e.what());
  }
  try {
    co_await check_resource_fields();
  } catch (const std::exception& e) {
    if (stopping()) co_return;
    failures.push_back(std::string("resource field check failed: ") + e.what());
  }
}

verify_end verification::end() {
  verify_end e;
  e.reports = std::move(reports);
  e.failures = std::move(failures);
  e.resource_checks = std::move(resource_checks);
  e.attachments = std::move(attachments);
  e.streams_total = streams_total;
  e.not_compared = listed ? not_compared : 0;
  e.interrupted = stopping() || cancelled || not_compared > 0;
  return e;
}

}  // namespace ferry::pipelines
