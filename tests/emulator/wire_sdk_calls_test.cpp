// Over-the-wire tests of the calls the real JS SDK and CLIs make that the emulator served wrongly after the
// issue 15 branches merged (tests/sdk's bt_data, prompt_publish and prompt_push): `bt sync`'s
// `created >= NOW() - INTERVAL n SECOND` filter, getPromptVersions()' `project_prompts` audit-log BTQL, and
// `braintrust push`'s slug tool references in /insert-functions. The whole emulator runs on 127.0.0.1:0 and
// the production api_client speaks to it.
#include "wire_support.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <set>

using namespace ferry::test::wire_names;

namespace {

asio::awaitable<std::string> make_project(ferry::transports::api_client& api, std::string name) {
  auto p = co_await api.post_json("/v1/project", jo("name", name));
  REQUIRE_MESSAGE(p.ok(), p.body);
  co_return str(p.json.at("id"));
}

asio::awaitable<ferry::transports::json_result> btql(ferry::transports::api_client& api, json::object body) {
  co_return co_await api.post_json("/btql", body, no_retry());
}

std::set<std::string> ids_of(const json::value& rows) {
  std::set<std::string> out;
  for (const auto& r : rows.as_array()) out.insert(str(r.at("id")));
  return out;
}

}  // namespace

TEST_CASE("wire sdk calls: bt sync's NOW() - INTERVAL filter keeps recent rows only, on the key-range path and per row") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    const auto pid = co_await make_project(*w.api, "sync");
    json::array rows;
    rows.push_back(jo("project_id", pid, "log_id", "g", "id", "old", "created", "2020-01-01T00:00:00.000Z", "input", 1));
    rows.push_back(jo("project_id", pid, "log_id", "g", "id", "new", "input", 2));  // created: now
    auto ins = co_await w.api->logs3(json::serialize(jo("rows", std::move(rows), "api_version", 2)));
    REQUIRE_MESSAGE(ins.ok(), ins.body);
    const std::string from = "project_logs('" + pid + "')";

    // Exactly what `bt sync pull` sends.
    auto sync = co_await btql(*w.api, jo("fmt", "json", "query",
                                         "select: * | from: " + from + " spans | limit: 100 | sort: _pagination_key DESC"
                                         " | filter: created >= NOW() - INTERVAL 259200 SECOND"));
    REQUIRE_MESSAGE(sync.ok(), sync.body);
    CHECK(ids_of(sync.json.at("data")) == std::set<std::string>{"new"});

    // The quoted form and plural units; a time literal plus an interval; a row's time shifted per row.
    auto quoted = co_await btql(*w.api, jo("query", "select: id\nfrom: " + from + "\nfilter: created < NOW() - INTERVAL '2 days'"));
    REQUIRE_MESSAGE(quoted.ok(), quoted.body);
    CHECK(ids_of(quoted.json.at("data")) == std::set<std::string>{"old"});
    auto literal = co_await btql(*w.api, jo("query", "select: id\nfrom: " + from +
                                                         "\nfilter: created <= '2019-12-31T00:00:00Z' + INTERVAL 1 DAY"));
    REQUIRE_MESSAGE(literal.ok(), literal.body);
    CHECK(ids_of(literal.json.at("data")) == std::set<std::string>{"old"});
    auto per_row = co_await btql(*w.api, jo("query", "select: id, created + INTERVAL 90 MINUTES as later\nfrom: " + from +
                                                         "\nfilter: input = 1"));
    REQUIRE_MESSAGE(per_row.ok(), per_row.body);
    CHECK(per_row.json.at("data") == ja(jo("id", "old", "later", "2020-01-01T01:30:00.000Z")));

    // Month and year have no fixed length; an interval alone is not a value.
    for (const char* bad : {"created >= NOW() - INTERVAL 1 MONTH", "input = INTERVAL 1 DAY", "created >= INTERVAL 1 DAY - NOW()"}) {
      auto r = co_await btql(*w.api, jo("query", "select: *\nfrom: " + from + "\nfilter: " + bad));
      CHECK_MESSAGE(r.status == 400, bad);
      CHECK_MESSAGE(r.body.find("filter") != std::string::npos, r.body);
    }
  }());
}

TEST_CASE("wire sdk calls: project_prompts with audit_log returns each prompt version (getPromptVersions)") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    const auto pid = co_await make_project(*w.api, "prompts");
    auto v1 = co_await w.api->post_json(
        "/v1/prompt", jo("project_id", pid, "name", "Greeter", "slug", "greeter", "prompt_data", jo("options", jo("model", "a"))));
    REQUIRE_MESSAGE(v1.ok(), v1.body);
    const auto id = str(v1.json.at("id"));
    auto v2 = co_await w.api->patch_json("/v1/prompt/" + id, jo("prompt_data", jo("options", jo("model", "b"))));
    REQUIRE_MESSAGE(v2.ok(), v2.body);
    auto other = co_await w.api->post_json("/v1/prompt", jo("project_id", pid, "name", "Other", "slug", "other"));
    auto code = co_await w.api->post_json(
        "/v1/function", jo("project_id", pid, "name", "Code", "slug", "code", "function_data", jo("type", "code")));
    REQUIRE((other.ok() && code.ok()));

    // The SDK's request, as getPromptVersions(projectId, promptId) sends it.
    json::object from = jo("op", "function", "name", jo("op", "ident", "name", ja("project_prompts")), "args",
                           ja(jo("op", "literal", "value", pid)));
    json::object filter = jo("op", "eq", "left", jo("op", "ident", "name", ja("id")), "right", jo("op", "literal", "value", id));
    json::object query = jo("from", from, "select", ja(jo("op", "star")), "filter", filter);
    auto versions = co_await btql(*w.api, jo("query", query, "audit_log", true, "use_columnstore", false,
                                             "brainstore_realtime", true));
    REQUIRE_MESSAGE(versions.ok(), versions.body);
    const auto& rows = versions.json.at("data").as_array();
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].at("_xact_id") == v1.json.at("_xact_id"));
    CHECK(rows[1].at("_xact_id") == v2.json.at("_xact_id"));
    CHECK(rows[0].at("_xact_id") != rows[1].at("_xact_id"));
    for (const auto& r : rows) {
      CHECK(str(r.at("id")) == id);
      CHECK(r.at("audit_data") == jo("action", "upsert"));
    }
    CHECK(rows[0].at("prompt_data").at("options").at("model") == "a");
    CHECK(rows[1].at("prompt_data").at("options").at("model") == "b");

    // Without audit_log: the current objects; project_functions includes code functions.
    auto prompts = co_await btql(*w.api, jo("query", "select: *\nfrom: project_prompts('" + pid + "')"));
    REQUIRE_MESSAGE(prompts.ok(), prompts.body);
    CHECK(prompts.json.at("data").as_array().size() == 2);
    auto functions = co_await btql(*w.api, jo("query", "select: slug\nfrom: project_functions('" + pid + "')\nsort: slug"));
    REQUIRE_MESSAGE(functions.ok(), functions.body);
    CHECK(functions.json.at("data") == ja(jo("slug", "code"), jo("slug", "greeter"), jo("slug", "other")));

    // Unknown project: 404; a pinned version is not served for these sources: 400.
    auto missing = co_await btql(*w.api, jo("query", "select: *\nfrom: project_prompts('no-such-project')"));
    CHECK(missing.status == 404);
    auto pinned = co_await btql(*w.api, jo("query", "select: *\nfrom: project_prompts('" + pid + "')", "version",
                                           str(v1.json.at("_xact_id"))));
    CHECK(pinned.status == 400);
  }());
}

TEST_CASE("wire sdk calls: /insert-functions resolves slug tool references to function ids") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    const auto pid = co_await make_project(*w.api, "push");
    auto tool_ref = [&](std::string slug) { return jo("type", "slug", "project_id", pid, "slug", slug); };
    auto prompt = [&](std::string slug, json::object ref) {
      return jo("project_id", pid, "name", slug, "slug", slug, "function_data", jo("type", "prompt"), "prompt_data",
                jo("prompt", jo("type", "chat", "messages", ja()), "tool_functions", ja(ref)));
    };
    auto tool = jo("project_id", pid, "name", "Adder", "slug", "adder", "function_type", "tool", "function_data",
                   jo("type", "code"));

    // The prompt comes before the tool it names, in the same request.
    auto ins = co_await w.api->post_json("/insert-functions", jo("functions", ja(prompt("calc", tool_ref("adder")), tool)));
    REQUIRE_MESSAGE(ins.ok(), ins.body);
    const auto& out = ins.json.at("functions").as_array();
    REQUIRE(out.size() == 2);
    CHECK(out[0].at("slug") == "calc");  // the reply keeps the request's order
    const auto adder_id = str(out[1].at("id"));
    auto calc = co_await w.api->get_json("/v1/prompt/" + str(out[0].at("id")));
    REQUIRE(calc.ok());
    CHECK(calc.json.at("prompt_data").at("tool_functions") == ja(jo("type", "function", "id", adder_id)));

    // A stored function is found by slug too.
    auto later = co_await w.api->post_json("/insert-functions", jo("functions", ja(prompt("calc2", tool_ref("adder")))));
    REQUIRE_MESSAGE(later.ok(), later.body);
    auto calc2 = co_await w.api->get_json("/v1/prompt/" + str(later.json.at("functions").at(0).at("id")));
    CHECK(calc2.json.at("prompt_data").at("tool_functions") == ja(jo("type", "function", "id", adder_id)));

    // An unknown slug is 400 naming the field, and nothing of the request is written; so is a cycle.
    auto bad = co_await w.api->post_json(
        "/insert-functions", jo("functions", ja(prompt("ok", tool_ref("adder")), prompt("bad", tool_ref("nope")))), no_retry());
    CHECK(bad.status == 400);
    CHECK_MESSAGE(bad.body.find("functions[1].prompt_data.tool_functions[0]") != std::string::npos, bad.body);
    auto cycle = co_await w.api->post_json(
        "/insert-functions", jo("functions", ja(prompt("a", tool_ref("b")), prompt("b", tool_ref("a")))), no_retry());
    CHECK(cycle.status == 400);
    auto all = co_await w.api->get_json("/v1/function", qp("project_id", pid));
    REQUIRE(all.ok());
    CHECK(all.json.at("objects").as_array().size() == 3);  // adder, calc, calc2
  }());
}
