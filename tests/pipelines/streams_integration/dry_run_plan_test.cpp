// Loopback tests of `ferry migrate --dry-run`'s plan: two emulators behind real sockets on 127.0.0.1:0 (in
// memory), the source seeded with emulator::seed_org, run_migrate as the CLI calls it. They check that the
// plan lists every stream with the exact source row count (against the seed's own summary and an
// independent in-process BTQL count), that both emulators' stores are byte-for-byte unchanged (a full
// scan of every column family before and after), that no state dir is created, and where the plan goes.
#include "pipelines/migrate.hpp"

#include "pipelines/streams/btql_query.hpp"

#include "emulator/emulator.hpp"
#include "emulator/events.hpp"
#include "emulator/rest.hpp"
#include "emulator/seed.hpp"
#include "engine/runtime.hpp"
#include "loopback_support.hpp"
#include "test_support.hpp"
#include "transports/http_server.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

namespace asio = boost::asio;
namespace json = boost::json;
namespace http = boost::beast::http;
namespace fs = std::filesystem;
using namespace ferry;
using pipelines::streams::stream_kind;

namespace {

using ferry::test::run_out;
using ferry::test::str;

/// One in-process request, the first answer must be a 200 with a JSON body.
json::value call(emulator::emulator& emu, const std::string& key, http::verb verb, const std::string& target,
                 const std::string& body = "") {
  return ferry::test::call(emu, key, verb, target, body, /*attempts=*/1);
}

/// Source and destination emulators served by two background threads for the duration of a test; the source
/// behind an observing server (a hook sees each /btql body).
struct emulators : ferry::test::emulator_pair {
  std::function<void(const std::string& btql_body)> on_src_btql;  // under mu

  static emulator::emulator_config config(std::string key, std::vector<emulator::fault_spec> faults) {
    emulator::emulator_config c;
    c.api_keys = {{std::move(key), "org", ""}};
    c.faults = std::move(faults);
    return c;
  }
  explicit emulators(std::vector<emulator::fault_spec> src_faults = {})
      : emulator_pair(config("src-key", std::move(src_faults)), config("dst-key", {})) {
    serve([this](transports::http_request& req) -> asio::awaitable<transports::http_reply> {
      if (req.target() == "/btql") {
        std::lock_guard lk(mu);
        if (on_src_btql) on_src_btql(req.body());
      }
      co_return co_await src.handle(req);
    });
  }
  ~emulators() { stop(); }
  std::string src_url() const { return server_url(); }
};

/// Every key and value of every column family of an emulator's store.
std::map<std::pair<std::string, std::string>, std::string> dump_store(emulator::emulator& e) {
  auto cfs = emulator::rest_store::column_families();
  for (auto& cf : emulator::events_api::column_families()) cfs.push_back(cf);
  std::map<std::pair<std::string, std::string>, std::string> out;
  for (const auto& cf : cfs)
    e.store().scan(cf, "", "", [&](std::string_view k, std::string_view v) {
      out[{cf, std::string(k)}] = std::string(v);
      return true;
    });
  return out;
}

stream_kind kind_of(std::string_view name) {
  for (auto k : {stream_kind::project_logs, stream_kind::experiment, stream_kind::dataset})
    if (pipelines::streams::resource_name(k) == name) return k;
  FAIL("unknown stream kind " << name);
  return stream_kind::project_logs;
}

/// Rows of one object, counted independently of Ferry's counting code: full rows, small pages, in process.
std::uint64_t count_rows(emulator::emulator& emu, stream_kind kind, const std::string& id,
                         std::optional<std::string> after = {}) {
  pipelines::streams::page_query q;
  q.kind = kind;
  q.object_ids = {id};
  q.created_after = std::move(after);
  q.limit = 16;
  std::uint64_t n = 0;
  for (;;) {
    auto v = call(emu, "src-key", http::verb::post, "/btql",
                  pipelines::streams::build_btql_body(pipelines::streams::build_page_query(q)));
    const auto& data = v.as_object().at("data").as_array();
    if (data.empty()) return n;
    n += data.size();
    q.after_key = str(data.back().as_object(), "_pagination_key");
  }
}

emulator::seed_options small_seed() {
  emulator::seed_options o;
  o.projects = 2;
  o.events_per_project = 90;
  o.experiments_per_project = 2;
  o.datasets_per_project = 2;
  o.events_per_experiment = 20;
  o.events_per_dataset = 15;
  o.seed = 5;
  o.attachment_ratio = 0;
  o.large_payload_ratio = 0;
  o.batch_rows = 40;
  return o;
}

pipelines::migrate_config base_config(const emulators& e, const fs::path& dir) {
  pipelines::migrate_config c;
  c.source = {e.src_url(), "src-key"};
  c.dest = {e.dst.base_url(), "dst-key"};
  c.state_dir = (dir / "state").string();
  c.retry_attempts = 3;
  c.retry_delay = std::chrono::milliseconds(2);
  c.request_timeout = std::chrono::milliseconds(5000);
  c.logs_fetch_limit = 10;  // the sampled page; the rest is counted with key-only pages
  c.experiment_fetch_limit = 10;
  c.dataset_fetch_limit = 10;
  c.fetch_group_size = 3;
  c.max_concurrent_streams = 2;
  c.dry_run = true;
  return c;
}

run_out dry_run(const pipelines::migrate_config& cfg, std::size_t count_page = 10'000,
                std::function<void(engine::runtime&)> hook = {}) {
  return ferry::test::run_command(pipelines::run_migrate, cfg, [&](pipelines::run_options& o) {
    o.dry_run_count_page = count_page;
    o.on_runtime = std::move(hook);
  });
}

json::object read_plan(const fs::path& p) {
  std::ifstream f(p);
  REQUIRE_MESSAGE(f, "no plan at " << p);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return json::parse(text).as_object();
}

/// Runs `fn` with the current directory set to `dir` (restored after; the tests are single-threaded).
template <class Fn>
void in_directory(const fs::path& dir, Fn fn) {
  const auto old = fs::current_path();
  fs::current_path(dir);
  try {
    fn();
  } catch (...) {
    fs::current_path(old);
    throw;
  }
  fs::current_path(old);
}

}  // namespace

TEST_CASE("dry run plan: exact source row counts per stream, both stores byte-for-byte unchanged, no state dir") {
  emulators e;
  const auto o = small_seed();
  const auto seeded = e.seed(o);
  ferry::test::temp_dir dir("ferry-dry-run");
  auto cfg = base_config(e, dir.path());
  // Warm-up reads, so a store write the emulator might make on first contact is not blamed on the dry run.
  call(e.dst, "dst-key", http::verb::get, "/v1/project");
  call(e.dst, "dst-key", http::verb::get, "/v1/organization");
  const auto src_before = dump_store(e.src);
  const auto dst_before = dump_store(e.dst);
  REQUIRE(!src_before.empty());

  run_out r;
  // Key pages of 7 keys: counting crosses many pages.
  in_directory(dir.path(), [&] { r = dry_run(cfg, 7); });
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);

  CHECK(dump_store(e.src) == src_before);
  CHECK(dump_store(e.dst) == dst_before);
  CHECK_FALSE(fs::exists(cfg.state_dir));
  // No report path and no state dir: the plan is in the current directory.
  auto plan = read_plan(dir.path() / "migration_plan.json");
  CHECK(plan.at("summary").as_object().at("dry_run").as_bool());

  // Every stream: 1 logs stream per project, experiments and datasets in groups of 3 (2 per project).
  const auto& streams = plan.at("streams").as_object();
  CHECK(streams.size() == 3 * o.projects);
  std::map<std::string, std::uint64_t> by_kind;
  for (const auto& [id, v] : streams) {
    const auto& s = v.as_object();
    CAPTURE(id);
    REQUIRE(s.at("counted").as_bool());
    const auto kind = kind_of(s.at("kind").as_string());
    std::uint64_t expected = 0;
    for (const auto& sid : s.at("source_ids").as_array()) expected += count_rows(e.src, kind, std::string(sid.as_string()));
    const auto rows = s.at("rows").to_number<std::uint64_t>();
    CHECK(rows == expected);
    by_kind[std::string(s.at("kind").as_string())] += rows;
    CHECK(s.at("bytes").to_number<std::uint64_t>() > rows * 100);  // seeded rows are ~1-3 KB
    CHECK(s.at("seconds").to_number<double>() > 0);
    for (const auto& d : s.at("destination").as_array()) {
      CHECK(str(d.as_object(), "status") == "new");  // empty destination
      CHECK(d.as_object().at("dest_id").is_null());
    }
    CHECK(r.out.find("stream=" + std::string(id)) != std::string::npos);
  }
  // The seed's own summary: merges update rows in place; a delete removes its row and adds none. Each
  // dataset got one merge and one delete (events_per_dataset > 2); every other merge/delete is a log row.
  const std::uint64_t datasets = std::uint64_t{o.projects} * o.datasets_per_project;
  CHECK(by_kind["experiment_events"] == seeded.experiment_rows);
  CHECK(by_kind["dataset_events"] == seeded.dataset_rows - 3 * datasets);
  CHECK(by_kind["logs"] == seeded.log_rows - (seeded.merges - datasets) - 2 * (seeded.deletes - datasets));
  const auto& totals = plan.at("streams_plan").as_object();
  CHECK(totals.at("rows").to_number<std::uint64_t>() ==
        by_kind["experiment_events"] + by_kind["dataset_events"] + by_kind["logs"]);
  CHECK(totals.at("complete").as_bool());
  CHECK(totals.at("seconds").to_number<double>() > 0);
  CHECK(totals.at("assumption").as_object().at("rows_per_s").to_number<double>() > 0);
  CHECK(r.out.find("total: 6 stream(s), " + std::to_string(totals.at("rows").to_number<std::uint64_t>()) + " rows") !=
        std::string::npos);
  CHECK(r.out.find("estimate assumes") != std::string::npos);
}

TEST_CASE("dry run plan: goes into an existing state dir or the report path (parents 0700), marks existing destinations, honours the created window, halves pages on 504") {
  // Pages above 50 rows or keys get a 504, as a deployment with a slow BTQL would: counting halves its pages.
  emulators e({emulator::parse_fault_spec("path=/btql,kind=btql_limit,limit_above=50,status=504")});
  const auto o = small_seed();
  e.seed(o);
  ferry::test::temp_dir dir("ferry-dry-run");
  auto cfg = base_config(e, dir.path());
  cfg.resources = {"logs", "experiment_events", "dataset_events"};  // discovery only: quick

  // One source project already exists in the destination (by name).
  auto projects = call(e.src, "src-key", http::verb::get, "/v1/project").as_object().at("objects").as_array();
  REQUIRE(projects.size() == o.projects);
  const auto& first = projects[0].as_object();
  auto made = call(e.dst, "dst-key", http::verb::post, "/v1/project",
                   json::serialize(json::object{{"name", str(first, "name")}}));
  const auto existing_dest = str(made.as_object(), "id");

  SUBCASE("an existing state dir holds the plan and stays otherwise untouched") {
    fs::create_directories(cfg.state_dir);
    auto r = dry_run(cfg);
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    std::vector<std::string> names;
    for (const auto& f : fs::directory_iterator(cfg.state_dir)) names.push_back(f.path().filename().string());
    CHECK(names == std::vector<std::string>{"migration_plan.json"});
    auto plan = read_plan(fs::path(cfg.state_dir) / "migration_plan.json");
    bool seen = false;
    for (const auto& [id, v] : plan.at("streams").as_object()) {
      const auto& s = v.as_object();
      if (s.at("kind").as_string() != "logs") continue;
      const auto& d = s.at("destination").as_array()[0].as_object();
      if (str(d, "source_id") == str(first, "id")) {
        seen = true;
        CHECK(str(d, "status") == "existing");
        CHECK(str(d, "dest_id") == existing_dest);
      } else {
        CHECK(str(d, "status") == "new");
      }
    }
    CHECK(seen);
  }

  SUBCASE("a report path is used as given; its missing parents are created 0700; the window is honoured") {
    // The window starts at the created time of the middle log row of the first project.
    pipelines::streams::page_query q;
    q.kind = stream_kind::project_logs;
    q.object_ids = {str(first, "id")};
    q.limit = 40;  // under the fault's threshold
    auto rows = call(e.src, "src-key", http::verb::post, "/btql",
                     pipelines::streams::build_btql_body(pipelines::streams::build_page_query(q)))
                    .as_object()
                    .at("data")
                    .as_array();
    std::vector<std::string> created;
    for (const auto& v : rows) created.push_back(str(v.as_object(), "created"));
    std::sort(created.begin(), created.end());
    REQUIRE(created.size() > 10);
    cfg.created_after = created[created.size() / 2];
    cfg.report_path = (dir.path() / "reports" / "sub" / "plan.json").string();
    auto r = dry_run(cfg);
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK_FALSE(fs::exists(cfg.state_dir));
    CHECK((fs::status(dir.path() / "reports").permissions() & fs::perms::all) == fs::perms::owner_all);
    CHECK((fs::status(dir.path() / "reports" / "sub").permissions() & fs::perms::all) == fs::perms::owner_all);
    auto plan = read_plan(cfg.report_path);
    std::uint64_t total = 0;
    for (const auto& [id, v] : plan.at("streams").as_object()) {
      const auto& s = v.as_object();
      CAPTURE(id);
      const auto kind = kind_of(s.at("kind").as_string());
      std::uint64_t expected = 0;
      for (const auto& sid : s.at("source_ids").as_array())
        expected += count_rows(e.src, kind, std::string(sid.as_string()), cfg.created_after);
      CHECK(s.at("rows").to_number<std::uint64_t>() == expected);
      total += expected;
    }
    CHECK(total > 0);
    CHECK(plan.at("streams_plan").as_object().at("rows").to_number<std::uint64_t>() == total);
    CHECK(r.out.find("created>=" + *cfg.created_after) != std::string::npos);
  }
}

TEST_CASE("dry run plan: streams of objects the resources plan skips (outside the created window) are left out, as in the real run") {
  emulators e;
  const auto o = small_seed();
  e.seed(o);
  ferry::test::temp_dir dir("ferry-dry-run");
  auto cfg = base_config(e, dir.path());
  cfg.report_path = (dir.path() / "plan.json").string();
  cfg.created_before = "2001-01-01T00:00:00Z";  // every experiment and dataset was created after that (now)
  auto r = dry_run(cfg);
  INFO(r.out << r.err);
  REQUIRE(r.rc == 0);
  auto plan = read_plan(cfg.report_path);
  const auto& streams = plan.at("streams").as_object();
  CHECK(streams.size() == o.projects);
  for (const auto& [id, v] : streams) CHECK(v.as_object().at("kind").as_string() == "logs");
  CHECK(plan.at("streams_plan").as_object().at("objects_left_out").to_number<std::uint64_t>() ==
        std::uint64_t{o.projects} * (o.experiments_per_project + o.datasets_per_project));
  CHECK(r.out.find("left out: ") != std::string::npos);
}

TEST_CASE("dry run plan: a shutdown while counting stops at the next page, exits 130, leaves a partial plan, writes nothing else") {
  emulators e;
  auto o = small_seed();
  o.projects = 1;
  e.seed(o);
  ferry::test::temp_dir dir("ferry-dry-run");
  auto cfg = base_config(e, dir.path());
  cfg.max_concurrent_streams = 1;
  cfg.report_path = (dir.path() / "plan.json").string();
  const auto dst_before = dump_store(e.dst);
  std::atomic<engine::runtime*> runtime{nullptr};
  std::atomic<int> key_pages{0};
  {
    std::lock_guard lk(e.mu);
    // As SIGINT would: the graceful phase starts while the second key-only count page is in flight.
    e.on_src_btql = [&](const std::string& body) {
      if (body.find("select: _pagination_key") == std::string::npos) return;
      if (++key_pages == 2)
        if (auto* rt = runtime.load()) rt->request_shutdown("test");
    };
  }
  auto r = dry_run(cfg, 7, [&](engine::runtime& rt) { runtime = &rt; });
  {
    std::lock_guard lk(e.mu);
    e.on_src_btql = {};
  }
  INFO(r.out << r.err);
  CHECK(r.rc == 130);
  CHECK(key_pages.load() <= 3);  // stopped at a page boundary, not after the whole count
  CHECK(r.err.find("dry run interrupted") != std::string::npos);
  CHECK(r.err.find("resume") == std::string::npos);  // nothing to resume: no state was written
  CHECK_FALSE(fs::exists(cfg.state_dir));
  CHECK(dump_store(e.dst) == dst_before);
  auto plan = read_plan(cfg.report_path);
  const auto& totals = plan.at("streams_plan").as_object();
  CHECK_FALSE(totals.at("complete").as_bool());
  CHECK(totals.at("uncounted").to_number<std::uint64_t>() >= 1);
  for (const auto& [id, v] : plan.at("streams").as_object())
    if (!v.as_object().at("counted").as_bool()) CHECK(v.as_object().at("rows").is_null());
}
