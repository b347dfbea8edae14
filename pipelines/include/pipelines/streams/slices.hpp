#pragma once
// Sliced streams: one stream's rows split into K disjoint slices, each copied by its own reader, batcher
// and writers (run_stream) with its own cursor, in parallel.
//
// Partition: slice i holds the rows whose `id` is in [id_from, id_to) (BTQL `id >= 'a' and id < 'b'`
// besides the stream's created window and keyset position); the first slice is open below and the last
// open above, so every id, also one written after the layout was made, falls in exactly one slice.
// Every version of a row has the same id, so its versions are read by one slice, in _pagination_key
// order, and reach the destination in source order by that slice's per-id ordering (stream_runner.hpp),
// whatever the other slices do. (A window on `created` would not be enough: a full replace may carry
// another `created`.)
//
// Fast sources stay one slice (plan_slices, with min_source_latency > 0): before any probe, one
// `limit: 1` page read of the stream (the read path every page takes, one row back) is timed; then the
// whole-stream probe below, whose time is a second sample (the quicker counts). Under
// min_source_latency, slicing cannot hide a round trip the source does not have, while the probes
// (each counts its window's keys on the source) and the smaller per-slice batches cost CPU on both
// sides: no layout, and a fast source is not even probed. A slow answer (a remote API: ~100 ms and
// more) goes on to the probes; there a stream pays one round trip more than before the layout.
// ferry migrate sets 20 ms; 0 = always probe (the tests of slicing on loopback).
//
// Layout (plan_slices): cheap BTQL probes, `measures: count(1), min(id), max(id)` over a window. The
// whole stream first: fewer than 2 x min_slice_rows rows stay one slice (no layout). Otherwise, for up
// to three rounds, every window holding more than half the target (rows / max_slices, where the
// launcher passes the slices that may run at once, see below; at least
// min_slice_rows) is cut into ~3 parts per target's worth at ids interpolated between its min and max,
// and the parts are probed at once (at most 64 a round): a part that turns out large is split further
// in the next round. Contiguous parts are then grouped into max_slices slices of about equal rows
// (balance_windows; each at least min_slice_rows). (Grouping into "at least the target" gave 6 slices
// where 8 were asked.) The parts' counts must add up to the whole's, else (live writes between probes, or a
// server whose string order is not ours) the stream stays one slice: a layout is only kept when it
// provably partitions what was counted. The emulator answers these probes from its keys (no row parse).
//
// The layout is part of the stream's record (stores::stream_state::slices), saved before any slice
// starts: a resume runs the same slices from their own cursors. It only changes by a split while
// running (slice_split.hpp: a large slice's window is cut, the new slices appended, all in one synced
// save before they read). Only a fresh stream (nothing committed, nothing in flight) is sliced; a
// stream started unsliced (also by an older ferry, format 1/2 state) stays unsliced.
//
// Parallelism (slice_pacer): at most K slices run at once; K starts at min(2, cap) and, each tick in
// which the stream's acknowledged bytes/s grew (by >= 5%) since K last changed, doubles (until the
// first tick without such a gain, a throttle or a latency rise) and then grows by one; it halves on throttling
// (429/503 answers on either side) and drops by one when the source's page latency doubled against its
// best; it does not grow while the memory budget binds (a reader waited for bytes during the tick, or the
// bytes held leave no room for one more slice: held + held / readers running > the budget). The cap is
// min(max_slices, max_concurrent_requests) (launcher.hpp): memory is not modelled but measured, by the
// budget every reader already accounts its rows in. A running slice is never interrupted: a smaller K
// only delays starting the next one (or splitting one into the idle slots).
//
// Threading: plan_slices runs on the caller's executor; slice_pacer is a plain value (one owner).

#include "pipelines/streams/btql_query.hpp"
#include "pipelines/streams/stream_io.hpp"

#include "engine/clock.hpp"
#include "engine/retry.hpp"
#include "stores/stream_record.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ferry::pipelines::streams {

struct slice_config {
  std::size_t max_slices = 1;         // MIGRATION_MAX_SLICES_PER_STREAM (1 = slicing off; ferry migrate sets it)
  std::size_t min_slice_rows = 2000;  // a slice is at least this many rows (small streams: one slice)
  std::size_t max_concurrent = 8;     // the cap of K (see the file comment)
  std::chrono::milliseconds tick{250};  // how often K is reconsidered
  std::chrono::milliseconds min_source_latency{0};  // quicker sources stay one slice (file comment); 0 = off
};

/// Whether a source whose quicker one-row page answered in `ping` is slow enough to slice for.
bool slow_enough_to_slice(std::chrono::microseconds ping, const slice_config& cfg);

/// One probe's answer: the rows of [id_from, id_to) and their smallest and largest id.
struct slice_window {
  std::string id_from, id_to;
  std::uint64_t rows = 0;
  std::string id_min, id_max;
};

/// Up to `parts - 1` increasing cut points strictly between `lo` and `hi` (printable ASCII, after their
/// common prefix), interpolated as base-95 numbers; fewer when the space between them is too small.
std::vector<std::string> interpolate_ids(const std::string& lo, const std::string& hi, std::size_t parts);

/// Contiguous probed windows grouped into at most `parts` windows of about equal rows (each group ends
/// at the boundary nearest to its share of the total), a group under min_rows joined to its smaller
/// neighbour. The layout's grouping (plan_slices: as many slices as asked) and the split's.
std::vector<slice_window> balance_windows(std::vector<slice_window> windows, std::size_t parts, std::uint64_t min_rows);

/// The layout of `q`'s rows (its object ids and created window), or empty for one slice. `retry` is
/// the side's retry policy for the probes; a probe that fails throws stream_error.
boost::asio::awaitable<std::vector<stores::stream_slice>> plan_slices(event_source& source, page_query q,
                                                                      const slice_config& cfg,
                                                                      engine::retry_config retry,
                                                                      const engine::clock& clk);

/// The rows of a running slice left after its cursor (q: its id window [id_from, id_to) and, in
/// after_key/inclusive, its committed cursor), cut into at most `parts` windows of at least
/// min_slice_rows by the same probes as plan_slices (balance_windows groups them): the first window starts at id_from,
/// the last ends at id_to. One window (with the rows left) when the rows do not make two such parts or
/// the parts' counts do not add up. A probe that fails throws stream_error.
boost::asio::awaitable<std::vector<slice_window>> plan_split(event_source& source, page_query q, std::size_t parts,
                                                             std::size_t min_slice_rows, engine::retry_config retry,
                                                             const engine::clock& clk);

/// The rows of each query's id window after its keyset position (a running slice's window and committed
/// cursor), all probed at once. A probe that fails throws stream_error.
boost::asio::awaitable<std::vector<std::uint64_t>> count_left(event_source& source, const std::vector<page_query>& qs,
                                                             engine::retry_config retry, const engine::clock& clk);

/// The adaptive K of one sliced stream (see the file comment). Feed it each tick's observations.
class slice_pacer {
 public:
  /// `cap`: launcher.hpp's slice_cap, not the layout's slice count (a split adds slices while running).
  explicit slice_pacer(std::size_t cap);
  std::size_t k() const { return k_; }
  /// One tick: `bytes_per_s` committed since the last tick, whether throttling was seen, the source
  /// page latency's mean over the tick (0 = no page ended), and whether the memory budget bound (a
  /// reader waited for bytes, or the bytes held leave no room for one more slice's share). Returns the
  /// new K.
  std::size_t on_tick(double bytes_per_s, bool throttled, double page_ms, bool memory_full = false);

 private:
  std::size_t cap_;
  std::size_t k_;
  double rate_at_change_ = 0;  // throughput when K last changed
  double best_page_ms_ = 0;
  bool slow_start_ = true;  // K doubles until a tick brings no gain
};

}  // namespace ferry::pipelines::streams
