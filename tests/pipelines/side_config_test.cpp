// The config's one mapping onto each side's HTTP policy (side_config_for) and the settings whose flag and
// variable used to mean different things. Pure: no sockets.
#include "pipelines/migrate_config.hpp"
#include "pipelines/streams/entry.hpp"

#include "engine/settings.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <string>

using namespace ferry::pipelines;
using ferry::engine::setting_source;
using ferry::engine::settings;

namespace {

// Settings as main.cpp layers them: `env` through the bound variable names, `flags` as --flag keys.
migrate_config load(const std::map<std::string, std::string>& env, const std::map<std::string, std::string>& flags = {}) {
  settings s(migrate_settings_schema());
  s.load_env([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
  for (const auto& [k, v] : flags) s.set(k, v, setting_source::flag, "--" + k);
  return load_migrate_config(s);
}

}  // namespace

TEST_CASE("fetch limits: --events-fetch-limit and MIGRATION_EVENTS_FETCH_LIMIT set the same three page sizes") {
  // Before: the flag set only experiment_fetch_limit, the variable all three.
  auto by_flag = load({}, {{"events_fetch_limit", "200"}});
  CHECK(by_flag.logs_fetch_limit == 200);
  CHECK(by_flag.experiment_fetch_limit == 200);
  CHECK(by_flag.dataset_fetch_limit == 200);
  auto by_env = load({{"MIGRATION_EVENTS_FETCH_LIMIT", "300"}});
  CHECK(by_env.logs_fetch_limit == 300);
  CHECK(by_env.experiment_fetch_limit == 300);
  CHECK(by_env.dataset_fetch_limit == 300);
}

TEST_CASE("fetch limits: a kind's own setting wins at equal precedence, the higher source wins otherwise") {
  auto env_both = load({{"MIGRATION_EVENTS_FETCH_LIMIT", "300"}, {"MIGRATION_LOGS_FETCH_LIMIT", "50"}});
  CHECK(env_both.logs_fetch_limit == 50);
  CHECK(env_both.experiment_fetch_limit == 300);
  auto flag_over_env = load({{"MIGRATION_LOGS_FETCH_LIMIT", "50"}}, {{"events_fetch_limit", "200"}});
  CHECK(flag_over_env.logs_fetch_limit == 200);
  auto own_flag = load({}, {{"events_fetch_limit", "200"}, {"logs_fetch_limit", "70"}});
  CHECK(own_flag.logs_fetch_limit == 70);
  CHECK(own_flag.dataset_fetch_limit == 200);
  CHECK(load({}).logs_fetch_limit == 1000);
}

TEST_CASE("side_config_for: retry_attempts counts retries after the first try, for the clients and the streams") {
  migrate_config cfg;
  cfg.retry_attempts = 3;
  // Before: migrate's api client and the stream runner made 3 attempts, validate 4.
  CHECK(side_config_for(cfg, side_role::source).retry().max_attempts == 4);
  CHECK(side_config_for(cfg, side_role::destination).api().retry.max_attempts == 4);
  CHECK(streams::options_from_config(cfg, streams::stream_kind::project_logs, std::nullopt).retry.max_attempts == 4);
  cfg.retry_attempts = 0;
  CHECK(streams::options_from_config(cfg, streams::stream_kind::dataset, std::nullopt).retry.max_attempts == 1);
}

TEST_CASE("side_config_for: request_timeout is the total of one attempt on both sides") {
  migrate_config cfg;
  cfg.request_timeout = std::chrono::milliseconds(45'000);
  for (auto side : {side_role::source, side_role::destination}) {
    auto h = side_config_for(cfg, side).http();
    // Before: migrate used it as the per-read limit with twice it as the total.
    CHECK(h.request_timeout == std::chrono::milliseconds(45'000));
    CHECK(h.read_timeout <= h.request_timeout);
    CHECK(h.connect_timeout <= h.request_timeout);
  }
}

TEST_CASE("side_config_for: each side gets its own URL and key and the shared limits") {
  migrate_config cfg;
  cfg.source = {"http://127.0.0.1:1", "sk-source-key-1"};
  cfg.dest = {"http://127.0.0.1:2", "sk-dest-key-2"};
  cfg.max_concurrent_requests = 7;
  cfg.max_requests_per_s = 3;
  cfg.max_bytes_per_s = 1000;
  cfg.retry_after_max = std::chrono::milliseconds(5000);
  auto s = side_config_for(cfg, side_role::source);
  auto d = side_config_for(cfg, side_role::destination);
  CHECK(s.url == "http://127.0.0.1:1");
  CHECK(d.api_key == "sk-dest-key-2");
  CHECK(d.name == "destination");
  CHECK(s.api().max_concurrent_requests == 7);
  CHECK(d.api().max_requests_per_s == 3);
  CHECK(d.api().max_bytes_per_s == 1000);
  CHECK(s.api().retry_after_max == std::chrono::milliseconds(5000));
}

TEST_CASE("dedup_ids is gone: its key is unknown and its variable feeds nothing") {
  settings s(migrate_settings_schema());
  CHECK_THROWS_AS(s.set("dedup_ids", "true", setting_source::flag, "--dedup-ids"), ferry::engine::config_error);
  for (const auto& b : migrate_settings_schema())
    for (const auto& e : b.env_names) CHECK(e != "MIGRATION_EVENTS_USE_SEEN_DB");
}

TEST_CASE("follow settings: --follow-interval / MIGRATION_FOLLOW_INTERVAL in 100ms-24h, --until-caught-up implies follow") {
  auto d = load({});
  CHECK_FALSE(d.follow);
  CHECK_FALSE(d.until_caught_up);
  CHECK(d.follow_interval == std::chrono::milliseconds(5000));
  auto f = load({{"MIGRATION_FOLLOW_INTERVAL", "250ms"}}, {{"follow", "true"}});
  CHECK(f.follow);
  CHECK(f.follow_interval == std::chrono::milliseconds(250));
  auto u = load({{"MIGRATION_UNTIL_CAUGHT_UP", "true"}});
  CHECK(u.follow);
  CHECK(u.until_caught_up);
  CHECK_THROWS_WITH(load({}, {{"follow_interval", "10ms"}}),
                    doctest::Contains("invalid follow_interval from --follow_interval: expected a duration from 100ms to 24h"));
  CHECK_THROWS_WITH(load({{"MIGRATION_FOLLOW_INTERVAL", "25h"}}), doctest::Contains("MIGRATION_FOLLOW_INTERVAL"));
  CHECK_THROWS_WITH(load({}, {{"follow", "true"}, {"dry_run", "true"}}),
                    doctest::Contains("cannot be combined with dry_run"));
}
