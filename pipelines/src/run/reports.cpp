#include "reports.hpp"

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
  return o;
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

std::string write_json(const std::filesystem::path& p, const json::value& v) {
  if (p.has_parent_path()) create_private_dirs(p.parent_path());
  std::ofstream f(p);
  if (!f) return "cannot write " + p.string() + ": check the directory exists and is writable";
  f << json::serialize(v) << '\n';
  f.flush();
  if (!f) return "cannot write " + p.string() + ": disk full or not writable";
  return {};
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
      failures.push_back("stream " + id + " (" + described + "): " +
                         (r.error.empty() ? std::string("did not finish") : r.error));
    }
    rows += r.state.counters.rows;
    bytes += r.state.counters.bytes;
    resent += r.state.counters.resent_rows;
    report.set_stream(id, stream_json(r, status));
    out << "stream " << id << ' ' << status << " rows=" << r.state.counters.rows << " bytes=" << r.state.counters.bytes
        << " resent=" << r.state.counters.resent_rows << " caught_up=" << r.state.counters.caught_up_rows << '\n';
  }
  for (const auto& e : end.run_errors) report.add_error(e);
  out << report.summary_text();
  char line[256];
  std::snprintf(line, sizeof line, "streams: %zu done, %zu failed, %zu interrupted; %llu rows (%s MB, %llu re-sent) in %.1f s\n",
                done, failed, pending, static_cast<unsigned long long>(rows), mb(bytes).c_str(),
                static_cast<unsigned long long>(resent), end.seconds);
  out << line;
  auto path = report_path(cfg, "migration_report.json");
  auto werr = write_json(path, report.to_json());
  if (werr.empty()) out << "report: " << path.string() << '\n';
  print_failures(err, failures, report, end.run_errors, werr);
  out.flush();
  if (end.interrupted) {
    err << "ferry migrate: interrupted; committed progress is in " << cfg.state_dir
        << ": run the same command again to resume\n";
    return 130;
  }
  bool ok = failures.empty() && end.resources_rc == 0 && report.success() && werr.empty();
  return ok ? 0 : 1;
}

int finish_verify(const migrate_config& cfg, const std::vector<streams::verify_report>& reports,
                  const std::vector<std::string>& failures, json::array resource_checks, std::ostream& out,
                  std::ostream& err) {
  json::array streams_json;
  std::size_t diffs = 0;
  for (const auto& r : reports) {
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
  bool ok = diffs == 0 && failures.empty();
  json::object doc{{"ok", ok},
                   {"streams", std::move(streams_json)},
                   {"resources", std::move(resource_checks)},
                   {"failures", string_array(failures)}};
  auto path = report_path(cfg, "migration_report.json").parent_path() / "verify_report.json";
  auto werr = write_json(path, doc);
  out << "verify: " << reports.size() << " stream(s), " << diffs << " with differences, " << failures.size()
      << " failure(s)" << (werr.empty() ? "; report: " + path.string() : std::string()) << '\n';
  out.flush();
  for (const auto& f : failures) err << "ferry verify: " << f << '\n';
  if (!werr.empty()) err << "ferry verify: " << werr << '\n';
  return ok && werr.empty() ? 0 : 1;
}

}  // namespace ferry::pipelines
