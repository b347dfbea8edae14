#pragma once
// One logs stream "logs:sp" -> destination project "dp" over the in-memory fakes, with a manual clock and
// a state store in memory: pages of 10 rows (never below 2), batches of 4, 10 ms retry base. Tests set
// the rows and options they need, then run().

#include "pipelines/streams/checkpoint_store.hpp"
#include "pipelines/streams/stream_runner.hpp"

#include "engine/clock.hpp"
#include "fakes.hpp"
#include "stores/state_store.hpp"
#include "test_support.hpp"

#include <boost/asio/io_context.hpp>

#include <chrono>

namespace ferry::test {

template <class Source = fake_source>
struct stream_harness {
  boost::asio::io_context ctx;
  engine::manual_clock clk;
  stores::state_store st = stores::state_store::open_memory();
  pipelines::streams::checkpoint_store store{st};
  Source src;
  fake_sink dst;
  pipelines::streams::stream_spec spec;
  pipelines::streams::stream_options opts;

  stream_harness() {
    spec.kind = pipelines::streams::stream_kind::project_logs;
    spec.source_ids = {"sp"};
    spec.dest_ids = {{"sp", "dp"}};
    spec.stream_id = "logs:sp";
    opts.fetch_limit = 10;
    opts.min_fetch_limit = 2;
    opts.batch.max_rows = 4;  // a page's tail is flushed when the reader stops
    opts.retry.base_delay = std::chrono::milliseconds(10);
  }
  pipelines::streams::stream_result run() {
    return run_coro(ctx, pipelines::streams::run_stream(spec, opts, src, dst, store, clk));
  }
};

}  // namespace ferry::test
