#pragma once
// Internal to pipelines: `ferry migrate --dry-run` once both sides answered. GET/BTQL reads only;
// nothing is written to the destination, and the state is an in-memory store. The resources DAG prints
// its plan; then, per stream it would copy: its source row count (one full page at the stream's fetch
// limit for the average row size, then key-only pages of run_options::dry_run_count_page keys, created
// window honoured, at most max_concurrent_streams streams counted at once, stopped by a shutdown),
// estimated bytes and time (run_options::plan_rows_per_s / plan_bytes_per_s, printed as the
// assumption), then totals, and migration_plan.json (resources' report + `streams` entries +
// `streams_plan` totals).

#include "run_context.hpp"

#include "pipelines/resources/report.hpp"
#include "pipelines/streams/stream_runner.hpp"

#include "engine/semaphore.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ferry::pipelines {

class dry_run_planner {
 public:
  dry_run_planner(run_context& c, resources::migration_report& report);

  /// Plans resources and streams; the row counts run as runtime tasks, one per stream.
  boost::asio::awaitable<void> plan();
  /// Once the runtime's run() returned: prints the plan and writes migration_plan.json. Returns the
  /// exit code (0, 1, or 130 when interrupted: the plan lists uncounted streams with "counted": false).
  int finish(bool interrupted, const std::vector<std::string>& run_errors);

  /// What plan() found per stream, once the runtime's run() returned (`ferry plan` builds its units from
  /// it): rows when counted, bytes estimated as finish() prints them, else the error.
  struct counted_stream {
    streams::stream_spec spec;
    std::optional<std::uint64_t> rows;
    std::uint64_t bytes = 0;
    std::string error;
  };
  std::vector<counted_stream> counted_streams();
  /// Discovery failures, and the resources plan's result (0, 1, 2).
  std::vector<std::string> discovery_errors();
  int resources_rc() const { return resources_rc_; }

 private:
  // One entry per planned stream, in plan order; count_stream(i) fills entry i. The vector is sized
  // before any task starts and never resized; entries are read and written under mu_.
  struct plan_entry {
    streams::stream_spec spec;
    std::vector<std::pair<std::string, bool>> dest_exists;  // source id -> a destination object exists
    std::optional<std::uint64_t> rows;                      // nullopt: not counted (failed / interrupted)
    std::uint64_t sample_rows = 0;                          // rows of the sampled full page
    std::uint64_t sample_bytes = 0;                         // their serialized JSON bytes
    std::string error;
  };
  struct totals {
    std::uint64_t rows = 0;
    std::uint64_t bytes = 0;
    std::size_t uncounted = 0;
  };

  boost::asio::awaitable<void> count_stream(std::size_t i);
  /// Rows x the average row size of the stream's sampled page.
  static std::uint64_t estimated_bytes(const plan_entry& e);
  double seconds_for(std::uint64_t rows, std::uint64_t bytes) const;
  /// One "would copy" line per stream on `lines` and its `streams` entry in the report.
  totals describe_streams(std::ostream& lines, std::vector<std::string>& failures, bool interrupted);

  run_context& c_;
  resources::migration_report& report_;
  engine::semaphore slots_;
  std::mutex mu_;
  std::vector<plan_entry> plan_;
  std::size_t left_out_ = 0;  // objects with a stream that the resources plan does not create/adopt
  int resources_rc_ = 0;
  std::vector<std::string> errors_;  // discovery failures
};

}  // namespace ferry::pipelines
