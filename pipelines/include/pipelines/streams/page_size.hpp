#pragma once
// Adaptive BTQL page size (LIMIT) of one stream, on top of engine::aimd_controller.
//
// Starts at the configured limit. A 500/504 (the server could not build a page that big) or a page
// slower than `slow_page` shrinks it multiplicatively (x0.5, as the reference ladder 1000 -> 500 -> 250);
// every `successes_per_step` fast pages grow it back additively (+limit/8) up to the configured limit
// (the reference never grows back). It never goes below `min_limit`; a 500/504 while already at the
// floor means the stream cannot make progress: on_server_error() then returns false and the caller
// fails the stream with a clear error.
//
// Threading: one instance per stream, used from the stream's strand only (the AIMD inside is thread-safe
// anyway). Pure: callers pass `now` and latencies.

#include "engine/aimd.hpp"
#include "engine/clock.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace ferry::pipelines::streams {

struct page_size_config {
  std::size_t initial_limit = 1000;
  std::size_t min_limit = 25;
  std::chrono::milliseconds slow_page{20'000};  // a page slower than this shrinks the next one
  std::uint32_t successes_per_step = 2;
};

class page_size_controller {
 public:
  explicit page_size_controller(page_size_config cfg);

  std::size_t limit() const { return aimd_.value(); }
  /// A page came back; a slow page shrinks the next one, a fast one may grow it.
  void on_page(engine::steady_duration latency, engine::steady_time now);
  /// The page failed with 500/504. Returns false when already at the floor (the caller fails the
  /// stream); otherwise shrinks and returns true (retry the same page at limit()).
  bool on_server_error(engine::steady_time now);
  std::size_t min_limit() const { return cfg_.min_limit; }

 private:
  page_size_config cfg_;
  engine::aimd_controller aimd_;
};

/// The bytes a stream's reader asks the memory budget for before it reads a page (stream_runner.hpp):
/// the most a page held among the last `window` pages (its body and the rows built from it, both alive
/// while it is rewritten), at least 64 KiB; before any page, 2 KB rows x 2 x the page size. The largest
/// rather than the last: where a few rows are large (100 KB-1.4 MB among 1.4 KB ones) the pages vary
/// 10x, and asking for the previous page's bytes let every reader that met a large page after small
/// ones go past the budget by the difference (~5% over with 7 slices).
class page_bytes_estimate {
 public:
  static constexpr std::size_t window = 8;
  explicit page_bytes_estimate(std::size_t fetch_limit)
      : initial_(2 * 2048 * static_cast<std::uint64_t>(fetch_limit ? fetch_limit : 1)) {}
  std::uint64_t expected() const;
  /// A page was read and rewritten: what it held at its most.
  void add(std::uint64_t page_bytes);

 private:
  std::uint64_t initial_;
  std::uint64_t recent_[window] = {};
  std::size_t pages_ = 0;
};

}  // namespace ferry::pipelines::streams
