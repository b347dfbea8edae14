#pragma once
// Progress counters per named stream (rows, bytes, requests, retries), the rate/ETA arithmetic for
// progress lines, and the TTY status area (a block of lines pinned at the bottom of the terminal,
// redrawn in place, with log lines printed above it).
//
// Threading: progress_registry is thread-safe; `stream(name)` returns a reference that stays valid
// for the registry's lifetime, and its counters are relaxed atomics (cheap on hot paths). With a
// metrics registry, each stream's counters and gauges also feed the metrics of that stream (see
// README "Metrics"); the metric series outlive the progress registry (a --follow round makes a new
// progress registry, and the metric counters keep counting). `estimate`, `format_rate_eta` and
// `layout_status` are pure functions; status_area is thread-safe.

#include "engine/metrics.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace ferry::engine {

struct progress_counts {
  std::uint64_t rows = 0;
  std::uint64_t bytes = 0;
  std::uint64_t requests = 0;
  std::uint64_t retries = 0;
  progress_counts& operator+=(const progress_counts& o);
  friend bool operator==(const progress_counts&, const progress_counts&) = default;
};

/// The metric series of one stream (null members when the run has no metrics registry).
struct stream_metrics {
  metric_counter* rows = nullptr;
  metric_counter* bytes = nullptr;
  metric_counter* retries = nullptr;
  metric_gauge* page_size = nullptr;
  metric_gauge* write_concurrency = nullptr;
  metric_gauge* lag_rows = nullptr;
  metric_gauge* lag_seconds = nullptr;
  metric_gauge* slices = nullptr;
  metric_counter* slice_splits = nullptr;
  /// The series of stream `name` in `r` (the ferry_* families documented in README "Metrics").
  static stream_metrics of(metrics_registry& r, const std::string& name);
};

class stream_progress {
 public:
  stream_progress() = default;
  explicit stream_progress(stream_metrics m) : m_(m) {}

  void add_rows(std::uint64_t n) {
    rows_.fetch_add(n, std::memory_order_relaxed);
    if (m_.rows) m_.rows->inc(n);
  }
  void add_bytes(std::uint64_t n) {
    bytes_.fetch_add(n, std::memory_order_relaxed);
    if (m_.bytes) m_.bytes->inc(n);
  }
  void add_requests(std::uint64_t n = 1) { requests_.fetch_add(n, std::memory_order_relaxed); }
  void add_retries(std::uint64_t n = 1) {
    retries_.fetch_add(n, std::memory_order_relaxed);
    if (m_.retries) m_.retries->inc(n);
  }
  /// Gauges for the metrics endpoint: the BTQL page size in rows, the writers' concurrency (AIMD), the
  /// rows and seconds the copy is behind the source, the slices the stream is split into.
  void set_page_size(std::size_t rows) { set(m_.page_size, static_cast<double>(rows)); }
  void set_write_concurrency(std::size_t n) { set(m_.write_concurrency, static_cast<double>(n)); }
  void set_lag_rows(std::uint64_t rows) { set(m_.lag_rows, static_cast<double>(rows)); }
  void set_lag_seconds(double seconds) { set(m_.lag_seconds, seconds); }
  void set_slices(std::size_t n) { set(m_.slices, static_cast<double>(n)); }
  /// A running slice of the stream was split (pipelines/streams/slice_split.hpp).
  void add_slice_splits(std::uint64_t n = 1) {
    if (m_.slice_splits) m_.slice_splits->inc(n);
  }
  /// The stream ended (done, failed or stopped): the status area no longer shows it.
  void set_finished() { finished_.store(true, std::memory_order_relaxed); }
  bool finished() const { return finished_.load(std::memory_order_relaxed); }
  /// Expected total rows, when known (e.g. from a count query); 0 = unknown.
  void set_total_rows(std::uint64_t n) { total_rows_.store(n, std::memory_order_relaxed); }
  std::optional<std::uint64_t> total_rows() const;
  progress_counts snapshot() const;

 private:
  static void set(metric_gauge* g, double v) {
    if (g) g->set(v);
  }
  stream_metrics m_;
  std::atomic<std::uint64_t> rows_{0}, bytes_{0}, requests_{0}, retries_{0}, total_rows_{0};
  std::atomic<bool> finished_{false};
};

class progress_registry {
 public:
  /// `metrics` (may be null) must outlive the registry.
  explicit progress_registry(metrics_registry* metrics = nullptr) : metrics_(metrics) {}
  /// The counters of stream `name`, created on first use.
  stream_progress& stream(const std::string& name);
  /// Every stream's counts, sorted by name.
  std::vector<std::pair<std::string, progress_counts>> snapshot() const;
  progress_counts total() const;
  /// Names of the streams not finished, sorted.
  std::vector<std::string> active() const;

 private:
  metrics_registry* metrics_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<stream_progress>> streams_;
};

struct rate_eta {
  double per_second = 0;                        // count / elapsed (0 when elapsed is 0)
  std::optional<std::chrono::seconds> eta;      // only when total is known, rate > 0 and count <= total
  std::optional<double> fraction;               // count / total, capped at 1
};

/// Average rate since the start and the time left at that rate.
rate_eta estimate(std::uint64_t count, std::optional<std::uint64_t> total, std::chrono::nanoseconds elapsed);

/// "12.3k rows/s, 45% eta 3m05s" style fragment for progress lines.
std::string format_rate_eta(const rate_eta& r, const std::string& unit);
/// "12.3k", "4.5M": a count for humans.
std::string format_count(double v);

/// The status area's lines: `header`, then one line per stream (at most max_lines - 1 in all; when
/// more streams are active, the last line says "... and N more stream(s)"), each cut to `width` - 1
/// columns (never at a UTF-8 continuation byte), so that no line wraps and the area keeps its height.
std::vector<std::string> layout_status(const std::string& header, const std::vector<std::string>& streams,
                                       std::size_t width, std::size_t max_lines);

/// The terminal's width and height for `fd` when it is a TTY.
std::optional<std::pair<std::size_t, std::size_t>> terminal_size(int fd);

/// A block of lines pinned at the bottom of a terminal. Each line is drawn followed by a newline, so
/// the cursor rests at the start of the row below the area; `print_above` erases the area (cursor up
/// to its first row, erase to the end of the screen), writes the text there (which scrolls up as a
/// terminal scrolls) and draws the area again below it, in one write: a log line and a status line
/// never share a row. The area is drawn on `out` (stderr in production) and flushed after each call.
/// Thread-safe (one mutex: a log line and a redraw never interleave).
class status_area {
 public:
  explicit status_area(std::ostream& out) : out_(out) {}
  /// Replaces the area's lines and redraws it.
  void update(std::vector<std::string> lines);
  /// Writes `text` (a newline is added if it lacks one) above the area.
  void print_above(std::string_view text);
  /// Erases the area (the run's end); later print_above calls just write.
  void clear();

  /// Bytes that erase an area of `rows` rows drawn by draw_bytes, the cursor at the row below it.
  static std::string erase_bytes(std::size_t rows);
  /// Bytes that draw `lines`, each followed by a newline (after erasing the rest of its row).
  static std::string draw_bytes(const std::vector<std::string>& lines);

 private:
  std::mutex mu_;
  std::ostream& out_;
  std::vector<std::string> lines_;
};

/// The area log lines go above, or null. The caller keeps the area alive until it sets another (or
/// null); setting waits for a print_above_active_area in progress.
void set_active_status_area(status_area* area);
/// Writes `text` above the active area and returns true, or returns false when there is none (the log
/// sink then writes to stderr itself).
bool print_above_active_area(std::string_view text);

}  // namespace ferry::engine
