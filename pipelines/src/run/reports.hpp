#pragma once
// Internal to pipelines: what a run writes at its end: the summary on stdout, failures on stderr, and
// migration_report.json / verify_report.json (directories Ferry creates for them are 0700, since
// reports name the org's objects). The dry run's plan is dry_run.cpp's.

#include "pipelines/migrate_config.hpp"
#include "pipelines/resources/report.hpp"
#include "pipelines/streams/lag.hpp"
#include "pipelines/streams/launcher.hpp"
#include "pipelines/streams/verify.hpp"

#include <boost/json/value.hpp>

#include <filesystem>
#include <iosfwd>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::pipelines {

/// cfg.report_path when set, else <state_dir>/<default_name>.
std::filesystem::path report_path(const migrate_config& cfg, std::string_view default_name);

/// Writes `v` to `p` (creating the parent, 0700); returns an error line or "".
/// Where `ferry migrate` keeps its report in the state dir (also with --report FILE, which gets a copy):
/// `ferry verify` reads the fields the migration reported dropped from it.
std::filesystem::path migration_record_path(const migrate_config& cfg);

std::string write_json(const std::filesystem::path& p, const boost::json::value& v);

/// "12.3" (bytes / 1e6, one decimal).
std::string mb(std::uint64_t bytes);

/// "< 1 s", "45 s", "12 min 5 s", "3 h 20 min", "2 d 4 h".
std::string human_duration(double secs);

/// Prints each line as "ferry migrate: <line>": `failures`, then the report's errors not already among
/// `run_errors`, then `write_error` if any.
void print_failures(std::ostream& err, const std::vector<std::string>& failures, const resources::migration_report& report,
                    const std::vector<std::string>& run_errors, const std::string& write_error);

/// What one migration ended with, for its report.
struct migration_end {
  std::vector<streams::stream_outcome> streams;
  std::vector<std::string> run_errors;  // probe, discovery and setup failures
  int resources_rc = 0;
  bool interrupted = false;
  double seconds = 0;
  std::string resume_command;  // what an interrupted run prints to resume with
  std::map<std::string, streams::stream_lag> lags;  // --follow: the last round's lag per stream id
};

/// The end of `ferry migrate`: one line per stream, the resources summary and the streams totals on
/// `out`, migration_report.json, one line per failure on `err`. Returns the exit code (0, 1, 130).
int finish_migration(const migrate_config& cfg, resources::migration_report& report, const migration_end& end,
                     std::ostream& out, std::ostream& err);

/// What one verify ended with, for its report.
struct verify_end {
  std::vector<streams::verify_report> reports;
  std::vector<std::string> failures;  // one line each
  boost::json::array resource_checks;
  boost::json::object attachments;
  std::size_t streams_total = 0;
  std::size_t not_compared = 0;  // streams not compared because the run was interrupted
  bool interrupted = false;      // a shutdown began (or the stream list was never read)
};

/// The end of `ferry verify`: verify_report.json next to the migration report, the totals line on
/// `out`, one line per failure on `err`. Returns the exit code: 0 all equal, 130 interrupted (the
/// report says "ok": false, "incomplete": true, and how many streams were not compared), 1 otherwise.
int finish_verify(const migrate_config& cfg, verify_end end, std::ostream& out, std::ostream& err);

}  // namespace ferry::pipelines
