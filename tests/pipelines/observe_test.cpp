// Observability settings and views of pipelines: `status --watch` (its view and loop) and the metrics
// settings (validated at load). Pure but for a temp state dir.
#include "pipelines/status_watch.hpp"

#include "pipelines/migrate_config.hpp"
#include "pipelines/streams/checkpoint_store.hpp"

#include "engine/settings.hpp"
#include "stores/state_store.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

#include <map>
#include <sstream>

using namespace ferry::pipelines;

TEST_CASE("status --watch: the view lists pending streams first, with rates from the previous read") {
  const std::vector<watched_stream> now = {{"logs:b", true, 500, 5, ""},
                                           {"logs:a", false, 300, 3, ""},
                                           {"dataset_events:d", false, 40, 1, "HTTP 500"}};
  auto first = status_watch_lines(now, {}, 0);
  REQUIRE(first.size() == 4);
  CHECK(first[0] == "ferry status: 3 stream(s), 1 done, 840 rows, 0 rows/s");  // no previous read: no rate
  CHECK(first[1] == "dataset_events:d pending rows=40 rows_per_s=0 batches=1 error=HTTP 500");
  CHECK(first[2] == "logs:a pending rows=300 rows_per_s=0 batches=3");
  CHECK(first[3] == "logs:b done rows=500 rows_per_s=0 batches=5");
  auto next = status_watch_lines(now, {{"logs:a", 100}, {"logs:b", 500}, {"dataset_events:d", 40}}, 2.0);
  CHECK(next[0] == "ferry status: 3 stream(s), 1 done, 840 rows, 100 rows/s");
  CHECK(next[2] == "logs:a pending rows=300 rows_per_s=100 batches=3");
}

TEST_CASE("status --watch: reads a state dir each round (read-only), lines without a TTY; a bad dir is exit 1") {
  ferry::test::temp_dir dir;
  {
    auto st = ferry::stores::state_store::open(dir.str());
    streams::checkpoint_store cs(st);
    streams::stream_state s;
    s.stream_id = "logs:p1";
    s.kind = "logs";
    s.counters.rows = 42;
    cs.save(s);
  }
  std::ostringstream out, err;
  status_watch_options o;
  o.interval = std::chrono::milliseconds(1);
  o.tty = false;
  o.rounds = 2;
  CHECK(run_status_watch(dir.str(), o, out, err) == 0);
  const auto text = out.str();
  CHECK(text.find("ferry status: 1 stream(s), 0 done, 42 rows, 0 rows/s\nlogs:p1 pending rows=42") == 0);
  CHECK(text.find("ferry status:", 1) != std::string::npos);  // the second round
  CHECK(text.find('\033') == std::string::npos);
  std::ostringstream tty_out;
  o.tty = true;
  CHECK(run_status_watch(dir.str(), o, tty_out, err) == 0);
  CHECK(tty_out.str().find("\r\033[2A\033[J") != std::string::npos);  // the second view replaced the first in place
  std::ostringstream err2;
  CHECK(run_status_watch("/proc/ferry-no-such/dir", o, out, err2) == 1);
  CHECK(err2.str().find("ferry status:") == 0);
}

// The metrics settings: validated at load (a bad address names the key and where it came from, before
// a state dir is opened), flags over the environment.
TEST_CASE("metrics settings: address checked at load, linger and shard read") {
  using ferry::engine::settings;
  auto load = [](const std::map<std::string, std::string>& env) {
    settings s(migrate_settings_schema());
    s.load_env([&](const char* name) -> const char* {
      auto it = env.find(name);
      return it == env.end() ? nullptr : it->second.c_str();
    });
    return load_migrate_config(s);
  };
  auto c = load({{"MIGRATION_METRICS_ADDR", "127.0.0.1:0"}, {"MIGRATION_METRICS_LINGER", "30s"},
                 {"MIGRATION_METRICS_SHARD", "3"}});
  CHECK(c.metrics_addr == "127.0.0.1:0");
  CHECK(c.metrics_linger == std::chrono::seconds(30));
  CHECK(c.metrics_shard == "3");
  CHECK(load({}).metrics_addr.empty());
  CHECK_THROWS_WITH_AS(load({{"MIGRATION_METRICS_ADDR", "9464"}}),
                       doctest::Contains("metrics_addr from env MIGRATION_METRICS_ADDR"), ferry::engine::config_error);
}
