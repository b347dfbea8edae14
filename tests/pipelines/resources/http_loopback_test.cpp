// Resource migration over real sockets: two emulators behind transports::http_server on 127.0.0.1:0 (each
// served by its own background thread), reached through make_http_sides / client_resource_api /
// transports::braintrust_client exactly as `ferry migrate` and `ferry validate` do. Covers the HTTP adapter
// (auth header, JSON bodies, paging, error mapping) and the one-line validate errors for bad keys.
#include "pipelines/resources/http_api.hpp"

#include "pipelines/resources/entry.hpp"
#include "pipelines/resources/report.hpp"

#include "emulator/emulator.hpp"
#include "emulator/seed.hpp"
#include "test_support.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/object.hpp>
#include <doctest/doctest.h>

#include <future>
#include <sstream>
#include <string>
#include <thread>

namespace asio = boost::asio;
namespace json = boost::json;
using namespace ferry;
using namespace ferry::pipelines::resources;

namespace {

/// An emulator served on 127.0.0.1:0 by one background thread for the duration of a test.
struct served {
  asio::io_context ctx;
  asio::executor_work_guard<asio::io_context::executor_type> work{ctx.get_executor()};
  emulator::emulator emu;
  std::thread thread;

  served(std::string key, std::string org) : emu(ctx.get_executor(), config(std::move(key), std::move(org))) {
    emu.start();
    thread = std::thread([this] { ctx.run(); });
  }
  ~served() {
    asio::post(ctx, [this] { emu.stop(); });
    work.reset();
    thread.join();
  }
  static emulator::emulator_config config(std::string key, std::string org) {
    emulator::emulator_config c;
    c.api_keys.push_back({std::move(key), std::move(org), {}});
    return c;
  }
};

pipelines::migrate_config http_config(const served& src, const served& dst) {
  pipelines::migrate_config cfg;
  cfg.source.url = src.emu.base_url();
  cfg.source.api_key = "src-http-key";
  cfg.dest.url = dst.emu.base_url();
  cfg.dest.api_key = "dst-http-key";
  cfg.retry_attempts = 1;
  cfg.retry_delay = std::chrono::milliseconds(10);
  cfg.request_timeout = std::chrono::milliseconds(5000);
  cfg.max_concurrent_requests = 4;
  return cfg;
}

}  // namespace

TEST_CASE("http resources: a seeded org migrates over real sockets and validate passes") {
  served src("src-http-key", "source-org");
  served dst("dst-http-key", "dest-org");
  asio::io_context ctx;
  {
    // Seed in-process (the emulator's handler is thread-safe); only resources matter here.
    emulator::seed_options so;
    so.projects = 1;
    so.events_per_project = 5;
    so.experiments_per_project = 1;
    so.datasets_per_project = 1;
    so.events_per_experiment = 2;
    so.events_per_dataset = 2;
    so.attachment_ratio = 0;
    so.large_payload_ratio = 0;
    auto summary = test::run_coro(ctx, emulator::seed_org(emulator::inprocess_transport(src.emu, "src-http-key"), so),
                                  std::chrono::seconds(20));
    REQUIRE(summary.projects == 1);
  }
  auto cfg = http_config(src, dst);
  auto sides = make_http_sides(cfg, ctx.get_executor());
  REQUIRE(sides.source);
  CHECK(sides.dest->describe() == dst.emu.base_url());

  migration_report report;
  int rc = test::run_coro(ctx, migrate_resources(cfg, *sides.source, *sides.dest, nullptr, report),
                          std::chrono::seconds(20));
  std::string all;
  for (const auto& e : report.entries()) all += e.type + " '" + e.name + "' " + std::string(to_string(e.status)) + " " + e.reason + "\n";
  for (const auto& e : report.errors()) all += "error: " + e + "\n";
  INFO(all);
  CHECK(rc == 0);
  CHECK(report.count(object_status::failed) == 0);
  CHECK(report.count("project", object_status::created) == 1);
  CHECK(report.count("experiment", object_status::created) == 1);
  CHECK(report.count("prompt", object_status::created) >= 1);
  CHECK(report.count("acl", object_status::created) >= 1);

  // The destination, read back over HTTP, holds the project under its new id.
  auto projects = test::run_coro(ctx, resource_client(*sides.dest).list("/v1/project", {}));
  REQUIRE(projects.size() == 1);
  bool mapped = false;
  for (const auto& e : report.entries())
    if (e.type == "project") mapped = e.dest_id == std::string(projects[0].at("id").as_string());
  CHECK(mapped);

  std::ostringstream out;
  CHECK(run_validate(cfg, out) == 0);
  INFO(out.str());
  CHECK(out.str().find("ok destination auth") != std::string::npos);
  CHECK(out.str().find("ok source connectivity") != std::string::npos);
  CHECK(out.str().find("FAIL") == std::string::npos);
  CHECK(out.str().find("dst-http-key") == std::string::npos);

  // A destination retention automation shorter than the age of the source's oldest log rows (the seed
  // writes rows dated 2024-02) is a hazard: validate warns, naming the project, without failing.
  auto project_name = std::string(projects[0].at("name").as_string());
  json::object automation{{"project_id", projects[0].at("id")},
                          {"name", "keep-30"},
                          {"config", json::object{{"event_type", "retention"},
                                                  {"object_type", "project_logs"},
                                                  {"retention_days", 30}}}};
  test::run_coro(ctx, resource_client(*sides.dest).post("/v1/project_automation", automation));
  std::ostringstream warned;
  CHECK(run_validate(cfg, warned) == 0);
  INFO(warned.str());
  std::string line;
  std::istringstream lines(warned.str());
  for (std::string l; std::getline(lines, l);)
    if (l.rfind("WARN destination retention:", 0) == 0) line = l;
  CHECK(line.find("project '" + project_name + "'") != std::string::npos);
  CHECK(line.find("'keep-30'") != std::string::npos);
  CHECK(line.find("project_logs for 30 day(s) but the source has project_logs") != std::string::npos);
}

TEST_CASE("http validate: a wrong or missing key fails with one line naming the side and the variable") {
  served src("src-http-key", "source-org");
  served dst("dst-http-key", "dest-org");
  auto cfg = http_config(src, dst);

  SUBCASE("wrong destination key") {
    cfg.dest.api_key = "not-the-key-123";
    std::ostringstream out;
    CHECK(run_validate(cfg, out) == 1);
    INFO(out.str());
    std::string fail_line;
    std::istringstream lines(out.str());
    for (std::string l; std::getline(lines, l);)
      if (l.rfind("FAIL", 0) == 0) fail_line = fail_line.empty() ? l : fail_line;
    CHECK(fail_line.find("FAIL destination auth:") == 0);
    CHECK(fail_line.find("401") != std::string::npos);
    CHECK(fail_line.find("BT_DEST_API_KEY") != std::string::npos);
    CHECK(out.str().find("not-the-key-123") == std::string::npos);
    CHECK(out.str().find("ok source auth") != std::string::npos);
  }
  SUBCASE("missing source key") {
    cfg.source.api_key.clear();
    std::ostringstream out;
    CHECK(run_validate(cfg, out) == 1);
    CHECK(out.str() == "FAIL config: source: no API key: set BT_SOURCE_API_KEY\n");
  }
  SUBCASE("nothing listens at the source URL") {
    served gone("x", "gone-org");
    cfg.source.url = gone.emu.base_url();
    // Stop its server (on the server thread) and wait until that happened: the port is then closed.
    std::promise<void> stopped;
    asio::post(gone.ctx, [&] {
      gone.emu.stop();
      stopped.set_value();
    });
    stopped.get_future().wait();
    std::ostringstream out;
    CHECK(run_validate(cfg, out) == 1);
    INFO(out.str());
    CHECK(out.str().find("FAIL source connectivity:") == 0);
    CHECK(out.str().find("BT_SOURCE_URL") != std::string::npos);
  }
}
