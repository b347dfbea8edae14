#pragma once
// Internal to pipelines/archive: the progress lines of `ferry export` and `ferry import`, as migrate's
// without a TTY: every `interval` one log line
//   progress <command> rows=N rows_per_s=R streams=DONE/TOTAL [attachments=A] [of_rows=T]
// (rows and attachments of this run; of_rows: the archive's rows, on import). The numbers come from
// `read`, called on the ticker's strand (it must be thread-safe). The ticker polls a stop flag every
// 100 ms, so stop() from any thread ends it promptly, and a runtime shutdown (cancellation) ends it too.
//
// archive_metrics: `--metrics-addr` for both commands, migrate's endpoint (run/metrics.hpp) and families:
// the process metrics, the side's HTTP requests, and per stream ferry_rows_copied_total /
// ferry_bytes_copied_total through an engine::progress_registry (export: rows and bytes of the chunks
// recorded in the archive; import: rows acknowledged by the destination). `--metrics-linger` keeps it
// serving after the end, as migrate does.

#include "../run/metrics.hpp"

#include "pipelines/migrate_config.hpp"

#include "engine/metrics.hpp"
#include "engine/runtime.hpp"

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace ferry::pipelines::archive {

struct progress_counts {
  std::uint64_t rows = 0;
  std::size_t streams_done = 0;
  std::size_t streams_total = 0;
  std::uint64_t attachments = 0;
  std::optional<std::uint64_t> archive_rows;
};

class progress_ticker {
 public:
  progress_ticker(std::string command, std::function<progress_counts()> read, std::chrono::milliseconds interval)
      : command_(std::move(command)), read_(std::move(read)), interval_(interval) {}
  boost::asio::awaitable<void> run();
  void stop() { stop_ = true; }
  /// The line for `c` after `seconds` with `rows_per_s` (pure; tested).
  static std::string line(const std::string& command, const progress_counts& c, double rows_per_s);

 private:
  std::string command_;
  std::function<progress_counts()> read_;
  std::chrono::milliseconds interval_;
  std::atomic<bool> stop_{false};
};

class archive_metrics {
 public:
  /// Serves from here on with cfg.metrics_addr (its URL logged); throws std::runtime_error naming the
  /// address when it cannot bind. Without the address nothing is served and registry() is null.
  explicit archive_metrics(const migrate_config& cfg);
  ~archive_metrics();
  engine::metrics_registry* registry() { return http_ ? &registry_ : nullptr; }
  /// --metrics-linger after a run that was not interrupted: the final values stay served that long on
  /// `rt` (a signal ends the wait).
  void linger(engine::runtime& rt) const;

 private:
  std::chrono::milliseconds linger_;
  engine::metrics_registry registry_;
  std::unique_ptr<metrics_service> http_;
};

}  // namespace ferry::pipelines::archive
