// Sliced streams, the sizing rules of the launcher (launcher.hpp): how many slices may run at once and
// how large a slice's /logs3 batches are, within the stream's memory share.
#include "pipelines/streams/entry.hpp"
#include "pipelines/streams/launcher.hpp"

#include <doctest/doctest.h>

#include <algorithm>

using namespace ferry::pipelines::streams;

namespace {

// The batches a pipeline holds at once in options_from_config's memory model (4 copies of a batch
// waiting or in flight, 2 of a page waiting or being read).
std::size_t held(const stream_options& o) {
  return 4 * (o.batch_channel_capacity + o.max_inflight_batches) + 2 * (o.page_channel_capacity + 1);
}

}  // namespace

TEST_CASE("slice sizing: a slice's batches come from the stream's memory share, not the stream's batch over K") {
  const auto stream = options_from_config(ferry::pipelines::migrate_config{}, stream_kind::project_logs);
  const std::size_t share = stream.batch.max_bytes * held(stream);
  for (std::size_t cap : {2u, 4u, 6u, 7u}) {
    CAPTURE(cap);
    const auto slice = slice_options(stream, cap, 4);
    // Rows in flight rather than waiting: the stream's writers, 1 batch waiting, pages handed over
    // (the reader waits until the batcher takes its page: no page queued besides the one being batched).
    CHECK(slice.max_inflight_batches == stream.max_inflight_batches);
    CHECK(slice.batch_channel_capacity == 1);
    CHECK(slice.page_channel_capacity == 0);
    // Larger batches than the old rule (the stream's batch / cap), so more rows in flight at the
    // destination for the same memory.
    CHECK(slice.batch.max_bytes > stream.batch.max_bytes / cap);
    CHECK(slice.batch.max_bytes <= stream.batch.max_bytes);
    CHECK(slice.batch.max_bytes >= (256u << 10));
    // The memory model still holds: cap slices together hold no more than the stream would.
    CHECK(cap * slice.batch.max_bytes * held(slice) <= share);
    // Everything else is the stream's.
    CHECK(slice.batch.max_rows == stream.batch.max_rows);
    CHECK(slice.fetch_limit == stream.fetch_limit);
  }
  // A tiny share: never below 256 KiB a batch (nor above the stream's own batch).
  auto small = stream;
  small.batch.max_bytes = 100u << 10;
  CHECK(slice_options(small, 8, 4).batch.max_bytes == (100u << 10));
  small.batch.max_bytes = 300u << 10;
  CHECK(slice_options(small, 8, 4).batch.max_bytes == (256u << 10));
}

TEST_CASE("slice sizing: with a memory budget, a slice's batch is budget / (3 x streams x cap), not the stream's share over K") {
  ferry::pipelines::migrate_config cfg;  // 192 MiB: 96 MiB for rows
  auto budget = make_memory_budget(cfg);
  const auto stream = options_from_config(cfg, stream_kind::project_logs, std::nullopt, budget);
  for (std::size_t streams : {1u, 4u}) {
    for (std::size_t cap : {2u, 8u, 16u}) {
      CAPTURE(streams);
      CAPTURE(cap);
      const auto slice = slice_options(stream, cap, streams);
      const std::uint64_t want = budget->capacity() / (3 * streams * cap);
      CHECK(slice.batch.max_bytes == std::clamp<std::uint64_t>(want, 256u << 10, stream.batch.max_bytes));
      // Every slice of every stream with a partial batch: at most a third of the budget (unless the
      // 256 KiB floor binds), so a reader's ask (at most half: stream_runner) always fits.
      if (want >= (256u << 10)) CHECK(streams * cap * slice.batch.max_bytes <= budget->capacity() / 3);
      CHECK(slice.budget == budget);
    }
  }
  // The defaults (4 streams, K up to 8): ~1 MiB batches, where the stream's share gave ~280 KiB.
  CHECK(slice_options(stream, 8, 4).batch.max_bytes > 3 * slice_options(options_from_config(cfg, stream_kind::project_logs), 8, 4).batch.max_bytes);
}

TEST_CASE("slice sizing: K is capped by max_slices and the request budget, not by the layout nor a memory model") {
  slice_config sc;
  sc.max_slices = 64;
  sc.max_concurrent = 20;  // ferry migrate: max_concurrent_requests (a slice reads one page at a time)
  // The memory budget is read by the pacer while running (the static model, the share over 256 KiB
  // batches, allowed 7 with the defaults while each slice held ~12 MB, not ~6).
  CHECK(slice_cap(sc) == 20);
  sc.max_slices = 5;
  CHECK(slice_cap(sc) == 5);
  sc.max_concurrent = 3;
  CHECK(slice_cap(sc) == 3);
  sc.max_slices = 0;
  CHECK(slice_cap(sc) == 1);
}

TEST_CASE("slice sizing: ferry migrate caps K by max_concurrent_requests (40 by default), not half of it") {
  ferry::pipelines::migrate_config cfg;
  CHECK(cfg.max_concurrent_requests == 40);
  CHECK(cfg.max_slices_per_stream == 16);  // measured: 1M rows at 150/100 ms, 8 -> 35.0k, 16 -> 45.0k, 24 -> 21.3k events/s
  auto sc = slicing_from_config(cfg);
  CHECK(sc.max_concurrent == 40);
  CHECK(sc.max_slices == 16);
  cfg.max_concurrent_requests = 20;
  cfg.max_slices_per_stream = 12;
  cfg.slice_min_latency_ms = 0;
  sc = slicing_from_config(cfg);
  CHECK(sc.max_concurrent == 20);
  CHECK(sc.max_slices == 12);
  CHECK(sc.min_source_latency.count() == 0);
  CHECK(sc.min_slice_rows == static_cast<std::size_t>(cfg.min_slice_rows));
}
