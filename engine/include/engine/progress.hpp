#pragma once
// Progress counters per named stream (rows, bytes, requests, retries) and the rate/ETA arithmetic
// for progress lines.
//
// Threading: progress_registry is thread-safe; `stream(name)` returns a reference that stays valid
// for the registry's lifetime, and its counters are relaxed atomics (cheap on hot paths).
// `estimate` and `format_rate_eta` are pure functions.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
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

class stream_progress {
 public:
  void add_rows(std::uint64_t n) { rows_.fetch_add(n, std::memory_order_relaxed); }
  void add_bytes(std::uint64_t n) { bytes_.fetch_add(n, std::memory_order_relaxed); }
  void add_requests(std::uint64_t n = 1) { requests_.fetch_add(n, std::memory_order_relaxed); }
  void add_retries(std::uint64_t n = 1) { retries_.fetch_add(n, std::memory_order_relaxed); }
  /// Expected total rows, when known (e.g. from a count query); 0 = unknown.
  void set_total_rows(std::uint64_t n) { total_rows_.store(n, std::memory_order_relaxed); }
  std::optional<std::uint64_t> total_rows() const;
  progress_counts snapshot() const;

 private:
  std::atomic<std::uint64_t> rows_{0}, bytes_{0}, requests_{0}, retries_{0}, total_rows_{0};
};

class progress_registry {
 public:
  /// The counters of stream `name`, created on first use.
  stream_progress& stream(const std::string& name);
  /// Every stream's counts, sorted by name.
  std::vector<std::pair<std::string, progress_counts>> snapshot() const;
  progress_counts total() const;

 private:
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

}  // namespace ferry::engine
