#include "reports.hpp"

#include "engine/files.hpp"
#include "engine/log.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <ostream>

namespace ferry::pipelines {

namespace json = boost::json;

namespace {

/// Creates the missing directories of `dir`, each 0700 (reports may name the org's objects).
void create_private_dirs(const std::filesystem::path& dir) {
  std::error_code ec;
  if (dir.empty() || std::filesystem::exists(dir, ec)) return;
  create_private_dirs(dir.parent_path());
  if (std::filesystem::create_directory(dir, ec))
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, std::filesystem::perm_options::replace, ec);
}

json::array string_array(const std::vector<std::string>& l);

json::object stream_json(const streams::stream_result& r, std::string_view status) {
  const auto& s = r.state;
  json::object o;
  o["kind"] = s.kind;
  json::array ids;
  for (const auto& i : s.source_ids) ids.emplace_back(i);
  o["source_ids"] = std::move(ids);
  o["status"] = status;
  streams::add_counters(o, s.counters);
  o["cursor"] = s.cursor;
  o["digest"] = s.digest.hex();
  if (!r.error.empty()) o["error"] = r.error;
  if (!r.unwritable.empty()) o["unwritable"] = string_array(r.unwritable);
  return o;
}

/// A failed stream's stderr line: the stream once (the runner's error starts with it too), at most ~200
/// characters, object first and cause last; the full text stays in the report and the state.
std::string failure_line(const std::string& described, const std::string& error) {
  std::string_view e = error.empty() ? std::string_view("did not finish") : std::string_view(error);
  const std::string prefix = "stream " + described;
  if (e.starts_with(prefix)) {
    e.remove_prefix(prefix.size());
    while (!e.empty() && (e.front() == ':' || e.front() == ' ')) e.remove_prefix(1);
  }
  return engine::shorten_middle(prefix + ": " + std::string(e), 200);
}

json::array string_array(const std::vector<std::string>& l) {
  json::array a;
  for (const auto& i : l) a.emplace_back(i);
  return a;
}

}  // namespace

std::filesystem::path report_path(const migrate_config& cfg, std::string_view default_name) {
  if (!cfg.report_path.empty()) return cfg.report_path;
  return std::filesystem::path(cfg.state_dir) / std::string(default_name);
}

std::filesystem::path migration_record_path(const migrate_config& cfg) {
  return std::filesystem::path(cfg.state_dir) / "migration_report.json";
}

namespace {
/// The migration report goes to the state dir (the record `ferry verify` reads the reported drops from)
/// and, with --report FILE, to FILE too. Returns the path to show and an error line or "".
std::pair<std::filesystem::path, std::string> write_migration_report(const migrate_config& cfg, const json::value& v) {
  auto werr = write_json(migration_record_path(cfg), v);
  auto path = report_path(cfg, "migration_report.json");
  if (path != migration_record_path(cfg))
    if (auto e = write_json(path, v); !e.empty()) werr = werr.empty() ? e : werr;
  return {path, werr};
}
}  // namespace

std::string write_json(const std::filesystem::path& p, const json::value& v) {
  if (p.has_parent_path()) create_private_dirs(p.parent_path());
  return engine::write_file(p, json::serialize(v) + "\n", 0600);  // 0600 whatever the umask
}

std::string mb(std::uint64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", static_cast<double>(bytes) / 1e6);
  return b;
}

std::string human_duration(double secs) {
  char b[64];
  if (secs < 1) return "< 1 s";
  if (secs < 60) std::snprintf(b, sizeof b, "%.0f s", secs);
  else if (secs < 3600) std::snprintf(b, sizeof b, "%.0f min %.0f s", std::floor(secs / 60), std::fmod(secs, 60));
  else if (secs < 86400) std::snprintf(b, sizeof b, "%.0f h %.0f min", std::floor(secs / 3600), std::floor(std::fmod(secs, 3600) / 60));
  else std::snprintf(b, sizeof b, "%.0f d %.0f h", std::floor(secs / 86400), std::floor(std::fmod(secs, 86400) / 3600));
  return b;
}

void print_failures(std::ostream& err, const std::vector<std::string>& failures, const resources::migration_report& report,
                    const std::vector<std::string>& run_errors, const std::string& write_error) {
  for (const auto& f : failures) err << "ferry migrate: " << f << '\n';
  for (const auto& f : report.errors())
    if (std::find(run_errors.begin(), run_errors.end(), f) == run_errors.end()) err << "ferry migrate: " << f << '\n';
  if (!write_error.empty()) err << "ferry migrate: " << write_error << '\n';
}

int finish_migration(const migrate_config& cfg, resources::migration_report& report, const migration_end& end,
                     std::ostream& out, std::ostream& err) {
  std::size_t done = 0, failed = 0, pending = 0;
  std::uint64_t rows = 0, bytes = 0, resent = 0;
  std::vector<std::string> failures = end.run_errors;
  for (const auto& [id, described, r] : end.streams) {
    std::string status = r.done ? "done" : end.interrupted ? "interrupted" : "failed";
    if (r.done) ++done;
    else if (end.interrupted) ++pending;
    else {
      ++failed;
      failures.push_back(failure_line(described, r.error));
    }
    // Rows the destination refused even alone: the stream went on past them, the run fails (exit 1),
    // also in later runs while the state records them (the destination still lacks them).
    for (const auto& u : r.unwritable) failures.push_back(u);
    if (r.unwritable_count > r.unwritable.size())
      failures.push_back("stream " + described + ": " + std::to_string(r.unwritable_count - r.unwritable.size()) +
                         " more row(s) could not be written (the log names each; counted as unwritable_rows)");
    if (const auto earlier = r.state.counters.unwritable_rows - r.unwritable_count; earlier > 0)
      failures.push_back("stream " + described + ": " + std::to_string(earlier) +
                         " row(s) could not be written in an earlier run (named in that run's report); the "
                         "destination lacks them");
    rows += r.state.counters.rows;
    bytes += r.state.counters.bytes;
    resent += r.state.counters.resent_rows;
    auto sj = stream_json(r, status);
    if (auto lag = end.lags.find(id); lag != end.lags.end()) {
      sj["lag_rows"] = lag->second.rows;
      sj["lag_seconds"] = lag->second.seconds ? json::value(*lag->second.seconds) : json::value(nullptr);
    }
    report.set_stream(id, std::move(sj));
    if (!end.interrupted)
      out << "stream " << id << ' ' << status << " rows=" << r.state.counters.rows << " bytes=" << r.state.counters.bytes
          << " resent=" << r.state.counters.resent_rows << " caught_up=" << r.state.counters.caught_up_rows << '\n';
  }
  for (const auto& e : end.run_errors) report.add_error(e);
  if (end.interrupted) {  // one line: the report (written here) has the details
    if (auto werr = write_migration_report(cfg, report.to_json()).second; !werr.empty())
      err << "ferry migrate: " << werr << '\n';
    out.flush();
    err << "ferry migrate: interrupted, state saved, resume with: " << end.resume_command << '\n';
    return 130;
  }
  out << report.summary_text();
  char line[256];
  std::snprintf(line, sizeof line, "streams: %zu done, %zu failed, %zu interrupted; %llu rows (%s MB, %llu re-sent) in %.1f s\n",
                done, failed, pending, static_cast<unsigned long long>(rows), mb(bytes).c_str(),
                static_cast<unsigned long long>(resent), end.seconds);
  out << line;
  auto [path, werr] = write_migration_report(cfg, report.to_json());
  if (werr.empty()) out << "report: " << path.string() << '\n';
  print_failures(err, failures, report, end.run_errors, werr);
  out.flush();
  bool ok = failures.empty() && end.resources_rc == 0 && report.success() && werr.empty();
  return ok ? 0 : 1;
}

int finish_verify(const migrate_config& cfg, verify_end end, std::ostream& out, std::ostream& err) {
  json::array streams_json;
  std::size_t diffs = 0;
  for (const auto& r : end.reports) {
    if (!r.ok()) ++diffs;
    streams_json.push_back(json::object{{"stream", r.stream},
                                        {"ok", r.ok()},
                                        {"source_rows", r.source_rows},
                                        {"dest_rows", r.dest_rows},
                                        {"missing", r.missing},
                                        {"extra", r.extra},
                                        {"mismatched", r.mismatched},
                                        {"source_digest", r.source_digest.hex()},
                                        {"dest_digest", r.dest_digest.hex()},
                                        {"missing_ids", string_array(r.missing_ids)},
                                        {"extra_ids", string_array(r.extra_ids)},
                                        {"mismatched_ids", string_array(r.mismatched_ids)}});
  }
  if (end.interrupted)
    end.failures.push_back(end.streams_total == 0 && end.reports.empty()
                               ? std::string("interrupted before any stream was compared: this verify is incomplete")
                               : "interrupted: " + std::to_string(end.not_compared) + " of " +
                                     std::to_string(end.streams_total) +
                                     " stream(s) not compared: this verify is incomplete, not a proof of equality");
  bool ok = diffs == 0 && end.failures.empty() && !end.interrupted;
  json::object doc{{"ok", ok},
                   {"incomplete", end.interrupted},
                   {"streams_total", end.streams_total},
                   {"streams_not_compared", end.not_compared},
                   {"streams", std::move(streams_json)},
                   {"resources", std::move(end.resource_checks)},
                   {"attachments", std::move(end.attachments)},
                   {"failures", string_array(end.failures)}};
  auto path = report_path(cfg, "migration_report.json").parent_path() / "verify_report.json";
  auto werr = write_json(path, doc);
  out << "verify: " << end.reports.size() << " stream(s), " << diffs << " with differences, " << end.failures.size()
      << " failure(s)" << (end.interrupted ? ", INCOMPLETE (interrupted)" : "")
      << (werr.empty() ? "; report: " + path.string() : std::string()) << '\n';
  out.flush();
  for (const auto& f : end.failures) err << "ferry verify: " << f << '\n';
  if (!werr.empty()) err << "ferry verify: " << werr << '\n';
  if (end.interrupted) return 130;
  return ok && werr.empty() ? 0 : 1;
}

}  // namespace ferry::pipelines
