#include "verification.hpp"

#include "../json_fields.hpp"

#include "../for_each_bounded.hpp"
#include "plan.hpp"
#include "resource_verify.hpp"
#include "reports.hpp"
#include "run_context.hpp"
#include "sides.hpp"
#include "source_count.hpp"

#include "pipelines/resources/api.hpp"
#include "pipelines/resources/specs.hpp"
#include "pipelines/streams/checkpoint_store.hpp"
#include "pipelines/streams/discovery.hpp"
#include "pipelines/streams/http_stream_io.hpp"
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

/// Each spilled field of `rows` replaced by the value its attachment on side `s` holds (verify.hpp).
asio::awaitable<void> inline_spills(side& s, std::vector<json::object>& rows, std::uint64_t max_bytes) {
  if (rows.empty()) co_return;
  // (Results named before use: GCC 12 coroutines and co_await in call arguments, streams/README.md.)
  const std::string org = co_await organization_id(s);
  streams::http_event_source io(*s.api, org);
  for (auto& row : rows)
    for (const auto& f : streams::spilled_fields(row)) {
      const std::string content = co_await io.download_attachment(f.key, f.filename, f.content_type, max_bytes);
      streams::inline_spilled(row, f, content);
    }
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
    // Rows with spilled fields (rare) are compared as their logical row: set aside, their fields read
    // back from the attachments, then tallied (source rows before any destination row).
    std::vector<json::object> spilled;
    co_await read_stream(c.src, spec.kind, spec.source_ids, c.cfg, [&](const json::object& r) {
      if (streams::spilled_fields(r).empty()) tally.add_source(r);
      else spilled.push_back(r);
    });
    co_await inline_spills(c.src, spilled, c.cfg.attachment_max_bytes);
    for (const auto& r : spilled) tally.add_source(r);
    spilled.clear();
    co_await read_stream(c.dst, spec.kind, dest_ids, c.cfg, [&](const json::object& r) {
      if (!streams::spilled_fields(r).empty()) return spilled.push_back(r);
      tally.add_dest(r);
      note_attachments(r);
    });
    co_await inline_spills(c.dst, spilled, c.cfg.attachment_max_bytes);  // fails loudly if one is missing
    for (const auto& r : spilled) {
      tally.add_dest(r);
      note_attachments(r);
    }
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

/// Lists are read with the resources' lister (resources::resource_client): paged to an empty page, so a
/// server that caps its pages below the requested limit is read to the end.
/// One project's experiments and datasets by name (source, in the window) against its destination twin.
asio::awaitable<void> verification::count_children(const json::object& p, const std::string& dest_project_id, type_counts& counts,
                                     std::vector<std::string>& missing_names) {
  const auto name = str_field(p, "name");
  const resources::resource_client src_lister(*c.src.res), dst_lister(*c.dst.res);
  for (std::string_view type : {"experiment", "dataset"}) {
    std::string path = "/v1/" + std::string(type);
    std::set<std::string> dnames;
    auto dst_objs = co_await dst_lister.list(path, one_param("project_id", dest_project_id));
    for (const auto& o : dst_objs) dnames.insert(str_field(o, "name"));
    auto& cnt = counts[std::string(type)];
    auto src_objs = co_await src_lister.list(path, one_param("project_id", str_field(p, "id")));
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
  const resources::resource_client src_lister(*c.src.res), dst_lister(*c.dst.res);
  std::map<std::string, std::string> dest_projects;
  // (co_await results are named first: GCC 12 mishandles temporaries around co_await)
  auto dest_listing = co_await dst_lister.list("/v1/project", {});
  for (const auto& p : dest_listing) dest_projects[str_field(p, "name")] = str_field(p, "id");
  type_counts counts;
  std::vector<std::string> missing_names;
  auto src_listing = co_await src_lister.list("/v1/project", {});
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

}  // namespace

namespace {

/// verify_report.json's entry of the resource field check: counts and every line.
json::object fields_summary(std::size_t objects, const std::vector<std::string>& diffs, const std::vector<std::string>& notes) {
  json::object o;
  o["type"] = "fields";
  o["objects"] = objects;
  o["differences"] = diffs.size();
  o["dropped_as_reported"] = notes.size();
  json::array d, n;
  for (const auto& x : diffs) d.emplace_back(x);
  for (const auto& x : notes) n.emplace_back(x);
  o["difference_lines"] = std::move(d);
  o["as_reported_lines"] = std::move(n);
  return o;
}

}  // namespace

/// Every object of every resource type, read from both sides and compared field by field, its
/// references checked (resource_verify.hpp): one DIFF line per difference.
asio::awaitable<void> verification::check_resource_fields() {
  const auto drops = c.state ? reported_drops(*c.state) : drops_by_id{};
  auto r = co_await verify_resources(c, drops);
  for (const auto& t : r.checks) {
    const auto& o = t.get_object();
    const auto diffs = o.at("differences").to_number<std::uint64_t>();
    c.out << (diffs ? "DIFF " : "ok   ") << "resource fields type=" << str_field(o, "type").substr(7)
          << " objects=" << o.at("objects").to_number<std::uint64_t>() << " differences=" << diffs
          << " as_reported=" << o.at("as_reported").to_number<std::uint64_t>()
          << " dest_only=" << o.at("dest_only").to_number<std::uint64_t>() << '\n';
  }
  c.out << (r.diffs.empty() && r.failures.empty() ? "ok   " : "DIFF ") << "resource fields: " << r.objects << " object(s) compared, "
        << r.diffs.size() << " difference(s), " << r.notes.size() << " dropped or skipped by the migration as reported\n";
  // Every difference is printed; what the migration reported is in its report already: the first ones here,
  // all of them in verify_report.json.
  constexpr std::size_t k_notes_printed = 20;
  for (const auto& d : r.diffs) c.out << "DIFF " << d << '\n';
  for (std::size_t i = 0; i < r.notes.size() && i < k_notes_printed; ++i) c.out << "NOTE " << r.notes[i] << '\n';
  if (r.notes.size() > k_notes_printed)
    c.out << "NOTE ... and " << r.notes.size() - k_notes_printed << " more dropped or skipped as reported (verify_report.json)\n";
  for (const auto& d : r.dest_only) c.out << "NOTE " << d << '\n';
  for (const auto& f : r.failures) c.out << "FAIL " << f << '\n';
  for (auto& t : r.checks) resource_checks.push_back(std::move(t));
  json::object summary = fields_summary(r.objects, r.diffs, r.notes);
  resource_checks.push_back(std::move(summary));
  if (!r.diffs.empty()) failures.push_back(std::to_string(r.diffs.size()) + " resource field difference(s) (lines above)");
  for (auto& f : r.failures) failures.push_back(std::move(f));
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
