// The pure decisions of a cluster run (pipelines/src/run/plan_file.hpp): shard assignment by size, the
// plan file's hash check, which shard a process is from flags or scheduler variables, and which streams
// a shard runs. No sockets, no clock.
#include "run/plan_file.hpp"

#include "test_support.hpp"

#include "pipelines/migrate_config.hpp"

#include <boost/json/serialize.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

using namespace ferry::pipelines;
using ferry::engine::config_error;
using ferry::engine::setting_source;
using ferry::engine::settings;

namespace {

plan_unit stream_unit(std::string id, std::uint64_t bytes, std::uint64_t rows = 0) {
  plan_unit u;
  u.id = std::move(id);
  u.kind = "stream";
  u.phase = "shards";
  u.stream_kind = "logs";
  u.source_ids = {u.id};
  u.bytes = bytes;
  u.rows = rows;
  return u;
}

int shard_of(const std::vector<plan_unit>& units, const std::string& id) {
  for (const auto& u : units)
    if (u.id == id) return u.shard;
  return -2;
}

settings cluster_settings() { return settings(migrate_settings_schema()); }

}  // namespace

TEST_CASE("assign_shards: one huge stream gets a shard of its own, the rest are balanced, input order is irrelevant") {
  std::vector<plan_unit> units;
  plan_unit org;
  org.id = "org";
  org.kind = "org_resources";
  units.push_back(org);
  units.push_back(stream_unit("logs:big", 1'000'000));
  for (int i = 0; i < 6; ++i) units.push_back(stream_unit("logs:small" + std::to_string(i), 1000 + i));
  auto a = units;
  assign_shards(a, 2);
  CHECK(shard_of(a, "org") == -1);
  const int big = shard_of(a, "logs:big");
  CHECK(big == 0);  // heaviest first, onto the lowest index
  for (int i = 0; i < 6; ++i) CHECK(shard_of(a, "logs:small" + std::to_string(i)) == 1);

  auto b = units;
  std::reverse(b.begin(), b.end());
  assign_shards(b, 2);
  for (const auto& u : a) CHECK(shard_of(b, u.id) == u.shard);

  // Equal weights spread round the shards instead of piling onto shard 0 (empty streams too).
  std::vector<plan_unit> empty;
  for (int i = 0; i < 8; ++i) empty.push_back(stream_unit("logs:e" + std::to_string(i), 0));
  assign_shards(empty, 4);
  std::vector<int> per(4, 0);
  for (const auto& u : empty) ++per[static_cast<std::size_t>(u.shard)];
  CHECK(per == std::vector<int>{2, 2, 2, 2});
}

TEST_CASE("plan file: written and read back with the same hash, an edited file is refused naming the file") {
  ferry::test::temp_dir dir;
  plan_doc doc;
  migrate_config cfg;
  cfg.source.url = "http://127.0.0.1:1234";
  cfg.dest.url = "http://127.0.0.1:5678";
  doc.options = options_of(cfg);
  doc.shards = 2;
  doc.units = {stream_unit("logs:a", 10, 1), stream_unit("logs:b", 20, 2)};
  assign_shards(doc.units, 2);
  const auto text = boost::json::serialize(to_json(doc));
  const auto path = (dir.path() / "plan.json").string();
  std::ofstream(path) << text;
  auto back = load_plan(path);
  CHECK(back.hash == doc.hash);
  CHECK(back.hash.size() == 32);
  REQUIRE(back.units.size() == 2);
  CHECK(back.units[1].shard == doc.units[1].shard);
  CHECK(option_differences(back, cfg).empty());

  auto other = cfg;
  other.projects = {"p"};
  auto diffs = option_differences(back, other);
  REQUIRE(diffs.size() == 1);
  CHECK(diffs[0].find("projects") == 0);

  auto edited = text;
  edited.replace(edited.find("\"rows\":2"), 8, "\"rows\":3");
  std::ofstream(path) << edited;
  CHECK_THROWS_WITH_AS(load_plan(path), doctest::Contains("plan.json: its hash does not match"), config_error);
  CHECK_THROWS_AS(load_plan((dir.path() / "missing.json").string()), config_error);
}

TEST_CASE("shard_from_settings: --shard I/N, else the Kubernetes or Slurm variables, bad values are config errors") {
  SUBCASE("flag") {
    auto s = cluster_settings();
    s.set("shard", "2/4", setting_source::flag, "--shard");
    auto r = shard_from_settings(s);
    REQUIRE(r);
    CHECK(r->index == 2);
    CHECK(r->count == 4);
    s.set("shard", "4/4", setting_source::flag, "--shard");
    CHECK_THROWS_WITH_AS(shard_from_settings(s), doctest::Contains("invalid shard from --shard"), config_error);
    s.set("shard", "x", setting_source::flag, "--shard");
    CHECK_THROWS_AS(shard_from_settings(s), config_error);
  }
  SUBCASE("kubernetes indexed job") {
    auto s = cluster_settings();
    s.set("shard_index", "3", setting_source::env, "env JOB_COMPLETION_INDEX");
    CHECK_THROWS_WITH_AS(shard_from_settings(s), doctest::Contains("FERRY_SHARD_COUNT"), config_error);
    s.set("shard_count", "4", setting_source::env, "env FERRY_SHARD_COUNT");
    auto r = shard_from_settings(s);
    REQUIRE(r);
    CHECK(r->index == 3);
    CHECK(r->count == 4);
  }
  SUBCASE("slurm array starting at 1") {
    ::setenv("SLURM_ARRAY_TASK_MIN", "1", 1);
    auto s = cluster_settings();
    s.set("shard_index", "4", setting_source::env, "env SLURM_ARRAY_TASK_ID");
    s.set("shard_count", "4", setting_source::env, "env SLURM_ARRAY_TASK_COUNT");
    auto r = shard_from_settings(s);
    ::unsetenv("SLURM_ARRAY_TASK_MIN");
    REQUIRE(r);
    CHECK(r->index == 3);
  }
  SUBCASE("none") { CHECK_FALSE(shard_from_settings(cluster_settings())); }
}

TEST_CASE("shard_units: a shard runs its own units with the plan's stream ids, and a unit only when complete") {
  using ferry::pipelines::streams::discovered_object;
  using ferry::pipelines::streams::stream_kind;
  std::vector<discovered_object> objs;
  for (const char* id : {"e1", "e2", "e3"}) objs.push_back({stream_kind::experiment, id, std::string("d-") + id, "", "p"});
  objs.push_back({stream_kind::project_logs, "p", "d-p", "", "p"});
  // The plan's units, grouped 2 per stream as the migration groups them.
  plan_doc plan;
  plan.shards = 2;
  for (auto& s : ferry::pipelines::streams::build_stream_specs(objs, 2, {})) {
    plan_unit u;
    u.id = s.stream_id;
    u.kind = "stream";
    u.stream_kind = s.kind == stream_kind::project_logs ? "logs" : "experiment_events";
    u.source_ids = s.source_ids;
    u.shard = u.stream_kind == "logs" ? 1 : 0;
    plan.units.push_back(u);
  }
  const shard_units zero(plan, 0), one(plan, 1);
  CHECK(zero.units().size() == 2);
  CHECK(one.includes(stream_kind::project_logs, "p"));
  CHECK_FALSE(zero.includes(stream_kind::project_logs, "p"));

  std::vector<std::string> waiting;
  auto specs = zero.specs(objs, {}, waiting);
  REQUIRE(specs.size() == 2);
  CHECK(waiting.empty());
  for (const auto& s : specs)
    CHECK(std::any_of(plan.units.begin(), plan.units.end(), [&](const plan_unit& u) { return u.id == s.stream_id; }));

  // e2 not ready (the resources phase has not made it yet): its unit waits, the other runs.
  std::vector<discovered_object> partial;
  for (const auto& o : objs)
    if (o.source_id != "e2") partial.push_back(o);
  specs = zero.specs(partial, {}, waiting);
  REQUIRE(specs.size() == 1);
  CHECK(specs[0].source_ids == std::vector<std::string>{"e3"});
  REQUIRE(waiting.size() == 1);
  CHECK(waiting[0].find("not copied: 1 of its 2 objects") != std::string::npos);
  waiting.clear();
  CHECK(shard_units().specs(objs, {}, waiting).empty());
  CHECK(waiting.empty());
}
