// Loopback tests of the org run: two in-process emulators (source and destination orgs), driven through
// emulator::handle() (no sockets), a seeded source org with every resource type and every kind of
// cross-reference, then: full migration with every reference pointing at destination ids, a second run
// that writes nothing, a dry run that leaves the destination byte-for-byte unchanged, and the
// on_name_conflict policies.
#include "pipelines/resources/entry.hpp"

#include "pipelines/resources/id_map.hpp"
#include "pipelines/resources/org_migrator.hpp"
#include "pipelines/resources/specs.hpp"

#include "emulator/emulator.hpp"
#include "emulator/seed.hpp"
#include "stores/state_store.hpp"
#include "emulator_api_support.hpp"
#include "test_support.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using namespace ferry;
using namespace ferry::pipelines::resources;

namespace {

/// resource_api over an emulator's handler; counts writes (anything but GET) and keeps the targets.
class emulator_api final : public resource_api {
 public:
  emulator_api(emulator::emulator& emu, std::string key) : emu_(emu), key_(std::move(key)) {}
  asio::awaitable<api_reply> call(std::string method, std::string target, std::string body) override {
    if (method != "GET") {
      ++writes;
      write_targets.push_back(method + " " + target);
    }
    co_return co_await ferry::test::call_emulator(emu_, key_, method, target, std::move(body));
  }
  std::string describe() const override { return "emulator"; }

  std::atomic<int> writes{0};
  std::vector<std::string> write_targets;

 private:
  emulator::emulator& emu_;
  std::string key_;
};

using ferry::test::emu_config;
using ferry::test::obj;
using ferry::test::sid;
using ferry::test::statuses;
using ferry::test::str;

/// Everything the REST side of an emulator stores, byte for byte.
std::string dump(emulator::emulator& emu) {
  std::string out;
  for (const auto& cf : emulator::rest_store::column_families()) {
    emu.store().scan(cf, "", "", [&](std::string_view k, std::string_view v) {
      out.append(cf).append("|").append(k).append("=").append(v).append("\n");
      return true;
    });
  }
  return out;
}

struct seeded {
  std::map<std::string, std::string> ids;  // label -> source id
  std::string user_id;                     // the source key's user
};

/// A source org with every migrated type and every kind of reference between them. (A plain function:
/// GCC 12 rejects braced initialisers with string literals inside coroutines.)
seeded seed(asio::io_context& ctx, resource_client c) {
  seeded s;
  auto post = [&](std::string label, std::string path, json::object body) {
    auto o = test::run_coro(ctx, c.post(path, body));
    s.ids[label] = sid(o);
  };
  auto users = test::run_coro(ctx, c.list("/v1/user", {}));
  s.user_id = sid(users.at(0));
  post("secret", "/v1/ai_secret", obj(R"({"name":"OPENAI_KEY","type":"openai","secret":"sk-live-123"})"));
  post("role_parent", "/v1/role", obj(R"({"name":"base-role","member_permissions":[{"permission":"read"}]})"));
  // Children are created after their parents, so the newest-first listing returns them first.
  post("role_child", "/v1/role",
                json::object{{"name", "child-role"}, {"member_roles", json::array{json::value(s.ids["role_parent"])}}});
  post("group_parent", "/v1/group", obj(R"({"name":"parent-group"})"));
  post("group_child", "/v1/group",
                json::object{{"name", "child-group"},
                             {"member_groups", json::array{json::value(s.ids["group_parent"])}},
                             {"member_users", json::array{json::value(s.user_id)}}});
  auto orgs = test::run_coro(ctx, c.get("/v1/organization"));
  std::string org_id(orgs.as_object().at("objects").as_array().at(0).as_object().at("id").as_string());
  post("env_org", "/v1/env_var",
                json::object{{"object_type", "organization"}, {"object_id", org_id}, {"name", "ORG_TOKEN"}, {"value", "v"}});
  post("alpha", "/v1/project", obj(R"({"name":"alpha","description":"first"})"));
  post("beta", "/v1/project", obj(R"({"name":"beta"})"));
  std::string p = s.ids["alpha"];
  auto in_project = [&](std::string_view text) {
    auto o = obj(text);
    o["project_id"] = p;
    return o;
  };
  post("dataset", "/v1/dataset", in_project(R"({"name":"golden","description":"d"})"));
  post("tag", "/v1/project_tag", in_project(R"({"name":"urgent","color":"red"})"));
  post("iframe", "/v1/span_iframe", in_project(R"({"name":"viewer","url":"https://example.com/v"})"));
  post("mcp", "/v1/mcp_server", in_project(R"({"name":"tools","url":"https://mcp.example.com"})"));
  post("tool", "/v1/function", in_project(R"({"name":"calc","slug":"calc","function_type":"tool",
      "function_data":{"type":"code","data":{"type":"inline","runtime_context":{"runtime":"node","version":"20"},"code":"x"}}})"));
  post("bundle", "/v1/function", in_project(R"({"name":"bundled","slug":"bundled",
      "function_data":{"type":"code","data":{"type":"bundle","bundle_id":"b1"}}})"));
  {
    auto o = in_project(R"({"name":"helper","slug":"helper","function_data":{"type":"prompt"}})");
    o["origin"] = json::object{{"object_type", "dataset"}, {"object_id", s.ids["dataset"]}, {"id", "row1"}};
    post("fn_origin", "/v1/function", o);
  }
  {
    auto o = in_project(R"({"name":"Main prompt","slug":"main"})");
    o["prompt_data"] = json::object{
        {"tool_functions", json::array{json::object{{"type", "function"}, {"id", s.ids["tool"]}},
                                       json::object{{"type", "global"}, {"name", "Levenshtein"}}}},
        {"mcp", json::object{{"srv", json::object{{"type", "id"}, {"id", s.ids["mcp"]}}}}}};
    post("prompt", "/v1/prompt", o);
  }
  {
    auto o = in_project(R"({"name":"Derived prompt","slug":"derived"})");
    o["prompt_data"] = json::object{{"origin", json::object{{"prompt_id", s.ids["prompt"]}, {"project_id", p},
                                                            {"prompt_version", "1234"}}}};
    post("prompt2", "/v1/prompt", o);
  }
  {
    auto o = in_project(R"({"name":"quality","score_type":"online"})");
    o["config"] = json::object{
        {"online", json::object{{"sampling_rate", 1}, {"scorers", json::array{json::object{{"type", "function"},
                                                                                         {"id", s.ids["tool"]}}}}}}};
    post("score", "/v1/project_score", o);
  }
  {
    auto e1 = in_project(R"({"name":"exp-1","dataset_version":"1000192"})");
    e1["dataset_id"] = s.ids["dataset"];
    post("exp1", "/v1/experiment", e1);
    auto e2 = in_project(R"({"name":"exp-2"})");
    e2["base_exp_id"] = s.ids["exp1"];
    e2["parameters_id"] = s.ids["prompt"];
    post("exp2", "/v1/experiment", e2);
    auto e3 = in_project(R"({"name":"exp-3"})");
    e3["base_exp_id"] = s.ids["exp2"];
    post("exp3", "/v1/experiment", e3);
  }
  post("view_project", "/v1/view",
                json::object{{"object_type", "project"}, {"object_id", p}, {"view_type", "logs"}, {"name", "errors"}});
  post("view_exp", "/v1/view",
                json::object{{"object_type", "experiment"}, {"object_id", s.ids["exp1"]}, {"view_type", "experiment"},
                             {"name", "by score"}});
  post("view_ds", "/v1/view",
                json::object{{"object_type", "dataset"}, {"object_id", s.ids["dataset"]}, {"view_type", "dataset"},
                             {"name", "recent"}});
  post("auto_retention", "/v1/project_automation",
                in_project(R"({"name":"keep-90","config":{"event_type":"retention","object_type":"project_logs",
                               "retention_days":90}})"));
  {
    auto a = in_project(R"({"name":"export"})");
    a["config"] = json::object{{"event_type", "btql_export"},
                               {"export_definition", json::object{{"type", "btql_query"},
                                                                  {"btql_query", "from: experiment('" + s.ids["exp1"] + "')"}}},
                               {"export_path", "s3://b/p"}, {"format", "jsonl"}, {"interval_seconds", 3600},
                               {"credentials", json::object{{"type", "aws_iam"}, {"role_arn", "arn"}, {"external_id", "x"}}}};
    post("auto_export", "/v1/project_automation", a);
  }
  post("env_project", "/v1/env_var",
                json::object{{"object_type", "project"}, {"object_id", p}, {"name", "PROJECT_TOKEN"}, {"value", "v"}});
  post("env_fn", "/v1/env_var",
                json::object{{"object_type", "function"}, {"object_id", s.ids["tool"]}, {"name", "FN_TOKEN"}, {"value", "v"}});
  post("snapshot", "/v1/dataset_snapshot",
                json::object{{"dataset_id", s.ids["dataset"]}, {"name", "v1"}, {"xact_id", "1000192"}});
  post("acl_group_role", "/v1/acl",
                json::object{{"object_type", "project"}, {"object_id", p}, {"group_id", s.ids["group_child"]},
                             {"role_id", s.ids["role_parent"]}});
  post("acl_exp", "/v1/acl",
                json::object{{"object_type", "experiment"}, {"object_id", s.ids["exp1"]},
                             {"group_id", s.ids["group_parent"]}, {"permission", "read"}});
  post("acl_org", "/v1/acl",
                json::object{{"object_type", "organization"}, {"object_id", org_id}, {"group_id", s.ids["group_parent"]},
                             {"permission", "read"}});
  post("acl_user", "/v1/acl",
                json::object{{"object_type", "project"}, {"object_id", p}, {"user_id", s.user_id}, {"permission", "update"}});
  return s;
}

/// Every destination object (listed per type; views and env vars per parent), for reference checks.
asio::awaitable<std::vector<json::object>> dest_objects(resource_client c, const std::string& type) {
  if (type == "acl") co_return co_await c.list("/v1/acl/list_org", {});
  const auto& spec = spec_of(type);
  co_return co_await c.list(spec.path, {}, 1000, spec.cursors ? resource_client::paging::cursor : resource_client::paging::single);
}

struct fixture {
  asio::io_context ctx;
  emulator::emulator src{ctx.get_executor(), emu_config("src-key", "source-org")};
  emulator::emulator dst{ctx.get_executor(), emu_config("dst-key", "dest-org")};
  emulator_api src_api{src, "src-key"};
  emulator_api dst_api{dst, "dst-key"};
  pipelines::migrate_config cfg;
  seeded s;

  fixture() {
    cfg.acl_map_users = true;
    cfg.acl_auto_invite_users = true;
    cfg.group_map_users = true;
    cfg.group_auto_invite_users = true;
    cfg.max_concurrent_projects = 2;
    cfg.max_concurrent_resources = 3;
    s = seed(ctx, resource_client(src_api));
  }

  int migrate(migration_report& report, stores::state_store* state, pipelines::migrate_config c) {
    return test::run_coro(ctx, migrate_resources(c, src_api, dst_api, state, report), std::chrono::seconds(20));
  }
  int migrate(migration_report& report, stores::state_store* state) { return migrate(report, state, cfg); }

  std::optional<std::string> dest_id(const migration_report& r, const std::string& label) {
    for (const auto& e : r.entries())
      if (e.source_id == s.ids.at(label) && !e.dest_id.empty()) return e.dest_id;
    return std::nullopt;
  }
  json::object dest_object(const std::string& type, const std::string& id) {
    auto v = test::run_coro(ctx, resource_client(dst_api).get(spec_of(type).path + "/" + id));
    return v.as_object();
  }
};

}  // namespace

TEST_CASE("org migration: every type lands in the destination with references pointing at destination ids") {
  fixture f;
  auto state = stores::state_store::open_memory();
  migration_report report;
  int rc = f.migrate(report, &state);
  INFO(statuses(report));
  CHECK(rc == 0);
  CHECK(report.count(object_status::failed) == 0);

  // Every label except the expected skips maps to a destination object.
  const std::set<std::string> skipped_labels = {"bundle", "snapshot"};
  for (const auto& [label, id] : f.s.ids) {
    CAPTURE(label);
    if (skipped_labels.count(label)) {
      CHECK_FALSE(f.dest_id(report, label));
      continue;
    }
    CHECK(f.dest_id(report, label));
  }
  CHECK(report.count("function", object_status::skipped) == 1);
  CHECK(report.count("dataset_snapshot", object_status::skipped) == 1);

  auto d = [&](const std::string& label) { return *f.dest_id(report, label); };
  auto role_child = f.dest_object("role", d("role_child"));
  CHECK(json::serialize(role_child.at("member_roles")) == "[\"" + d("role_parent") + "\"]");
  auto group_child = f.dest_object("group", d("group_child"));
  CHECK(json::serialize(group_child.at("member_groups")) == "[\"" + d("group_parent") + "\"]");
  REQUIRE(group_child.at("member_users").as_array().size() == 1);
  auto prompt = f.dest_object("prompt", d("prompt"));
  CHECK(str(prompt.at("prompt_data").at_pointer("/tool_functions/0/id")) == d("tool"));
  CHECK(str(prompt.at("prompt_data").at_pointer("/mcp/srv/id")) == d("mcp"));
  auto prompt2 = f.dest_object("prompt", d("prompt2"));
  CHECK(str(prompt2.at("prompt_data").at_pointer("/origin/prompt_id")) == d("prompt"));
  CHECK(str(prompt2.at("prompt_data").at_pointer("/origin/project_id")) == d("alpha"));
  auto fn = f.dest_object("function", d("fn_origin"));
  CHECK(str(fn.at("origin").at_pointer("/object_id")) == d("dataset"));
  auto score = f.dest_object("project_score", d("score"));
  CHECK(str(score.at("config").at_pointer("/online/scorers/0/id")) == d("tool"));
  auto e1 = f.dest_object("experiment", d("exp1"));
  CHECK(str(e1.at("dataset_id")) == d("dataset"));
  CHECK((!e1.contains("dataset_version") || e1.at("dataset_version").is_null()));
  auto e2 = f.dest_object("experiment", d("exp2"));
  CHECK(str(e2.at("base_exp_id")) == d("exp1"));
  CHECK(str(e2.at("parameters_id")) == d("prompt"));
  CHECK(str(f.dest_object("experiment", d("exp3")).at("base_exp_id")) == d("exp2"));
  CHECK(str(f.dest_object("view", d("view_exp")).at("object_id")) == d("exp1"));
  CHECK(str(f.dest_object("view", d("view_ds")).at("object_id")) == d("dataset"));
  CHECK(str(f.dest_object("view", d("view_project")).at("object_id")) == d("alpha"));
  auto exp_query = f.dest_object("project_automation", d("auto_export")).at("config").at_pointer("/export_definition/btql_query");
  CHECK(str(exp_query) == "from: experiment('" + d("exp1") + "')");
  CHECK(f.dest_object("project_automation", d("auto_retention")).at("config").at_pointer("/retention_days") == 90);
  CHECK(str(f.dest_object("env_var", d("env_fn")).at("object_id")) == d("tool"));
  CHECK(str(f.dest_object("env_var", d("env_project")).at("object_id")) == d("alpha"));
  // ACLs: object, group, role and user ids all point at destination objects.
  {
    auto acls = test::run_coro(f.ctx, dest_objects(resource_client(f.dst_api), "acl"));
    auto acl = [&](const std::string& label) {
      for (const auto& a : acls)
        if (sid(a) == d(label)) return a;
      FAIL("acl " << label << " not in the destination");
      return json::object{};
    };
    auto gr = acl("acl_group_role");
    CHECK(str(gr.at("object_id")) == d("alpha"));
    CHECK(str(gr.at("group_id")) == d("group_child"));
    CHECK(str(gr.at("role_id")) == d("role_parent"));
    auto ex = acl("acl_exp");
    CHECK(str(ex.at("object_id")) == d("exp1"));
    CHECK(str(ex.at("group_id")) == d("group_parent"));
    auto org = acl("acl_org");
    CHECK(str(org.at("object_type")) == "organization");
    auto dest_orgs = test::run_coro(f.ctx, resource_client(f.dst_api).get("/v1/organization"));
    CHECK(str(org.at("object_id")) == str(dest_orgs.as_object().at("objects").as_array().at(0).as_object().at("id")));
    auto us = acl("acl_user");
    CHECK(str(us.at("user_id")) == str(group_child.at("member_users").as_array().at(0)));
    CHECK(str(us.at("user_id")) != f.s.user_id);
  }

  // No source id survives anywhere in the destination.
  std::string everything;
  for (const auto& spec : resource_specs()) {
    if (spec.list == list_mode::parent_object || spec.list == list_mode::path_assignment) continue;  // by id above
    for (const auto& o : test::run_coro(f.ctx, dest_objects(resource_client(f.dst_api), spec.type)))
      everything += json::serialize(o);
  }
  for (const auto& [label, id] : f.s.ids) {
    CAPTURE(label);
    CHECK(everything.find(id) == std::string::npos);
  }
  CHECK(everything.find(f.s.user_id) == std::string::npos);
  CHECK(everything.find("sk-live-123") == std::string::npos);

  // The ACL of the source user was migrated through an invite (mapped by email).
  CHECK(report.count("user", object_status::created) == 1);
  CHECK(report.count("acl", object_status::created) == 4);
  // The AI secret is listed as needing its value re-entered.
  CHECK(report.summary_text().find("ai_secret 'OPENAI_KEY'") != std::string::npos);

  SUBCASE("a second run creates nothing and reports adopted/unchanged") {
    int writes_before = f.dst_api.writes;
    auto dump_before = dump(f.dst);
    migration_report again;
    CHECK(f.migrate(again, &state) == 0);
    INFO(statuses(again));
    CHECK(f.dst_api.writes == writes_before);
    CHECK(dump(f.dst) == dump_before);
    CHECK(again.count(object_status::created) == 0);
    CHECK(again.count(object_status::failed) == 0);
    CHECK(again.count(object_status::unchanged) + again.count(object_status::adopted) ==
          report.count(object_status::created) - 1 /* the invited user is simply mapped now */);
  }
  SUBCASE("a second run without the state (new state dir) adopts by name and still creates nothing") {
    int writes_before = f.dst_api.writes;
    migration_report again;
    CHECK(f.migrate(again, nullptr) == 0);
    INFO(statuses(again));
    CHECK(f.dst_api.writes == writes_before);
    CHECK(again.count(object_status::created) == 0);
  }
}

TEST_CASE("org migration: dry run writes nothing and plans every object") {
  fixture f;
  auto before = dump(f.dst);
  auto state = stores::state_store::open_memory();
  auto cfg = f.cfg;
  cfg.dry_run = true;
  migration_report plan;
  int rc = f.migrate(plan, &state, cfg);
  INFO(statuses(plan));
  CHECK(rc == 0);
  CHECK(f.dst_api.writes == 0);
  CHECK(dump(f.dst) == before);
  int persisted = 0;
  state_id_map(state).for_each([&](auto, auto, auto) { ++persisted; });
  CHECK(persisted == 0);
  CHECK(plan.count("experiment", object_status::would_create) == 3);
  CHECK(plan.count("view", object_status::would_create) == 3);  // dependents resolve through placeholders
  CHECK(plan.count("acl", object_status::would_create) == 4);
  CHECK(plan.count("function", object_status::skipped) == 1);
  CHECK(plan.summary_text().find("dry run") != std::string::npos);
}

TEST_CASE("org migration: on_name_conflict abort fails the clashing object, update patches it") {
  fixture f;
  // A destination project and dataset with the source names, created by someone else.
  auto pre = test::run_coro(f.ctx, [&]() -> asio::awaitable<std::string> {
    resource_client c(f.dst_api);
    auto p = co_await c.post("/v1/project", obj(R"({"name":"alpha"})"));
    auto ds = obj(R"({"name":"golden","description":"someone else's"})");
    ds["project_id"] = sid(p);
    auto d = co_await c.post("/v1/dataset", ds);
    co_return sid(d);
  }());
  SUBCASE("abort") {
    auto cfg = f.cfg;
    cfg.on_name_conflict = pipelines::name_conflict_policy::abort;
    cfg.resources = {"datasets"};
    migration_report r;
    CHECK(f.migrate(r, nullptr, cfg) == 1);
    INFO(statuses(r));
    CHECK(r.count(object_status::failed) >= 1);
    bool named = false;
    for (const auto& e : r.entries())
      named = named || (e.status == object_status::failed && e.reason.find("on_name_conflict=abort") != std::string::npos);
    CHECK(named);
    CHECK(f.dest_object("dataset", pre).at("description") == "someone else's");
  }
  SUBCASE("update") {
    auto cfg = f.cfg;
    cfg.on_name_conflict = pipelines::name_conflict_policy::update;
    cfg.resources = {"datasets"};
    migration_report r;
    CHECK(f.migrate(r, nullptr, cfg) == 0);
    INFO(statuses(r));
    CHECK(r.count("dataset", object_status::updated) == 1);
    CHECK(f.dest_object("dataset", pre).at("description") == "d");
  }
  SUBCASE("adopt (default) records the mapping and reports adopted") {
    auto cfg = f.cfg;
    cfg.resources = {"datasets"};
    migration_report r;
    CHECK(f.migrate(r, nullptr, cfg) == 0);
    CHECK(r.count("dataset", object_status::adopted) == 1);
    CHECK(f.dest_object("dataset", pre).at("description") == "someone else's");
  }
}

TEST_CASE("org migration: on_name_conflict update brings roles to the source's members with add_/remove_ deltas") {
  fixture f;
  // The destination already has both roles, with different permissions and a stray member role.
  auto stray = test::run_coro(f.ctx, [&]() -> asio::awaitable<std::string> {
    resource_client c(f.dst_api);
    co_await c.post("/v1/role", obj(R"({"name":"base-role"})"));
    auto st = co_await c.post("/v1/role", obj(R"({"name":"stray-role"})"));
    auto child = obj(R"({"name":"child-role"})");
    child["member_roles"] = json::array{json::value(sid(st))};
    co_await c.post("/v1/role", child);
    co_return sid(st);
  }());
  auto cfg = f.cfg;
  cfg.resources = {"roles"};
  SUBCASE("adopt leaves them as they are") {
    migration_report r;
    CHECK(f.migrate(r, nullptr, cfg) == 0);
    INFO(statuses(r));
    CHECK(r.count("role", object_status::adopted) == 2);
    for (const auto& e : r.entries())
      if (e.name == "child-role")
        CHECK(json::serialize(f.dest_object("role", e.dest_id).at("member_roles")) == "[\"" + stray + "\"]");
  }
  SUBCASE("update patches permissions and member roles") {
    cfg.on_name_conflict = pipelines::name_conflict_policy::update;
    migration_report r;
    CHECK(f.migrate(r, nullptr, cfg) == 0);
    INFO(statuses(r));
    CHECK(r.count("role", object_status::updated) == 2);
    std::string base_dest, child_dest;
    for (const auto& e : r.entries()) {
      if (e.name == "base-role") base_dest = e.dest_id;
      if (e.name == "child-role") child_dest = e.dest_id;
    }
    REQUIRE(!base_dest.empty());
    REQUIRE(!child_dest.empty());
    CHECK(json::serialize(f.dest_object("role", child_dest).at("member_roles")) == "[\"" + base_dest + "\"]");
    auto perms = f.dest_object("role", base_dest).at("member_permissions");
    CHECK(json::serialize(perms).find("\"read\"") != std::string::npos);
    // Updated once, a second update run finds nothing to change.
    migration_report again;
    int writes = f.dst_api.writes;
    CHECK(f.migrate(again, nullptr, cfg) == 0);
    CHECK(again.count("role", object_status::unchanged) == 2);
    CHECK(f.dst_api.writes == writes);
  }
}

TEST_CASE("org migration: created_before selects experiments and datasets by creation time, projects filter") {
  fixture f;
  auto cfg = f.cfg;
  cfg.created_before = "2000-01-01T00:00:00Z";
  cfg.projects = {"alpha"};
  cfg.resources = {"datasets", "experiments"};
  migration_report r;
  CHECK(f.migrate(r, nullptr, cfg) == 0);
  INFO(statuses(r));
  CHECK(r.count("dataset", object_status::created) == 0);
  CHECK(r.count("experiment", object_status::created) == 0);
  CHECK(r.count("project", object_status::created) == 1);  // alpha only, beta filtered out

  migration_report bad;
  auto cfg2 = f.cfg;
  cfg2.projects = {"missing"};
  CHECK(f.migrate(bad, nullptr, cfg2) == 1);
  CHECK(bad.errors().size() == 1);
}

TEST_CASE("validate: probes both sides and names retention hazards") {
  fixture f;
  // A destination project "alpha" keeps logs for 0 days; the source has logs? It has experiments older than 0 days.
  test::run_coro(f.ctx, [&]() -> asio::awaitable<void> {
    resource_client c(f.dst_api);
    auto p = co_await c.post("/v1/project", obj(R"({"name":"alpha"})"));
    auto a = obj(R"({"name":"short","config":{"event_type":"retention","object_type":"experiment","retention_days":0}})");
    a["project_id"] = sid(p);
    co_await c.post("/v1/project_automation", a);
  }());
  auto checks = test::run_coro(f.ctx, validate(f.cfg, f.src_api, f.dst_api));
  bool auth_ok = false, retention_warned = false, failed = false;
  for (const auto& c : checks) {
    if (c.check == "auth" && c.level == check_level::ok) auth_ok = true;
    if (c.check == "retention" && c.level == check_level::warn && c.message.find("'alpha'") != std::string::npos)
      retention_warned = true;
    if (c.level == check_level::fail) failed = true;
  }
  CHECK(auth_ok);
  CHECK(retention_warned);
  CHECK_FALSE(failed);

  emulator_api wrong_key(f.dst, "bad-key");
  auto bad = test::run_coro(f.ctx, validate(f.cfg, f.src_api, wrong_key));
  bool auth_failed = false;
  for (const auto& c : bad)
    if (c.side == "destination" && c.check == "auth" && c.level == check_level::fail &&
        c.message.find("BT_DEST_API_KEY") != std::string::npos)
      auth_failed = true;
  CHECK(auth_failed);
}

TEST_CASE("org migration: a full seeded org migrates, a second run writes nothing, a dry run then plans nothing") {
  asio::io_context ctx;
  emulator::emulator src{ctx.get_executor(), emu_config("src-key", "source-org")};
  emulator::emulator dst{ctx.get_executor(), emu_config("dst-key", "dest-org")};
  emulator::seed_options so;
  so.projects = 2;
  so.events_per_project = 20;
  so.experiments_per_project = 2;
  so.datasets_per_project = 1;
  so.events_per_experiment = 5;
  so.events_per_dataset = 5;
  so.attachment_ratio = 0;
  so.large_payload_ratio = 0;
  auto seeded = test::run_coro(ctx, emulator::seed_org(emulator::inprocess_transport(src, "src-key"), so),
                               std::chrono::seconds(30));
  REQUIRE(seeded.projects == 2);
  emulator_api src_api{src, "src-key"};
  emulator_api dst_api{dst, "dst-key"};
  pipelines::migrate_config cfg;
  cfg.acl_map_users = cfg.acl_auto_invite_users = cfg.group_map_users = cfg.group_auto_invite_users = true;
  auto state = stores::state_store::open_memory();
  auto run = [&](migration_report& r, pipelines::migrate_config c) {
    return test::run_coro(ctx, migrate_resources(c, src_api, dst_api, &state, r), std::chrono::seconds(30));
  };

  migration_report first;
  CHECK(run(first, cfg) == 0);
  INFO(statuses(first));
  CHECK(first.count(object_status::failed) == 0);
  CHECK(first.errors().empty());
  // Every type the generator writes is created in the destination.
  for (std::string t : {"ai_secret", "role", "group", "project", "dataset", "project_tag", "span_iframe", "function",
                        "prompt", "project_score", "experiment", "view", "project_automation", "env_var", "acl",
                        "environment"}) {
    CAPTURE(t);
    CHECK(first.count(t, object_status::created) >= 1);
  }
  CHECK(first.count("environment", object_status::created) == 2);
  // The organization-level view: on the destination org, its filter naming the destination project.
  bool org_view = false;
  for (const auto& e : first.entries())
    if (e.type == "view" && e.scope == "organization" && e.status == object_status::created) {
      org_view = true;
      auto v = test::run_coro(ctx, resource_client(dst_api).get("/v1/view/" + e.dest_id)).as_object();
      CHECK(v.at("object_type") == "organization");
      CHECK(json::serialize(v.at("view_data")).find("id = '") != std::string::npos);
    }
  CHECK(org_view);
  CHECK(first.count("project", object_status::created) == 2);
  CHECK(first.count("function", object_status::skipped) == 2);  // one code bundle per project
  // No id of the source org survives in the destination: every reference was remapped (or dropped).
  auto after_first = dump(dst);
  std::size_t mapped = 0;
  for (const auto& e : first.entries()) {
    if (e.dest_id.empty() || e.source_id.empty()) continue;
    ++mapped;
    CAPTURE(e.type);
    CAPTURE(e.name);
    CHECK(after_first.find(e.source_id) == std::string::npos);
  }
  CHECK(mapped >= 30);

  migration_report second;
  int writes_before = dst_api.writes;
  CHECK(run(second, cfg) == 0);
  INFO(statuses(second));
  CHECK(dst_api.writes == writes_before);
  CHECK(dump(dst) == after_first);
  CHECK(second.count(object_status::created) == 0);
  CHECK(second.count(object_status::updated) == 0);
  CHECK(second.count(object_status::failed) == 0);
  auto settled = [](const migration_report& r, std::initializer_list<object_status> sts) {
    std::size_t n = 0;
    for (const auto& e : r.entries())
      if (e.type != "user" && std::find(sts.begin(), sts.end(), e.status) != sts.end()) ++n;
    return n;
  };
  CHECK(settled(second, {object_status::adopted, object_status::unchanged}) ==
        settled(first, {object_status::created, object_status::adopted, object_status::unchanged}));
  // What this run itself created reads back equal, so it is "unchanged", not merely adopted.
  CHECK(second.count(object_status::unchanged) == settled(first, {object_status::created}));

  auto plan_cfg = cfg;
  plan_cfg.dry_run = true;
  migration_report plan;
  CHECK(run(plan, plan_cfg) == 0);
  CHECK(dst_api.writes == writes_before);
  CHECK(dump(dst) == after_first);
  CHECK(plan.count(object_status::would_create) == 0);
  CHECK(plan.count(object_status::would_update) == 0);
}
