// Loopback tests (two in-process emulators, driven through emulator::handle()) of what a FIRST run must
// get right whatever the order: every list read to its end behind a server that caps its pages, references
// between objects of one type and across projects resolved by create-then-patch, and destination objects
// deleted between two runs detected and re-created.
#include "pipelines/resources/entry.hpp"

#include "pipelines/resources/specs.hpp"

#include "emulator/emulator.hpp"
#include "stores/state_store.hpp"
#include "emulator_api_support.hpp"
#include "test_support.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <doctest/doctest.h>

#include <map>
#include <functional>
#include <regex>
#include <set>

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using namespace ferry;
using namespace ferry::pipelines::resources;

namespace {

/// resource_api over an emulator's handler, behind a "proxy" that caps every list page at `page_cap`
/// objects (it rewrites limit=N to min(N, cap), as a server choosing its own page size does). Keeps the
/// GET targets it saw.
class capped_api final : public resource_api {
 public:
  capped_api(emulator::emulator& emu, std::string key, std::size_t page_cap)
      : emu_(emu), key_(std::move(key)), cap_(page_cap) {}
  asio::awaitable<api_reply> call(std::string method, std::string target, std::string body) override {
    static const std::regex limit_re("([?&]limit=)([0-9]+)");
    std::smatch m;
    if (method == "GET" && std::regex_search(target, m, limit_re) && std::stoull(m[2].str()) > cap_)
      target = m.prefix().str() + m[1].str() + std::to_string(cap_) + m.suffix().str();
    if (method == "GET") gets.push_back(target);
    const std::string sent = body;
    auto reply = co_await ferry::test::call_emulator(emu_, key_, method, target, std::move(body));
    if (after) after(method, target, sent);  // may throw: the process "dies" after the server acted
    co_return reply;
  }
  std::function<void(const std::string&, const std::string&, const std::string&)> after;
  std::string describe() const override { return "emulator"; }
  std::vector<std::string> gets;

 private:
  emulator::emulator& emu_;
  std::string key_;
  std::size_t cap_;
};

using ferry::test::emu_config;
using ferry::test::obj;
using ferry::test::sid;
using ferry::test::statuses;
using ferry::test::str;

struct loopback {
  asio::io_context ctx;
  emulator::emulator src{ctx.get_executor(), emu_config("src-key", "source-org")};
  emulator::emulator dst{ctx.get_executor(), emu_config("dst-key", "dest-org")};
  capped_api src_api;
  capped_api dst_api;
  stores::state_store state = stores::state_store::open_memory();
  pipelines::migrate_config cfg;

  explicit loopback(std::size_t cap = 1000) : src_api(src, "src-key", cap), dst_api(dst, "dst-key", cap) {
    cfg.max_concurrent_projects = 2;
    cfg.max_concurrent_resources = 3;
  }
  resource_client source() { return resource_client(src_api); }
  resource_client dest() { return resource_client(dst_api); }
  std::string post(const std::string& path, const json::object& body) {
    return sid(test::run_coro(ctx, source().post(path, body)));
  }
  int migrate(migration_report& report) {
    return test::run_coro(ctx, migrate_resources(cfg, src_api, dst_api, &state, report), std::chrono::seconds(60));
  }
  std::vector<json::object> dest_list(const std::string& path, pipelines::resources::query_params q = {}) {
    return test::run_coro(ctx, dest().list(path, std::move(q)));
  }
  json::object dest_get(const std::string& type, const std::string& id) {
    return test::run_coro(ctx, dest().get(spec_of(type).path + "/" + id)).as_object();
  }
  std::optional<std::string> mapped(const std::string& type, const std::string& source_id) {
    return state.get_id(type, source_id);
  }
};

[[maybe_unused]] std::string dropped(const migration_report& r) {
  std::string out;
  for (const auto& e : r.entries())
    for (const auto& [field, reason] : e.dropped) out += e.type + " '" + e.name + "' " + field + ": " + reason + "\n";
  return out;
}

}  // namespace

TEST_CASE("listing: a server capping pages at 100 still gives every one of 1005 datasets") {
  loopback t(100);
  std::string p = t.post("/v1/project", obj(R"({"name":"big"})"));
  for (int i = 0; i < 1005; ++i)
    t.post("/v1/dataset", json::object{{"name", "ds-" + std::to_string(i)}, {"project_id", p}});
  // Env vars have no cursor in the spec (the emulator answers 400 to starting_after): one unpaged request.
  t.post("/v1/env_var", json::object{{"object_type", "project"}, {"object_id", p}, {"name", "TOKEN"}, {"value", "v"}});
  migration_report report;
  int rc = t.migrate(report);
  INFO(statuses(report).substr(0, 2000));
  CHECK(rc == 0);
  CHECK(report.count("dataset", object_status::created) == 1005);
  CHECK(report.count("env_var", object_status::created) == 1);
  auto dp = t.mapped("project", p);
  REQUIRE(dp);
  CHECK(t.dest_list("/v1/dataset", {{"project_id", *dp}}).size() == 1005);
  auto gets = t.src_api.gets;
  gets.insert(gets.end(), t.dst_api.gets.begin(), t.dst_api.gets.end());
  for (const auto& g : gets)
    if (g.starts_with("/v1/env_var")) {
      CAPTURE(g);
      CHECK(g.find("starting_after") == std::string::npos);
    }
}

namespace {

/// Two projects whose objects reference each other's, created so that the project migrated FIRST
/// ("alpha", listed first: newest first) references objects of the one migrated later ("zeta"), and objects
/// of one list reference objects listed after them; plus a role membership cycle.
struct cross_refs {
  std::map<std::string, std::string> ids;
};

cross_refs seed_cross_refs(loopback& t) {
  cross_refs s;
  auto& id = s.ids;
  auto in = [](const std::string& project, std::string_view text) {
    auto o = obj(text);
    o["project_id"] = project;
    return o;
  };
  id["zeta"] = t.post("/v1/project", obj(R"({"name":"zeta"})"));
  id["alpha"] = t.post("/v1/project", obj(R"({"name":"alpha"})"));
  const std::string z = id["zeta"], a = id["alpha"];
  const std::string code = R"("function_data":{"type":"code","data":{"type":"inline",
      "runtime_context":{"runtime":"node","version":"20"},"code":"x"}})";
  id["z_tool"] = t.post("/v1/function", in(z, R"({"name":"z tool","slug":"z-tool","function_type":"tool",)" + code + "}"));
  id["z_dataset"] = t.post("/v1/dataset", in(z, R"({"name":"z data"})"));
  id["z_exp"] = t.post("/v1/experiment", in(z, R"({"name":"z base"})"));
  id["a_tool"] = t.post("/v1/function", in(a, R"({"name":"a tool","slug":"a-tool","function_type":"tool",)" + code + "}"));
  auto tool_ref = [](const std::string& fid) {
    return json::array{json::object{{"type", "function"}, {"id", fid}}};
  };
  {  // a prompt-type function (its origin makes it the function pass's) calling a tool listed after it
    auto o = in(a, R"({"name":"planner","slug":"planner","function_data":{"type":"prompt"}})");
    o["origin"] = json::object{{"object_type", "project"}, {"object_id", a}};
    o["prompt_data"] = json::object{{"tool_functions", tool_ref(id["a_tool"])}};
    id["a_prompt_fn"] = t.post("/v1/function", o);
  }
  {  // a graph calling a function of its own project and one of the other project
    auto o = in(a, R"({"name":"flow","slug":"flow"})");
    o["function_data"] = json::object{
        {"type", "graph"},
        {"nodes", json::object{{"n1", json::object{{"type", "function"}, {"function", json::object{{"function_id", id["a_tool"]}}}}},
                               {"n2", json::object{{"type", "function"}, {"function", json::object{{"function_id", id["z_tool"]}}}}}}},
        {"edges", json::object{}}};
    id["a_graph"] = t.post("/v1/function", o);
  }
  {  // a facet whose preprocessor is a function of the other project
    auto o = in(a, R"({"name":"facet","slug":"facet"})");
    o["function_data"] = json::object{{"type", "facet"}, {"prompt", "p"},
                                      {"preprocessor", json::object{{"type", "function"}, {"id", id["z_tool"]}}}};
    id["a_facet"] = t.post("/v1/function", o);
  }
  {  // a prompt calling a function of the other project
    auto o = in(a, R"({"name":"caller","slug":"caller"})");
    o["prompt_data"] = json::object{{"tool_functions", tool_ref(id["z_tool"])}};
    id["a_prompt"] = t.post("/v1/prompt", o);
  }
  {  // an experiment whose base experiment and dataset live in the other project
    auto o = in(a, R"({"name":"a exp"})");
    o["base_exp_id"] = id["z_exp"];
    o["dataset_id"] = id["z_dataset"];
    id["a_exp"] = t.post("/v1/experiment", o);
  }
  // A role membership cycle: r1 <-> r2.
  id["r1"] = t.post("/v1/role", obj(R"({"name":"r1"})"));
  id["r2"] = t.post("/v1/role", json::object{{"name", "r2"}, {"member_roles", json::array{json::value(id["r1"])}}});
  test::run_coro(t.ctx, t.source().patch("/v1/role/" + id["r1"],
                                         json::object{{"add_member_roles", json::array{json::value(id["r2"])}}}));
  return s;
}

}  // namespace

TEST_CASE("references to objects migrated later (same list, other project, cycles) are linked on the first run") {
  loopback t;
  t.cfg.max_concurrent_projects = 1;  // alpha (listed first) completes before zeta starts
  auto s = seed_cross_refs(t);
  migration_report report;
  int rc = t.migrate(report);
  INFO(statuses(report));
  INFO(dropped(report));
  CHECK(rc == 0);
  auto d = [&](const std::string& label) {
    for (const auto& type : {"project", "function", "prompt", "dataset", "experiment", "role"})
      if (auto v = t.mapped(type, s.ids.at(label))) return *v;
    FAIL("no destination id for " << label);
    return std::string{};
  };
  auto fn = [&](const std::string& label) { return t.dest_get("function", d(label)); };
  CHECK(str(fn("a_prompt_fn").at("prompt_data").at_pointer("/tool_functions/0/id")) == d("a_tool"));
  auto graph = fn("a_graph").at("function_data");
  CHECK(str(graph.at_pointer("/nodes/n1/function/function_id")) == d("a_tool"));
  CHECK(str(graph.at_pointer("/nodes/n2/function/function_id")) == d("z_tool"));
  CHECK(str(fn("a_facet").at("function_data").at_pointer("/preprocessor/id")) == d("z_tool"));
  CHECK(str(t.dest_get("prompt", d("a_prompt")).at("prompt_data").at_pointer("/tool_functions/0/id")) == d("z_tool"));
  auto exp = t.dest_get("experiment", d("a_exp"));
  CHECK(str(exp.at("base_exp_id")) == d("z_exp"));
  CHECK(str(exp.at("dataset_id")) == d("z_dataset"));
  CHECK(json::serialize(t.dest_get("role", d("r1")).at("member_roles")) == "[\"" + d("r2") + "\"]");
  CHECK(json::serialize(t.dest_get("role", d("r2")).at("member_roles")) == "[\"" + d("r1") + "\"]");
  CHECK(dropped(report).empty());
  // Nothing is left pending, and a second run writes nothing.
  t.state.for_each_id("pending:experiment", [&](std::string_view, std::string_view dest) {
    CHECK(dest.empty());
    return true;
  });
  migration_report again;
  CHECK(t.migrate(again) == 0);
  CHECK(again.count(object_status::created) == 0);
  CHECK(again.count(object_status::updated) == 0);
}

TEST_CASE("a run that dies after the server created an object, before recording it, leaves it linked by the next run") {
  loopback t;
  auto s = seed_cross_refs(t);
  t.cfg.projects = {"alpha"};  // zeta later: a exp is created without its base experiment and dataset
  bool died = false;
  t.dst_api.after = [&](const std::string& method, const std::string& target, const std::string& body) {
    if (!died && method == "POST" && target == "/v1/experiment" && body.find("\"a exp\"") != std::string::npos) {
      died = true;
      throw std::runtime_error("killed after the create reached the server");
    }
  };
  migration_report first;
  t.migrate(first);
  REQUIRE(died);
  CHECK_FALSE(t.mapped("experiment", s.ids.at("a_exp")));  // the run died before recording the id

  t.dst_api.after = nullptr;
  t.cfg.projects = {};  // everything now: a exp is found by name in the destination
  migration_report second;
  CHECK(t.migrate(second) == 0);
  INFO(statuses(second));
  auto a_exp = t.mapped("experiment", s.ids.at("a_exp"));
  REQUIRE(a_exp);
  CHECK(t.dest_list("/v1/experiment", {{"experiment_name", "a exp"}}).size() == 1);  // not created twice
  auto exp = t.dest_get("experiment", *a_exp);
  REQUIRE(exp.contains("base_exp_id"));
  CHECK(str(exp.at("base_exp_id")) == *t.mapped("experiment", s.ids.at("z_exp")));
  CHECK(str(exp.at("dataset_id")) == *t.mapped("dataset", s.ids.at("z_dataset")));
}

TEST_CASE("on_name_conflict abort: a resume after a run died between a create and recording it adopts Ferry's own objects") {
  loopback t;
  std::string p = t.post("/v1/project", obj(R"({"name":"p"})"));
  std::string ds = t.post("/v1/dataset", json::object{{"name", "golden"}, {"project_id", p}});
  t.post("/v1/role", obj(R"({"name":"reader","member_permissions":[{"permission":"read"}]})"));
  t.post("/v1/dataset", json::object{{"name", "clash"}, {"project_id", p}});
  t.cfg.on_name_conflict = pipelines::name_conflict_policy::abort;
  // Each of these creates reaches the server, then the process "dies" before recording the id: a project
  // (whose subtree would be lost), a dataset without references, and an org-level role.
  std::set<std::string> kill_on = {"/v1/project", "/v1/dataset", "/v1/role"};
  t.dst_api.after = [&](const std::string& method, const std::string& target, const std::string&) {
    if (method == "POST" && kill_on.erase(target)) throw std::runtime_error("killed after the create reached the server");
  };
  for (int run = 0; run < 3; ++run) {
    migration_report r;
    t.migrate(r);
  }
  REQUIRE(kill_on.empty());
  t.dst_api.after = nullptr;
  // Someone else's object with a source name in the destination is still refused.
  std::string dest_p = t.mapped("project", p).value_or("");
  REQUIRE(!dest_p.empty());
  test::run_coro(t.ctx, t.dest().post("/v1/dataset", json::object{{"name", "intruder"}, {"project_id", dest_p}}));
  t.post("/v1/dataset", json::object{{"name", "intruder"}, {"project_id", p}});
  migration_report last;
  t.migrate(last);
  INFO(statuses(last));
  CHECK(last.count(object_status::failed) == 1);
  for (const auto& e : last.entries())
    if (e.status == object_status::failed) CHECK(e.name == "intruder");
  CHECK(t.mapped("dataset", ds));
  std::map<std::string, int> names;
  for (const auto& d : t.dest_list("/v1/dataset", {{"project_id", dest_p}})) ++names[std::string(d.at("name").as_string())];
  CHECK(names == std::map<std::string, int>{{"clash", 1}, {"golden", 1}, {"intruder", 1}});
  CHECK(t.dest_list("/v1/project").size() == 1);
  CHECK(t.dest_list("/v1/role").size() == 1);
}

TEST_CASE("dropped fields live in the state: the report is written from them and a resume keeps them") {
  loopback t;
  std::string p = t.post("/v1/project", obj(R"({"name":"p"})"));
  t.post("/v1/project", obj(R"({"name":"q"})"));
  std::string ds = t.post("/v1/dataset", json::object{{"name", "d"}, {"project_id", p}});
  std::string exp = t.post("/v1/experiment", json::object{{"name", "e"}, {"project_id", p}, {"dataset_id", ds},
                                                          {"dataset_version", "1000192656880881099"}});
  auto fields_of = [](const stores::state_store::dropped_fields& f) {
    std::set<std::string> out;
    for (const auto& [field, reason] : f) out.insert(field);
    return out;
  };
  migration_report first;
  REQUIRE(t.migrate(first) == 0);
  CHECK(fields_of(t.state.get_dropped("experiment", exp)).count("dataset_version") == 1);
  CHECK(t.state.get_dropped("dataset", ds).empty());
  // The report's dropped_fields are the state's records.
  t.state.put_dropped("experiment", exp, {{"dataset_version", "as the state says"}});
  auto j = json::value(first.to_json());
  CHECK(j.at_pointer("/resources/experiment/objects/0/dropped_fields/0/reason") == "as the state says");
  // A run that does not visit the experiment (another project) leaves its record.
  t.cfg.projects = {"q"};
  migration_report second;
  REQUIRE(t.migrate(second) == 0);
  CHECK(fields_of(t.state.get_dropped("experiment", exp)).count("dataset_version") == 1);
  // A full resume writes it again from what it drops now.
  t.cfg.projects = {};
  migration_report third;
  REQUIRE(t.migrate(third) == 0);
  auto again = t.state.get_dropped("experiment", exp);
  REQUIRE(again.size() == 1);
  CHECK(again.front().second != "as the state says");
}

TEST_CASE("one project at a time: the later run links what the earlier one left pending") {
  loopback t;
  auto s = seed_cross_refs(t);
  t.cfg.projects = {"alpha"};
  migration_report first;
  t.migrate(first);
  INFO(statuses(first));
  auto a_exp = t.mapped("experiment", s.ids.at("a_exp"));
  REQUIRE(a_exp);
  // zeta is not migrated yet: the references are reported, never forwarded, and recorded as pending.
  CHECK_FALSE(t.dest_get("experiment", *a_exp).contains("base_exp_id"));
  CHECK(dropped(first).find("base_exp_id") != std::string::npos);
  CHECK(!t.state.get_id("pending:experiment", s.ids.at("a_exp")).value_or("").empty());

  t.cfg.projects = {"zeta"};
  migration_report second;
  CHECK(t.migrate(second) == 0);
  INFO(statuses(second));
  auto exp = t.dest_get("experiment", *a_exp);
  CHECK(str(exp.at("base_exp_id")) == *t.mapped("experiment", s.ids.at("z_exp")));
  CHECK(str(exp.at("dataset_id")) == *t.mapped("dataset", s.ids.at("z_dataset")));
  CHECK(t.state.get_id("pending:experiment", s.ids.at("a_exp")).value_or("x").empty());
}

TEST_CASE("an object deleted in the destination is re-created on re-run and its stream progress forgotten") {
  loopback t;
  std::string p = t.post("/v1/project", obj(R"({"name":"p"})"));
  std::string exp = t.post("/v1/experiment", json::object{{"name", "e"}, {"project_id", p}});
  std::string ds = t.post("/v1/dataset", json::object{{"name", "d"}, {"project_id", p}});
  std::string prompt = t.post("/v1/prompt", json::object{{"name", "q"}, {"slug", "q"}, {"project_id", p}});
  migration_report first;
  REQUIRE(t.migrate(first) == 0);
  auto old_exp = t.mapped("experiment", exp), old_prompt = t.mapped("prompt", prompt);
  REQUIRE(old_exp);
  REQUIRE(old_prompt);
  // The event streams of a finished run.
  auto stream = [](std::string id, std::string kind, std::string source) {
    stores::stream_state st;
    st.stream_id = std::move(id);
    st.kind = std::move(kind);
    st.source_ids = {std::move(source)};
    st.cursor = "p1";
    st.done = true;
    return st;
  };
  t.state.save_stream(stream("experiment_events:" + exp, "experiment_events", exp));
  t.state.save_stream(stream("dataset_events:" + ds, "dataset_events", ds));
  // Deleted in the destination between the two runs.
  test::run_coro(t.ctx, t.dest().send("DELETE", "/v1/experiment/" + *old_exp, {}));
  test::run_coro(t.ctx, t.dest().send("DELETE", "/v1/prompt/" + *old_prompt, {}));

  migration_report second;
  CHECK(t.migrate(second) == 0);
  INFO(statuses(second));
  auto new_exp = t.mapped("experiment", exp), new_prompt = t.mapped("prompt", prompt);
  REQUIRE(new_exp);
  REQUIRE(new_prompt);
  CHECK(*new_exp != *old_exp);
  CHECK(*new_prompt != *old_prompt);
  CHECK(t.dest_get("experiment", *new_exp).at("name") == "e");
  CHECK(t.dest_get("prompt", *new_prompt).at("slug") == "q");
  CHECK(second.count("experiment", object_status::created) == 1);
  CHECK(second.count("prompt", object_status::created) == 1);
  // The experiment's rows must be copied again; the dataset's stream is untouched.
  CHECK_FALSE(t.state.load_stream("experiment_events:" + exp));
  auto kept = t.state.load_stream("dataset_events:" + ds);
  REQUIRE(kept);
  CHECK(kept->done);
}

TEST_CASE("ids inside blobs: project settings, view options and filters, function origin") {
  loopback t;
  std::string p = t.post("/v1/project", obj(R"({"name":"p"})"));
  std::string exp = t.post("/v1/experiment", json::object{{"name", "base"}, {"project_id", p}});
  std::string tool = t.post("/v1/function", json::object{{"name", "pre"}, {"slug", "pre"}, {"project_id", p}, {"function_type", "preprocessor"},
      {"function_data", obj(R"({"type":"code","data":{"type":"inline","runtime_context":{"runtime":"node","version":"20"},"code":"x"}})")}});
  test::run_coro(t.ctx, t.source().patch("/v1/project/" + p, json::object{{"settings", json::object{
      {"comparison_key", "input.q"}, {"baseline_experiment_id", exp},
      {"default_preprocessor", json::object{{"type", "function"}, {"id", tool}}}}}}));
  std::string view = t.post("/v1/view", json::object{
      {"object_type", "project"}, {"object_id", p}, {"view_type", "logs"}, {"name", "mine"},
      {"options", json::object{{"viewType", "monitor"}, {"options", json::object{{"projectId", p}, {"type", "project"}}}}},
      {"view_data", json::object{{"search", json::object{{"filter", json::array{"experiment_id = '" + exp + "'", "error IS NOT NULL"}}}}}}});
  std::string fn = t.post("/v1/function", json::object{{"name", "from exp"}, {"slug", "from-exp"}, {"project_id", p},
      {"function_data", obj(R"({"type":"prompt"})")}, {"origin", json::object{{"object_type", "experiment"}, {"object_id", exp}}}});
  // An env var of that function: listed per (mapped) function, so it must follow the deferred function.
  std::string env = t.post("/v1/env_var", json::object{{"object_type", "function"}, {"object_id", fn}, {"name", "K"}, {"value", "v"}});
  migration_report report;
  int rc = t.migrate(report);
  INFO(statuses(report));
  INFO(dropped(report));
  CHECK(rc == 0);
  REQUIRE(t.mapped("env_var", env));
  CHECK(str(t.dest_get("env_var", *t.mapped("env_var", env)).at("object_id")) == *t.mapped("function", fn));
  auto dp = *t.mapped("project", p), dexp = *t.mapped("experiment", exp), dtool = *t.mapped("function", tool);
  auto settings = t.dest_get("project", dp).at("settings");
  CHECK(str(settings.at_pointer("/comparison_key")) == "input.q");
  CHECK(str(settings.at_pointer("/baseline_experiment_id")) == dexp);
  CHECK(str(settings.at_pointer("/default_preprocessor/id")) == dtool);
  auto dview = t.dest_get("view", *t.mapped("view", view));
  CHECK(str(dview.at("options").at_pointer("/options/projectId")) == dp);
  CHECK(str(dview.at("view_data").at_pointer("/search/filter/0")) == "experiment_id = '" + dexp + "'");
  CHECK(str(dview.at("view_data").at_pointer("/search/filter/1")) == "error IS NOT NULL");
  auto dfn = t.dest_get("function", *t.mapped("function", fn));
  REQUIRE(dfn.contains("origin"));
  CHECK(str(dfn.at("origin").at_pointer("/object_id")) == dexp);
  CHECK(dropped(report).empty());
  migration_report again;
  CHECK(t.migrate(again) == 0);
  INFO(statuses(again));
  CHECK(again.count(object_status::created) == 0);
  CHECK(again.count(object_status::updated) == 0);
}

TEST_CASE("version pins: a pin of an object's current version maps to its twin's final destination version; an older one is dropped with the reason") {
  loopback t;
  std::string p = t.post("/v1/project", obj(R"({"name":"p"})"));
  auto code = obj(R"({"type":"code","data":{"type":"inline","runtime_context":{"runtime":"node","version":"20"},"code":"x"}})");
  std::string tool = t.post("/v1/function", json::object{{"name", "tool"}, {"slug", "tool"}, {"project_id", p}, {"function_data", code}});
  std::string old = t.post("/v1/function", json::object{{"name", "old"}, {"slug", "old"}, {"project_id", p}, {"function_data", code}});
  auto src_version = [&](const std::string& id) {
    return str(test::run_coro(t.ctx, t.source().get("/v1/function/" + id)).as_object().at("_xact_id"));
  };
  const std::string tool_v = src_version(tool), old_v1 = src_version(old);
  test::run_coro(t.ctx, t.source().patch("/v1/function/" + old, obj(R"({"description":"v2"})")));
  REQUIRE(src_version(old) != old_v1);
  auto pinned_tool = json::array{json::object{{"type", "function"}, {"id", tool}, {"version", tool_v}}};
  std::string p1 = t.post("/v1/prompt", json::object{{"name", "p1"}, {"slug", "p1"}, {"project_id", p},
      {"prompt_data", json::object{{"tool_functions", pinned_tool}}}});
  const std::string p1_v = src_version(p1);
  std::string p2 = t.post("/v1/prompt", json::object{{"name", "p2"}, {"slug", "p2"}, {"project_id", p},
      {"prompt_data", json::object{
          {"origin", json::object{{"prompt_id", p1}, {"project_id", p}, {"prompt_version", p1_v}}},
          {"tool_functions", json::array{json::object{{"type", "function"}, {"id", old}, {"version", old_v1}}}}}}});
  std::string exp = t.post("/v1/experiment", json::object{{"name", "e"}, {"project_id", p}, {"parameters_id", tool},
                                                          {"parameters_version", tool_v}});
  test::run_coro(t.ctx, t.source().post("/environment", obj(R"({"name":"Production","slug":"production"})")));
  test::run_coro(t.ctx, t.source().send("PUT", "/environment-object/prompt/" + p1 + "/production",
                                        json::serialize(json::object{{"object_version", p1_v}})));
  migration_report report;
  REQUIRE(t.migrate(report) == 0);
  INFO(statuses(report));
  INFO(dropped(report));
  auto dest_version = [&](const std::string& type, const std::string& source_id) {
    return str(t.dest_get(type, *t.mapped(type, source_id)).at("_xact_id"));
  };
  auto d1 = t.dest_get("prompt", *t.mapped("prompt", p1)), d2 = t.dest_get("prompt", *t.mapped("prompt", p2));
  CHECK(str(d1.at("prompt_data").at_pointer("/tool_functions/0/version")) == dest_version("function", tool));
  CHECK(str(d2.at("prompt_data").at_pointer("/origin/prompt_version")) == dest_version("prompt", p1));
  CHECK(str(t.dest_get("experiment", *t.mapped("experiment", exp)).at("parameters_version")) == dest_version("function", tool));
  // The pin of an older version: dropped, never forwarded, with why.
  CHECK_FALSE(d2.at("prompt_data").at_pointer("/tool_functions/0").as_object().contains("version"));
  CHECK(dropped(report).find("prompt_data.tool_functions[0].version: pins version " + old_v1) != std::string::npos);
  // The environment uses the destination twin of the version it used at the source.
  auto assigned = test::run_coro(t.ctx, t.dest().get("/environment-object/prompt/" + *t.mapped("prompt", p1) + "/production"));
  CHECK(str(assigned.as_object().at("object_version")) == dest_version("prompt", p1));
  CHECK(report.count("environment_object", object_status::created) == 1);
  // Recorded for verify: source version -> destination version.
  CHECK(t.state.get_id("pin:function", tool_v) == dest_version("function", tool));
  CHECK(t.state.get_id("pin:function", p1_v) == dest_version("prompt", p1));
  migration_report again;
  CHECK(t.migrate(again) == 0);
  INFO(statuses(again));
  CHECK(again.count(object_status::created) == 0);
  CHECK(again.count(object_status::updated) == 0);
}

TEST_CASE("version pins: a destination object adopted by name (someone else's) is not re-pinned after the links") {
  loopback t;
  std::string p = t.post("/v1/project", obj(R"({"name":"p"})"));
  auto code = obj(R"({"type":"code","data":{"type":"inline","runtime_context":{"runtime":"node","version":"20"},"code":"x"}})");
  std::string tool = t.post("/v1/function", json::object{{"name", "tool"}, {"slug", "tool"}, {"project_id", p}, {"function_data", code}});
  const auto tool_v = str(test::run_coro(t.ctx, t.source().get("/v1/function/" + tool)).as_object().at("_xact_id"));
  t.post("/v1/prompt", json::object{{"name", "c"}, {"slug", "c"}, {"project_id", p},
      {"prompt_data", json::object{{"tool_functions", json::array{json::object{{"type", "function"}, {"id", tool}, {"version", tool_v}}}}}}});
  // The destination already has project p and a prompt c of its own.
  auto dp = sid(test::run_coro(t.ctx, t.dest().post("/v1/project", obj(R"({"name":"p"})"))));
  auto theirs = sid(test::run_coro(t.ctx, t.dest().post("/v1/prompt", json::object{{"name", "c"}, {"slug", "c"}, {"project_id", dp},
      {"prompt_data", obj(R"({"prompt":{"type":"chat","messages":[]}})")}})));
  migration_report report;
  REQUIRE(t.migrate(report) == 0);
  INFO(statuses(report));
  CHECK(report.count("prompt", object_status::adopted) == 1);
  CHECK_FALSE(t.dest_get("prompt", theirs).at("prompt_data").as_object().contains("tool_functions"));
}
