// REST fidelity (issue 15): the behaviours of the real service a migrator can be fooled by when its test
// oracle is lenient. Each case failed on the emulator before these changes. Calls go through
// emulator::handle (auth, SDK paths, REST, events) without sockets.
#include "emulator/emulator.hpp"

#include "test_support.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <string>

namespace json = boost::json;
namespace http = boost::beast::http;
using namespace ferry::emulator;

namespace {

struct fixture {
  boost::asio::io_context ctx;
  emulator emu{ctx.get_executor(), config()};
  std::string pid;

  static emulator_config config() {
    emulator_config cfg;
    cfg.api_keys = {{"key-a", "org-a", ""}, {"key-b", "org-b", ""}};
    cfg.id_seed = 5;
    return cfg;
  }

  fixture() { pid = id(ok("POST", "/v1/project", R"({"name":"p"})")); }

  struct reply {
    unsigned status;
    std::string body;
  };
  reply call(std::string_view method, std::string target, std::string body = "", std::string key = "key-a") {
    ferry::transports::http_request req{http::string_to_verb(method), target, 11};
    req.set(http::field::authorization, "Bearer " + key);
    req.body() = std::move(body);
    req.prepare_payload();
    auto r = ferry::test::run_coro(ctx, emu.handle(req));
    return {r.response.result_int(), r.response.body()};
  }
  json::value ok(std::string_view method, std::string target, std::string body = "", std::string key = "key-a") {
    auto r = call(method, target, std::move(body), std::move(key));
    INFO(method, " ", target, " -> ", r.body);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }
  /// The error message of a call expected to fail with `status`.
  std::string fails(unsigned status, std::string_view method, std::string target, std::string body = "",
                    std::string key = "key-a") {
    auto r = call(method, target, std::move(body), std::move(key));
    INFO(method, " ", target, " -> ", r.body);
    CHECK(r.status == status);
    auto v = json::parse(r.body);
    return v.is_object() && v.as_object().contains("error") ? std::string(v.at("error").as_string()) : r.body;
  }
  std::vector<json::value> objects(std::string target) {
    auto v = ok("GET", std::move(target));
    auto& a = v.at("objects").as_array();
    return {a.begin(), a.end()};
  }
  static std::string id(const json::value& v) { return std::string(v.at("id").as_string()); }
  std::string p(std::string rest) { return R"({"project_id":")" + pid + "\"," + rest + "}"; }
  std::string code_function(std::string slug) {
    return id(ok("POST", "/v1/function",
                 p(R"("name":")" + slug + R"(","slug":")" + slug +
                   R"(","function_data":{"type":"code","data":{"type":"inline","runtime_context":{"runtime":"node","version":"20"},"code":"x"}})")));
  }
};

bool has(const std::string& haystack, std::string_view needle) { return haystack.find(needle) != std::string::npos; }

}  // namespace

TEST_CASE("fidelity: a prompt is a function (one id space, /v1/function lists it, slugs shared)") {
  fixture f;
  const auto prompt = f.id(f.ok("POST", "/v1/prompt", f.p(R"("name":"Greeter","slug":"greet","prompt_data":{"prompt":{"type":"chat","messages":[]}})")));
  const auto code = f.code_function("tool");

  auto listed = f.objects("/v1/function?project_id=" + f.pid);
  REQUIRE(listed.size() == 2);
  const auto& as_function = listed[1].as_object();  // newest first: the code function, then the prompt
  CHECK(f.id(as_function) == prompt);
  CHECK(as_function.at("function_data").at("type") == "prompt");
  CHECK(as_function.at("prompt_data").at("prompt").at("type") == "chat");
  CHECK(f.id(f.ok("GET", "/v1/function/" + prompt)) == prompt);

  // /v1/prompt is the prompt-type view: the code function is not a prompt.
  auto prompts = f.objects("/v1/prompt");
  REQUIRE(prompts.size() == 1);
  CHECK(!prompts[0].as_object().contains("function_data"));
  f.fails(404, "GET", "/v1/prompt/" + code);

  // One slug space per project, whichever endpoint creates.
  CHECK(has(f.fails(409, "POST", "/v1/function",
                    f.p(R"("name":"x","slug":"greet","function_data":{"type":"code","data":{"type":"inline","code":"y"}})")),
            "greet"));
  f.fails(409, "POST", "/v1/prompt", f.p(R"("name":"x","slug":"tool")"));
  f.fails(409, "PUT", "/v1/prompt", f.p(R"("name":"x","slug":"tool")"));
  // Same kind through the other endpoint: POST returns the existing object (the spec's rule).
  CHECK(f.id(f.ok("POST", "/v1/function", f.p(R"("name":"y","slug":"greet","function_data":{"type":"prompt"})"))) == prompt);

  // A change through /v1/function is what /v1/prompt reads.
  f.ok("PATCH", "/v1/function/" + prompt, R"({"description":"via function"})");
  CHECK(f.ok("GET", "/v1/prompt/" + prompt).at("description") == "via function");
}

TEST_CASE("fidelity: ids that do not exist in the org are rejected with 400 naming the field") {
  fixture f;
  const std::string ghost = derived_uuid(99, "ghost", 1);
  const auto other_project = f.id(f.ok("POST", "/v1/project", R"({"name":"theirs"})", "key-b"));
  const auto group = f.id(f.ok("POST", "/v1/group", R"({"name":"g"})"));
  struct bad {
    std::string method, target, body, field;
  };
  const std::vector<bad> cases = {
      {"POST", "/v1/role", R"({"name":"r","member_roles":[")" + ghost + R"("]})", "member_roles"},
      {"POST", "/v1/group", R"({"name":"g2","member_groups":[")" + ghost + R"("]})", "member_groups"},
      {"POST", "/v1/group", R"({"name":"g3","member_users":[")" + ghost + R"("]})", "member_users"},
      {"PATCH", "/v1/group/" + group, R"({"add_member_groups":[")" + ghost + R"("]})", "add_member_groups"},
      {"POST", "/v1/acl", R"({"object_type":"project","object_id":")" + ghost + R"(","group_id":")" + group + R"(","permission":"read"})", "object_id"},
      {"POST", "/v1/acl", R"({"object_type":"project","object_id":")" + other_project + R"(","group_id":")" + group + R"(","permission":"read"})", "object_id"},
      {"POST", "/v1/acl", R"({"object_type":"project","object_id":")" + f.pid + R"(","group_id":")" + ghost + R"(","permission":"read"})", "group_id"},
      {"POST", "/v1/acl", R"({"object_type":"project","object_id":")" + f.pid + R"(","user_id":")" + ghost + R"(","permission":"read"})", "user_id"},
      {"POST", "/v1/acl", R"({"object_type":"project","object_id":")" + f.pid + R"(","group_id":")" + group + R"(","role_id":")" + ghost + R"("})", "role_id"},
      {"POST", "/v1/acl/batch_update", R"({"add_acls":[{"object_type":"dataset","object_id":")" + ghost + R"(","group_id":")" + group + R"(","permission":"read"}]})", "object_id"},
      {"POST", "/v1/view", R"({"object_type":"experiment","object_id":")" + ghost + R"(","view_type":"experiment","name":"v"})", "object_id"},
      {"POST", "/v1/experiment", f.p(R"("name":"e","base_exp_id":")" + ghost + "\""), "base_exp_id"},
      {"POST", "/v1/experiment", f.p(R"("name":"e","dataset_id":")" + ghost + "\""), "dataset_id"},
      {"POST", "/v1/experiment", f.p(R"("name":"e","parameters_id":")" + ghost + "\""), "parameters_id"},
      {"POST", "/v1/prompt", f.p(R"("name":"p","slug":"p","prompt_data":{"tool_functions":[{"type":"function","id":")" + ghost + R"("}]})"), "prompt_data.tool_functions[0].id"},
      {"POST", "/v1/prompt", f.p(R"("name":"p","slug":"p","prompt_data":{"origin":{"prompt_id":")" + ghost + R"("}})"), "prompt_data.origin.prompt_id"},
      {"POST", "/v1/project_score", f.p(R"("name":"s","score_type":"online","config":{"online":{"scorers":[{"type":"function","id":")" + ghost + R"("}]}})"), "config.online.scorers[0].id"},
      {"POST", "/v1/env_var", R"({"object_type":"project","object_id":")" + ghost + R"(","name":"K"})", "object_id"},
      {"POST", "/v1/env_var", R"({"object_type":"organization","object_id":")" + ghost + R"(","name":"K"})", "object_id"},
      {"POST", "/v1/function", f.p(R"("name":"f","slug":"f","function_data":{"type":"prompt"},"origin":{"object_type":"experiment","object_id":")" + ghost + R"(","id":"r"})"), "origin.object_id"},
      {"PATCH", "/v1/project/" + f.pid, R"({"settings":{"baseline_experiment_id":")" + ghost + R"("}})", "settings.baseline_experiment_id"},
      {"PATCH", "/v1/project/" + f.pid, R"({"settings":{"default_preprocessor":{"type":"function","id":")" + ghost + R"("}}})", "settings.default_preprocessor.id"},
      {"PATCH", "/v1/organization/members", R"({"invite_users":{"emails":["a@b.c"],"group_ids":[")" + ghost + R"("]}})", "invite_users.group_ids"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.body);
    auto msg = f.fails(400, c.method, c.target, c.body);
    CHECK_MESSAGE(msg.starts_with(c.field + ":"), msg);
  }
  // Nothing was stored by the failed calls.
  CHECK(f.objects("/v1/role").empty());
  CHECK(f.objects("/v1/experiment").empty());
  CHECK(f.ok("GET", "/v1/acl/list_org").as_array().empty());
  CHECK(f.objects("/v1/user").size() == 1);  // the refused invite added nobody
  // Existing ids pass.
  const auto role = f.id(f.ok("POST", "/v1/role", R"({"name":"child"})"));
  f.ok("POST", "/v1/role", R"({"name":"parent","member_roles":[")" + role + R"("]})");
  f.ok("POST", "/v1/env_var", R"({"object_type":"organization","object_id":")" +
                                   std::string(f.ok("GET", "/v1/organization").at("objects").at(0).at("id").as_string()) +
                                   R"(","name":"K"})");
}

TEST_CASE("fidelity: PATCH deep-merges object fields and null is never a delete") {
  fixture f;
  const auto ds = f.id(f.ok("POST", "/v1/dataset", f.p(R"("name":"d","description":"keep","metadata":{"a":{"x":1,"y":2},"b":"B"})")));
  auto d = f.ok("PATCH", "/v1/dataset/" + ds, R"({"metadata":{"a":{"y":3,"z":{"n":null}},"b":null},"description":null})");
  CHECK(json::serialize(d.at("metadata")) == R"({"a":{"x":1,"y":3,"z":{}},"b":"B"})");
  CHECK(d.at("description") == "keep");

  const auto pr = f.id(f.ok("POST", "/v1/prompt", f.p(R"("name":"P","slug":"p","prompt_data":{"options":{"model":"m","params":{"temperature":0}},"prompt":{"type":"chat"}})")));
  auto p = f.ok("PATCH", "/v1/prompt/" + pr, R"({"prompt_data":{"options":{"params":{"max_tokens":5}}}})");
  CHECK(json::serialize(p.at("prompt_data")) ==
        R"({"options":{"model":"m","params":{"temperature":0,"max_tokens":5}},"prompt":{"type":"chat"}})");

  const auto au = f.id(f.ok("POST", "/v1/project_automation", f.p(R"("name":"a","config":{"event_type":"logs","action":{"type":"webhook","url":"u"}})")));
  auto a = f.ok("PATCH", "/v1/project_automation/" + au, R"({"config":{"action":{"url":"v"}}})");
  CHECK(json::serialize(a.at("config")) == R"({"event_type":"logs","action":{"type":"webhook","url":"v"}})");
  // Arrays and scalars replace.
  auto t = f.ok("PATCH", "/v1/dataset/" + ds, R"({"tags":["n"]})");
  CHECK(json::serialize(t.at("tags")) == R"(["n"])");
}

TEST_CASE("fidelity: query strings decode '+', unknown parameters are 400, numbers keep their spelling") {
  fixture f;
  f.ok("POST", "/v1/project", R"({"name":"my project"})");
  auto named = f.objects("/v1/project?project_name=my+project");
  REQUIRE(named.size() == 1);
  CHECK(named[0].at("name") == "my project");
  f.ok("POST", "/v1/prompt", f.p(R"("name":"With spaces","slug":"with spaces")"));
  CHECK(f.objects("/v1/prompt?slug=with+spaces&project_name=p").size() == 1);

  CHECK(has(f.fails(400, "GET", "/v1/project?name=p"), "name"));  // the spec's filter is project_name
  f.fails(400, "GET", "/v1/function?function_type=scorer");
  f.fails(400, "GET", "/v1/project_automation?project_id=" + f.pid);
  f.fails(400, "GET", "/v1/env_var?starting_after=" + f.pid);  // the env_var list has no cursors
  f.fails(400, "GET", "/v1/project/" + f.pid + "?version=1");
  CHECK(f.objects("/v1/project?ids=" + f.pid + "&org_name=org-a&limit=5").size() == 1);

  auto r = f.call("POST", "/v1/dataset", f.p(R"("name":"n","metadata":{"half":0.5,"big":1e20,"one":1.0,"tiny":1.5e-7,"int":3})"));
  REQUIRE(r.status == 200);
  CHECK(has(r.body, R"("half":0.5,)"));
  CHECK(has(r.body, R"("one":1.0,)"));
  CHECK(has(r.body, R"("int":3)"));
  CHECK(!has(r.body, "E-"));
  auto back = f.ok("GET", "/v1/dataset/" + f.id(json::parse(r.body)));
  CHECK(back.at("metadata").at("big").as_double() == 1e20);
  CHECK(back.at("metadata").at("tiny").as_double() == 1.5e-7);
}

TEST_CASE("fidelity: a deleted project's objects are no longer listed or readable") {
  fixture f;
  const auto ds = f.id(f.ok("POST", "/v1/dataset", f.p(R"("name":"d")")));
  const auto ex = f.id(f.ok("POST", "/v1/experiment", f.p(R"("name":"e","dataset_id":")" + ds + "\"")));
  const auto fn = f.code_function("f");
  const auto snap = f.id(f.ok("POST", "/v1/dataset_snapshot", R"({"dataset_id":")" + ds + R"(","name":"s","xact_id":"1"})"));
  f.ok("POST", "/v1/view", R"({"object_type":"dataset","object_id":")" + ds + R"(","view_type":"dataset","name":"v"})");
  const auto keep = f.id(f.ok("POST", "/v1/project", R"({"name":"other"})"));
  f.ok("POST", "/v1/dataset", R"({"project_id":")" + keep + R"(","name":"d"})");

  f.ok("DELETE", "/v1/project/" + f.pid);
  for (std::string type : {"dataset", "experiment", "function", "dataset_snapshot"})
    for (const auto& o : f.objects("/v1/" + type)) CHECK(o.at("project_id") != json::value(f.pid));
  CHECK(f.objects("/v1/dataset").size() == 1);
  CHECK(f.objects("/v1/dataset_snapshot").empty());
  f.fails(404, "GET", "/v1/dataset/" + ds);
  f.fails(404, "GET", "/v1/experiment/" + ex);
  f.fails(404, "GET", "/v1/function/" + fn);
  f.fails(404, "GET", "/v1/dataset_snapshot/" + snap);
  CHECK(f.objects("/v1/view?object_type=dataset&object_id=" + ds).empty());
  f.fails(404, "POST", "/v1/dataset/" + ds + "/fetch", "{}");
}

TEST_CASE("fidelity: prompt versions by transaction id, SDK version id and environment") {
  fixture f;
  auto v1 = f.ok("POST", "/v1/prompt", f.p(R"("name":"P","slug":"p","prompt_data":{"options":{"model":"a"}})"));
  const auto id = f.id(v1);
  const std::string x1(v1.at("_xact_id").as_string());
  auto v2 = f.ok("PATCH", "/v1/prompt/" + id, R"({"prompt_data":{"options":{"model":"b"}}})");
  const std::string x2(v2.at("_xact_id").as_string());
  CHECK(x2 > x1);

  CHECK(f.ok("GET", "/v1/prompt/" + id + "?version=" + x1).at("prompt_data").at("options").at("model") == "a");
  CHECK(f.ok("GET", "/v1/function/" + id + "?version=" + x2).at("prompt_data").at("options").at("model") == "b");
  CHECK(f.ok("GET", "/v1/prompt/" + id).at("prompt_data").at("options").at("model") == "b");
  // The SDK's getPromptVersions hands out prettifyXact(x): x * 205891132094649 mod 2^64 as 16 hex digits.
  char pretty[17];
  std::snprintf(pretty, sizeof pretty, "%016llx",
                static_cast<unsigned long long>(std::stoull(x1) * 205891132094649ull));
  auto by_pretty = f.objects("/v1/prompt?project_id=" + f.pid + "&slug=p&version=" + pretty);
  REQUIRE(by_pretty.size() == 1);
  CHECK(by_pretty[0].at("_xact_id") == json::value(x1));
  // `braintrust pull --version` sends loadPrettyXact(pretty): the inverse product with the top bits 0x0DE1 ORed in.
  {
    const std::uint64_t loaded = (std::stoull(pretty, nullptr, 16) * 1522336535492693385ull) | (0x0DE1ull << 48);
    CHECK(std::to_string(loaded) == x1);
    CHECK(f.ok("GET", "/v1/function?slug=p&version=" + std::to_string(loaded)).at("objects").at(0).at("_xact_id") ==
          json::value(x1));
  }
  f.fails(400, "GET", "/v1/prompt/" + id + "?version=not-a-version");
  f.fails(400, "GET", "/v1/prompt/" + id + "?version=" + x1 + "&environment=production");

  // Environments: CRUD at /environment, assignments at /environment-object.
  f.fails(404, "GET", "/v1/prompt/" + id + "?environment=production");
  f.fails(400, "PUT", "/environment-object/prompt/" + id + "/production", R"({"object_version":")" + x1 + "\"}");
  auto env = f.ok("POST", "/environment", R"({"name":"Production","slug":"production"})");
  CHECK(f.objects("/environment?name=Production").size() == 1);
  f.fails(400, "PUT", "/environment-object/prompt/" + id + "/production", R"({"object_version":"1000000000000000001"})");
  f.ok("PUT", "/environment-object/prompt/" + id + "/production", R"({"object_version":")" + x1 + "\"}");
  CHECK(f.ok("GET", "/environment-object/prompt/" + id + "/production").at("object_version") == json::value(x1));
  CHECK(f.ok("GET", "/v1/prompt/" + id + "?environment=production").at("prompt_data").at("options").at("model") == "a");
  CHECK(f.objects("/v1/prompt?slug=p&project_name=p&environment=production").at(0).at("_xact_id") == json::value(x1));
  f.ok("POST", "/v1/prompt", f.p(R"("name":"Q","slug":"q")"));
  f.fails(400, "GET", "/v1/prompt?environment=production");  // two prompts match
  f.ok("PATCH", "/environment/" + f.id(env), R"({"description":"live"})");
  f.ok("DELETE", "/environment/" + f.id(env));
  CHECK(f.objects("/environment").empty());
}

TEST_CASE("fidelity: /insert-functions and /function/code (braintrust push, project.publish)") {
  fixture f;
  f.ok("POST", "/environment", R"({"name":"Staging","slug":"staging"})");
  auto slot = f.ok("POST", "/function/code", R"({"runtime_context":{"runtime":"node","version":"20"}})");
  const std::string bundle(slot.at("bundleId").as_string());
  CHECK(std::string(slot.at("url").as_string()).find("/_signed/") != std::string::npos);

  const auto prompt_entry = f.p(R"("name":"Pub","slug":"pub","description":"","function_data":{"type":"prompt"},"prompt_data":{"options":{"model":"m"}},"metadata":{"k":1},"environments":[{"slug":"staging"}])");
  const auto code_entry = f.p(R"("name":"Scorer","slug":"scorer","function_type":"scorer","function_data":{"type":"code","data":{"type":"bundle","bundle_id":")" + bundle + R"(","runtime_context":{"runtime":"node","version":"20"},"location":{"type":"function","index":0}}},"if_exists":"replace")");
  auto res = f.ok("POST", "/insert-functions", R"({"functions":[)" + prompt_entry + "," + code_entry + "]}");
  REQUIRE(res.at("functions").as_array().size() == 2);
  CHECK(res.at("ignored_count").to_number<int>() == 0);
  const auto pub = f.id(res.at("functions").at(0));
  auto loaded = f.objects("/v1/prompt?project_name=p&slug=pub");
  REQUIRE(loaded.size() == 1);
  CHECK(loaded[0].at("metadata").at("k").to_number<int>() == 1);
  CHECK(f.ok("GET", "/v1/prompt/" + pub + "?environment=staging").at("slug") == "pub");
  CHECK(f.ok("GET", "/v1/function/" + f.id(res.at("functions").at(1))).at("function_type") == "scorer");

  // if_exists: error (the default) refuses and writes nothing; ignore keeps; replace records a version.
  f.fails(409, "POST", "/insert-functions", R"({"functions":[)" + f.p(R"("name":"New","slug":"new","function_data":{"type":"prompt"})") + "," + prompt_entry + "]}");
  CHECK(f.objects("/v1/prompt?slug=new").empty());
  auto ignored = f.ok("POST", "/insert-functions", R"({"functions":[)" + f.p(R"("name":"Pub2","slug":"pub","function_data":{"type":"prompt"},"if_exists":"ignore")") + "]}");
  CHECK(ignored.at("ignored_count").to_number<int>() == 1);
  CHECK(f.ok("GET", "/v1/prompt/" + pub).at("name") == "Pub");
  f.ok("POST", "/insert-functions", R"({"functions":[)" + f.p(R"("name":"Pub3","slug":"pub","function_data":{"type":"prompt"},"if_exists":"replace")") + "]}");
  CHECK(f.ok("GET", "/v1/prompt/" + pub).at("name") == "Pub3");
  CHECK(f.ok("GET", "/v1/prompt/" + pub + "?environment=staging").at("name") == "Pub");
  f.fails(400, "POST", "/insert-functions", R"({"functions":[)" + f.p(R"("name":"E","slug":"e","function_data":{"type":"prompt"},"environments":[{"slug":"nope"}])") + "]}");
}

TEST_CASE("fidelity: SDK calls /api/experiment/get, /api/ai_secret/get and get_object_info parent_cols") {
  fixture f;
  const auto ex = f.id(f.ok("POST", "/v1/experiment", f.p(R"("name":"run")")));
  auto got = f.ok("POST", "/api/experiment/get", R"({"project_name":"p","experiment_name":"run"})");
  REQUIRE(got.as_array().size() == 1);
  CHECK(f.id(got.at(0)) == ex);
  CHECK(f.ok("POST", "/api/experiment/get", R"({"project_name":"p","experiment_name":"nope"})").as_array().empty());

  f.ok("POST", "/v1/ai_secret", R"({"name":"OPENAI_API_KEY","type":"openai","secret":"sk-very-secret-value-9876"})");
  auto secrets = f.call("POST", "/api/ai_secret/get", "{}");
  REQUIRE(secrets.status == 200);
  CHECK(!has(secrets.body, "very-secret"));
  CHECK(json::parse(secrets.body).at(0).at("preview_secret") == "********9876");

  const auto ds = f.id(f.ok("POST", "/v1/dataset", f.p(R"("name":"d")")));
  auto info = f.ok("POST", "/api/self/get_object_info", R"({"object_type":"dataset","object_ids":[")" + ds + R"("]})");
  CHECK(info.at(0).at("parent_cols").at("project").at("id") == json::value(f.pid));
  CHECK(info.at(0).at("parent_cols").at("project").at("name") == "p");
}

TEST_CASE("fidelity: API keys and service tokens show their secret once, then only a preview") {
  fixture f;
  auto key = f.ok("POST", "/v1/api_key", R"({"name":"ci"})");
  const std::string raw(key.at("key").as_string());
  CHECK(raw.starts_with("sk-"));
  auto again = f.ok("POST", "/v1/api_key", R"({"name":"ci"})");  // no de-duplication by name
  CHECK(f.id(again) != f.id(key));
  auto listed = f.call("GET", "/v1/api_key?api_key_name=ci");
  CHECK(!has(listed.body, raw));
  CHECK(!has(listed.body, "\"key\""));
  CHECK(json::parse(listed.body).at("objects").as_array().size() == 2);
  CHECK(std::string(f.ok("GET", "/v1/api_key/" + f.id(key)).at("preview_name").as_string()).ends_with(raw.substr(raw.size() - 4)));
  f.ok("DELETE", "/v1/api_key/" + f.id(key));
  CHECK(f.objects("/v1/api_key").size() == 1);

  const auto user = std::string(f.ok("GET", "/v1/user").at("objects").at(0).at("id").as_string());
  f.fails(400, "POST", "/v1/service_token", R"({"name":"bot","service_account_id":")" + derived_uuid(1, "x", 1) + "\"}");
  auto tok = f.ok("POST", "/v1/service_token", R"({"name":"bot","service_account_id":")" + user + "\"}");
  CHECK(!has(json::serialize(f.ok("GET", "/v1/service_token")), std::string(tok.at("key").as_string())));
  auto replaced = f.ok("PUT", "/v1/service_token", R"({"name":"bot","service_account_id":")" + user + "\"}");
  CHECK(f.id(replaced) == f.id(tok));
  CHECK(replaced.at("key") != tok.at("key"));
  f.ok("DELETE", "/v1/service_token", R"({"id":")" + f.id(tok) + "\"}");
  CHECK(f.objects("/v1/service_token").empty());
}
