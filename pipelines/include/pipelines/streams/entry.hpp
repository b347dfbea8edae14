#pragma once
// Entry points of the streams engine for the CLI (apps/), plus the multi-stream driver.
//
// - run_streams: runs many streams, at most `max_concurrent` at once, each on its own strand of the
//   awaiting coroutine's executor; a failing stream does not stop the others. Cancellation of the
//   awaiting coroutine (total = graceful) reaches every running stream.
// - run_status: prints each stream's committed state from a state dir (text, or JSON with `json`).
// - options_from_config: stream knobs from the typed migrate config.
// Threading: run_streams must be awaited from a coroutine on an io_context (any number of threads);
// the io objects and the checkpoint store must be thread-safe (they are).

#include "pipelines/migrate_config.hpp"
#include "pipelines/streams/stream_runner.hpp"

#include "engine/progress.hpp"

#include <boost/asio/awaitable.hpp>

#include <iosfwd>
#include <string>
#include <vector>

namespace ferry::pipelines::streams {

boost::asio::awaitable<std::vector<stream_result>> run_streams(std::vector<stream_spec> specs, stream_options opts,
                                                               event_source& source, event_sink& sink,
                                                               checkpoint_store& store, const engine::clock& clk,
                                                               engine::progress_registry* progress,
                                                               std::size_t max_concurrent);

/// Stream options for `kind` from the config (fetch limit per kind, windows, batch caps, retries).
/// `payload_max_bytes` is the destination's /version value when known.
stream_options options_from_config(const migrate_config& cfg, stream_kind kind,
                                   std::optional<std::uint64_t> payload_max_bytes = std::nullopt);

/// `ferry status`: one line (or one JSON object) per stream: id, cursor, rows, bytes, batches,
/// resent rows, done, last error. Returns 0, or 1 with a one-line error when the state dir cannot be
/// opened.
int run_status(const std::string& state_dir, bool json, std::ostream& out, std::ostream& err);

}  // namespace ferry::pipelines::streams
