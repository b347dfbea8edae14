#include "emulator/seed.hpp"

#include "emulator/emulator.hpp"
#include "test_support.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <map>
#include <set>
#include <vector>

namespace json = boost::json;
namespace http = boost::beast::http;
using namespace ferry::emulator;

namespace {

seed_options small_options(std::uint64_t seed) {
  seed_options o;
  o.projects = 2;
  o.events_per_project = 60;
  o.experiments_per_project = 3;
  o.datasets_per_project = 2;
  o.events_per_experiment = 15;
  o.events_per_dataset = 12;
  o.seed = seed;
  o.attachment_ratio = 0.1;
  o.large_payload_ratio = 0.05;
  o.batch_rows = 25;
  return o;
}

struct seeded {
  boost::asio::io_context ctx;
  emulator emu;
  seed_summary summary;

  explicit seeded(std::uint64_t seed, std::uint64_t id_seed = 77, std::vector<fault_spec> faults = {},
                  unsigned batch_rows = small_options(0).batch_rows)
      : emu(ctx.get_executor(), config(id_seed, std::move(faults))) {
    auto o = small_options(seed);
    o.batch_rows = batch_rows;
    summary = ferry::test::run_coro(ctx, seed_org(inprocess_transport(emu, "seed-key"), o), std::chrono::seconds(60));
  }
  static emulator_config config(std::uint64_t id_seed, std::vector<fault_spec> faults = {}) {
    emulator_config c;
    c.api_keys = {{"seed-key", "seed-org", ""}};
    c.id_seed = id_seed;
    c.faults = std::move(faults);
    return c;
  }
  /// Row ids of every object's events, per object (BTQL), as one sorted text per object.
  std::map<std::string, std::set<std::string>> row_ids() {
    std::map<std::string, std::set<std::string>> out;
    // Each parsed document is a named local: a range-for over a member of a temporary would dangle.
    auto collect = [&](const std::string& from) {
      auto& ids = out[from];
      const auto page = json::parse(btql(from));
      for (const auto& row : page.at("data").as_array()) ids.insert(std::string(row.at("id").as_string()));
    };
    const auto projects = json::parse(get("/v1/project"));
    for (const auto& p : projects.at("objects").as_array())
      collect("project_logs('" + std::string(p.at("id").as_string()) + "')");
    for (auto type : {"experiment", "dataset"}) {
      const auto list = json::parse(get(std::string("/v1/") + type));
      for (const auto& o : list.at("objects").as_array())
        collect(std::string(type) + "('" + std::string(o.at("id").as_string()) + "')");
    }
    return out;
  }
  std::string get(const std::string& target) {
    ferry::transports::http_request req{http::verb::get, target, 11};
    req.set(http::field::authorization, "Bearer seed-key");
    auto r = ferry::test::run_coro(ctx, emu.handle(req));
    REQUIRE(r.response.result_int() == 200);
    return r.response.body();
  }
  std::string btql(const std::string& from) {
    ferry::transports::http_request req{http::verb::post, "/btql", 11};
    req.set(http::field::authorization, "Bearer seed-key");
    req.body() = json::serialize(json::object{
        {"query", "select: *\nfrom: " + from + " spans\nsort: _pagination_key asc\nlimit: 100000"}, {"fmt", "json"}});
    req.prepare_payload();
    auto r = ferry::test::run_coro(ctx, emu.handle(req));
    INFO(r.response.body().substr(0, 300));
    REQUIRE(r.response.result_int() == 200);
    return r.response.body();
  }
  /// Every REST listing and every object's events, as one text.
  std::string snapshot() {
    std::string out;
    for (auto type : {"project", "dataset", "experiment", "prompt", "function", "project_score", "project_tag",
                      "span_iframe", "project_automation", "role", "group", "ai_secret", "mcp_server"})
      out += get(std::string("/v1/") + type) + "\n";
    out += get("/v1/acl/list_org") + "\n";
    auto projects = json::parse(get("/v1/project")).at("objects").as_array();
    for (const auto& p : projects) {
      const std::string pid(p.at("id").as_string());
      out += get("/v1/view?object_type=project&object_id=" + pid) + "\n";
      out += get("/v1/env_var?object_type=project&object_id=" + pid) + "\n";
      out += btql("project_logs('" + pid + "')") + "\n";
    }
    for (auto type : {"experiment", "dataset"}) {
      const auto list = json::parse(get(std::string("/v1/") + type));
      for (const auto& o : list.at("objects").as_array())
        out += btql(std::string(type) + "('" + std::string(o.at("id").as_string()) + "')") + "\n";
    }
    return out;
  }
};

}  // namespace

TEST_CASE("seed: the same seed gives byte-identical organizations; another seed does not") {
  seeded a(5), b(5);
  const auto snap = a.snapshot();
  CHECK(snap == b.snapshot());
  CHECK(a.summary.line() == b.summary.line());
  seeded c(6);
  CHECK(c.snapshot() != snap);
}

TEST_CASE("seed: a 413 from /logs3 splits the batch until it fits; every row arrives") {
  // 1.5 MB: above the largest generated row (~1.4 MB), below most 200-row batches of ~1 KB rows.
  seeded plain(9, 77, {}, 200), limited(9, 77, {parse_fault_spec("method=POST,path=/logs3,kind=size,max_bytes=1500000")}, 200);
  CHECK(limited.emu.faults().stats().faults_by_kind["size"] > 0);  // the limit was hit and split around
  CHECK(limited.summary.log_rows == plain.summary.log_rows);
  CHECK(limited.summary.experiment_rows == plain.summary.experiment_rows);
  CHECK(limited.summary.dataset_rows == plain.summary.dataset_rows);
  const auto ids = limited.row_ids();
  CHECK(ids == plain.row_ids());
  std::size_t rows = 0;
  for (const auto& [from, set] : ids) rows += set.size();
  CHECK(rows > 100);
}

TEST_CASE("seed: a single row above the API's payload limit fails naming its size") {
  // 50 KB: every large (100 KB+) row is above it.
  boost::asio::io_context ctx;
  emulator emu(ctx.get_executor(),
               seeded::config(77, {parse_fault_spec("method=POST,path=/logs3,kind=size,max_bytes=50000")}));
  auto o = small_options(9);
  o.large_payload_ratio = 0.5;
  CHECK_THROWS_WITH(ferry::test::run_coro(ctx, seed_org(inprocess_transport(emu, "seed-key"), o), std::chrono::seconds(60)),
                    doctest::Contains("bytes is above the API's /logs3 payload limit"));
}

TEST_CASE("seed: the organization has the references a migration must remap") {
  seeded a(3);
  const auto& s = a.summary;
  CHECK(s.projects == 2);
  CHECK(s.experiments == 6);
  CHECK(s.datasets == 4);
  CHECK(s.functions == 12);  // prompts included: a prompt is a function
  CHECK(s.prompts == 6);
  CHECK(s.log_rows >= 120);
  CHECK(s.attachments > 0);
  CHECK(s.merges > 0);
  CHECK(s.line().find("ferry seed: org seed-org: 2 projects") == 0);

  auto functions = json::parse(a.get("/v1/function")).at("objects").as_array();
  std::set<std::string> function_ids;
  bool bundle = false;
  for (const auto& f : functions) {
    function_ids.insert(std::string(f.at("id").as_string()));
    const auto& fd = f.at("function_data").as_object();
    if (fd.at("type") == "code" && fd.at("data").at("type") == "bundle") bundle = true;
  }
  CHECK(bundle);
  const auto prompts = json::parse(a.get("/v1/prompt"));
  // The 4 prompts plus the 2 prompt-type functions (a prompt IS a function): all listed by both endpoints.
  CHECK(prompts.at("objects").as_array().size() == s.prompts);
  std::size_t with_tools = 0;
  for (const auto& p : prompts.at("objects").as_array()) {
    CHECK(function_ids.contains(std::string(p.at("id").as_string())));
    const auto& pd = p.at("prompt_data").as_object();
    if (!pd.contains("tool_functions")) continue;
    ++with_tools;
    CHECK(function_ids.contains(std::string(pd.at("tool_functions").at(0).at("id").as_string())));
  }
  CHECK(with_tools == 4);
  const auto scores = json::parse(a.get("/v1/project_score?score_type=online"));
  CHECK(scores.at("objects").as_array().size() == 2);
  for (const auto& sc : scores.at("objects").as_array())
    CHECK(function_ids.contains(
        std::string(sc.at("config").at("online").at("scorers").at(0).at("id").as_string())));

  auto experiments = json::parse(a.get("/v1/experiment")).at("objects").as_array();
  std::size_t with_base = 0;
  for (const auto& e : experiments) {
    if (e.as_object().contains("base_exp_id")) ++with_base;
    CHECK(function_ids.contains(std::string(e.at("parameters_id").as_string())));
    CHECK(e.at("dataset_id").is_string());
  }
  CHECK(with_base == 4);  // a chain of three per project

  auto acls = json::parse(a.get("/v1/acl/list_org")).as_array();
  CHECK(acls.size() == 2 + 4 + 6);

  // Project logs: traces with children pointing at their root, and one stored row per id.
  auto projects = json::parse(a.get("/v1/project")).at("objects").as_array();
  auto rows = json::parse(a.btql("project_logs('" + std::string(projects.at(0).at("id").as_string()) + "')"))
                  .at("data")
                  .as_array();
  CHECK(rows.size() <= 60);
  CHECK(rows.size() >= 50);  // a few deletes at most
  std::size_t children = 0, attachments = 0;
  for (const auto& r : rows) {
    if (r.as_object().contains("span_parents")) ++children;
    if (r.at("input").as_object().contains("attachment")) ++attachments;
  }
  CHECK(children > 0);
  CHECK(attachments > 0);
}
