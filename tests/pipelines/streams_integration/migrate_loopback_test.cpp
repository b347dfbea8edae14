// Loopback tests of `ferry migrate` / `ferry verify` end to end: two emulators behind real sockets on
// 127.0.0.1:0 (in memory), the source seeded with emulator::seed_org, run_migrate / run_verify as the CLI
// calls them, and an independent row-by-row comparison of both sides (in-process BTQL paging).
// The destination is served through a counting wrapper so every id accepted by /logs3 is counted.
#include "pipelines/migrate.hpp"

#include "pipelines/streams/btql_query.hpp"
#include "pipelines/streams/checkpoint_store.hpp"
#include "pipelines/streams/entry.hpp"
#include "pipelines/streams/slice_split.hpp"
#include "pipelines/streams/verify.hpp"

#include "emulator/emulator.hpp"
#include "emulator/seed.hpp"
#include "engine/log.hpp"
#include "engine/runtime.hpp"
#include "stores/state_store.hpp"
#include "test_support.hpp"
#include "loopback_support.hpp"
#include "transports/api_client.hpp"
#include "transports/http_server.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/json.hpp>

#include <doctest/doctest.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

namespace asio = boost::asio;
namespace json = boost::json;
namespace http = boost::beast::http;
using namespace ferry;
using pipelines::streams::stream_kind;

namespace {

using ferry::test::call;
using ferry::test::quiet;
using ferry::test::run_out;
using ferry::test::str;
using rows_by_id = std::map<std::string, json::object>;

/// Source and destination emulators served by two background threads for the duration of a test; the
/// destination behind a counting server (its own server answers the signed URLs it hands out: attachment uploads).
struct org_pair : ferry::test::emulator_pair {
  std::map<std::string, std::uint64_t> inserts;  // destination: /logs3 rows accepted, per row id; under mu
  std::uint64_t total_inserts = 0;
  /// Called on the server's thread after every destination answer (target, HTTP status), before the
  /// answer is sent; set before a run starts.
  std::function<void(const std::string&, int)> dst_hook;

  static emulator::emulator_config config(std::string key, std::vector<emulator::fault_spec> faults) {
    emulator::emulator_config c;
    c.api_keys = {{std::move(key), "org-" + std::to_string(faults.size()), ""}};
    c.faults = std::move(faults);
    c.fault_seed = 7;
    return c;
  }

  org_pair(std::vector<emulator::fault_spec> src_faults = {}, std::vector<emulator::fault_spec> dst_faults = {})
      : emulator_pair(config("src-key", std::move(src_faults)), config("dst-key", std::move(dst_faults))) {
    serve([this](transports::http_request& req) -> asio::awaitable<transports::http_reply> {
      const bool logs3 = req.method() == http::verb::post && req.target() == "/logs3";
      std::string body = logs3 ? req.body() : std::string();
      auto reply = co_await dst.handle(req);
      if (logs3 && reply.response.result_int() == 200 && reply.action != transports::reply_action::drop) count(body);
      if (dst_hook) dst_hook(std::string(req.target()), reply.response.result_int());
      co_return reply;
    });
  }
  ~org_pair() { stop(); }

  void count(const std::string& body) {
    auto v = json::parse(body);
    std::lock_guard lk(mu);
    for (const auto& r : v.as_object().at("rows").as_array()) {
      ++inserts[std::string(r.as_object().at("id").as_string())];
      ++total_inserts;
    }
  }
  std::uint64_t inserts_now() {
    std::lock_guard lk(mu);
    return total_inserts;
  }

  std::string src_url() const { return src.base_url(); }
  std::string dst_url() const { return server_url(); }
};

json::array list(emulator::emulator& emu, const std::string& key, const std::string& target) {
  auto v = call(emu, key, http::verb::get, target);
  return v.as_object().at("objects").as_array();
}

/// Rows per page of dump(): below every btql_limit fault threshold (a test with a latency fault on
/// /btql raises it so that comparing both sides stays quick).
std::size_t dump_page_rows = 8;

/// Every row of a stream, paged by _pagination_key.
rows_by_id dump(emulator::emulator& emu, const std::string& key, stream_kind kind, const std::string& object_id,
                std::optional<std::string> after = {}, std::optional<std::string> before = {}) {
  rows_by_id out;
  pipelines::streams::page_query q;
  q.kind = kind;
  q.object_ids = {object_id};
  q.created_after = after;
  q.created_before = before;
  q.limit = dump_page_rows;
  for (;;) {
    auto v = call(emu, key, http::verb::post, "/btql",
                  pipelines::streams::build_btql_body(pipelines::streams::build_page_query(q)));
    const auto& data = v.as_object().at("data").as_array();
    if (data.empty()) return out;
    for (const auto& r : data) {
      const auto& o = r.as_object();
      std::string id(o.at("id").as_string());
      CHECK_MESSAGE(out.count(id) == 0, "duplicate row " << id);
      out[id] = o;
      q.after_key = std::string(o.at("_pagination_key").as_string());
    }
  }
}

struct compared {
  std::uint64_t rows = 0;
  std::uint64_t streams = 0;
};

/// Proves, row by row, that every stream of every source project is in the destination with the same
/// content (the canonical content of the fields that survive a copy) and nothing else.
/// `logs_only`: with a created window the resources DAG leaves out experiments/datasets created outside
/// it, so only the logs streams are compared.
compared compare_orgs(org_pair& p, std::optional<std::string> after = {}, std::optional<std::string> before = {},
                      bool logs_only = false) {
  compared c;
  std::map<std::string, std::string> dst_projects;
  for (const auto& v : list(p.dst, "dst-key", "/v1/project"))
    dst_projects[str(v.as_object(), "name")] = str(v.as_object(), "id");
  auto same = [&](stream_kind kind, const std::string& sid, const std::string& did, const std::string& what) {
    auto a = dump(p.src, "src-key", kind, sid, after, before);
    auto b = dump(p.dst, "dst-key", kind, did, after, before);
    CHECK_MESSAGE(a.size() == b.size(), what << ": source rows " << a.size() << " dest rows " << b.size());
    for (const auto& [id, row] : a) {
      auto it = b.find(id);
      if (it == b.end()) {
        FAIL_CHECK(what << ": row " << id << " missing in the destination");
        continue;
      }
      CHECK_MESSAGE(pipelines::streams::canonical_content(row, kind) ==
                        pipelines::streams::canonical_content(it->second, kind),
                    what << ": row " << id << " differs");
    }
    for (const auto& [id, row] : b)
      if (!a.count(id)) FAIL_CHECK(what << ": extra row " << id << " in the destination");
    c.rows += a.size();
    ++c.streams;
  };
  for (const auto& pv : list(p.src, "src-key", "/v1/project")) {
    const auto& sp = pv.as_object();
    auto name = str(sp, "name");
    REQUIRE_MESSAGE(dst_projects.count(name), "project " << name << " missing in the destination");
    const auto did = dst_projects[name];
    same(stream_kind::project_logs, str(sp, "id"), did, "logs of " + name);
    if (logs_only) continue;
    for (auto [kind, path] : {std::pair{stream_kind::experiment, std::string("/v1/experiment")},
                              std::pair{stream_kind::dataset, std::string("/v1/dataset")}}) {
      std::map<std::string, std::string> dst_objs;
      for (const auto& v : list(p.dst, "dst-key", path + "?project_id=" + did))
        dst_objs[str(v.as_object(), "name")] = str(v.as_object(), "id");
      for (const auto& v : list(p.src, "src-key", path + "?project_id=" + str(sp, "id"))) {
        auto oname = str(v.as_object(), "name");
        REQUIRE_MESSAGE(dst_objs.count(oname), path << " " << oname << " missing in the destination");
        same(kind, str(v.as_object(), "id"), dst_objs[oname], path + " " + oname);
      }
    }
  }
  return c;
}

emulator::seed_options small_seed() {
  emulator::seed_options o;
  o.projects = 2;
  o.events_per_project = 120;
  o.experiments_per_project = 2;
  o.datasets_per_project = 2;
  o.events_per_experiment = 30;
  o.events_per_dataset = 25;
  o.seed = 11;
  o.attachment_ratio = 0;      // attachment copying is a separate feature (copy_attachments)
  o.large_payload_ratio = 0;   // no rows above the size faults' thresholds
  o.batch_rows = 50;
  return o;
}

pipelines::migrate_config base_config(const org_pair& p, const ferry::test::temp_dir& dir) {
  pipelines::migrate_config c;
  c.source = {p.src_url(), "src-key"};
  c.dest = {p.dst_url(), "dst-key"};
  c.state_dir = (dir.path() / "state").string();
  c.retry_attempts = 12;
  c.retry_delay = std::chrono::milliseconds(2);
  c.request_timeout = std::chrono::milliseconds(5000);
  c.logs_fetch_limit = 40;
  c.experiment_fetch_limit = 40;
  c.dataset_fetch_limit = 40;
  c.min_fetch_limit = 1;
  c.insert_batch_rows = 25;
  c.fetch_group_size = 3;
  c.max_concurrent_streams = 3;
  return c;
}

run_out migrate(const pipelines::migrate_config& cfg, std::function<void(engine::runtime&)> hook = {}) {
  return ferry::test::run_command(pipelines::run_migrate, cfg,
                                  [&](pipelines::run_options& o) { o.on_runtime = std::move(hook); });
}

run_out verify(const pipelines::migrate_config& cfg) { return ferry::test::run_command(pipelines::run_verify, cfg); }

/// Rows committed over all streams of the state dir.
std::uint64_t committed_rows(const std::string& state_dir) {
  auto st = stores::state_store::open(state_dir);
  pipelines::streams::checkpoint_store cps(st);
  std::uint64_t n = 0;
  for (const auto& s : cps.all()) n += s.counters.rows;
  return n;
}

}  // namespace

TEST_CASE("migrate loopback: every stream kind copied completely, verify ok, then verify finds a deleted and a modified row") {
  org_pair p;
  p.seed(small_seed());
  ferry::test::temp_dir dir("ferry-migrate");
  auto cfg = base_config(p, dir);
  auto r = migrate(cfg);
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  auto c = compare_orgs(p);
  CHECK(c.streams == 2 * (1 + 2 + 2));
  CHECK(c.rows >= 2 * 100);
  {
    std::lock_guard lk(p.mu);
    for (const auto& [id, n] : p.inserts) CHECK_MESSAGE(n == 1, "row " << id << " inserted " << n << " times");
  }
  CHECK(std::filesystem::exists(dir.path() / "state" / "migration_report.json"));

  // A second run finds everything done and sends nothing.
  auto before = p.inserts_now();
  REQUIRE(migrate(cfg).rc == 0);
  CHECK(p.inserts_now() == before);

  auto v = verify(cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 0);
  CHECK(v.out.find("DIFF") == std::string::npos);

  // Delete one destination log row and modify another: verify must say so and exit 1.
  auto dst_project = list(p.dst, "dst-key", "/v1/project")[0].as_object();
  auto rows = dump(p.dst, "dst-key", stream_kind::project_logs, str(dst_project, "id"));
  REQUIRE(rows.size() >= 2);
  auto victim = rows.begin()->first;
  auto changed = std::next(rows.begin())->first;
  json::array batch;
  batch.push_back(json::object{{"id", victim}, {"project_id", str(dst_project, "id")}, {"log_id", "g"}, {"_object_delete", true}});
  json::object mod = std::next(rows.begin())->second;
  mod["output"] = "tampered";
  mod.erase("_pagination_key");
  mod.erase("_xact_id");
  batch.push_back(mod);
  call(p.dst, "dst-key", http::verb::post, "/logs3", json::serialize(json::object{{"rows", batch}, {"api_version", 2}}));
  auto v2 = verify(cfg);
  INFO(v2.out << v2.err);
  CHECK(v2.rc == 1);
  CHECK(v2.out.find("DIFF") != std::string::npos);
  CHECK(v2.out.find(victim) != std::string::npos);
  CHECK(v2.out.find(changed) != std::string::npos);
  std::ifstream f(dir.path() / "state" / "verify_report.json");
  std::string report((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CHECK(report.find("\"ok\":false") != std::string::npos);
}

// Issue 14 item 1: streams are never terminal. After a complete migration the source gets new rows and
// updates of copied rows (an update comes back with a newer _pagination_key); a second run with the same
// state dir copies exactly those, and the destination equals the source row by row (latest versions).
TEST_CASE("migrate loopback: a re-run catches up new rows and updates of copied rows in every stream kind") {
  org_pair p;
  p.seed(small_seed());
  ferry::test::temp_dir dir("ferry-catch-up");
  auto cfg = base_config(p, dir);
  auto r = migrate(cfg);
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);

  auto project = list(p.src, "src-key", "/v1/project")[0].as_object();
  const auto pid = str(project, "id");
  json::array batch;
  auto update = [&](stream_kind kind, const std::string& object_id, int n) {
    auto rows = dump(p.src, "src-key", kind, object_id);
    REQUIRE(rows.size() >= static_cast<std::size_t>(n));
    auto it = rows.begin();
    for (int i = 0; i < n; ++i, ++it) {
      json::object row = it->second;
      row["output"] = "updated after the first run " + std::to_string(i);
      row.erase("_pagination_key");
      row.erase("_xact_id");
      batch.push_back(row);
    }
  };
  update(stream_kind::project_logs, pid, 3);
  for (int i = 0; i < 4; ++i)
    batch.push_back(json::object{{"id", "late-log-" + std::to_string(i)}, {"project_id", pid}, {"log_id", "g"},
                                 {"input", "arrived after the first run"}, {"output", i}});
  auto experiment = list(p.src, "src-key", "/v1/experiment?project_id=" + pid)[0].as_object();
  update(stream_kind::experiment, str(experiment, "id"), 2);
  auto dataset = list(p.src, "src-key", "/v1/dataset?project_id=" + pid)[0].as_object();
  update(stream_kind::dataset, str(dataset, "id"), 2);
  batch.push_back(json::object{{"id", "late-record"}, {"dataset_id", str(dataset, "id")}, {"input", "q"}, {"expected", "a"}});
  const std::uint64_t changed = batch.size();  // 12
  call(p.src, "src-key", http::verb::post, "/logs3", json::serialize(json::object{{"rows", batch}, {"api_version", 2}}));

  const auto before = p.inserts_now();
  auto again = migrate(cfg);
  INFO(again.out << again.err);
  REQUIRE(again.rc == 0);
  compare_orgs(p);  // row by row, latest versions
  CHECK(p.inserts_now() - before == changed);  // exactly the new and updated rows
  CHECK(again.out.find("caught_up=") != std::string::npos);
  auto st = stores::state_store::open(cfg.state_dir);
  pipelines::streams::checkpoint_store cps(st);
  std::uint64_t caught_up = 0;
  for (const auto& s : cps.all()) caught_up += s.counters.caught_up_rows;
  CHECK(caught_up == changed);
}

TEST_CASE("migrate loopback: empty streams and page size 1") {
  org_pair p;
  auto o = small_seed();
  o.projects = 1;
  o.events_per_project = 7;
  o.events_per_experiment = 0;
  o.events_per_dataset = 3;
  p.seed(o);
  ferry::test::temp_dir dir("ferry-migrate");
  auto cfg = base_config(p, dir);
  cfg.logs_fetch_limit = cfg.experiment_fetch_limit = cfg.dataset_fetch_limit = 1;
  cfg.insert_batch_rows = 2;
  auto r = migrate(cfg);
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  auto c = compare_orgs(p);
  CHECK(c.streams == 5);
  CHECK(verify(cfg).rc == 0);
}

TEST_CASE("migrate loopback: a created-after/before window copies exactly the rows inside it") {
  org_pair p;
  p.seed(small_seed());
  auto src_project = list(p.src, "src-key", "/v1/project")[0].as_object();
  auto all = dump(p.src, "src-key", stream_kind::project_logs, str(src_project, "id"));
  std::vector<std::string> created;
  for (const auto& [id, row] : all) created.push_back(str(row, "created"));
  std::sort(created.begin(), created.end());
  REQUIRE(created.size() > 10);
  auto after = created[created.size() / 4];
  auto before = created[created.size() * 3 / 4];
  REQUIRE(after < before);
  ferry::test::temp_dir dir("ferry-migrate");
  auto cfg = base_config(p, dir);
  cfg.created_after = after;
  cfg.created_before = before;
  auto r = migrate(cfg);
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  CHECK(compare_orgs(p, after, before, true).rows > 0);
  // Nothing outside the window reached the destination.
  auto dst_project = list(p.dst, "dst-key", "/v1/project");
  std::uint64_t outside = 0;
  for (const auto& dp : dst_project)
    for (const auto& [id, row] : dump(p.dst, "dst-key", stream_kind::project_logs, str(dp.as_object(), "id")))
      if (str(row, "created") < after || str(row, "created") >= before) ++outside;
  CHECK(outside == 0);
  CHECK(verify(cfg).rc == 0);

  // A resume with another window is refused, naming the key.
  auto other = cfg;
  other.created_after = created.front();
  auto refused = migrate(other);
  CHECK(refused.rc == 2);
  CHECK(refused.err.find("created_after") != std::string::npos);
}

namespace {

struct fault_scenario {
  const char* name;
  std::vector<const char*> src, dst;
};

/// Migrates a one-project org with the faults injected and proves the copy complete and equal.
/// `tune` adjusts the base config.
void converges_under(const std::vector<fault_scenario>& scenarios,
                     const std::function<void(pipelines::migrate_config&)>& tune = {}) {
  for (const auto& s : scenarios) {
    SUBCASE(s.name) {
      std::vector<emulator::fault_spec> sf, df;
      for (auto t : s.src) sf.push_back(emulator::parse_fault_spec(t));
      for (auto t : s.dst) df.push_back(emulator::parse_fault_spec(t));
      org_pair p(sf, df);
      auto o = small_seed();
      o.projects = 1;
      p.seed(o);
      ferry::test::temp_dir dir("ferry-migrate");
      auto cfg = base_config(p, dir);
      if (tune) tune(cfg);
      auto r = migrate(cfg);
      INFO(s.name << "\n" << r.out << r.err);
      REQUIRE(r.rc == 0);
      auto c = compare_orgs(p);
      CHECK(c.streams == 5);
      CHECK(c.rows > 100);
      // The faults really happened (during the migration: the comparison above reads below every threshold).
      CHECK(p.src.faults().stats().faults + p.dst.faults().stats().faults > 0);
    }
  }
}

}  // namespace

TEST_CASE("migrate loopback: BTQL faults on the source still converge with no loss and no duplicate row") {
  converges_under({
      {"btql 429 with Retry-After", {"path=/btql,kind=status,status=429,retry_after=1,count=2"}, {}},
      {"btql 504 above a LIMIT", {"path=/btql,kind=btql_limit,limit_above=10,status=504"}, {}},
      {"btql 500 above a LIMIT", {"path=/btql,kind=btql_limit,limit_above=20,status=500"}, {}},
      {"btql latency", {"path=/btql,kind=latency,latency_ms=15,rate=0.3"}, {}},
      {"btql dropped connections", {"path=/btql,kind=drop,rate=0.2"}, {}},
      {"btql truncated bodies", {"path=/btql,kind=truncate,rate=0.2"}, {}},
  });
}

TEST_CASE("migrate loopback: logs3 and REST faults on the destination still converge with no loss and no duplicate row") {
  converges_under({      {"logs3 429", {}, {"path=/logs3,kind=status,status=429,rate=0.2"}},
      {"logs3 500 and 503", {}, {"path=/logs3,kind=status,status=500,rate=0.15", "path=/logs3,kind=status,status=503,rate=0.1"}},
      {"logs3 413 above a size", {}, {"method=POST,path=/logs3,kind=size,max_bytes=12000"}},
      {"logs3 dropped connections", {}, {"path=/logs3,kind=drop,rate=0.2"}},
      {"logs3 truncated bodies", {}, {"path=/logs3,kind=truncate,rate=0.2"}},
      {"resource api latency and 429", {"path=/v1/,kind=latency,latency_ms=2,rate=0.5"}, {"path=/v1/,kind=status,status=429,rate=0.05"}},
  });
}

TEST_CASE("migrate loopback: an hour-long Retry-After is cut to retry_after_max on the stream and resource paths") {
  // Before: Retry-After was obeyed with no cap, so each of these faults stalled the run for an hour.
  converges_under(
      {
          {"btql 429 asking for an hour", {"path=/btql,kind=status,status=429,retry_after=3600,count=1"}, {}},
          {"logs3 503 asking for an hour", {}, {"path=/logs3,kind=status,status=503,retry_after=3600,count=1"}},
          {"REST 429 asking for an hour", {}, {"path=/v1/project,kind=status,status=429,retry_after=3600,count=1"}},
      },
      [](pipelines::migrate_config& c) { c.retry_after_max = std::chrono::milliseconds(200); });
}

TEST_CASE("migrate loopback: a shutdown during a Retry-After wait ends the run at once") {
  // Before: resource calls ran shielded from cancellation, backoff included: SIGTERM waited it out
  // (and the graceful phase's cancellation does not reach the DAG's workers: the clients' waits end by
  // abort_waits, which the run context calls when a shutdown begins).
  // The destination's first project create: a call of the resources DAG, after both probes answered.
  org_pair p({}, {emulator::parse_fault_spec("method=POST,path=/v1/project,kind=status,status=429,retry_after=3600,count=1")});
  auto o = small_seed();
  o.projects = 1;
  p.seed(o);
  ferry::test::temp_dir dir("ferry-migrate");
  auto cfg = base_config(p, dir);
  cfg.retry_after_max = std::chrono::hours(1);  // obeyed in full: only the shutdown can end the wait
  auto r = migrate(cfg, [&](engine::runtime& rt) {
    auto t = std::make_shared<asio::steady_timer>(rt.context(), std::chrono::milliseconds(300));
    t->async_wait([t, &rt](boost::system::error_code) { rt.request_shutdown("test: SIGTERM"); });
  });
  INFO(r.out << r.err);
  CHECK(r.rc == 130);
  CHECK(p.dst.faults().stats().faults == 1);
  CHECK(p.inserts_now() == 0);  // nothing was copied: the run stopped in that wait
  CHECK(r.err.find("interrupted, state saved, resume with:") != std::string::npos);
}

TEST_CASE("migrate loopback: cancelled at random points and resumed until done, the destination equals the source") {
  org_pair p;
  auto o = small_seed();
  o.projects = 1;
  o.events_per_project = 200;
  p.seed(o);
  ferry::test::temp_dir dir("ferry-migrate");
  auto cfg = base_config(p, dir);
  cfg.max_concurrent_streams = 2;
  const std::uint64_t max_inflight = 4;  // stream_options::max_inflight_batches
  std::mt19937 rng(20261124);
  int rc = -1, interrupted = 0, graceful = 0;
  for (int run = 0; run < 40 && rc != 0; ++run) {
    const bool cancel = run < 12;
    const bool terminal = run % 2 == 0;  // terminal = abort mid-flight; graceful = finish in-flight batches
    const auto delay = std::chrono::milliseconds(std::uniform_int_distribution<int>(1, 60)(rng));
    const auto inserts_before = p.inserts_now();
    const auto committed_before = std::filesystem::exists(cfg.state_dir) ? committed_rows(cfg.state_dir) : 0;
    auto r = migrate(cfg, [&](engine::runtime& rt) {
      if (!cancel) return;
      auto t = std::make_shared<asio::steady_timer>(rt.context(), delay);
      t->async_wait([t, &rt, terminal](boost::system::error_code) {
        rt.request_shutdown("test");
        if (terminal) rt.request_shutdown("test: terminal");
      });
    });
    INFO("run " << run << " terminal=" << terminal << "\n" << r.out << r.err);
    REQUIRE((r.rc == 0 || r.rc == 130));
    rc = r.rc;
    // Rows the destination accepted in this run but the state did not commit: at most the batches in
    // flight when the run stopped (streams x in-flight batches x batch rows); none after a graceful stop.
    const auto sent = p.inserts_now() - inserts_before;
    const auto committed = committed_rows(cfg.state_dir) - committed_before;
    CHECK(sent >= committed);
    if (r.rc == 130) {
      ++interrupted;
      if (terminal) {
        CHECK(sent - committed <= static_cast<std::uint64_t>(cfg.max_concurrent_streams) * max_inflight *
                                      static_cast<std::uint64_t>(cfg.insert_batch_rows));
      } else {
        ++graceful;
        CHECK_MESSAGE(sent == committed, "graceful stop left " << sent - committed << " rows uncommitted");
      }
    } else {
      CHECK(sent == committed);
    }
  }
  REQUIRE(rc == 0);
  CHECK(interrupted >= 3);
  MESSAGE("interrupted runs: " << interrupted << " (graceful " << graceful << ")");
  auto c = compare_orgs(p);
  CHECK(c.streams == 5);
  // Every re-sent row is accounted for: total inserts = unique rows + rows re-sent after stops.
  std::uint64_t unique = 0, total = 0;
  {
    std::lock_guard lk(p.mu);
    unique = p.inserts.size();
    total = p.total_inserts;
  }
  CHECK(unique == c.rows);
  CHECK(total >= unique);
  CHECK(verify(cfg).rc == 0);
}

TEST_CASE("migrate loopback: stream kinds only create just the stream objects (through the resources DAG) and copy every stream") {
  org_pair p;
  auto o = small_seed();
  o.projects = 1;
  p.seed(o);
  ferry::test::temp_dir dir("ferry-migrate");
  auto cfg = base_config(p, dir);
  cfg.resources = {"logs", "experiment_events", "dataset_events"};
  cfg.record_dir = (dir.path() / "rec").string();  // --record: every exchange of both sides
  cfg.max_requests_per_s = 100000;                  // rate limits wired (generous: no timing here)
  cfg.max_bytes_per_s = 1ull << 30;
  auto r = migrate(cfg);
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  {
    std::ifstream mf(dir.path() / "rec" / "manifest.json");
    std::string manifest((std::istreambuf_iterator<char>(mf)), std::istreambuf_iterator<char>());
    REQUIRE(!manifest.empty());
    CHECK(json::parse(manifest).as_object().at("exchanges").to_number<std::uint64_t>() > 10);
  }
  CHECK(compare_orgs(p).streams == 5);
  CHECK(list(p.dst, "dst-key", "/v1/prompt").empty());  // resources other than the stream objects stay behind
  CHECK(verify(cfg).rc == 0);
  // A second run maps every object from the state and sends nothing.
  auto before = p.inserts_now();
  CHECK(migrate(cfg).rc == 0);
  CHECK(p.inserts_now() == before);
}

TEST_CASE("migrate loopback: stream kinds only with a created window create every stream object, the window selects rows") {
  org_pair p;
  auto o = small_seed();
  o.projects = 1;
  p.seed(o);
  ferry::test::temp_dir dir("ferry-migrate");
  auto cfg = base_config(p, dir);
  cfg.resources = {"logs", "experiment_events", "dataset_events"};
  cfg.created_after = "2999-01-01T00:00:00Z";  // after every object and row
  auto r = migrate(cfg);
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  // The objects are created although they were created before the window (a resources run would skip
  // them); no row is inside the window.
  CHECK(list(p.dst, "dst-key", "/v1/experiment").size() == list(p.src, "src-key", "/v1/experiment").size());
  CHECK(list(p.dst, "dst-key", "/v1/dataset").size() == list(p.src, "src-key", "/v1/dataset").size());
  CHECK(p.inserts_now() == 0);
  // The report lists them as the resources DAG's entries.
  std::ifstream rf(dir.path() / "state" / "migration_report.json");
  std::string text((std::istreambuf_iterator<char>(rf)), std::istreambuf_iterator<char>());
  auto report = json::parse(text).as_object();
  const auto& by_type = report.at("resources").as_object();
  CHECK(by_type.at("experiment").as_object().at("objects").as_array().size() ==
        list(p.src, "src-key", "/v1/experiment").size());
  CHECK(by_type.at("dataset").as_object().at("created").as_int64() > 0);
}

TEST_CASE("migrate loopback: a dry run prints the streams it would copy and writes nothing") {
  org_pair p;
  auto o = small_seed();
  o.projects = 1;
  p.seed(o);
  ferry::test::temp_dir dir("ferry-migrate");
  auto cfg = base_config(p, dir);
  cfg.dry_run = true;
  cfg.report_path = (dir.path() / "migration_plan.json").string();  // else the plan goes to the cwd
  auto r = migrate(cfg);
  INFO(r.out << r.err);
  CHECK(r.rc == 0);
  CHECK(r.out.find("would copy logs project=") != std::string::npos);
  CHECK(r.out.find("would copy experiment_events") != std::string::npos);
  CHECK(r.out.find("would copy dataset_events") != std::string::npos);
  CHECK(list(p.dst, "dst-key", "/v1/project").empty());
  CHECK(p.inserts_now() == 0);
  CHECK_FALSE(std::filesystem::exists(cfg.state_dir + "/CURRENT"));
}

namespace {

/// The bytes of an attachment reference, read in process: GET /attachment -> downloadUrl -> GET.
std::string attachment_bytes(emulator::emulator& emu, const std::string& api_key, const json::object& ref) {
  auto org = str(list(emu, api_key, "/v1/organization")[0].as_object(), "id");
  auto info = call(emu, api_key, http::verb::get,
                   transports::with_query("/attachment", {{"key", str(ref, "key")},
                                                          {"filename", str(ref, "filename")},
                                                          {"content_type", str(ref, "content_type")},
                                                          {"org_id", org}}));
  std::string url = str(info.as_object(), "downloadUrl");
  auto path = url.substr(url.find('/', url.find("//") + 2));
  asio::io_context local;
  transports::http_request req{http::verb::get, path, 11};
  auto r = ferry::test::run_coro(local, emu.handle(req), std::chrono::seconds(10));
  REQUIRE(r.response.result_int() == 200);
  return r.response.body();
}

/// The first attachment reference inside a row, if any.
std::optional<json::object> first_ref(const json::value& v) {
  if (v.is_object()) {
    const auto& o = v.as_object();
    if (str(o, "type") == "braintrust_attachment") return o;
    for (const auto& kv : o)
      if (auto r = first_ref(kv.value())) return r;
  } else if (v.is_array()) {
    for (const auto& x : v.as_array())
      if (auto r = first_ref(x)) return r;
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("migrate loopback: copy_attachments uploads each referenced attachment to the destination under a new key") {
  org_pair p;
  auto o = small_seed();
  o.projects = 1;
  o.events_per_project = 80;
  o.attachment_ratio = 0.2;
  p.seed(o);
  ferry::test::temp_dir dir("ferry-migrate");
  auto cfg = base_config(p, dir);
  cfg.copy_attachments = true;
  auto r = migrate(cfg);
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  compare_orgs(p);  // attachment keys aside, equal row by row
  auto sp = list(p.src, "src-key", "/v1/project")[0].as_object();
  auto dp = list(p.dst, "dst-key", "/v1/project")[0].as_object();
  auto src_rows = dump(p.src, "src-key", stream_kind::project_logs, str(sp, "id"));
  auto dst_rows = dump(p.dst, "dst-key", stream_kind::project_logs, str(dp, "id"));
  std::size_t checked = 0;
  for (const auto& [id, row] : src_rows) {
    auto sref = first_ref(row);
    if (!sref) continue;
    auto dref = first_ref(dst_rows.at(id));
    REQUIRE(dref);
    CHECK(str(*dref, "key") != str(*sref, "key"));  // a copy, not the source's object
    CHECK(str(*dref, "filename") == str(*sref, "filename"));
    CHECK(attachment_bytes(p.dst, "dst-key", *dref) == attachment_bytes(p.src, "src-key", *sref));
    ++checked;
  }
  CHECK(checked >= 3);
  auto st = stores::state_store::open(cfg.state_dir);
  CHECK(st.count_ids("attachment") >= checked);
}

TEST_CASE("migrate loopback: the live progress line (TTY mode) with source counts does not disturb the copy") {
  org_pair p;
  auto o = small_seed();
  o.projects = 1;
  p.seed(o);
  ferry::test::temp_dir dir("ferry-migrate");
  auto cfg = base_config(p, dir);
  std::ostringstream out, err;
  auto ro = quiet(out, err);
  ro.live_progress = true;
  ro.progress_interval = std::chrono::milliseconds(5);
  // Slow the destination a little so the line is drawn a few times.
  ro.on_runtime = {};
  REQUIRE(pipelines::run_migrate(cfg, ro) == 0);
  INFO(err.str());
  CHECK(err.str().find("ferry migrate: ") != std::string::npos);
  CHECK(err.str().find("rows/s") != std::string::npos);
  CHECK(compare_orgs(p).streams == 5);
}

// Issue 14 item 2: `migrate --follow --until-caught-up`. A writer inserts and updates source rows while
// the run follows (and creates a dataset and an experiment, which later rounds must list and copy),
// then stops writing. While writes remain, each round starts with one (so it copies rows and is not
// the last) and makes another at its first acknowledged batch: the run cannot reach a round that
// copies nothing before the writer is done, and no timing decides the outcome. The run exits 0 at that cut-over round and the destination
// equals the source row by row (latest versions).
TEST_CASE("migrate loopback: --follow --until-caught-up copies rows written to the source while it runs") {
  org_pair p;
  auto o = small_seed();
  o.projects = 1;
  p.seed(o);
  const auto pid = str(list(p.src, "src-key", "/v1/project")[0].as_object(), "id");
  const auto seeded = dump(p.src, "src-key", stream_kind::project_logs, pid);
  REQUIRE(seeded.size() >= 20);
  std::vector<json::object> old_rows;
  for (const auto& [id, row] : seeded) old_rows.push_back(row);

  constexpr int total_writes = 6;
  std::mutex wmu;
  int writes = 0;
  std::string live_dataset;
  auto write_source = [&](int n) {  // n-th write: new rows, updates of copied and of live rows, new objects
    json::array batch;
    for (int i = 0; i < 5; ++i)
      batch.push_back(json::object{{"id", "live-" + std::to_string(n) + "-" + std::to_string(i)}, {"project_id", pid},
                                   {"log_id", "g"}, {"input", "written while following"}, {"output", n}});
    for (int i = 0; i < 2; ++i) {
      json::object row = old_rows[static_cast<std::size_t>(n * 2 + i)];
      row["output"] = "updated in write " + std::to_string(n);
      row.erase("_pagination_key");
      row.erase("_xact_id");
      batch.push_back(row);
    }
    if (n > 0)  // a newer version of a row a previous write inserted
      batch.push_back(json::object{{"id", "live-" + std::to_string(n - 1) + "-0"}, {"project_id", pid}, {"log_id", "g"},
                                   {"input", "written while following"}, {"output", "version " + std::to_string(n)}});
    if (n == 1) {
      auto ds = call(p.src, "src-key", http::verb::post, "/v1/dataset",
                     json::serialize(json::object{{"project_id", pid}, {"name", "live-dataset"}}));
      live_dataset = str(ds.as_object(), "id");
    }
    if (!live_dataset.empty())
      batch.push_back(json::object{{"id", "live-record-" + std::to_string(n)}, {"dataset_id", live_dataset},
                                   {"input", "q"}, {"expected", n}});
    if (n == 3) {
      auto ex = call(p.src, "src-key", http::verb::post, "/v1/experiment",
                     json::serialize(json::object{{"project_id", pid}, {"name", "live-experiment"}}));
      batch.push_back(json::object{{"id", "live-exp-row"}, {"experiment_id", str(ex.as_object(), "id")},
                                   {"input", "i"}, {"output", "o"}, {"scores", json::object{{"s", 1}}}});
    }
    call(p.src, "src-key", http::verb::post, "/logs3", json::serialize(json::object{{"rows", batch}, {"api_version", 2}}));
  };
  bool armed = false;
  // Two writes per round at most: one as the round starts (GET /version, once per round in
  // connect_streams, before any stream reads: that round copies it) and one at the round's first
  // acknowledged batch (while streams read: this round or the next copies it).
  p.dst_hook = [&](const std::string& target, int status) {
    std::lock_guard lk(wmu);
    if (target == "/version") {
      armed = true;
      if (writes < total_writes) write_source(writes++);
    } else if (target == "/logs3" && status == 200 && armed) {
      armed = false;
      if (writes < total_writes) write_source(writes++);
    }
  };
  ferry::test::temp_dir dir("ferry-follow");
  auto cfg = base_config(p, dir);
  cfg.follow = true;
  cfg.until_caught_up = true;
  cfg.follow_interval = std::chrono::milliseconds(100);
  auto r = migrate(cfg);
  p.dst_hook = nullptr;
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  CHECK(writes == total_writes);  // the writer was done before the run ended
  CHECK(r.out.find("follow round 4:") != std::string::npos);  // 6 writes, at most 2 per round
  CHECK(r.out.find("caught up: no stream copied a row (cut-over pass)") != std::string::npos);
  CHECK(r.out.find(" lag_rows=") != std::string::npos);
  // The lag in seconds too: a later round that found the logs stream behind measures it (the rows written
  // while following get the source's `created` = now), and the cut-over round shows it at zero.
  CHECK(std::regex_search(r.out, std::regex(R"(follow round [2-9]: stream logs:\S+ lag_rows=[1-9]\d* lag_seconds=\d+\.\d)")));
  CHECK(std::regex_search(r.out, std::regex(R"(stream logs:\S+ lag_rows=0 lag_seconds=0\.0)")));
  std::ostringstream st_out, st_err;
  REQUIRE(pipelines::streams::run_status(cfg.state_dir, false, st_out, st_err) == 0);
  CHECK(st_out.str().find("lag_rows=0 lag_seconds=0.0") != std::string::npos);
  std::ostringstream st_json;
  REQUIRE(pipelines::streams::run_status(cfg.state_dir, true, st_json, st_err) == 0);
  const json::value status_doc = json::parse(st_json.str());
  for (const auto& s : status_doc.as_array()) CHECK(s.as_object().at("lag_rows") == 0);
  std::ifstream rf(std::filesystem::path(cfg.state_dir) / "migration_report.json");
  const std::string report((std::istreambuf_iterator<char>(rf)), std::istreambuf_iterator<char>());
  CHECK(report.find("\"lag_rows\":0,\"lag_seconds\":0") != std::string::npos);
  auto c = compare_orgs(p);  // row by row, latest versions, the new dataset and experiment included
  CHECK(c.streams == 1 + 2 + 2 + 2);
}

// A shutdown while following (SIGTERM during a follow round with batches in flight): the in-flight
// batches finish and are committed, exit 130 with the resume line; a final --until-caught-up run then
// copies the rest and the destination equals the source.
TEST_CASE("migrate loopback: a shutdown during --follow exits 130 with the state committed") {
  org_pair p;
  auto o = small_seed();
  o.projects = 1;
  p.seed(o);
  const auto pid = str(list(p.src, "src-key", "/v1/project")[0].as_object(), "id");
  engine::runtime* rt = nullptr;
  std::mutex wmu;
  int versions = 0;  // GET /version: once per round (connect_streams)
  std::uint64_t inserts_at_write = 0;
  bool wrote = false, stopped = false;
  p.dst_hook = [&](const std::string& target, int status) {
    std::lock_guard lk(wmu);
    if (target == "/version" && ++versions == 3) {  // a follow round starts: the source gets 200 rows
      inserts_at_write = p.inserts_now();
      json::array batch;
      for (int i = 0; i < 200; ++i)
        batch.push_back(json::object{{"id", "late-" + std::to_string(i)}, {"project_id", pid}, {"log_id", "g"},
                                     {"input", "written while following"}, {"output", i}});
      call(p.src, "src-key", http::verb::post, "/logs3", json::serialize(json::object{{"rows", batch}, {"api_version", 2}}));
      wrote = true;
    } else if (target == "/logs3" && status == 200 && wrote && !stopped) {
      stopped = true;
      rt->request_shutdown("test: SIGTERM");  // this batch is in flight: it must still be committed
    }
  };
  ferry::test::temp_dir dir("ferry-follow-stop");
  auto cfg = base_config(p, dir);
  cfg.follow = true;
  cfg.follow_interval = std::chrono::milliseconds(100);
  auto r = migrate(cfg, [&](engine::runtime& x) { rt = &x; });
  p.dst_hook = nullptr;
  INFO(r.out << r.err);
  CHECK(r.rc == 130);
  CHECK(stopped);
  CHECK(r.out.find("follow round 2:") != std::string::npos);
  CHECK(r.err.find("interrupted, state saved, resume with:") != std::string::npos);
  const auto committed = committed_rows(cfg.state_dir);
  CHECK(committed > inserts_at_write);           // the batch acknowledged during the shutdown was committed
  CHECK(committed <= p.inserts_now());           // and nothing was committed that the destination lacks

  cfg.until_caught_up = true;
  auto last = migrate(cfg);
  INFO(last.out << last.err);
  CHECK(last.rc == 0);
  CHECK(last.out.find("caught up: no stream copied a row") != std::string::npos);
  compare_orgs(p);
}

// Issue 14 item 9: review data. Feedback comments on log, experiment and dataset rows reach the
// destination with their ids, times, texts, sources and metadata (the comment's _xact_id is the
// destination's own); audit_data is not carried (README). A second copy from a fresh state dir re-sends
// every row and still leaves one copy of each comment. Today's code drops every comment.
TEST_CASE("migrate loopback: comments of log, experiment and dataset rows are copied once, audit_data is not") {
  org_pair p;
  auto seed = small_seed();
  seed.projects = 1;
  p.seed(seed);
  const auto spid = str(list(p.src, "src-key", "/v1/project")[0].as_object(), "id");
  auto feedback = [&](const std::string& target, json::array items) {
    call(p.src, "src-key", http::verb::post, target, json::serialize(json::object{{"feedback", std::move(items)}}));
  };
  auto logs = dump(p.src, "src-key", stream_kind::project_logs, spid);
  REQUIRE(logs.size() >= 2);
  const auto r1 = logs.begin()->first;
  const auto r2 = std::next(logs.begin())->first;
  feedback("/v1/project_logs/" + spid + "/feedback",
           {json::object{{"id", r1}, {"scores", json::object{{"accuracy", 0.5}}}, {"comment", "looks right"},
                         {"source", "app"}, {"metadata", json::object{{"user_id", "u1"}}}},
            json::object{{"id", r1}, {"comment", "second look"}}, json::object{{"id", r2}, {"comment", "only one"}}});
  const auto eid = str(list(p.src, "src-key", "/v1/experiment?project_id=" + spid)[0].as_object(), "id");
  const auto erow = dump(p.src, "src-key", stream_kind::experiment, eid).begin()->first;
  feedback("/v1/experiment/" + eid + "/feedback", {json::object{{"id", erow}, {"comment", "experiment note"}}});
  const auto did = str(list(p.src, "src-key", "/v1/dataset?project_id=" + spid)[0].as_object(), "id");
  const auto drow = dump(p.src, "src-key", stream_kind::dataset, did).begin()->first;
  feedback("/v1/dataset/" + did + "/feedback",
           {json::object{{"id", drow}, {"comment", "dataset note"}, {"tags", json::array{"reviewed"}}}});

  ferry::test::temp_dir dir("ferry-comments");
  auto cfg = base_config(p, dir);
  auto r = migrate(cfg);
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  auto c = compare_orgs(p);  // canonical_content compares comments
  CHECK(c.streams == 1 + 2 + 2);

  const auto dpid = str(list(p.dst, "dst-key", "/v1/project")[0].as_object(), "id");
  auto check_log_comments = [&] {
    auto src_row = dump(p.src, "src-key", stream_kind::project_logs, spid).at(r1);
    auto dst_row = dump(p.dst, "dst-key", stream_kind::project_logs, dpid).at(r1);
    const auto& a = src_row.at("comments").as_array();
    REQUIRE(dst_row.contains("comments"));
    const auto& b = dst_row.at("comments").as_array();
    REQUIRE(a.size() == 2);
    REQUIRE(b.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
      const auto& x = a[i].as_object();
      const auto& y = b[i].as_object();
      for (auto k : {"id", "created", "comment", "source", "metadata"}) CHECK_MESSAGE(x.at(k) == y.at(k), k);
      CHECK(y.at("origin").as_object().at("id").as_string() == r1);
    }
    CHECK(b[0].as_object().at("comment").as_object().at("text").as_string() == "looks right");
    CHECK(b[0].as_object().at("metadata").as_object().at("user_id").as_string() == "u1");
    CHECK(src_row.contains("audit_data"));   // the feedback's audit entry in the source ...
    CHECK_FALSE(dst_row.contains("audit_data"));  // ... is not carried
    CHECK(dst_row.at("scores").as_object().at("accuracy") == src_row.at("scores").as_object().at("accuracy"));
  };
  check_log_comments();
  auto v = verify(cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 0);

  // Every row sent again (fresh state): the row's insert resets its comments, its riders re-add them.
  ferry::test::temp_dir dir2("ferry-comments-again");
  auto cfg2 = base_config(p, dir2);
  auto r2run = migrate(cfg2);
  INFO(r2run.out << r2run.err);
  REQUIRE(r2run.rc == 0);
  check_log_comments();
  compare_orgs(p);
}

// ---- sliced streams (pipelines/streams/slices.hpp) ------------------------------------------------

namespace {

/// Slicing on with small slices, so the seeds of these tests are split.
void sliced(pipelines::migrate_config& c) {
  c.max_slices_per_stream = 4;
  c.min_slice_rows = 20;
  c.slice_min_latency_ms = 0;  // loopback answers in a few ms: probe anyway
}

/// stream id -> its slice windows, for every sliced stream of the state dir; and checks each sliced
/// stream's totals are its slices' sums.
std::map<std::string, std::vector<std::pair<std::string, std::string>>> layouts(const std::string& state_dir) {
  auto st = stores::state_store::open(state_dir);
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> out;
  for (const auto& s : st.list_streams()) {
    if (s.slices.empty()) continue;
    stores::stream_counters sum;
    stores::digest256 d;
    bool done = true;
    for (const auto& sl : s.slices) {
      sum += sl.counters;
      d.add(sl.digest);
      done = done && sl.done;
      out[s.stream_id].emplace_back(sl.id_from, sl.id_to);
    }
    CHECK_MESSAGE(sum == s.counters, s.stream_id);
    CHECK_MESSAGE(d == s.digest, s.stream_id);
    CHECK_MESSAGE(done == s.done, s.stream_id);
    // The windows partition the id space (a split appends its new windows after the others): sorted by
    // start, open at both ends, each ending where the next begins, so every id falls in one slice.
    auto sorted = out[s.stream_id];
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted.front().first.empty());
    CHECK(sorted.back().second.empty());
    for (std::size_t i = 0; i + 1 < sorted.size(); ++i) CHECK_MESSAGE(sorted[i].second == sorted[i + 1].first, s.stream_id);
  }
  return out;
}

/// Whether `later` continues `earlier`: the same slices (indices, starts), each either unchanged or
/// narrowed by a split whose other parts were appended.
bool continues(const std::vector<std::pair<std::string, std::string>>& earlier,
               const std::vector<std::pair<std::string, std::string>>& later) {
  if (later.size() < earlier.size()) return false;
  for (std::size_t i = 0; i < earlier.size(); ++i) {
    if (later[i].first != earlier[i].first) return false;
    const auto& end = later[i].second;
    if (end != earlier[i].second && (end.empty() || end <= later[i].first || (!earlier[i].second.empty() && end > earlier[i].second)))
      return false;
  }
  return true;
}

emulator::seed_options sliced_seed() {
  auto o = small_seed();
  o.projects = 1;
  o.events_per_project = 300;
  o.events_per_experiment = 60;
  o.events_per_dataset = 50;
  return o;
}

}  // namespace

TEST_CASE("sliced streams: large streams (logs and grouped experiments/datasets) are split, copied exactly, verified, a re-run keeps the layout") {
  org_pair p;
  p.seed(sliced_seed());
  ferry::test::temp_dir dir("ferry-sliced");
  auto cfg = base_config(p, dir);
  sliced(cfg);
  auto r = migrate(cfg);
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  auto c = compare_orgs(p);  // row by row
  CHECK(c.streams == 5);
  {
    // Each row was read by exactly one slice: sent once, committed once.
    std::lock_guard lk(p.mu);
    CHECK(p.total_inserts == p.inserts.size());
    CHECK(p.inserts.size() == c.rows);
  }
  CHECK(committed_rows(cfg.state_dir) == c.rows);
  const auto first = layouts(cfg.state_dir);
  CHECK(first.size() == 3);  // the logs, the experiments' group and the datasets' group
  for (const auto& [id, l] : first) CHECK_MESSAGE(l.size() >= 2, id);
  CHECK(verify(cfg).rc == 0);

  // New rows and updates after the first run land in the same slices (open-ended windows).
  auto project = list(p.src, "src-key", "/v1/project")[0].as_object();
  const auto pid = str(project, "id");
  json::array batch;
  for (int i = 0; i < 30; ++i)
    batch.push_back(json::object{{"id", (i % 2 ? "~late-" : "!late-") + std::to_string(i)}, {"project_id", pid},
                                 {"log_id", "g"}, {"input", "after the first run"}, {"output", i}});
  call(p.src, "src-key", http::verb::post, "/logs3", json::serialize(json::object{{"rows", batch}, {"api_version", 2}}));
  auto again = migrate(cfg);
  INFO(again.out << again.err);
  REQUIRE(again.rc == 0);
  compare_orgs(p);
  CHECK(layouts(cfg.state_dir) == first);
  CHECK(verify(cfg).rc == 0);
}

TEST_CASE("sliced streams: slicing off (max 1) and small streams keep one reader") {
  org_pair p;
  p.seed(sliced_seed());
  ferry::test::temp_dir dir("ferry-sliced-off");
  auto cfg = base_config(p, dir);
  cfg.max_slices_per_stream = 1;
  cfg.min_slice_rows = 20;
  cfg.slice_min_latency_ms = 0;
  auto r = migrate(cfg);
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  CHECK(layouts(cfg.state_dir).empty());
  // A stream started unsliced stays so when slicing is turned on later.
  cfg.max_slices_per_stream = 4;
  REQUIRE(migrate(cfg).rc == 0);
  CHECK(layouts(cfg.state_dir).empty());
  compare_orgs(p);
  ferry::test::temp_dir dir2("ferry-sliced-small");
  auto small = base_config(p, dir2);
  small.max_slices_per_stream = 4;
  small.min_slice_rows = 1000;  // every stream here is below 2 x 1000 rows
  small.slice_min_latency_ms = 0;
  REQUIRE(migrate(small).rc == 0);
  CHECK(layouts(small.state_dir).empty());
}

TEST_CASE("sliced streams: a source quicker than slice_min_latency_ms stays one slice, a slow one is sliced") {
  // Quick: no loopback source takes a minute to answer a one-row page, so no stream is probed or split.
  {
    org_pair p;
    p.seed(sliced_seed());
    ferry::test::temp_dir dir("ferry-sliced-fast");
    auto cfg = base_config(p, dir);
    sliced(cfg);
    cfg.slice_min_latency_ms = 60000;
    auto r = migrate(cfg);
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(layouts(cfg.state_dir).empty());
    compare_orgs(p);
  }
  // Slow: every /btql answer takes >= 40 ms, above the default 20 ms, so the large streams are split.
  {
    org_pair p({emulator::parse_fault_spec("path=/btql,kind=latency,latency_ms=40")});
    p.seed(sliced_seed());
    ferry::test::temp_dir dir("ferry-sliced-slow");
    auto cfg = base_config(p, dir);
    sliced(cfg);
    cfg.slice_min_latency_ms = pipelines::migrate_config{}.slice_min_latency_ms;
    REQUIRE(cfg.slice_min_latency_ms < 40);
    auto r = migrate(cfg);
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(!layouts(cfg.state_dir).empty());
    compare_orgs(p);
  }
}

TEST_CASE("sliced streams: cancelled mid-flight at random points and resumed until done, same slices, the destination equals the source") {
  org_pair p;
  p.seed(sliced_seed());
  ferry::test::temp_dir dir("ferry-sliced-kill");
  auto cfg = base_config(p, dir);
  sliced(cfg);
  std::mt19937 rng(20261204);
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> layout;
  int rc = -1, interrupted = 0;
  for (int run = 0; run < 40 && rc != 0; ++run) {
    const bool cancel = run < 12;
    const bool terminal = run % 3 != 2;  // terminal = abort mid-flight (what a SIGKILL leaves behind)
    const auto delay = std::chrono::milliseconds(std::uniform_int_distribution<int>(1, 80)(rng));
    const auto inserts_before = p.inserts_now();
    const auto committed_before = std::filesystem::exists(cfg.state_dir) ? committed_rows(cfg.state_dir) : 0;
    auto r = migrate(cfg, [&](engine::runtime& rt) {
      if (!cancel) return;
      auto t = std::make_shared<asio::steady_timer>(rt.context(), delay);
      t->async_wait([t, &rt, terminal](boost::system::error_code) {
        rt.request_shutdown("test");
        if (terminal) rt.request_shutdown("test: terminal");
      });
    });
    INFO("run " << run << " terminal=" << terminal << "\n" << r.out << r.err);
    REQUIRE((r.rc == 0 || r.rc == 130));
    rc = r.rc;
    if (r.rc == 130) ++interrupted;
    CHECK(p.inserts_now() - inserts_before >= committed_rows(cfg.state_dir) - committed_before);
    // Once a stream has a layout, every later run continues those slices (a split only narrows one
    // and appends the rest of its window).
    for (const auto& [id, l] : layouts(cfg.state_dir)) {
      auto [it, fresh] = layout.emplace(id, l);
      if (!fresh) CHECK_MESSAGE(continues(it->second, l), id << " changed its slices in run " << run);
      it->second = l;
    }
  }
  REQUIRE(rc == 0);
  CHECK(interrupted >= 3);
  CHECK(layout.size() == 3);
  auto c = compare_orgs(p);  // row by row, latest versions
  CHECK(c.streams == 5);
  std::uint64_t unique = 0;
  {
    std::lock_guard lk(p.mu);
    unique = p.inserts.size();
  }
  CHECK(unique == c.rows);
  CHECK(verify(cfg).rc == 0);
}

TEST_CASE("sliced streams: every fault kind on either side still converges with no loss and no duplicate row") {
  converges_under(
      {
          {"btql 429 with Retry-After", {"path=/btql,kind=status,status=429,retry_after=1,count=2"}, {}},
          {"btql 504 above a LIMIT", {"path=/btql,kind=btql_limit,limit_above=10,status=504"}, {}},
          {"btql 500 above a LIMIT", {"path=/btql,kind=btql_limit,limit_above=20,status=500"}, {}},
          {"btql latency", {"path=/btql,kind=latency,latency_ms=15,rate=0.3"}, {}},
          {"btql dropped connections", {"path=/btql,kind=drop,rate=0.2"}, {}},
          {"btql truncated bodies", {"path=/btql,kind=truncate,rate=0.2"}, {}},
          {"logs3 429", {}, {"path=/logs3,kind=status,status=429,rate=0.2"}},
          {"logs3 500 and 503", {}, {"path=/logs3,kind=status,status=500,rate=0.15", "path=/logs3,kind=status,status=503,rate=0.1"}},
          {"logs3 413 above a size", {}, {"method=POST,path=/logs3,kind=size,max_bytes=12000"}},
          {"logs3 dropped connections", {}, {"path=/logs3,kind=drop,rate=0.2"}},
          {"logs3 truncated bodies", {}, {"path=/logs3,kind=truncate,rate=0.2"}},
      },
      [](pipelines::migrate_config& c) {
        c.max_slices_per_stream = 4;
        c.min_slice_rows = 15;  // small_seed's one project: 120 log rows, groups of 60 and 50 rows
        c.slice_min_latency_ms = 0;
      });
}

TEST_CASE("sliced streams: versions of one id written in different time ranges (an update long after the insert, with another created) land in order") {
  org_pair p;
  p.seed(sliced_seed());
  auto project = list(p.src, "src-key", "/v1/project")[0].as_object();
  const auto pid = str(project, "id");
  auto rows = dump(p.src, "src-key", stream_kind::project_logs, pid);
  REQUIRE(rows.size() > 100);
  const std::string x = rows.begin()->first, y = std::next(rows.begin(), 50)->first;
  auto write = [&](const std::string& id, const std::string& created, const std::string& output, bool merge) {
    json::object row{{"id", id}, {"project_id", pid}, {"log_id", "g"}, {"output", output}};
    if (!created.empty()) row["created"] = created;
    if (merge) row["_is_merge"] = true;
    call(p.src, "src-key", http::verb::post, "/logs3",
         json::serialize(json::object{{"rows", json::array{row}}, {"api_version", 2}}));
  };
  // While the first run copies, x is replaced with a `created` years later and y merged: their new
  // versions come back at the end of the key order, in the same slices as their first versions.
  int answers = 0;
  p.dst_hook = [&](const std::string& target, int status) {
    if (target != "/logs3" || status != 200 || ++answers != 2) return;
    write(x, "2031-06-01T00:00:00Z", "x v2, created in 2031", false);
    write(y, "", "y v2, merged", true);
  };
  ferry::test::temp_dir dir("ferry-sliced-versions");
  auto cfg = base_config(p, dir);
  sliced(cfg);
  auto r = migrate(cfg);
  p.dst_hook = nullptr;
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  REQUIRE(answers >= 2);
  CHECK(layouts(cfg.state_dir).count("logs:" + pid) == 1);
  compare_orgs(p);
  // And again, now with a `created` years earlier than the first version's.
  write(x, "2019-01-01T00:00:00Z", "x v3, created in 2019", false);
  auto again = migrate(cfg);
  INFO(again.out << again.err);
  REQUIRE(again.rc == 0);
  compare_orgs(p);
  auto dst_projects = list(p.dst, "dst-key", "/v1/project");
  auto out = dump(p.dst, "dst-key", stream_kind::project_logs, str(dst_projects[0].as_object(), "id"));
  REQUIRE(out.count(x) == 1);
  CHECK(str(out.at(x), "output") == "x v3, created in 2019");
  CHECK(str(out.at(y), "output") == "y v2, merged");
}

// ---- a running slice found large is split (pipelines/streams/slice_split.hpp) --------------------

namespace {

/// A sink that hands every log line to `on_line` (the split's log line is the test's clock), from the
/// logging thread, unlocked: on_line may log (a shutdown request does) and must be thread-safe.
class line_sink : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 public:
  std::function<void(const std::string&)> on_line;

 protected:
  void sink_it_(const spdlog::details::log_msg& m) override {
    if (on_line) on_line(std::string(m.payload.data(), m.payload.size()));
  }
  void flush_() override {}
};

/// Log lines go to `sink` while it lives (instead of stderr).
struct capture_log {
  std::shared_ptr<line_sink> sink = std::make_shared<line_sink>();
  capture_log() { engine::init_logging(engine::log_config{}, sink); }
  ~capture_log() { engine::init_logging(engine::log_config{}); }
};

/// Restores dump()'s page size.
struct dump_rows {
  explicit dump_rows(std::size_t n) { dump_page_rows = n; }
  ~dump_rows() { dump_page_rows = 8; }
};

/// One project whose logs are skewed: its 40 seeded rows (uuid ids, all below "z") and `many` rows
/// "zz-00000".. (some written twice: the latest version counts); and the logs stream's layout saved
/// as a plan made before the "zz" rows were written would be: ["", "z") and ["z", ""). Returns the
/// project id.
std::string seed_skewed(org_pair& p, const std::string& state_dir, int many) {
  auto o = small_seed();
  o.projects = 1;
  o.events_per_project = 40;
  p.seed(o);
  const auto pid = str(list(p.src, "src-key", "/v1/project")[0].as_object(), "id");
  auto write = [&](int from, int to, const std::string& output) {
    json::array rows;
    for (int i = from; i < to; ++i) {
      char id[16];
      std::snprintf(id, sizeof id, "zz-%05d", i);
      rows.push_back(json::object{{"id", id}, {"project_id", pid}, {"log_id", "g"}, {"input", i}, {"output", output}});
    }
    call(p.src, "src-key", http::verb::post, "/logs3", json::serialize(json::object{{"rows", rows}, {"api_version", 2}}));
  };
  for (int i = 0; i < many; i += 250) write(i, std::min(i + 250, many), "v1");
  for (int i = 0; i < many; i += 500) write(i, i + 50, "v2");  // second versions, later in the key order
  auto st = stores::state_store::open(state_dir);
  stores::stream_state s;
  s.stream_id = "logs:" + pid;
  s.kind = "logs";
  s.source_ids = {pid};
  s.slices.resize(2);
  s.slices[0].id_to = "z";
  s.slices[1].id_from = "z";
  st.save_stream(s);
  return pid;
}

/// Sliced, with the source's /btql answers taking 100 ms each (a steady page latency, far above any
/// jitter of a loaded machine: the pacer keeps both slots of the two-slice layout, so the slot the
/// small slice frees stays idle, and the large slice still has most of its rows then).
pipelines::migrate_config skewed_config(const org_pair& p, const ferry::test::temp_dir& dir) {
  auto cfg = base_config(p, dir);
  sliced(cfg);
  cfg.logs_fetch_limit = 100;
  return cfg;
}

std::vector<emulator::fault_spec> slow_btql() { return {emulator::parse_fault_spec("path=/btql,kind=latency,latency_ms=100")}; }

}  // namespace

TEST_CASE("slice split: a skewed layout's large slice is split while running, the copy is exact row by row, verify combines the new layout") {
  org_pair p(slow_btql());
  dump_rows fast_compare(1000);
  ferry::test::temp_dir dir("ferry-split");
  auto cfg = skewed_config(p, dir);
  std::filesystem::create_directories(cfg.state_dir);
  const auto pid = seed_skewed(p, cfg.state_dir, 2000);
  std::vector<std::string> splits;
  std::mutex splits_mu;
  run_out r;
  {
    capture_log log;
    log.sink->on_line = [&](const std::string& line) {
      if (line.rfind("slice split stream=logs:" + pid + " ", 0) != 0) return;
      std::lock_guard lk(splits_mu);
      splits.push_back(line);
    };
    r = migrate(cfg);
  }
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  // The old layout had two slices and stayed so: here the "zz" slice was split while it ran.
  REQUIRE_MESSAGE(!splits.empty(), "no slice split");
  CHECK(splits.front().find(" slice=1 ") != std::string::npos);  // the large one
  CHECK(splits.front().find(" rows_left=") != std::string::npos);
  const auto l = layouts(cfg.state_dir).at("logs:" + pid);
  // Each split appended one slice per cut ("at=m1,m2": 2 cuts, 3 parts); K, not the first layout's two
  // slices, bounds the parts (up to max_slices_per_stream running), and the layout at most 64.
  std::size_t cuts = 0;
  for (const auto& line : splits) {
    const auto at = line.substr(line.find(" at=") + 4);
    cuts += 1 + static_cast<std::size_t>(std::count(at.begin(), at.begin() + static_cast<std::ptrdiff_t>(at.find(' ')), ','));
  }
  MESSAGE("splits: " << splits.size() << ", slices at the end: " << l.size());
  CHECK(l.size() == 2 + cuts);
  CHECK(l.size() <= pipelines::streams::max_layout_slices);
  CHECK(l[0] == std::pair<std::string, std::string>{"", "z"});  // the small slice kept its window
  auto c = compare_orgs(p);  // row by row, latest versions
  CHECK(c.rows >= 2040);
  {
    // Each row was read by exactly one slice: sent once (its latest version), committed once.
    std::lock_guard lk(p.mu);
    CHECK(p.total_inserts == p.inserts.size());
    CHECK(p.inserts.size() == c.rows);
  }
  CHECK(committed_rows(cfg.state_dir) == c.rows);
  CHECK(verify(cfg).rc == 0);
}

TEST_CASE("slice split: killed right after the split's commit and at random points, resumed until done: the split layout is continued, the copy is exact") {
  org_pair p(slow_btql());
  dump_rows fast_compare(1000);
  ferry::test::temp_dir dir("ferry-split-kill");
  auto cfg = skewed_config(p, dir);
  std::filesystem::create_directories(cfg.state_dir);
  const auto pid = seed_skewed(p, cfg.state_dir, 2000);
  const std::string stream = "logs:" + pid;
  std::mt19937 rng(20261205);
  std::vector<std::pair<std::string, std::string>> layout{{"", "z"}, {"z", ""}};
  int rc = -1, killed_at_split = 0, resumed_split = 0;
  for (int run = 0; run < 40 && rc != 0; ++run) {
    // Run 0: a SIGKILL's state (terminal abort) the moment the split is committed, before the new
    // slices read anything. Runs 1..6: at random points. Then to the end.
    const bool at_split = run == 0, at_random = run >= 1 && run < 7;
    const auto delay = std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 400)(rng));
    const bool split_before = layout.size() > 2;
    std::atomic<engine::runtime*> rt_now{nullptr};
    std::atomic<bool> split_seen{false};
    run_out r;
    {
      capture_log log;
      log.sink->on_line = [&](const std::string& line) {
        if (line.rfind("slice split stream=" + stream + " ", 0) != 0) return;
        split_seen = true;
        // (on the stream's driver, right after the synced save: the slices it would start now are refused)
        if (auto* rt = rt_now.load(); rt && at_split) {
          rt->request_shutdown("test");
          rt->request_shutdown("test: terminal");
        }
      };
      r = migrate(cfg, [&](engine::runtime& rt) {
        rt_now = &rt;
        if (!at_random) return;
        auto t = std::make_shared<asio::steady_timer>(rt.context(), delay);
        t->async_wait([t, &rt](boost::system::error_code) {
          rt.request_shutdown("test");
          rt.request_shutdown("test: terminal");
        });
      });
    }
    INFO("run " << run << "\n" << r.out << r.err);
    REQUIRE((r.rc == 0 || r.rc == 130));
    rc = r.rc;
    const auto now = layouts(cfg.state_dir).at(stream);
    CHECK_MESSAGE(continues(layout, now), "run " << run << " changed the slices");
    if (at_split && split_seen) {
      ++killed_at_split;
      // The split is in the state: the new slice starts at the cursor of the slice it came from.
      auto st = stores::state_store::open(cfg.state_dir);
      const auto rec = *st.load_stream(stream);
      REQUIRE(rec.slices.size() == now.size());
      REQUIRE(rec.slices.size() > layout.size());
      const auto& added = rec.slices.back();
      const auto from = std::find_if(rec.slices.begin(), rec.slices.end(), [&](const auto& s) { return s.id_to == added.id_from; });
      REQUIRE(from != rec.slices.end());
      CHECK(added.cursor == from->cursor);
      CHECK(added.counters.rows == 0);
    }
    if (split_before && r.rc == 130) ++resumed_split;
    layout = now;
  }
  REQUIRE(rc == 0);
  MESSAGE("killed at the split: " << killed_at_split << ", killed again on a split layout: " << resumed_split
          << ", slices at the end: " << layout.size());
  CHECK(killed_at_split >= 1);
  CHECK(resumed_split >= 1);  // a run began on a split layout and was killed again
  CHECK(layout.size() > 2);
  auto c = compare_orgs(p);  // row by row, latest versions
  std::uint64_t unique = 0;
  {
    std::lock_guard lk(p.mu);
    unique = p.inserts.size();
  }
  CHECK(unique == c.rows);
  CHECK(committed_rows(cfg.state_dir) == c.rows);
  CHECK(verify(cfg).rc == 0);
}
