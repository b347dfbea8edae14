// Loopback tests of `ferry verify` as an oracle and of the same-organization refusal: emulators behind
// real sockets on 127.0.0.1:0 (in memory), run_migrate / run_verify as the CLI calls them.
// - an interrupted verify is never reported equal (exit 130, "incomplete", streams not compared named);
// - grouped experiment streams are compared by (object, id);
// - attachments referenced by destination rows are checked when they were copied, and a verify says
//   plainly when they were not;
// - a migration of an organization onto itself (same deployment, however spelled, same org) is refused.
#include "pipelines/migrate.hpp"

#include "pipelines/streams/btql_query.hpp"

#include "emulator/emulator.hpp"
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

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

namespace asio = boost::asio;
namespace json = boost::json;
namespace http = boost::beast::http;
namespace fs = std::filesystem;
using namespace ferry;

namespace {

using ferry::test::call;
using ferry::test::run_out;
using ferry::test::str;

emulator::emulator_config emu_config(std::vector<emulator::api_key_entry> keys) {
  emulator::emulator_config c;
  c.api_keys = std::move(keys);
  return c;
}

/// A source (served through an observing server: a hook sees each /btql body) and a destination.
struct emulators : ferry::test::emulator_pair {
  std::function<void()> on_src_btql;  // under mu

  emulators() : emulator_pair(emu_config({{"src-key", "src-org", ""}}), emu_config({{"dst-key", "dst-org", ""}})) {
    serve([this](transports::http_request& req) -> asio::awaitable<transports::http_reply> {
      if (req.target() == "/btql") {
        std::lock_guard lk(mu);
        if (on_src_btql) on_src_btql();
      }
      co_return co_await src.handle(req);
    });
  }
  ~emulators() { stop(); }
  std::string src_url() const { return server_url(); }
};

emulator::seed_options small_seed() {
  emulator::seed_options o;
  o.projects = 2;
  o.events_per_project = 40;
  o.experiments_per_project = 2;
  o.datasets_per_project = 1;
  o.events_per_experiment = 10;
  o.events_per_dataset = 10;
  o.seed = 3;
  o.attachment_ratio = 0;
  o.large_payload_ratio = 0;
  o.batch_rows = 40;
  return o;
}

pipelines::migrate_config base_config(const std::string& src_url, const std::string& src_key, const std::string& dst_url,
                                      const std::string& dst_key, const ferry::test::temp_dir& dir) {
  pipelines::migrate_config c;
  c.source = {src_url, src_key};
  c.dest = {dst_url, dst_key};
  c.state_dir = (dir.path() / "state").string();
  c.retry_attempts = 3;
  c.retry_delay = std::chrono::milliseconds(2);
  c.request_timeout = std::chrono::milliseconds(5000);
  c.logs_fetch_limit = 10;
  c.experiment_fetch_limit = 10;
  c.dataset_fetch_limit = 10;
  c.insert_batch_rows = 25;
  c.fetch_group_size = 3;
  c.max_concurrent_streams = 1;
  return c;
}

pipelines::migrate_config base_config(const emulators& e, const ferry::test::temp_dir& dir) {
  return base_config(e.src_url(), "src-key", e.dst.base_url(), "dst-key", dir);
}

run_out migrate(const pipelines::migrate_config& cfg) { return ferry::test::run_command(pipelines::run_migrate, cfg); }
run_out verify(const pipelines::migrate_config& cfg, std::function<void(engine::runtime&)> hook = {}) {
  return ferry::test::run_command(pipelines::run_verify, cfg,
                                  [&](pipelines::run_options& o) { o.on_runtime = std::move(hook); });
}

json::object read_json(const fs::path& p) {
  std::ifstream f(p);
  REQUIRE_MESSAGE(f, "no file " << p);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return json::parse(text).as_object();
}

json::object post(emulator::emulator& emu, const std::string& key, const std::string& target, const json::object& body) {
  return call(emu, key, http::verb::post, target, json::serialize(body)).as_object();
}

void write_rows(emulator::emulator& emu, const std::string& key, json::array rows) {
  post(emu, key, "/logs3", json::object{{"rows", std::move(rows)}, {"api_version", 2}});
}

json::array list(emulator::emulator& emu, const std::string& key, const std::string& target) {
  return call(emu, key, http::verb::get, target).as_object().at("objects").as_array();
}

}  // namespace

TEST_CASE("verify loopback: a verify interrupted after its first stream exits 130, says which streams were not compared") {
  emulators e;
  e.seed(small_seed());
  ferry::test::temp_dir dir("ferry-verify");
  auto cfg = base_config(e, dir);
  auto m = migrate(cfg);
  INFO(m.out << m.err);
  REQUIRE(m.rc == 0);
  auto full = verify(cfg);
  INFO(full.out << full.err);
  REQUIRE(full.rc == 0);

  // As SIGINT would: the shutdown begins while the source's second page of the run is asked for.
  std::atomic<engine::runtime*> runtime{nullptr};
  std::atomic<int> pages{0};
  {
    std::lock_guard lk(e.mu);
    e.on_src_btql = [&] {
      if (++pages == 2)
        if (auto* rt = runtime.load()) rt->request_shutdown("test: SIGINT");
    };
  }
  auto r = verify(cfg, [&](engine::runtime& rt) { runtime = &rt; });
  {
    std::lock_guard lk(e.mu);
    e.on_src_btql = {};
  }
  INFO(r.out << r.err);
  CHECK(r.rc == 130);
  CHECK(r.out.find("INCOMPLETE") != std::string::npos);
  CHECK(r.err.find("stream(s) not compared") != std::string::npos);
  auto report = read_json(fs::path(cfg.state_dir) / "verify_report.json");
  CHECK_FALSE(report.at("ok").as_bool());
  CHECK(report.at("incomplete").as_bool());
  const auto total = report.at("streams_total").to_number<std::uint64_t>();
  const auto skipped = report.at("streams_not_compared").to_number<std::uint64_t>();
  CHECK(total >= 4);
  CHECK(skipped >= total - 1);  // one stream at a time: at most the first one was compared
  CHECK(report.at("streams").as_array().size() + skipped == total);
}

TEST_CASE("verify loopback: grouped experiments with a repeated row id verify equal; a row moved to the wrong experiment is a difference") {
  emulators e;
  auto proj = post(e.src, "src-key", "/v1/project", {{"name", "p"}});
  const auto pid = str(proj, "id");
  std::vector<std::string> exps;
  for (const char* name : {"e1", "e2", "e3"})
    exps.push_back(str(post(e.src, "src-key", "/v1/experiment", {{"project_id", pid}, {"name", name}}), "id"));
  json::array rows;
  // "shared" is in e1 and e2 (different content); "only2" only in e2; e3 has its own row.
  rows.push_back(json::object{{"id", "shared"}, {"experiment_id", exps[0]}, {"input", "in e1"}});
  rows.push_back(json::object{{"id", "shared"}, {"experiment_id", exps[1]}, {"input", "in e2"}});
  rows.push_back(json::object{{"id", "only2"}, {"experiment_id", exps[1]}, {"input", "two"}});
  rows.push_back(json::object{{"id", "only3"}, {"experiment_id", exps[2]}, {"input", "three"}});
  write_rows(e.src, "src-key", rows);
  ferry::test::temp_dir dir("ferry-verify");
  auto cfg = base_config(e, dir);
  cfg.fetch_group_size = 3;  // the three experiments are one stream
  auto m = migrate(cfg);
  INFO(m.out << m.err);
  REQUIRE(m.rc == 0);
  // Before: keyed by id alone, "shared" of e2 overwrote e1's: a false difference, exit 1.
  auto v = verify(cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 0);

  // Move "only2" from e2 to e3 in the destination: same id, same content, wrong experiment.
  std::map<std::string, std::string> dexp;
  auto dproj = list(e.dst, "dst-key", "/v1/project")[0].as_object();
  for (const auto& x : list(e.dst, "dst-key", "/v1/experiment?project_id=" + str(dproj, "id")))
    dexp[str(x.as_object(), "name")] = str(x.as_object(), "id");
  json::array moved;
  moved.push_back(json::object{{"id", "only2"}, {"experiment_id", dexp["e2"]}, {"_object_delete", true}});
  moved.push_back(json::object{{"id", "only2"}, {"experiment_id", dexp["e3"]}, {"input", "two"}});
  write_rows(e.dst, "dst-key", moved);
  // Before: the row still matched its source row by id: exit 0.
  auto v2 = verify(cfg);
  INFO(v2.out << v2.err);
  CHECK(v2.rc == 1);
  CHECK(v2.out.find("missing_ids=" + exps[1] + "/only2") != std::string::npos);
  CHECK(v2.out.find("extra_ids=" + exps[2] + "/only2") != std::string::npos);
}

namespace {

/// Every row of one project's logs (small projects: one page).
json::array project_logs(emulator::emulator& emu, const std::string& key, const std::string& project_id) {
  pipelines::streams::page_query q;
  q.kind = pipelines::streams::stream_kind::project_logs;
  q.object_ids = {project_id};
  q.limit = 1000;
  auto v = call(emu, key, http::verb::post, "/btql", pipelines::streams::build_btql_body(pipelines::streams::build_page_query(q)));
  return v.as_object().at("data").as_array();
}

json::object* first_ref(json::value& v) {
  if (v.is_object()) {
    auto& o = v.as_object();
    if (str(o, "type") == "braintrust_attachment") return &o;
    for (auto& kv : o)
      if (auto* r = first_ref(kv.value())) return r;
  } else if (v.is_array()) {
    for (auto& x : v.as_array())
      if (auto* r = first_ref(x)) return r;
  }
  return nullptr;
}

emulator::seed_options attachment_seed() {
  auto o = small_seed();
  o.projects = 1;
  o.experiments_per_project = 0;
  o.datasets_per_project = 0;
  o.attachment_ratio = 0.3;
  return o;
}

}  // namespace

TEST_CASE("verify loopback: attachments not copied are said plainly; copied ones must exist in the destination") {
  emulators e;
  e.seed(attachment_seed());
  SUBCASE("--copy-attachments off: verify says the attachments were not copied") {
    ferry::test::temp_dir dir("ferry-verify");
    auto cfg = base_config(e, dir);
    REQUIRE(migrate(cfg).rc == 0);
    auto v = verify(cfg);
    INFO(v.out << v.err);
    CHECK(v.out.find("attachments were not copied") != std::string::npos);
    auto report = read_json(fs::path(cfg.state_dir) / "verify_report.json");
    const auto& att = report.at("attachments").as_object();
    CHECK_FALSE(att.at("copied").as_bool());
    CHECK(att.at("referenced").to_number<std::uint64_t>() >= 3);
  }
  SUBCASE("--copy-attachments on: each referenced attachment is checked; one that does not exist is a difference") {
    ferry::test::temp_dir dir("ferry-verify");
    auto cfg = base_config(e, dir);
    cfg.copy_attachments = true;
    auto m = migrate(cfg);
    INFO(m.out << m.err);
    REQUIRE(m.rc == 0);
    cfg.copy_attachments = false;  // as `ferry verify` runs: the state dir records that they were copied
    auto v = verify(cfg);
    INFO(v.out << v.err);
    CHECK(v.rc == 0);
    CHECK(v.out.find("ok   attachments referenced=") != std::string::npos);
    // Point one destination row at an attachment that does not exist (the key is not row content).
    auto dproj = list(e.dst, "dst-key", "/v1/project")[0].as_object();
    json::array rows = project_logs(e.dst, "dst-key", str(dproj, "id"));
    json::value tampered;
    for (auto& r : rows)
      if (first_ref(r)) {
        tampered = r;
        break;
      }
    REQUIRE(tampered.is_object());
    (*first_ref(tampered))["key"] = "no-such-attachment";
    tampered.as_object().erase("_pagination_key");
    tampered.as_object().erase("_xact_id");
    write_rows(e.dst, "dst-key", json::array{tampered});
    // Before: the key is left out of the row comparison and attachments were not looked at: exit 0.
    auto v2 = verify(cfg);
    INFO(v2.out << v2.err);
    CHECK(v2.rc == 1);
    CHECK(v2.out.find("missing attachment no-such-attachment") != std::string::npos);
    CHECK(v2.err.find("attachment(s) referenced by destination rows missing there") != std::string::npos);
  }
}

TEST_CASE("migrate loopback: a source that is the destination's deployment and organization is refused before anything is written") {
  asio::io_context ctx;
  auto work = asio::make_work_guard(ctx);
  emulator::emulator emu(ctx.get_executor(), emu_config({{"key-a1", "org-a", ""}, {"key-a2", "org-a", ""}, {"key-b", "org-b", ""}}));
  emu.start();
  std::thread t([&] { ctx.run(); });
  {
    auto o = small_seed();
    o.projects = 1;
    o.experiments_per_project = 0;
    o.datasets_per_project = 0;
    asio::io_context local;
    ferry::test::run_coro(local, emulator::seed_org(emulator::inprocess_transport(emu, "key-a1"), o), std::chrono::seconds(60));
  }
  const auto port = emu.base_url().substr(emu.base_url().rfind(':') + 1);
  const std::string src_url = "http://127.0.0.1:" + port;
  const std::string same_url = "HTTP://LocalHost:" + port + "/";  // the same deployment, spelled otherwise
  auto projects = [&](const std::string& key) { return list(emu, key, "/v1/project").size(); };
  for (const auto& [dst_key, dry] : {std::pair{std::string("key-a2"), false}, std::pair{std::string("key-a1"), false},
                                     std::pair{std::string("key-a2"), true}}) {
    CAPTURE(dst_key);
    CAPTURE(dry);
    ferry::test::temp_dir dir("ferry-same-org");
    auto cfg = base_config(src_url, "key-a1", same_url, dst_key, dir);
    cfg.dry_run = dry;
    auto r = migrate(cfg);
    INFO(r.out << r.err);
    // Before: the org's project was migrated onto itself ("adopted" by name, rows rewritten in place).
    CHECK(r.rc == 2);
    CHECK(r.err.find("source " + src_url + " and destination " + same_url + " are the same deployment") != std::string::npos);
    CHECK(r.err.find("key-a") == std::string::npos);  // names the sides, never a key
    CHECK_FALSE(fs::exists(cfg.state_dir));
    CHECK(projects("key-a1") == 1);
  }
  {
    // IPv6 loopback spelling, same key: refused without asking the deployment anything.
    ferry::test::temp_dir dir("ferry-same-org");
    auto cfg = base_config(src_url, "key-a1", "http://[::1]:" + port + "//", "key-a1", dir);
    auto r = migrate(cfg);
    INFO(r.out << r.err);
    CHECK(r.rc == 2);
    CHECK(r.err.find("same deployment and the same API key") != std::string::npos);
    CHECK_FALSE(fs::exists(cfg.state_dir));
  }
  // Another organization of the same deployment: allowed.
  ferry::test::temp_dir dir("ferry-same-org");
  auto cfg = base_config(src_url, "key-a1", same_url, "key-b", dir);
  auto r = migrate(cfg);
  INFO(r.out << r.err);
  CHECK(r.rc == 0);
  CHECK(projects("key-b") == 1);
  asio::post(ctx, [&] { emu.stop(); });
  work.reset();
  t.join();
}

TEST_CASE("verify loopback: resources field by field: an edited field (experiment, view), a redirected reference, an object deleted in the destination") {
  emulators e;
  auto pid = str(post(e.src, "src-key", "/v1/project", {{"name", "p"}}), "id");
  auto ds = str(post(e.src, "src-key", "/v1/dataset", {{"project_id", pid}, {"name", "d"}}), "id");
  auto e1 = str(post(e.src, "src-key", "/v1/experiment", {{"project_id", pid}, {"name", "e1"}, {"dataset_id", ds}, {"description", "first"}}), "id");
  auto e2 = str(post(e.src, "src-key", "/v1/experiment", {{"project_id", pid}, {"name", "e2"}, {"base_exp_id", e1}}), "id");
  auto e3 = str(post(e.src, "src-key", "/v1/experiment", {{"project_id", pid}, {"name", "e3"}}), "id");
  auto view = str(post(e.src, "src-key", "/v1/view",
                       {{"object_type", "experiment"}, {"object_id", e1}, {"view_type", "experiment"}, {"name", "v"},
                        {"options", json::object{{"columnOrder", json::array{"a", "b"}}}}}),
                  "id");
  ferry::test::temp_dir dir("ferry-verify");
  auto cfg = base_config(e, dir);
  auto m = migrate(cfg);
  INFO(m.out << m.err);
  REQUIRE(m.rc == 0);
  auto v = verify(cfg);
  INFO(v.out << v.err);
  REQUIRE(v.rc == 0);
  CHECK(v.out.find("ok   resource fields: ") != std::string::npos);

  std::map<std::string, std::string> dexp;
  auto dproj = list(e.dst, "dst-key", "/v1/project")[0].as_object();
  for (const auto& x : list(e.dst, "dst-key", "/v1/experiment?project_id=" + str(dproj, "id")))
    dexp[str(x.as_object(), "name")] = str(x.as_object(), "id");
  call(e.dst, "dst-key", http::verb::patch, "/v1/experiment/" + dexp["e1"], json::serialize(json::object{{"description", "edited"}}));
  call(e.dst, "dst-key", http::verb::patch, "/v1/experiment/" + dexp["e2"], json::serialize(json::object{{"base_exp_id", dexp["e3"]}}));
  auto dview = list(e.dst, "dst-key", "/v1/view?object_type=experiment&object_id=" + dexp["e1"]);
  REQUIRE(dview.size() == 1);
  call(e.dst, "dst-key", http::verb::patch, "/v1/view/" + str(dview[0].as_object(), "id"),
       json::serialize(json::object{{"object_type", "experiment"},
                                    {"object_id", dexp["e1"]},
                                    {"options", json::object{{"columnOrder", json::array{"b", "a"}}}}}));
  // Before: objects were only counted by name: exit 0.
  auto v2 = verify(cfg);
  INFO(v2.out << v2.err);
  CHECK(v2.rc == 1);
  CHECK(v2.out.find("DIFF resource experiment 'e1' (" + e1 + ") field description: differs") != std::string::npos);
  CHECK(v2.out.find("DIFF resource experiment 'e2' (" + e2 + ") field base_exp_id: differs") != std::string::npos);
  CHECK(v2.out.find("DIFF resource view 'v' (" + view + ") field options: differs") != std::string::npos);
  CHECK(v2.err.find("3 resource field difference(s)") != std::string::npos);

  call(e.dst, "dst-key", http::verb::delete_, "/v1/experiment/" + dexp["e3"]);
  auto v3 = verify(cfg);
  INFO(v3.out << v3.err);
  CHECK(v3.rc == 1);
  CHECK(v3.out.find("DIFF resource experiment 'e3' (" + e3 + "): deleted in the destination") != std::string::npos);
}

TEST_CASE("verify loopback: ids inside view filters are compared through the id map; a filter pointed elsewhere is a difference") {
  emulators e;
  auto pid = str(post(e.src, "src-key", "/v1/project", {{"name", "p"}}), "id");
  auto e1 = str(post(e.src, "src-key", "/v1/experiment", {{"project_id", pid}, {"name", "e1"}}), "id");
  auto e2 = str(post(e.src, "src-key", "/v1/experiment", {{"project_id", pid}, {"name", "e2"}}), "id");
  auto view = str(post(e.src, "src-key", "/v1/view",
                       {{"object_type", "project"}, {"object_id", pid}, {"view_type", "experiments"}, {"name", "v"},
                        {"options", json::object{{"projectId", pid}}},
                        {"view_data", json::object{{"search", json::object{{"filter", json::array{
                                                       json::value("experiment_id = '" + e1 + "'")}}}}}}}),
                  "id");
  ferry::test::temp_dir dir("ferry-verify");
  auto cfg = base_config(e, dir);
  auto m = migrate(cfg);
  INFO(m.out << m.err);
  REQUIRE(m.rc == 0);
  // Before: verify mapped only strings that are a whole id, so the filter the migration remapped read as
  // "differs" and a correct migration failed verify.
  auto v = verify(cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 0);
  CHECK(v.out.find("ok   resource fields: ") != std::string::npos);

  std::map<std::string, std::string> dexp;
  auto dpid = str(list(e.dst, "dst-key", "/v1/project")[0].as_object(), "id");
  for (const auto& x : list(e.dst, "dst-key", "/v1/experiment?project_id=" + dpid))
    dexp[str(x.as_object(), "name")] = str(x.as_object(), "id");
  auto dview = list(e.dst, "dst-key", "/v1/view?object_type=project&object_id=" + dpid);
  REQUIRE(dview.size() == 1);
  CHECK(json::serialize(dview[0].at("view_data")).find(dexp["e1"]) != std::string::npos);
  // The destination filter now names the other experiment: a difference, not an equal by substitution.
  call(e.dst, "dst-key", http::verb::patch, "/v1/view/" + str(dview[0].as_object(), "id"),
       json::serialize(json::object{{"object_type", "project"},
                                    {"object_id", dpid},
                                    {"view_data", json::object{{"search", json::object{{"filter", json::array{
                                                      json::value("experiment_id = '" + dexp["e2"] + "'")}}}}}}}));
  auto v2 = verify(cfg);
  INFO(v2.out << v2.err);
  CHECK(v2.rc == 1);
  CHECK(v2.out.find("DIFF resource view 'v' (" + view + ") field view_data: differs") != std::string::npos);
  (void)e2;
}
