#include "pipelines/streams/entry.hpp"
#include "pipelines/streams/launcher.hpp"

#include "engine/runtime.hpp"

#include "fakes.hpp"
#include "test_support.hpp"

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <sstream>

using namespace ferry::pipelines::streams;

TEST_CASE("stream_launcher: several streams share one sink; one failing stream does not stop the others") {
  ferry::engine::runtime_config rc;
  rc.handle_signals = false;
  ferry::engine::runtime rt(rc);
  ferry::engine::manual_clock clk;
  auto st = ferry::stores::state_store::open_memory();
  checkpoint_store store(st);
  ferry::test::fake_source src;
  src.rows = ferry::test::make_rows(15);
  ferry::test::fake_sink dst;
  std::vector<stream_spec> specs(3);
  for (int i = 0; i < 3; ++i) {
    specs[i].source_ids = {"sp"};
    specs[i].dest_ids = {{"sp", "dp"}};
    specs[i].stream_id = "logs:s" + std::to_string(i);
  }
  specs[2].dest_ids.clear();  // cannot be rewritten: fails alone
  ferry::engine::progress_registry progress;
  launcher_config lc;
  lc.max_concurrent = 2;
  lc.options = [](stream_kind) {
    stream_options opts;
    opts.batch.max_rows = 4;
    return opts;
  };
  lc.progress = &progress;
  stream_launcher launcher(rt, src, dst, store, clk, lc);
  for (const auto& s : specs) CHECK(launcher.launch(s));
  CHECK_FALSE(launcher.launch(specs[0]));  // one stream per id
  REQUIRE(rt.run_for(std::chrono::seconds(30)));
  auto outcomes = launcher.outcomes();
  REQUIRE(outcomes.size() == 3);
  std::vector<stream_result> results;
  for (auto& o : outcomes) results.push_back(o.result);
  CHECK(results[0].done);
  CHECK(results[1].done);
  CHECK_FALSE(results[2].done);
  CHECK(results[2].error.find("no destination id") != std::string::npos);
  CHECK(dst.rows.size() == 15);
  CHECK(progress.stream("logs:s0").snapshot().rows == 15);
}

TEST_CASE("options_from_config: per-kind limits and the byte cap from /version x headroom") {
  ferry::pipelines::migrate_config cfg;
  cfg.dataset_fetch_limit = 300;
  cfg.insert_batch_rows = 50;
  cfg.memory_budget_bytes = std::uint64_t(1) << 40;  // no memory pressure: the API caps decide
  auto o = options_from_config(cfg, stream_kind::dataset, 4u << 20);
  CHECK(o.fetch_limit == 300);
  CHECK(o.batch.max_rows == 50);
  CHECK(o.batch.max_bytes == static_cast<std::size_t>((4u << 20) * 0.75));
  CHECK(options_from_config(cfg, stream_kind::project_logs).batch.max_bytes == static_cast<std::size_t>((6u << 20) * 0.75));
}

TEST_CASE("options_from_config: the memory budget's share per stream caps the batch bytes, never below 256 KiB") {
  ferry::pipelines::migrate_config cfg;
  cfg.max_concurrent_streams = 4;
  cfg.memory_budget_bytes = 128u << 20;  // 32 MiB per stream
  auto o = options_from_config(cfg, stream_kind::project_logs, 6u << 20);
  const std::size_t copies = 4 * (o.batch_channel_capacity + o.max_inflight_batches) + 2 * (o.page_channel_capacity + 1);
  CHECK(o.batch.max_bytes == (32u << 20) / copies);
  CHECK(o.batch.max_bytes < static_cast<std::size_t>((6u << 20) * 0.75));
  cfg.memory_budget_bytes = 16u << 20;
  cfg.max_concurrent_streams = 64;
  CHECK(options_from_config(cfg, stream_kind::project_logs, 6u << 20).batch.max_bytes == (256u << 10));
}

TEST_CASE("run_status: lists committed streams from a state dir; a bad dir is a one-line error") {
  ferry::test::temp_dir dir;
  {
    auto st = ferry::stores::state_store::open(dir.str());
    checkpoint_store cs(st);
    stream_state s;
    s.stream_id = "logs:p1";
    s.kind = "logs";
    s.cursor = "p0009";
    s.counters.rows = 42;
    s.done = true;
    cs.save(s);
  }
  std::ostringstream out, err;
  CHECK(run_status(dir.str(), false, out, err) == 0);
  CHECK(out.str().find("logs:p1 done rows=42") != std::string::npos);
  std::ostringstream jout;
  CHECK(run_status(dir.str(), true, jout, err) == 0);
  auto v = boost::json::parse(jout.str()).as_array();
  CHECK(v.at(0).as_object().at("cursor").as_string() == "p0009");
  std::ostringstream out2, err2;
  CHECK(run_status("/proc/ferry-no-such/dir", false, out2, err2) == 1);
  const std::string e = err2.str();
  CHECK(e.find("ferry status:") == 0);
  CHECK(std::count(e.begin(), e.end(), '\n') == 1);
}

TEST_CASE("make_memory_budget: the streams' rows get half of MIGRATION_MEMORY_BUDGET, one budget per call") {
  ferry::pipelines::migrate_config cfg;
  cfg.memory_budget_bytes = 192u << 20;
  auto b = make_memory_budget(cfg);
  CHECK(b->capacity() == (96u << 20));
  CHECK(options_from_config(cfg, stream_kind::project_logs, std::nullopt, b).budget == b);  // shared, not copied
  CHECK(options_from_config(cfg, stream_kind::project_logs).budget == nullptr);
}
