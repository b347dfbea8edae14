#include "pipelines/resources/specs.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>

namespace json = boost::json;
using namespace ferry::pipelines::resources;

namespace {

// Readable fake ids: the maps are keyed by (type, source id).
struct fake_maps {
  std::map<std::pair<std::string, std::string>, std::string> m;
  void put(std::string t, std::string s, std::string d) { m[{std::move(t), std::move(s)}] = std::move(d); }
  rewrite_context ctx(bool users = false) {
    rewrite_context c;
    c.ids.lookup = [this](std::string_view t, std::string_view s) -> std::optional<std::string> {
      auto it = m.find({std::string(t), std::string(s)});
      if (it == m.end()) return std::nullopt;
      return it->second;
    };
    c.ids.lookup_any = [this](std::string_view s) -> std::optional<std::string> {
      for (const auto& [k, v] : m)
        if (k.second == s) return v;
      return std::nullopt;
    };
    c.source_project_id = "sp";
    c.dest_project_id = "dp";
    c.dest_org_id = "dorg";
    c.map_users = users;
    return c;
  }
};

json::object obj(std::string_view text) { return json::parse(text).as_object(); }

bool dropped(const rewrite_result& r, std::string_view field) {
  return std::any_of(r.dropped.begin(), r.dropped.end(), [&](const dropped_field& d) { return d.field == field; });
}

const char* k_uuid_a = "11111111-1111-4111-8111-111111111111";
const char* k_uuid_b = "22222222-2222-4222-8222-222222222222";

}  // namespace

TEST_CASE("specs: table covers every migrated type with OpenAPI allow-lists bundled at build time") {
  for (std::string t : {"ai_secret", "role", "group", "project", "env_var", "dataset", "project_tag", "span_iframe",
                        "mcp_server", "function", "prompt", "project_score", "experiment", "dataset_snapshot", "view",
                        "project_automation", "acl"}) {
    CAPTURE(t);
    const auto& s = spec_of(t);
    CHECK_FALSE(s.create_fields.empty());
    CHECK(s.path.rfind("/v1/", 0) == 0);
  }
  CHECK(spec_of("experiment").create_fields.size() == 14);
  CHECK(spec_of("function").required == std::vector<std::string>{"project_id", "name", "slug", "function_data"});
  CHECK(spec_of("role").update == update_style::member_delta);
  CHECK(spec_of("prompt").unique == std::vector<std::string>{"slug"});
  CHECK(spec_of("acl").unique.empty());
  CHECK_THROWS_AS(spec_of("nope"), std::out_of_range);
  CHECK(type_for_selection("datasets") == "dataset");
  CHECK(type_for_selection("logs") == "logs");
  CHECK_FALSE(type_for_selection("bogus"));
}

TEST_CASE("specs: the table's DAG edges, parents and id spaces name known types") {
  std::set<std::string> types;
  for (const auto& s : resource_specs()) types.insert(s.type);
  for (const auto& s : resource_specs()) {
    CAPTURE(s.type);
    for (const auto& a : s.after) CHECK(types.count(a));
    for (const auto& p : s.parents) CHECK((p.type == "organization" || types.count(p.type)));
    CHECK((s.list == list_mode::parent_object || s.list == list_mode::path_assignment) == !s.parents.empty());
    if (!s.listed_by.empty()) CHECK(spec_of(s.listed_by).id_space == s.id_space);
  }
  // Prompts are functions: one id space, declared once in the table.
  CHECK(id_space_types("function") == std::vector<std::string>{"function", "prompt"});
  CHECK(id_space_types("").empty());
  CHECK(find_spec("user") == nullptr);
  // The streams hang off exactly these types, and the created window selects experiments and datasets.
  std::vector<std::string> streams, windowed;
  for (const auto& s : resource_specs()) {
    if (s.has_streams) streams.push_back(s.type);
    if (s.created_window) windowed.push_back(s.type);
  }
  CHECK(streams == std::vector<std::string>{"project", "dataset", "experiment"});
  CHECK(windowed == std::vector<std::string>{"dataset", "experiment"});
}

TEST_CASE("rewrite: a reference to either member of an id space resolves through the other's map") {
  fake_maps m;
  m.put("project", "sp", "dp");
  m.put("prompt", "sprompt", "dprompt");  // migrated by the prompt pass
  m.put("function", "sfn", "dfn");
  // An env var of a function that was migrated as a prompt, and an ACL on a prompt migrated as a function.
  m.put("group", "g", "dg");
  auto a = rewrite("env_var", obj(R"({"object_type":"function","object_id":"sprompt","name":"K"})"), m.ctx());
  CHECK_FALSE(a.skip);
  CHECK(a.payload.at("object_id").as_string() == "dprompt");
  auto b = rewrite("acl", obj(R"({"object_type":"prompt","object_id":"sfn","group_id":"g","permission":"read"})"), m.ctx());
  CHECK_FALSE(b.skip);
  CHECK(b.payload.at("object_id").as_string() == "dfn");
  // An experiment's parameters (a function) found in the prompt map.
  auto e = rewrite("experiment", obj(R"({"name":"e","project_id":"sp","parameters_id":"sprompt"})"), m.ctx());
  CHECK(e.payload.at("parameters_id").as_string() == "dprompt");
}

TEST_CASE("rewrite: create payload keeps only allow-listed fields and sets the destination project") {
  fake_maps m;
  auto r = rewrite("dataset", obj(R"({"id":"d1","project_id":"sp","name":"ds","description":null,"created":"x",
                                      "user_id":"u","metadata":{"k":1},"url_slug":"s"})"),
                   m.ctx());
  REQUIRE_FALSE(r.skip);
  CHECK(json::serialize(r.payload) == R"({"project_id":"dp","name":"ds","metadata":{"k":1}})");
}

TEST_CASE("rewrite: project of another, unmapped project => skip") {
  fake_maps m;
  auto r = rewrite("dataset", obj(R"({"id":"d1","project_id":"other","name":"ds"})"), m.ctx());
  CHECK(r.skip);
  CHECK(r.skip_reason == "unresolved_project");
  m.put("project", "other", "dother");
  auto r2 = rewrite("dataset", obj(R"({"id":"d1","project_id":"other","name":"ds"})"), m.ctx());
  CHECK(r2.payload.at("project_id") == "dother");
}

TEST_CASE("rewrite experiment: base_exp_id, dataset_id, parameters_id remapped, versions dropped with reasons") {
  fake_maps m;
  m.put("experiment", "e0", "E0");
  m.put("dataset", "ds", "DS");
  m.put("prompt", "par", "PAR");
  auto src = obj(R"({"id":"e1","project_id":"sp","name":"exp","base_exp_id":"e0","dataset_id":"ds",
                     "dataset_version":"1000192","parameters_id":"par","parameters_version":"77","ensure_new":true})");
  auto r = rewrite("experiment", src, m.ctx());
  REQUIRE_FALSE(r.skip);
  CHECK(r.payload.at("base_exp_id") == "E0");
  CHECK(r.payload.at("dataset_id") == "DS");
  CHECK(r.payload.at("parameters_id") == "PAR");
  CHECK_FALSE(r.payload.contains("dataset_version"));
  CHECK_FALSE(r.payload.contains("parameters_version"));
  CHECK_FALSE(r.payload.contains("ensure_new"));
  CHECK(dropped(r, "dataset_version"));
  CHECK(dropped(r, "parameters_version"));

  SUBCASE("unmapped references are dropped, never forwarded") {
    fake_maps empty;
    auto r2 = rewrite("experiment", src, empty.ctx());
    REQUIRE_FALSE(r2.skip);
    CHECK_FALSE(r2.payload.contains("base_exp_id"));
    CHECK_FALSE(r2.payload.contains("dataset_id"));
    CHECK_FALSE(r2.payload.contains("parameters_id"));
    CHECK(dropped(r2, "base_exp_id"));
    CHECK(dropped(r2, "dataset_id"));
    CHECK(dropped(r2, "parameters_id"));
  }
}

TEST_CASE("rewrite prompt: tool_functions, origin and mcp ids remapped, unmapped entries dropped") {
  fake_maps m;
  m.put("function", "f1", "F1");
  m.put("prompt", "p0", "P0");
  m.put("project", "sp", "dp");
  m.put("mcp_server", "m1", "M1");
  auto src = obj(R"({"id":"p1","project_id":"sp","name":"P","slug":"p",
    "prompt_data":{"tool_functions":[{"type":"function","id":"f1","version":"9"},{"type":"function","id":"fx"},
                                     {"type":"global","name":"Levenshtein"}],
                   "origin":{"prompt_id":"p0","project_id":"sp","prompt_version":"5"},
                   "mcp":{"a":{"type":"id","id":"m1"},"b":{"type":"id","id":"mx"},"c":{"type":"url","url":"http://x"}}}})");
  auto r = rewrite("prompt", src, m.ctx());
  REQUIRE_FALSE(r.skip);
  const auto& pd = r.payload.at("prompt_data").as_object();
  const auto& tools = pd.at("tool_functions").as_array();
  REQUIRE(tools.size() == 2);
  CHECK(json::serialize(tools[0]) == R"({"type":"function","id":"F1"})");
  CHECK(tools[1].as_object().at("type") == "global");
  CHECK(dropped(r, "prompt_data.tool_functions[1]"));
  CHECK(pd.at("origin").as_object().at("prompt_id") == "P0");
  CHECK(pd.at("origin").as_object().at("project_id") == "dp");
  CHECK_FALSE(pd.at("origin").as_object().contains("prompt_version"));
  CHECK(pd.at("mcp").as_object().at("a").as_object().at("id") == "M1");
  CHECK_FALSE(pd.at("mcp").as_object().contains("b"));
  CHECK(pd.at("mcp").as_object().contains("c"));
  CHECK(dropped(r, "prompt_data.mcp.b"));

  SUBCASE("unmapped origin prompt removes the origin") {
    fake_maps few;
    few.put("function", "f1", "F1");
    auto r2 = rewrite("prompt", src, few.ctx());
    CHECK_FALSE(r2.payload.at("prompt_data").as_object().contains("origin"));
    CHECK(dropped(r2, "prompt_data.origin"));
  }
}

TEST_CASE("rewrite function: code bundles skipped, origin and function_data refs remapped") {
  fake_maps m;
  SUBCASE("bundle => code_bundle_not_migratable") {
    auto r = rewrite("function", obj(R"({"id":"f","project_id":"sp","name":"n","slug":"s",
                       "function_data":{"type":"code","data":{"type":"bundle","bundle_id":"b"}}})"), m.ctx());
    CHECK(r.skip);
    CHECK(r.skip_reason == "code_bundle_not_migratable");
  }
  SUBCASE("inline code migrates") {
    auto r = rewrite("function", obj(R"({"id":"f","project_id":"sp","name":"n","slug":"s",
                       "function_data":{"type":"code","data":{"type":"inline","code":"x"}}})"), m.ctx());
    CHECK_FALSE(r.skip);
  }
  SUBCASE("origin remapped, _xact_id dropped; unmapped origin deferred, then removed on the last chance") {
    m.put("dataset", "ds", "DS");
    auto src = obj(R"({"id":"f","project_id":"sp","name":"n","slug":"s","function_data":{"type":"prompt"},
                       "origin":{"object_type":"dataset","object_id":"ds","id":"row","_xact_id":"1"}})");
    auto r = rewrite("function", src, m.ctx());
    REQUIRE_FALSE(r.skip);
    CHECK(r.payload.at("origin").as_object().at("object_id") == "DS");
    CHECK_FALSE(r.payload.at("origin").as_object().contains("_xact_id"));
    fake_maps none;
    auto deferred = rewrite("function", src, none.ctx());
    CHECK(deferred.skip);
    CHECK(deferred.deferrable);
    CHECK(deferred.skip_reason == "unresolved_origin");
    auto last = none.ctx();
    last.last_chance = true;
    auto r2 = rewrite("function", src, last);
    REQUIRE_FALSE(r2.skip);
    CHECK_FALSE(r2.payload.contains("origin"));
    CHECK(dropped(r2, "origin"));
  }
  SUBCASE("graph function_data: a mapped ref is rewritten, an unmapped one skips the function") {
    m.put("function", "g1", "G1");
    auto src = obj(R"({"id":"f","project_id":"sp","name":"n","slug":"s",
                       "function_data":{"type":"graph","nodes":{"a":{"function":{"type":"function","id":"g1"}}}}})");
    auto r = rewrite("function", src, m.ctx());
    REQUIRE_FALSE(r.skip);
    CHECK(r.payload.at("function_data").at_pointer("/nodes/a/function/id") == "G1");
    fake_maps none;
    auto r2 = rewrite("function", src, none.ctx());
    CHECK(r2.skip);
    CHECK(r2.skip_reason == "unresolved_function_reference");
  }
}

TEST_CASE("rewrite project_score: online scorers remapped, unmapped dropped, globals kept") {
  fake_maps m;
  m.put("function", "s1", "S1");
  auto r = rewrite("project_score", obj(R"({"id":"x","project_id":"sp","name":"n","score_type":"online",
      "config":{"online":{"sampling_rate":1,"scorers":[{"type":"function","id":"s1"},{"type":"function","id":"s2"},
      {"type":"global","name":"Factuality"}]}}})"), m.ctx());
  REQUIRE_FALSE(r.skip);
  const auto& sc = r.payload.at("config").at_pointer("/online/scorers").as_array();
  REQUIRE(sc.size() == 2);
  CHECK(sc[0].as_object().at("id") == "S1");
  CHECK(sc[1].as_object().at("type") == "global");
  CHECK(dropped(r, "config.online.scorers[1]"));
}

TEST_CASE("rewrite role/group: member lists remapped, unresolved parents never forwarded") {
  fake_maps m;
  m.put("role", "r1", "R1");
  auto r = rewrite("role", obj(R"({"id":"r2","name":"child","member_roles":["r1","rX"]})"), m.ctx());
  CHECK(json::serialize(r.payload.at("member_roles")) == R"(["R1"])");
  CHECK(dropped(r, "member_roles[rX]"));
  // None resolve: the field disappears (the reference tool forwarded the source ids here).
  auto r2 = rewrite("role", obj(R"({"id":"r2","name":"child","member_roles":["rX"]})"), m.ctx());
  CHECK_FALSE(r2.payload.contains("member_roles"));

  m.put("group", "g1", "G1");
  m.put("user", "u1", "U1");
  auto g = obj(R"({"id":"g2","name":"G","member_groups":["g1"],"member_users":["u1","u2"]})");
  auto off = rewrite("group", g, m.ctx(false));
  CHECK_FALSE(off.payload.contains("member_users"));
  CHECK(dropped(off, "member_users"));
  auto on = rewrite("group", g, m.ctx(true));
  CHECK(json::serialize(on.payload.at("member_users")) == R"(["U1"])");
  CHECK(json::serialize(on.payload.at("member_groups")) == R"(["G1"])");
}

TEST_CASE("rewrite view: object ids of project/experiment/dataset views remapped, user_id only when mapped") {
  fake_maps m;
  m.put("experiment", "e1", "E1");
  m.put("user", "u1", "U1");
  auto v = obj(R"({"id":"v","object_type":"experiment","object_id":"e1","view_type":"experiment","name":"mine",
                   "user_id":"u1","deleted_at":null})");
  auto r = rewrite("view", v, m.ctx(false));
  REQUIRE_FALSE(r.skip);
  CHECK(r.payload.at("object_id") == "E1");
  CHECK_FALSE(r.payload.contains("user_id"));
  CHECK(rewrite("view", v, m.ctx(true)).payload.at("user_id") == "U1");
  auto unmapped = rewrite("view", obj(R"({"id":"v","object_type":"dataset","object_id":"dz","view_type":"dataset",
                                         "name":"x"})"), m.ctx());
  CHECK(unmapped.skip);
  CHECK(unmapped.skip_reason == "unresolved_object_dependency");
}

TEST_CASE("rewrite acl: object, group and role remapped, users need mapping, unsupported types skipped") {
  fake_maps m;
  m.put("project", "p1", "P1");
  m.put("group", "g1", "G1");
  m.put("role", "r1", "R1");
  auto r = rewrite("acl", obj(R"({"id":"a","object_type":"project","object_id":"p1","group_id":"g1","role_id":"r1",
                                  "_object_org_id":"o","created":"t"})"), m.ctx());
  REQUIRE_FALSE(r.skip);
  CHECK(json::serialize(r.payload) == R"({"object_type":"project","object_id":"P1","group_id":"G1","role_id":"R1"})");
  auto org = rewrite("acl", obj(R"({"object_type":"organization","object_id":"srcorg","group_id":"g1","permission":"read"})"), m.ctx());
  CHECK(org.payload.at("object_id") == "dorg");
  CHECK(rewrite("acl", obj(R"({"object_type":"project","object_id":"p1","user_id":"u"})"), m.ctx()).skip_reason ==
        "user_acl_mapping_disabled");
  CHECK(rewrite("acl", obj(R"({"object_type":"project","object_id":"p1","user_id":"u","permission":"read"})"),
                m.ctx(true)).skip_reason == "unresolved_user_dependency");
  CHECK(rewrite("acl", obj(R"({"object_type":"prompt_session","object_id":"x","group_id":"g1"})"), m.ctx()).skip_reason ==
        "unsupported_object_type");
  CHECK(rewrite("acl", obj(R"({"object_type":"project","object_id":"p1","group_id":"gX","permission":"read"})"), m.ctx())
            .skip_reason == "unresolved_group_dependency");
  CHECK(rewrite("acl", obj(R"({"object_type":"project","object_id":"p1","group_id":"g1","role_id":"rX"})"), m.ctx())
            .skip_reason == "unresolved_role_dependency");
  CHECK(rewrite("acl", obj(R"({"object_type":"experiment","object_id":"eX","group_id":"g1","permission":"read"})"), m.ctx())
            .skip_reason == "unresolved_object_dependency");
}

TEST_CASE("rewrite secrets and env vars: metadata only, value re-entry noted") {
  fake_maps m;
  auto s = rewrite("ai_secret", obj(R"({"id":"s","name":"OPENAI","type":"openai","preview_secret":"sk-...","metadata":{}})"),
                   m.ctx());
  CHECK_FALSE(s.payload.contains("secret"));
  CHECK_FALSE(s.payload.contains("preview_secret"));
  CHECK(s.notes.size() == 1);
  m.put("function", "f1", "F1");
  auto e = rewrite("env_var", obj(R"({"id":"e","object_type":"function","object_id":"f1","name":"TOKEN"})"), m.ctx());
  REQUIRE_FALSE(e.skip);
  CHECK(e.payload.at("object_id") == "F1");
  CHECK_FALSE(e.notes.empty());
}

TEST_CASE("rewrite automation: function refs and ids inside BTQL text remapped, snapshots skipped with reason") {
  fake_maps m;
  m.put("experiment", k_uuid_a, k_uuid_b);
  std::string text = std::string(R"J({"id":"a","project_id":"sp","name":"export","config":{"event_type":"btql_export",
      "export_definition":{"type":"btql_query","btql_query":"from: experiment(')J") + k_uuid_a + R"J(')"}}})J";
  auto r = rewrite("project_automation", obj(text), m.ctx());
  REQUIRE_FALSE(r.skip);
  std::string q(r.payload.at("config").at_pointer("/export_definition/btql_query").as_string());
  CHECK(q.find(k_uuid_b) != std::string::npos);
  CHECK(q.find(k_uuid_a) == std::string::npos);
  auto ret = rewrite("project_automation", obj(R"({"project_id":"sp","name":"keep","config":{"event_type":"retention",
      "object_type":"project_logs","retention_days":30}})"), m.ctx());
  CHECK(ret.payload.at("config").at_pointer("/retention_days") == 30);
  // A snapshot is its version pin: with no destination version for it, it is skipped with the reason.
  auto snap = rewrite("dataset_snapshot", obj(R"({"id":"s","dataset_id":"d","name":"v1","xact_id":"1"})"), m.ctx());
  CHECK(snap.skip);
  CHECK(snap.skip_reason == "unresolved_dataset");
  m.put("dataset", "d", "dd");
  snap = rewrite("dataset_snapshot", obj(R"({"id":"s","dataset_id":"d","name":"v1","xact_id":"1"})"), m.ctx());
  CHECK(snap.skip);
  CHECK(snap.skip_reason == "snapshot_version_not_mappable");
}

TEST_CASE("dependency_levels: parents before children, chains in order, cycles reported") {
  std::vector<json::object> roles = {
      obj(R"({"id":"c","member_roles":["b"]})"), obj(R"({"id":"b","member_roles":["a","outside"]})"),
      obj(R"({"id":"a"})"), obj(R"({"id":"x","member_roles":["y"]})"), obj(R"({"id":"y","member_roles":["x"]})")};
  auto lv = dependency_levels(roles, [](const json::object& o) { return in_type_dependencies("role", o); });
  REQUIRE(lv.order.size() == 3);
  CHECK(lv.order[0] == std::vector<std::size_t>{2});
  CHECK(lv.order[1] == std::vector<std::size_t>{1});
  CHECK(lv.order[2] == std::vector<std::size_t>{0});
  CHECK(lv.cyclic == std::vector<std::size_t>{3, 4});

  std::vector<json::object> exps = {obj(R"({"id":"e3","base_exp_id":"e2"})"), obj(R"({"id":"e2","base_exp_id":"e1"})"),
                                    obj(R"({"id":"e1"})"), obj(R"({"id":"e4"})")};
  auto el = dependency_levels(exps, [](const json::object& o) { return in_type_dependencies("experiment", o); });
  REQUIRE(el.order.size() == 3);
  CHECK(el.order[0] == std::vector<std::size_t>{2, 3});
  CHECK(el.order[2] == std::vector<std::size_t>{0});

  // Prompts derived from (origin) or calling (tool_functions) another prompt come after it.
  std::vector<json::object> prompts = {
      obj(R"({"id":"derived","prompt_data":{"origin":{"prompt_id":"base","project_id":"p"}}})"),
      obj(R"({"id":"caller","prompt_data":{"tool_functions":[{"type":"function","id":"derived"},{"type":"global","name":"x"}]}})"),
      obj(R"({"id":"base"})")};
  auto pl = dependency_levels(prompts, [](const json::object& o) { return in_type_dependencies("prompt", o); });
  REQUIRE(pl.order.size() == 3);
  CHECK(pl.order[0] == std::vector<std::size_t>{2});
  CHECK(pl.order[1] == std::vector<std::size_t>{0});
  CHECK(pl.order[2] == std::vector<std::size_t>{1});
}

TEST_CASE("adopt decisions: uniqueness keys, same_content and patch bodies") {
  const auto& ds = spec_of("dataset");
  auto payload = obj(R"({"project_id":"dp","name":"ds","description":"d"})");
  auto dest_same = obj(R"({"id":"X","project_id":"dp","name":"ds","description":"d","created":"t"})");
  auto dest_diff = obj(R"({"id":"X","project_id":"dp","name":"ds","description":"other"})");
  CHECK(uniqueness_key(ds, payload) == uniqueness_key(ds, dest_same));
  CHECK(same_content(ds, payload, dest_same));
  CHECK_FALSE(same_content(ds, payload, dest_diff));
  auto body = patch_body(ds, payload, dest_diff);
  REQUIRE(body);
  CHECK(json::serialize(*body) == R"({"name":"ds","description":"d"})");

  const auto& role = spec_of("role");
  auto rp = obj(R"({"name":"r","member_roles":["A","B"]})");
  auto rd = obj(R"({"id":"R","name":"r","member_roles":["B","C"]})");
  CHECK_FALSE(same_content(role, rp, rd));
  CHECK(same_content(role, obj(R"({"name":"r","member_roles":["B","A"]})"), obj(R"({"name":"r","member_roles":["A","B"]})")));
  auto rb = patch_body(role, rp, rd);
  REQUIRE(rb);
  CHECK(json::serialize(rb->at("add_member_roles")) == R"(["A"])");
  CHECK(json::serialize(rb->at("remove_member_roles")) == R"(["C"])");

  const auto& acl = spec_of("acl");
  CHECK_FALSE(patch_body(acl, obj("{}"), obj("{}")));
  CHECK(uniqueness_key(acl, obj(R"({"object_type":"project","object_id":"P","group_id":"G","permission":"read"})")) ==
        uniqueness_key(acl, obj(R"({"permission":"read","group_id":"G","object_id":"P","object_type":"project"})")));

  const auto& ai = spec_of("ai_secret");
  CHECK(same_content(ai, obj(R"({"name":"k","type":"openai","secret":"s"})"), obj(R"({"name":"k","type":"openai"})")));
}

TEST_CASE("comparable_time: fraction and zone variants order correctly") {
  CHECK(comparable_time("2024-01-02T03:04:05Z") == comparable_time("2024-01-02T03:04:05.000Z"));
  CHECK(comparable_time("2024-01-02T03:04:05.5Z") > comparable_time("2024-01-02T03:04:05Z"));
  CHECK(comparable_time("2024-01-02") < comparable_time("2024-01-02T00:00:01Z"));
  CHECK(comparable_time("x").empty());
  CHECK(looks_like_uuid(k_uuid_a));
  CHECK_FALSE(looks_like_uuid("not-a-uuid"));
}

TEST_CASE("specs: every id-holding field is one the create or the link pass can write") {
  for (const auto& spec : resource_specs()) {
    CAPTURE(spec.type);
    for (const auto& f : spec.ref_fields) {
      CAPTURE(f);
      auto in = [&](const std::vector<std::string>& v) { return std::find(v.begin(), v.end(), f) != v.end(); };
      CHECK((in(spec.create_fields) || in(spec.set_after_create)));
    }
    for (const auto& f : spec.set_after_create) CHECK(std::find(spec.patch_fields.begin(), spec.patch_fields.end(), f) != spec.patch_fields.end());
  }
  CHECK_FALSE(spec_of("env_var").cursors);  // OpenAPI: /v1/env_var has no StartingAfter
  CHECK(spec_of("dataset").cursors);
}

TEST_CASE("rewrite: version pins go through the version lookup: mapped, or dropped with its reason, never forwarded") {
  fake_maps m;
  m.put("function", "params", "dparams");
  m.put("dataset", "ds", "dds");
  auto ctx = m.ctx();
  ctx.ids.version = [](std::string_view space, std::string_view id, std::string_view v,
                       std::string& why) -> std::optional<std::string> {
    if (space == "function" && id == "params" && v == "100") return std::string("900");
    why = std::string(space) + " " + std::string(id) + "@" + std::string(v) + " has none";
    return std::nullopt;
  };
  auto r = rewrite("experiment", obj(R"({"project_id":"sp","name":"e","parameters_id":"params","parameters_version":"100",
      "dataset_id":"ds","dataset_version":"7"})"), ctx);
  REQUIRE_FALSE(r.skip);
  CHECK(r.payload.at("parameters_version") == "900");
  CHECK(r.payload.at("parameters_id") == "dparams");
  CHECK_FALSE(r.payload.contains("dataset_version"));
  REQUIRE(dropped(r, "dataset_version"));
  for (const auto& d : r.dropped)
    if (d.field == "dataset_version") {
      CHECK(d.pin);
      CHECK(d.reason == "dataset ds@7 has none");
    }
  // The version of a tool function: the same lookup, keyed by the tool's SOURCE id.
  m.put("function", "tool", "dtool");
  auto p = rewrite("prompt", obj(R"({"project_id":"sp","name":"p","slug":"p","prompt_data":{"tool_functions":[
      {"type":"function","id":"tool","version":"5"}]}})"), ctx);
  CHECK_FALSE(p.payload.at("prompt_data").at_pointer("/tool_functions/0").as_object().contains("version"));
  CHECK(p.payload.at("prompt_data").at_pointer("/tool_functions/0/id") == "dtool");
  CHECK(dropped(p, "prompt_data.tool_functions[0].version"));
}
