#pragma once
// Splitting a running slice that turns out large (issue 16): the layout plan_slices made once can be
// skewed (ids written after the plan, interpolated cuts that missed), and one long slice then runs
// alone at the end while the other slots K allows stay idle.
//
// When: every slice has been started, fewer than K run (others ended), the layout holds fewer than
// max_layout_slices, and a slice ended since the last look (or 10 s passed: K may have grown). Then
// each running slice's rows left after its committed cursor are counted (one probe each, all at once:
// its window and `_pagination_key > cursor`), and the one with the most is split into split_parts()
// parts (one per idle slot plus itself, each of at least split_part_pages x min_slice_rows) at cuts
// found by plan_split. The probes run beside the driver (consider() returns at once), which keeps
// starting slices and pacing K meanwhile. K (at most MIGRATION_MAX_SLICES_PER_STREAM) bounds the
// slices running, so a split never runs more than K; the layout itself may grow past it (finished
// slices stay in it) up to max_layout_slices.
//
// How (exact): the slice is stopped at a commit boundary (a total cancellation of that slice only,
// as a graceful shutdown: its reader stops, what it read is written and committed). Its window
// [a,b) with committed cursor c becomes [a,m) and [m,b) (or more parts), all continuing from c. The
// page filter is `id in window AND _pagination_key > c` (btql_query.cpp), a conjunction, so the
// parts together read exactly the rows [a,b) would have read from c (a created-after start key is
// `>= c` for every part alike: the flag is copied). Every row at or before c was committed by the
// slice; none after c was acknowledged (the stop committed all it read, and the split is skipped when
// the slice's journal still holds a batch past its cursor). Every version of an id has that id, so it
// stays in one part and reaches the destination in that part's order. The new layout and the new
// slices' cursors (c) go to the stream's record in ONE synced save (checkpoint_store::change_layout,
// under the slices' commit mutex) before the slices start again: a SIGKILL before it resumes the old
// layout from c, after it the split layout from c. Appended slices keep the indices of the others
// (their cursors and journals stay theirs); verify and the totals read the record's slices, whatever
// their count.
//
// Threading: slice_splitter lives in the launcher's driver coroutine (one strand); run_slice runs on
// the slice's strand; a stop is posted to that strand.

#include "pipelines/streams/checkpoint_store.hpp"
#include "pipelines/streams/slices.hpp"
#include "pipelines/streams/stream_runner.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ferry::pipelines::streams {

/// The most slices a layout holds (running, waiting and finished ones; the record keeps each one's
/// cursor and counters): the setting's own maximum.
constexpr std::size_t max_layout_slices = 64;
/// A split stops a slice at a commit boundary and restarts its parts after a few probe round trips:
/// only parts of at least this many x min_slice_rows rows gain more than that costs.
constexpr std::uint64_t split_part_pages = 4;

/// Parts a running slice with `rows_left` rows is split into, or 0 (no split): one per idle slot plus
/// itself, within max_layout_slices for the layout of `slices` slices, each part at least
/// split_part_pages x min_slice_rows; none with slicing off.
std::size_t split_parts(std::uint64_t rows_left, std::size_t idle, std::size_t slices, const slice_config& cfg);

/// The layout change of a split: slice `index` of `parent` keeps parts[0]'s window, parts[1..] are
/// appended as new slices continuing from its cursor (cursor, inclusive flag, preflight and done flags
/// copied; counters, digest zero, next_seq 1). False (parent unchanged) unless the parts tile exactly
/// the slice's window, in order, with at least two parts.
bool apply_split(stores::stream_state& parent, std::size_t index, const std::vector<slice_window>& parts);

/// run_stream for one slice, stoppable by `stop` (total = stop at a commit boundary, as a graceful
/// shutdown) besides the runtime's shutdown signals (forwarded to it). Throws operation_aborted when a
/// shutdown began before it started.
boost::asio::awaitable<stream_result> run_slice(stream_spec spec, stream_options opts, event_source& source,
                                                event_sink& sink, checkpoint_store& store, const engine::clock& clk,
                                                engine::stream_progress* progress,
                                                std::shared_ptr<boost::asio::cancellation_signal> stop);

/// The split state of one sliced stream's driver (see the file comment).
class slice_splitter {
 public:
  /// `ex`: the driver's executor (the probes run there, beside it).
  slice_splitter(boost::asio::any_io_executor ex, const stream_spec& spec, const stream_options& opts,
                 checkpoint_store& store, slice_config cfg, std::size_t slices);

  std::size_t count() const { return results_.size(); }
  /// Slice i's window as the record holds it now.
  stores::stream_slice window(std::size_t i) const;
  /// Slice i's result slot (stable while slices are added).
  stream_result& result(std::size_t i) { return results_.at(i); }
  /// A slice starts (again) on `strand`: its stop signal.
  std::shared_ptr<boost::asio::cancellation_signal> started(std::size_t i, boost::asio::any_io_executor strand);
  void ended(std::size_t i);
  /// A slice is being stopped for a split, or the probes of a look still run (the driver waits for both).
  bool pending() const { return pending_.has_value() || looking_; }

  /// Looks for a slice to split (when: file comment) and stops it; returns at once, the probes run as a
  /// task of their own on the driver's executor and call `done` when they ended (the driver's wake-up).
  /// `k`: slices that may run now. The source and clock must outlive that task.
  void consider(event_source& source, const engine::clock& clk, std::size_t k, std::size_t running,
                std::size_t next, bool may_start, std::function<void()> done);
  /// Slices to start again: the stopped slice once its split was committed (also when it could not be:
  /// it goes on with its window). The new slices are started as slices not yet started (index >= next).
  std::vector<std::size_t> take_restarts(bool may_start);
  std::size_t splits() const { return splits_; }

 private:
  struct pending_split {
    std::size_t slice;
    std::vector<slice_window> parts;
    std::uint64_t rows_left;
  };
  void commit_split(const pending_split& p);
  boost::asio::awaitable<void> look(event_source& source, const engine::clock& clk, std::size_t idle);

  boost::asio::any_io_executor executor_;
  bool looking_ = false;  // a look's probes are running

  std::string stream_id_;
  page_query base_;
  engine::retry_config retry_;
  checkpoint_store& store_;
  slice_config cfg_;
  std::deque<stream_result> results_;
  struct slot {
    std::shared_ptr<boost::asio::cancellation_signal> stop;
    boost::asio::any_io_executor strand;
    bool running = false;
    bool ended = false;  // ended since it last started
  };
  std::deque<slot> slots_;
  std::optional<pending_split> pending_;
  bool ended_since_look_ = false;
  std::chrono::steady_clock::time_point last_look_{};
  std::size_t splits_ = 0;
};

}  // namespace ferry::pipelines::streams
