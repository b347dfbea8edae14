#pragma once
// The engine of `ferry copy` over given connectors and state: stream "copy" of `store`, read from its
// committed cursor by a reader coroutine (source + transform) that sends pages through a bounded
// channel to a writer coroutine, which per batch journals it (begin_batch), writes it to the sink and,
// only after the sink returned (its ack), commits the cursor with the counters (commit_batch).
// The first error closes the channel, stops both sides, is recorded as the stream's last_error and
// rethrown. run_copy (pipelines/copy.hpp) wires URIs, schema and state dir around it.

#include "pipelines/copy/connector.hpp"
#include "pipelines/copy/transform.hpp"

#include <chrono>
#include <cstdint>
#include <string>

namespace ferry::stores {
class state_store;
}
namespace ferry::engine {
class metrics_registry;
}

namespace ferry::pipelines::copy {

struct copy_counts {
  std::uint64_t written = 0;   // rows the sink acknowledged in this run
  std::uint64_t filtered = 0;  // rows the transform's filters dropped in this run
  std::uint64_t resent = 0;    // rows of batches journaled but not committed by an earlier run
  std::uint64_t total = 0;     // rows committed over all runs
};

/// What a copy shows while it runs. Progress: a log line `copy progress rows=N rows_per_s=R batches=B
/// cursor=C` once `progress_interval` passed since the last one (checked after each committed batch;
/// 0 = after every batch). Metrics (when `metrics` is set), labelled from=<source scheme>, to=<sink
/// scheme>: ferry_copy_rows_total (rows the sink acknowledged), ferry_copy_bytes_total (their JSON
/// bytes), ferry_copy_rows_filtered_total, ferry_copy_requests_total{op="read"|"write"} (source pages
/// read, sink batches written).
struct copy_observe {
  std::chrono::milliseconds progress_interval{5000};
  engine::metrics_registry* metrics = nullptr;
  std::string from_label, to_label;
};

/// `where` names the sink in errors (a redacted URI). A fresh stream (nothing committed or journaled)
/// refuses a sink that holds another copy's output.
copy_counts copy_stream(source& src, sink& dst, const transform* tf, stores::state_store& store, std::size_t batch_rows,
                        std::size_t channel_pages, const std::string& where, const copy_observe& observe = {});

}  // namespace ferry::pipelines::copy
