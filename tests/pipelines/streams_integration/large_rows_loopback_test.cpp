// Issue 14 item 5, end to end over loopback (two emulators, run_migrate / run_verify as the CLI calls
// them): large rows as the SDKs carry them.
// - a row between the destination's request cap and the per-row limit arrives whole, through
//   /logs3/overflow (before: reshaped into attachments);
// - a row above the per-row limit has its largest field spilled to an attachment, and `ferry verify`
//   compares the logical row (before: reported as mismatched, exit 1); a wrong attachment is a difference;
// - a row the destination refuses even alone is one line with its id and size, the stream goes on, exit 1.
#include "pipelines/migrate.hpp"
#include "pipelines/streams/entry.hpp"

#include "emulator/emulator.hpp"
#include "loopback_support.hpp"
#include "test_support.hpp"

#include <boost/beast/http/verb.hpp>
#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <sstream>

namespace asio = boost::asio;
namespace json = boost::json;
namespace http = boost::beast::http;
using namespace ferry;
using ferry::test::call;
using ferry::test::run_out;
using ferry::test::str;

namespace {

emulator::emulator_config emu_config(const char* key, const char* org) {
  emulator::emulator_config c;
  c.api_keys = {{key, org, ""}};
  return c;
}

/// The source (its cap high enough to be seeded with a 19 MB row) behind a counting server, and a
/// destination with a small request cap.
struct large_emulators : ferry::test::emulator_pair {
  std::atomic<int> dst_overflows{0};
  static emulator::emulator_config src_config() {
    auto c = emu_config("src-key", "src-org");
    c.logs3_payload_max_bytes = 64u << 20;
    return c;
  }
  static emulator::emulator_config dst_config(std::uint64_t max_span) {
    auto c = emu_config("dst-key", "dst-org");
    c.logs3_payload_max_bytes = 64u << 10;
    c.max_span_bytes = max_span;
    return c;
  }
  explicit large_emulators(std::uint64_t dst_max_span = 20u << 20)
      : emulator_pair(src_config(), dst_config(dst_max_span)) {
    // Ferry sees the destination through this server (so the overflow uploads can be counted).
    serve([this](transports::http_request& req) -> asio::awaitable<transports::http_reply> {
      if (req.target() == "/logs3/overflow") ++dst_overflows;
      co_return co_await dst.handle(req);
    });
  }
  ~large_emulators() { stop(); }
};

json::object post(emulator::emulator& emu, const std::string& key, const std::string& target, const json::object& body) {
  return call(emu, key, http::verb::post, target, json::serialize(body)).as_object();
}

pipelines::migrate_config config(large_emulators& e, const ferry::test::temp_dir& dir) {
  pipelines::migrate_config c;
  c.source = {e.src.base_url(), "src-key"};
  c.dest = {e.server_url(), "dst-key"};
  c.state_dir = (dir.path() / "state").string();
  c.retry_attempts = 2;
  c.retry_delay = std::chrono::milliseconds(2);
  c.request_timeout = std::chrono::milliseconds(20000);
  c.logs_fetch_limit = 10;
  c.insert_batch_rows = 10;
  c.max_concurrent_streams = 1;
  return c;
}

/// One source project with small rows around `big` (rows written in one request each).
std::string seed_project(large_emulators& e, const std::vector<json::object>& big) {
  const auto pid = str(post(e.src, "src-key", "/v1/project", {{"name", "large"}}), "id");
  auto write = [&](json::object row) {
    row["project_id"] = pid;
    row["log_id"] = "g";
    post(e.src, "src-key", "/logs3", {{"rows", json::array{std::move(row)}}, {"api_version", 2}});
  };
  for (int i = 0; i < 3; ++i) write({{"id", "small-" + std::to_string(i)}, {"input", "s"}});
  for (const auto& b : big) write(b);
  for (int i = 3; i < 6; ++i) write({{"id", "small-" + std::to_string(i)}, {"input", "s"}});
  return pid;
}

/// The destination's copy of one row (BTQL over the destination project named "large").
json::object dest_row(large_emulators& e, const std::string& id) {
  auto projects = call(e.dst, "dst-key", http::verb::get, "/v1/project?project_name=large").as_object().at("objects").as_array();
  REQUIRE(projects.size() == 1);
  const auto dpid = str(projects[0].as_object(), "id");
  auto page = post(e.dst, "dst-key", "/btql",
                   {{"query", "select: *\nfrom: project_logs('" + dpid + "')\nfilter: id = '" + id + "'\nlimit: 10"}, {"fmt", "json"}});
  auto data = page.at("data").as_array();
  REQUIRE_MESSAGE(data.size() == 1, "row " << id << " in the destination: " << data.size());
  return data[0].as_object();
}

}  // namespace

TEST_CASE("large rows loopback: a row above the destination's request cap arrives whole through /logs3/overflow; verify equal") {
  large_emulators e;
  seed_project(e, {json::object{{"id", "big"}, {"input", std::string(300'000, 'b')}, {"output", json::object{{"k", "v"}}}}});
  ferry::test::temp_dir dir("ferry-large");
  auto cfg = config(e, dir);
  auto m = ferry::test::run_command(pipelines::run_migrate, cfg);
  INFO(m.out << m.err);
  REQUIRE(m.rc == 0);
  auto row = dest_row(e, "big");
  REQUIRE(row.at("input").is_string());  // before: an attachment reference
  CHECK(row.at("input").as_string().size() == 300'000);
  CHECK(e.dst_overflows.load() >= 1);
  auto v = ferry::test::run_command(pipelines::run_verify, cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 0);
}

TEST_CASE("large rows loopback: a row above the per-row limit is spilled; verify compares the logical row") {
  large_emulators e;
  const std::string huge(19'000'000, 'h');  // above the 18 MiB per-row limit, under the 20 MiB span limit
  seed_project(e, {json::object{{"id", "huge"}, {"input", huge}, {"output", "small"}}});
  ferry::test::temp_dir dir("ferry-large");
  auto cfg = config(e, dir);
  auto m = ferry::test::run_command(pipelines::run_migrate, cfg);
  INFO(m.out << m.err);
  REQUIRE(m.rc == 0);
  auto row = dest_row(e, "huge");
  REQUIRE(row.at("input").is_object());
  CHECK(str(row.at("input").as_object(), "filename") == "input.json");
  CHECK(str(row, "output") == "small");
  // Before: the spilled row was reported as mismatched and verify exited 1.
  auto v = ferry::test::run_command(pipelines::run_verify, cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 0);

  SUBCASE("an attachment with other content is a difference") {
    const auto org = e.dst.orgs()[0].org_id;
    auto up = post(e.dst, "dst-key", "/attachment",
                   {{"key", "other"}, {"filename", "input.json"}, {"content_type", "application/json"}, {"org_id", org}});
    {
      transports::http_request req{http::verb::put, std::string(str(up, "signedUrl")).substr(e.dst.base_url().size()), 11};
      req.body() = "\"not the input\"";
      req.prepare_payload();
      asio::io_context local;
      REQUIRE(ferry::test::run_coro(local, e.dst.handle(req), std::chrono::seconds(10)).response.result_int() == 200);
    }
    post(e.dst, "dst-key", "/attachment/status", {{"key", "other"}, {"org_id", org}, {"status", {{"upload_status", "done"}}}});
    auto changed = row;
    changed["input"].as_object()["key"] = "other";
    json::object w;
    for (const char* k : {"id", "project_id", "log_id", "input", "output", "created"})
      if (changed.contains(k)) w[k] = changed.at(k);
    post(e.dst, "dst-key", "/logs3", {{"rows", json::array{w}}, {"api_version", 2}});
    auto v2 = ferry::test::run_command(pipelines::run_verify, cfg);
    INFO(v2.out << v2.err);
    CHECK(v2.rc == 1);
    CHECK(v2.out.find("mismatched=1") != std::string::npos);
  }
}

TEST_CASE("large rows loopback: a row the destination refuses even alone is one line with its id and size; the stream goes on; exit 1") {
  large_emulators e(/*dst_max_span=*/100'000);
  seed_project(e, {json::object{{"id", "refused"}, {"context", json::object{{"blob", std::string(150'000, 'r')}}}}});
  ferry::test::temp_dir dir("ferry-large");
  auto cfg = config(e, dir);
  auto m = ferry::test::run_command(pipelines::run_migrate, cfg);
  INFO(m.out << m.err);
  CHECK(m.rc == 1);  // before: the stream stopped at the row
  CHECK(m.err.find("row id=refused") != std::string::npos);
  CHECK(m.err.find("bytes") != std::string::npos);
  for (int i = 0; i < 6; ++i) CHECK(str(dest_row(e, "small-" + std::to_string(i)), "input") == "s");
  // A later run still fails while the destination lacks the row (the state counts it).
  auto again = ferry::test::run_command(pipelines::run_migrate, cfg);
  INFO(again.out << again.err);
  CHECK(again.rc == 1);
  CHECK(again.err.find("1 row(s) could not be written in an earlier run") != std::string::npos);
  std::ostringstream st_out, st_err;
  REQUIRE(pipelines::streams::run_status(cfg.state_dir, false, st_out, st_err) == 0);
  CHECK(st_out.str().find(" unwritable=1") != std::string::npos);
  auto v = ferry::test::run_command(pipelines::run_verify, cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 1);
  CHECK(v.out.find("missing=1") != std::string::npos);
}
