#pragma once
// The one driver of many streams, used by `ferry migrate`, the tests and bench/streams_driver.
//
// launch(spec) starts a stream as an engine::runtime task on its own strand; at most `max_concurrent`
// run at once (the others wait for a slot); a failing stream does not stop the others. A spec whose
// stream id was launched already is ignored (a project's logs stream started early by the resources
// hook and planned again afterwards). Shutdown: the runtime's graceful cancellation reaches every
// running stream (in-flight batches finish and commit); a stream still waiting for a slot is not
// started. outcomes() lists every launched stream in launch order with its result, or, for one that
// ended without a result (not started, threw), its committed state and the reason.
//
// Sliced streams (slices.hpp): with slicing.max_slices > 1, a fresh stream's layout is planned by BTQL
// probes and saved in its record; a stream with a layout runs its slices (each a run_stream of its own,
// on its own strand, under the runtime's shutdown signals) at most K at once, K paced by slice_pacer
// from the stream's committed bytes/s, 429/503 answers, source page latency and the memory budget. The stream's result
// combines its slices' (done when all are, the first error); a slice slot counts inside the stream's slot.
// A slice found large while slots are idle is split at a commit boundary (slice_split.hpp).
//
// Threading: launch() and the accessors may be called from any thread; on_launch / on_idle run on the
// caller's thread (launch) or the finishing stream's strand (idle). The io objects, the checkpoint
// store and the clock must outlive the runtime's run().

#include "pipelines/streams/checkpoint_store.hpp"
#include "pipelines/streams/slices.hpp"
#include "pipelines/streams/stream_io.hpp"
#include "pipelines/streams/stream_runner.hpp"

#include "engine/clock.hpp"
#include "engine/progress.hpp"
#include "engine/semaphore.hpp"

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ferry::engine {
class runtime;
}

namespace ferry::pipelines::streams {

class slice_splitter;

struct launcher_config {
  std::size_t max_concurrent = 4;
  /// Stream options per kind (e.g. options_from_config with the destination's payload cap).
  std::function<stream_options(stream_kind)> options;
  engine::progress_registry* progress = nullptr;  // per-stream counters, may be null
  std::function<void(const stream_spec&)> on_launch;  // after a new stream was accepted, before it starts
  std::function<void()> on_idle;  // whenever the last running stream ends
  slice_config slicing;           // max_slices 1 = every stream one slice
  /// Metrics hook: a sliced stream's slice count and how many run now, on every change (any strand).
  std::function<void(const std::string& stream_id, std::size_t slices, std::size_t running)> on_slices;
};

/// Sizing of a sliced stream (run_slices). Rows in flight rather than rows waiting: a slice keeps the
/// stream's batches in flight but only 1 batch waiting and no page queue (its reader hands a page over
/// when the batcher takes it: the K slices are the read-ahead). With a memory budget, what the slices
/// hold is paced by the budget itself (slices.hpp), and a slice's batch is the budget / (3 x `streams`
/// (the streams that may run at once) x `cap`): the partial batches of all slices of all streams stay
/// within a third of the budget, so a reader's ask (at most half of it) always fits once the batches in
/// flight are acknowledged. (The stream's static share, budget / streams, made a lone big stream's
/// slices send 1/4 of the rows per /logs3 they could: 209 vs 588 rows, 31.9k vs 39.0k events/s.) Without
/// a budget: the stream's memory model (its batch bytes x the batches its pipeline holds) over (cap x the
/// batches a slice holds). Between 256 KiB and the stream's own batch. K is capped by `max_slices` and `max_concurrent` (ferry migrate
/// passes max_concurrent_requests: a slice keeps one page read in flight, its writes queue on the
/// destination's own request semaphore); not by the layout's slice count (splits add slices while
/// running) nor by a memory model: the pacer reads the memory budget itself (slices.hpp).
std::size_t slice_cap(const slice_config& sc);
stream_options slice_options(const stream_options& stream, std::size_t cap, std::size_t streams);

struct stream_outcome {
  std::string stream_id;
  std::string described;  // describe(spec)
  stream_result result;
};

class stream_launcher {
 public:
  stream_launcher(engine::runtime& rt, event_source& source, event_sink& sink, checkpoint_store& store,
                  const engine::clock& clk, launcher_config cfg);

  /// Starts `spec`'s stream; false when a stream with its id was launched already.
  bool launch(stream_spec spec);
  /// Streams launched and not yet ended.
  std::size_t running() const { return outstanding_.load(); }
  /// Every launched stream, in launch order (call after the runtime's run() returned).
  std::vector<stream_outcome> outcomes() const;

 private:
  boost::asio::awaitable<void> run_one(stream_spec spec);
  /// The stream's slice count: its recorded layout, or a new one planned and saved (0 = unsliced).
  boost::asio::awaitable<std::size_t> slice_layout(const stream_spec& spec, const stream_options& opts);
  boost::asio::awaitable<stream_result> run_slices(stream_spec spec, stream_options opts,
                                                   engine::stream_progress* progress);
  /// The stream's result from its slices' (`started`: slices the driver started from the layout).
  stream_result finish_slices(const stream_spec& spec, slice_splitter& split, std::size_t started);

  engine::runtime& rt_;
  event_source& source_;
  event_sink& sink_;
  checkpoint_store& store_;
  const engine::clock& clk_;
  launcher_config cfg_;
  engine::semaphore slots_;
  std::atomic<std::size_t> outstanding_{0};
  std::atomic<std::size_t> readers_{0};  // pipelines reading now (unsliced streams and slices): the budget's sharers
  mutable std::mutex mu_;
  std::vector<std::string> launched_;                 // stream ids, launch order
  std::map<std::string, std::string> described_;      // stream id -> describe()
  std::map<std::string, stream_result> results_;      // stream id -> result
  std::map<std::string, std::string> task_errors_;    // stream id -> why it ended without a result
};

}  // namespace ferry::pipelines::streams
