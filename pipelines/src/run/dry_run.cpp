#include "dry_run.hpp"

#include "../json_fields.hpp"

#include "plan.hpp"
#include "reports.hpp"
#include "source_count.hpp"

#include "pipelines/resources/entry.hpp"
#include "pipelines/streams/discovery.hpp"

#include "engine/runtime.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

namespace ferry::pipelines {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

/// Where a dry run writes migration_plan.json: the report path if given, else the state dir only if
/// it already exists (a dry run never creates it), else the current directory.
std::filesystem::path plan_path(const migrate_config& cfg) {
  if (!cfg.report_path.empty()) return cfg.report_path;
  std::error_code ec;
  if (!cfg.state_dir.empty() && std::filesystem::is_directory(cfg.state_dir, ec))
    return std::filesystem::path(cfg.state_dir) / "migration_plan.json";
  return std::filesystem::path("migration_plan.json");
}


}  // namespace

dry_run_planner::dry_run_planner(run_context& c, resources::migration_report& report)
    : c_(c), report_(report), slots_(static_cast<std::size_t>(std::max(c.cfg.max_concurrent_streams, 1))) {}

asio::awaitable<void> dry_run_planner::plan() {
  const auto& cfg = c_.cfg;
  if (resources_selected(cfg)) {
    auto rcfg = resources_view(cfg);
    resources_rc_ = co_await resources::migrate_resources(rcfg, *c_.src.res, *c_.dst.res, nullptr, report_, {});
  }
  auto d = co_await streams::discover_objects(*c_.src.api, *c_.dst.api, cfg, nullptr);
  errors_ = std::move(d.errors);
  if (resources_selected(cfg)) {
    // The real run streams only the objects the DAG makes ready (created or adopted): not those it
    // skips (e.g. experiments/datasets outside the created window), fails, or was not asked for.
    std::set<std::pair<std::string, std::string>> planned;
    for (const auto& e : report_.entries())
      if (e.status != resources::object_status::skipped && e.status != resources::object_status::failed)
        planned.emplace(e.type, e.source_id);
    std::erase_if(d.objects, [&](const streams::discovered_object& o) {
      if (planned.count({std::string(id_type(o.kind)), o.source_id})) return false;
      std::lock_guard lk(mu_);
      ++left_out_;
      return true;
    });
  }
  // Objects without a destination yet get a placeholder so the grouping shows as it will run.
  std::set<std::string> is_new;
  for (auto& o : d.objects)
    if (o.dest_id.empty()) {
      o.dest_id = "(new)";
      is_new.insert(o.source_id);
    }
  auto specs = streams::build_stream_specs(d.objects, group_size(cfg), {});
  {
    std::lock_guard lk(mu_);
    plan_.resize(specs.size());
    for (std::size_t i = 0; i < specs.size(); ++i) {
      for (const auto& id : specs[i].source_ids) plan_[i].dest_exists.emplace_back(id, !is_new.count(id));
      plan_[i].spec = std::move(specs[i]);
    }
  }
  // Counted and printed by finish() once every task is done (or shutdown stopped them).
  for (std::size_t i = 0; i < specs.size(); ++i)
    c_.rt->spawn(c_.rt->strand(), count_stream(i), [this, i](std::exception_ptr e) {
      if (!e) return;
      std::lock_guard lk(mu_);
      plan_[i].error = engine::is_cancellation(e) ? std::string("not counted: interrupted") : engine::what_of(e);
    });
}

// Counts planned stream i (at most max_concurrent_streams at once via `slots_`): one full page at the
// stream's fetch limit for the average row size, then key-only pages after that page's last key.
// Stops at the next page boundary on shutdown (entry left uncounted).
asio::awaitable<void> dry_run_planner::count_stream(std::size_t i) {
  auto permit = co_await slots_.acquire();
  streams::page_query q;
  {
    std::lock_guard lk(mu_);
    q = first_page_query(c_.cfg, plan_[i].spec.kind, plan_[i].spec.source_ids);
  }
  std::string error;
  std::optional<std::uint64_t> rows;
  std::uint64_t sample_rows = 0, sample_bytes = 0;
  auto sample = co_await source_page(c_.src, q, false);
  if (!sample.ok()) {
    error = "BTQL sample page failed: " + sample.error;
  } else {
    std::string last;
    for (const auto& v : sample.rows) {
      sample_bytes += json::serialize(v).size();
      ++sample_rows;
      if (v.is_object()) last = str_field(v.as_object(), "_pagination_key");
    }
    if (sample_rows == 0) {
      rows = 0;
    } else if (last.empty()) {
      error = "BTQL sample page row without _pagination_key: cannot count further";
    } else {
      q.after_key = last;
      q.limit = std::max<std::size_t>(c_.ro.dry_run_count_page, 1);
      auto more = co_await count_keys(c_.src, q, [] { return false; }, error);
      if (more) rows = sample_rows + *more;
    }
  }
  if (!rows && error.empty()) error = "not counted: interrupted";
  std::lock_guard lk(mu_);
  plan_[i].rows = rows;
  plan_[i].sample_rows = sample_rows;
  plan_[i].sample_bytes = sample_bytes;
  plan_[i].error = std::move(error);
}

std::uint64_t dry_run_planner::estimated_bytes(const plan_entry& e) {
  if (!e.rows || e.sample_rows == 0) return 0;
  const double avg = static_cast<double>(e.sample_bytes) / static_cast<double>(e.sample_rows);
  return static_cast<std::uint64_t>(std::llround(avg * static_cast<double>(*e.rows)));
}

std::vector<dry_run_planner::counted_stream> dry_run_planner::counted_streams() {
  std::lock_guard lk(mu_);
  std::vector<counted_stream> out;
  for (const auto& e : plan_) out.push_back({e.spec, e.rows, estimated_bytes(e), e.error});
  return out;
}

std::vector<std::string> dry_run_planner::discovery_errors() {
  std::lock_guard lk(mu_);
  return errors_;
}

double dry_run_planner::seconds_for(std::uint64_t rows, std::uint64_t bytes) const {
  const double rps = c_.ro.plan_rows_per_s > 0 ? c_.ro.plan_rows_per_s : 28'000;
  const double bps = c_.ro.plan_bytes_per_s > 0 ? c_.ro.plan_bytes_per_s : 38e6;
  return std::max(static_cast<double>(rows) / rps, static_cast<double>(bytes) / bps);
}

dry_run_planner::totals dry_run_planner::describe_streams(std::ostream& lines, std::vector<std::string>& failures,
                                                          bool interrupted) {
  const auto& cfg = c_.cfg;
  totals t;
  for (const auto& e : plan_) {
    const auto& s = e.spec;
    json::object o;
    o["kind"] = streams::resource_name(s.kind);
    json::array ids, dest;
    lines << "  would copy " << streams::describe(s) << " ->";
    for (const auto& [sid, exists] : e.dest_exists) {
      ids.emplace_back(sid);
      const auto& did = s.dest_ids.at(sid);
      dest.push_back(json::object{{"source_id", sid},
                                  {"dest_id", exists ? json::value(did) : json::value(nullptr)},
                                  {"status", exists ? "existing" : "new"}});
      lines << ' ' << did;
    }
    o["source_ids"] = std::move(ids);
    o["destination"] = std::move(dest);
    lines << " stream=" << s.stream_id;
    if (cfg.created_after) lines << " created>=" << *cfg.created_after;
    if (cfg.created_before) lines << " created<" << *cfg.created_before;
    o["counted"] = e.rows.has_value();
    if (e.rows) {
      const auto bytes = estimated_bytes(e);
      const double secs = seconds_for(*e.rows, bytes);
      t.rows += *e.rows;
      t.bytes += bytes;
      o["rows"] = *e.rows;
      o["bytes"] = bytes;
      o["seconds"] = secs;
      o["sampled_rows"] = e.sample_rows;
      lines << " rows=" << *e.rows << " ~" << mb(bytes) << " MB ~" << human_duration(secs) << '\n';
    } else {
      ++t.uncounted;
      o["rows"] = nullptr;
      o["bytes"] = nullptr;
      o["seconds"] = nullptr;
      o["error"] = e.error;
      lines << " rows=? (" << e.error << ")\n";
      if (!interrupted) failures.push_back("stream " + s.stream_id + " (" + streams::describe(s) + "): " + e.error);
    }
    report_.set_stream(s.stream_id, std::move(o));
  }
  return t;
}

int dry_run_planner::finish(bool interrupted, const std::vector<std::string>& run_errors_in) {
  std::lock_guard lk(mu_);
  auto& out = c_.out;
  std::vector<std::string> run_errors = errors_;  // discovery's, then the run's (an abort)
  run_errors.insert(run_errors.end(), run_errors_in.begin(), run_errors_in.end());
  std::vector<std::string> failures = run_errors;
  std::ostringstream lines;
  const auto t = describe_streams(lines, failures, interrupted);
  const double rps = c_.ro.plan_rows_per_s > 0 ? c_.ro.plan_rows_per_s : 28'000;
  const double bps = c_.ro.plan_bytes_per_s > 0 ? c_.ro.plan_bytes_per_s : 38e6;
  const double total_secs = seconds_for(t.rows, t.bytes);
  char assumption[320];
  std::snprintf(assumption, sizeof assumption,
                "%.0f rows/s and %.1f MB/s for the whole run, the slower bound wins (measured emulator -> "
                "emulator on 2 cores, bench/results/summary.md); bytes = rows x average row size of one sampled page",
                rps, bps / 1e6);
  char total_line[256];
  std::snprintf(total_line, sizeof total_line, "  total: %zu stream(s), %llu rows, %.3f GB, estimated %s%s\n", plan_.size(),
                static_cast<unsigned long long>(t.rows), static_cast<double>(t.bytes) / 1e9,
                human_duration(total_secs).c_str(), t.uncounted ? " (incomplete: some streams not counted)" : "");
  for (const auto& e : run_errors) report_.add_error(e);
  out << report_.summary_text();
  out << "event streams (dry run: nothing is written; rows counted on the source with key-only BTQL pages):\n" << lines.str();
  if (left_out_)
    out << "  left out: " << left_out_
        << " project/experiment/dataset stream object(s) the resources plan skips (created window, selection or "
           "failure; see above)\n";
  out << total_line << "  estimate assumes " << assumption << '\n';
  auto doc = report_.to_json();
  doc["streams_plan"] = json::object{{"streams", plan_.size()},
                                     {"uncounted", t.uncounted},
                                     {"objects_left_out", left_out_},
                                     {"rows", t.rows},
                                     {"bytes", t.bytes},
                                     {"gb", static_cast<double>(t.bytes) / 1e9},
                                     {"seconds", total_secs},
                                     {"complete", t.uncounted == 0},
                                     {"assumption", json::object{{"rows_per_s", rps}, {"bytes_per_s", bps}, {"text", assumption}}}};
  std::error_code ec;
  auto path = std::filesystem::absolute(plan_path(c_.cfg), ec);
  if (ec) path = plan_path(c_.cfg);
  auto werr = write_json(path, doc);
  if (werr.empty()) out << "plan: " << path.string() << '\n';
  print_failures(c_.err, failures, report_, run_errors, werr);
  out.flush();
  if (interrupted) {
    c_.err << "ferry migrate: dry run interrupted; the plan is partial (" << t.uncounted
           << " stream(s) not counted); nothing was written\n";
    return 130;
  }
  bool ok = failures.empty() && resources_rc_ == 0 && report_.success() && werr.empty();
  return ok ? 0 : 1;
}

}  // namespace ferry::pipelines
