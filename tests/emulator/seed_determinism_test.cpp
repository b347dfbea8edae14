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

namespace {

std::string project_of(const std::map<std::string, std::string>& owner, const json::value& id) {
  auto it = owner.find(std::string(id.as_string()));
  REQUIRE(it != owner.end());
  return it->second;
}

/// The situations issue 13 names: references across projects, between functions, ids inside view options
/// and filters and project settings, membership cycles, snapshots, MCP servers, environments.
void check_cross_references(seeded& a) {
  // A listing's objects, copied out of the parsed reply (a range-for over a temporary's member dangles).
  auto objects = [&](const std::string& target) { return json::array(json::parse(a.get(target)).at("objects").as_array()); };
  std::map<std::string, std::string> owner;  // object id -> project id
  for (const char* type : {"experiment", "dataset", "function"})
    for (const auto& o : objects(std::string("/v1/") + type))
      owner[std::string(o.at("id").as_string())] = std::string(o.at("project_id").as_string());

  std::size_t cross_base = 0, cross_dataset = 0;
  for (const auto& e : objects("/v1/experiment")) {
    const auto pid = std::string(e.at("project_id").as_string());
    if (e.as_object().contains("base_exp_id") && project_of(owner, e.at("base_exp_id")) != pid) ++cross_base;
    if (project_of(owner, e.at("dataset_id")) != pid) ++cross_dataset;
  }
  CHECK(cross_base == 1);
  CHECK(cross_dataset == 1);

  std::size_t cross_tools = 0, graphs = 0, facets = 0;
  for (const auto& f : objects("/v1/function")) {
    const auto pid = std::string(f.at("project_id").as_string());
    if (const auto* pd = f.as_object().if_contains("prompt_data"); pd && pd->as_object().contains("tool_functions"))
      if (project_of(owner, pd->at("tool_functions").at(0).at("id")) != pid) ++cross_tools;
    const auto& fd = f.at("function_data").as_object();
    if (fd.at("type") == "graph") {
      ++graphs;
      std::size_t calls = 0;
      for (const auto& n : fd.at("nodes").as_object())
        if (n.value().at("type") == "function") {
          CHECK(project_of(owner, n.value().at("function").at("function_id")) == pid);
          ++calls;
        }
      CHECK(calls == 2);
    }
    if (fd.at("type") == "facet") {
      ++facets;
      CHECK(project_of(owner, fd.at("preprocessor").at("id")) == pid);
    }
  }
  CHECK(cross_tools == 1);
  CHECK(graphs == 2);
  CHECK(facets == 2);

  for (const auto& p : objects("/v1/project")) {
    const auto pid = std::string(p.at("id").as_string());
    CHECK(p.at("settings").at("comparison_key") == "input");
    CHECK(project_of(owner, p.at("settings").at("baseline_experiment_id")) == pid);
    auto views = objects("/v1/view?object_type=project&object_id=" + pid);
    std::size_t with_ids = 0;
    for (const auto& v : views) {
      const auto* options = v.as_object().if_contains("options");
      if (!options || !options->as_object().contains("projectId")) continue;
      ++with_ids;
      CHECK(options->at("projectId") == json::value(pid));
      const std::string filter(v.at("view_data").at("search").at("filter").at(0).as_string());
      CHECK(filter.find(std::string(p.at("settings").at("baseline_experiment_id").as_string())) != std::string::npos);
    }
    CHECK(with_ids == 1);
  }
  CHECK(objects("/v1/mcp_server").size() == 2);  // one per project
  CHECK(objects("/v1/dataset_snapshot").size() == 2);
  CHECK(objects("/environment").size() == 2);

  // Membership cycles: role a <-> role b, group a <-> group b.
  for (const auto& [type, field] : {std::pair{"role", "member_roles"}, std::pair{"group", "member_groups"}}) {
    std::map<std::string, std::string> name_of, member;
    for (const auto& o : objects(std::string("/v1/") + type)) {
      name_of[std::string(o.at("id").as_string())] = std::string(o.at("name").as_string());
      const auto* m = o.as_object().if_contains(field);
      if (m && m->is_array() && !m->as_array().empty())
        member[std::string(o.at("name").as_string())] = std::string(m->as_array().at(0).as_string());
    }
    const std::string a_name = std::string("seed-cycle-") + type + "-a", b_name = std::string("seed-cycle-") + type + "-b";
    CHECK(name_of[member[a_name]] == b_name);
    CHECK(name_of[member[b_name]] == a_name);
  }
}

}  // namespace

TEST_CASE("seed: the organization has the references a migration must remap") {
  seeded a(3);
  const auto& s = a.summary;
  CHECK(s.projects == 2);
  CHECK(s.experiments == 6);
  CHECK(s.datasets == 4);
  CHECK(s.functions == 19);  // prompts included: a prompt is a function
  CHECK(s.prompts == 9);
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
  // The 5 prompts plus the 4 prompt-type functions (a prompt IS a function): all listed by both endpoints.
  CHECK(prompts.at("objects").as_array().size() == s.prompts);
  std::size_t with_tools = 0;
  for (const auto& p : prompts.at("objects").as_array()) {
    CHECK(function_ids.contains(std::string(p.at("id").as_string())));
    const auto& pd = p.at("prompt_data").as_object();
    if (!pd.contains("tool_functions")) continue;
    ++with_tools;
    CHECK(function_ids.contains(std::string(pd.at("tool_functions").at(0).at("id").as_string())));
  }
  CHECK(with_tools == 7);  // 2 prompts and the planner tool per project, and the cross-project prompt
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
  CHECK(with_base == 5);  // a chain of three per project, the second chain based on the first project's last

  check_cross_references(a);

  // Organization level: the two environments, and one view over the projects naming the first by id.
  CHECK(json::parse(a.get("/environment")).at("objects").as_array().size() == 2);
  const auto org_id = std::string(json::parse(a.get("/v1/organization")).at("objects").at(0).at("id").as_string());
  auto org_views = json::parse(a.get("/v1/view?object_type=organization&object_id=" + org_id)).at("objects").as_array();
  REQUIRE(org_views.size() == 1);
  std::string first_project;
  const auto named = json::parse(a.get("/v1/project?project_name=seed-project-0"));
  for (const auto& p : named.at("objects").as_array()) first_project = std::string(p.at("id").as_string());
  REQUIRE(!first_project.empty());
  CHECK(json::serialize(org_views.at(0).at("view_data")).find(first_project) != std::string::npos);

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
