#include "emulator/rest.hpp"

#include "test_support.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <string>

namespace json = boost::json;
using namespace ferry::emulator;

namespace {

struct fixture {
  std::unique_ptr<ferry::stores::kv_store> kv = ferry::stores::kv_store::open_memory(rest_store::column_families());
  rest_store rest{*kv, rest_config{42, "http://127.0.0.1:1"}};
  org_identity org{derived_uuid(1, "org", 0), "emu-org", derived_uuid(1, "user", 0)};

  fixture() { rest.ensure_org(org); }

  struct reply {
    unsigned status;
    json::value body;
  };

  reply call(std::string_view method, std::string_view target, std::string_view body = "") {
    auto r = rest.handle(method, target, body, org);
    REQUIRE_MESSAGE(r.has_value(), "not a REST path: ", target);
    return {r->status, json::parse(r->body)};
  }
  json::object ok(std::string_view method, std::string_view target, std::string_view body = "") {
    auto r = call(method, target, body);
    INFO(method, " ", target, " -> ", json::serialize(r.body));
    REQUIRE(r.status == 200);
    REQUIRE(r.body.is_object());
    return r.body.as_object();
  }
  std::string error(std::string_view method, std::string_view target, std::string_view body, unsigned status) {
    auto r = call(method, target, body);
    INFO(method, " ", target, " -> ", json::serialize(r.body));
    CHECK(r.status == status);
    REQUIRE(r.body.is_object());
    return std::string(r.body.as_object().at("error").as_string());
  }
  std::string project(std::string_view name) {
    return std::string(ok("POST", "/v1/project", R"({"name":")" + std::string(name) + R"("})").at("id").as_string());
  }
  std::vector<std::string> list_names(std::string_view target, std::string_view field = "name") {
    auto o = ok("GET", target);
    std::vector<std::string> names;
    for (auto& v : o.at("objects").as_array()) names.emplace_back(v.as_object().at(field).as_string());
    return names;
  }
};

std::string s(const json::value& v) { return std::string(v.as_string()); }

}  // namespace

TEST_CASE("rest: project create returns read shape, create again returns the existing one unmodified") {
  fixture f;
  auto p = f.ok("POST", "/v1/project", R"({"name":"alpha","description":"first"})");
  CHECK(is_uuid(s(p.at("id"))));
  CHECK(s(p.at("org_id")) == f.org.org_id);
  CHECK(s(p.at("user_id")) == f.org.user_id);
  CHECK(p.at("deleted_at").is_null());
  const auto created = s(p.at("created"));
  CHECK(created.size() == 24);
  CHECK(created.back() == 'Z');
  CHECK(created[19] == '.');

  auto again = f.ok("POST", "/v1/project", R"({"name":"alpha","description":"changed"})");
  CHECK(again == p);  // unmodified, same id
}

TEST_CASE("rest: required fields and body errors are 400 naming the field") {
  fixture f;
  CHECK(f.error("POST", "/v1/project", R"({"description":"x"})", 400).find("name") != std::string::npos);
  CHECK(f.error("POST", "/v1/project", "{not json", 400).find("JSON") != std::string::npos);
  CHECK(f.error("POST", "/v1/project", R"({"name":5})", 400).find("name") != std::string::npos);
  auto pid = f.project("p");
  CHECK(f.error("POST", "/v1/dataset", R"({"name":"d"})", 400).find("project_id") != std::string::npos);
  CHECK(f.error("POST", "/v1/function", R"({"project_id":")" + pid + R"(","name":"f","slug":"f"})", 400)
            .find("function_data") != std::string::npos);
  CHECK(f.error("POST", "/v1/project_score", R"({"project_id":")" + pid + R"(","name":"s","score_type":"bogus"})", 400)
            .find("score_type") != std::string::npos);
  CHECK(f.error("GET", "/v1/view", "", 400).find("object_type") != std::string::npos);
  CHECK(f.error("POST", "/v1/project", R"({"name":"x","org_name":"other-org"})", 403).find("org_name") !=
        std::string::npos);
}

TEST_CASE("rest: child resources need an existing parent project (404 naming it)") {
  fixture f;
  const auto missing = derived_uuid(9, "nope", 1);
  auto msg = f.error("POST", "/v1/dataset", R"({"project_id":")" + missing + R"(","name":"d"})", 404);
  CHECK(msg == "project " + missing + " not found");
}

TEST_CASE("rest: get, patch, delete by id") {
  fixture f;
  auto pid = f.project("p");
  auto d = f.ok("POST", "/v1/dataset", R"({"project_id":")" + pid + R"(","name":"My Data","tags":["a"]})");
  const auto id = s(d.at("id"));
  CHECK(s(d.at("url_slug")) == "my-data");
  CHECK(f.ok("GET", "/v1/dataset/" + id) == d);

  auto patched = f.ok("PATCH", "/v1/dataset/" + id, R"({"description":"new","project_id":"ignored"})");
  CHECK(s(patched.at("description")) == "new");
  CHECK(s(patched.at("project_id")) == pid);
  CHECK(s(patched.at("name")) == "My Data");

  auto deleted = f.ok("DELETE", "/v1/dataset/" + id);
  CHECK(s(deleted.at("id")) == id);
  CHECK(deleted.at("deleted_at").is_string());
  CHECK(f.error("GET", "/v1/dataset/" + id, "", 404) == "dataset " + id + " not found");
  CHECK(f.list_names("/v1/dataset").empty());
  // The name is free again after a delete.
  auto d2 = f.ok("POST", "/v1/dataset", R"({"project_id":")" + pid + R"(","name":"My Data"})");
  CHECK(s(d2.at("id")) != id);
}

TEST_CASE("rest: an id of another type or a malformed id is not found / 400") {
  fixture f;
  auto pid = f.project("p");
  f.error("GET", "/v1/dataset/" + pid, "", 404);
  f.error("GET", "/v1/project/not-a-uuid", "", 400);
}

TEST_CASE("rest: list is newest first and paginates with starting_after / ending_before") {
  fixture f;
  for (int i = 0; i < 5; ++i) f.project("p" + std::to_string(i));
  CHECK(f.list_names("/v1/project") == std::vector<std::string>{"p4", "p3", "p2", "p1", "p0"});

  auto page1 = f.ok("GET", "/v1/project?limit=2").at("objects").as_array();
  REQUIRE(page1.size() == 2);
  const auto last = s(page1[1].as_object().at("id"));
  CHECK(f.list_names("/v1/project?limit=2&starting_after=" + last) == std::vector<std::string>{"p2", "p1"});

  SUBCASE("exactly limit items") { CHECK(f.list_names("/v1/project?limit=5").size() == 5); }
  SUBCASE("limit=0 returns nothing") { CHECK(f.list_names("/v1/project?limit=0").empty()); }
  SUBCASE("starting_after the last id is empty") {
    auto all = f.ok("GET", "/v1/project").at("objects").as_array();
    CHECK(f.list_names("/v1/project?starting_after=" + s(all.back().as_object().at("id"))).empty());
  }
  SUBCASE("ending_before returns the items just before, newest first") {
    auto all = f.ok("GET", "/v1/project").at("objects").as_array();
    const auto p1 = s(all[3].as_object().at("id"));
    CHECK(f.list_names("/v1/project?limit=2&ending_before=" + p1) == std::vector<std::string>{"p3", "p2"});
    CHECK(f.list_names("/v1/project?ending_before=" + s(all[0].as_object().at("id"))).empty());
  }
  SUBCASE("starting_after and ending_before together are 400") {
    f.error("GET", "/v1/project?starting_after=" + last + "&ending_before=" + last, "", 400);
  }
  SUBCASE("unknown starting_after id is 400") {
    CHECK(f.error("GET", "/v1/project?starting_after=" + derived_uuid(7, "x", 1), "", 400).find("starting_after") !=
          std::string::npos);
  }
  SUBCASE("a deleted cursor id still paginates") {
    f.ok("DELETE", "/v1/project/" + last);
    CHECK(f.list_names("/v1/project?limit=2&starting_after=" + last) == std::vector<std::string>{"p2", "p1"});
  }
  SUBCASE("bad limit is 400") { f.error("GET", "/v1/project?limit=-1", "", 400); }
  SUBCASE("ids filter, repeated") {
    auto all = f.ok("GET", "/v1/project").at("objects").as_array();
    const auto a = s(all[0].as_object().at("id"));
    const auto b = s(all[2].as_object().at("id"));
    CHECK(f.list_names("/v1/project?ids=" + a + "&ids=" + b) == std::vector<std::string>{"p4", "p2"});
  }
  SUBCASE("name filter") { CHECK(f.list_names("/v1/project?project_name=p3") == std::vector<std::string>{"p3"}); }
  SUBCASE("org_name of another org lists nothing") { CHECK(f.list_names("/v1/project?org_name=other").empty()); }
}

TEST_CASE("rest: child lists filter by project_id and project_name") {
  fixture f;
  auto a = f.project("a");
  auto b = f.project("b");
  f.ok("POST", "/v1/experiment", R"({"project_id":")" + a + R"(","name":"e1"})");
  f.ok("POST", "/v1/experiment", R"({"project_id":")" + b + R"(","name":"e1"})");
  f.ok("POST", "/v1/experiment", R"({"project_id":")" + b + R"(","name":"e2"})");
  CHECK(f.list_names("/v1/experiment?project_id=" + a) == std::vector<std::string>{"e1"});
  CHECK(f.list_names("/v1/experiment?project_name=b") == std::vector<std::string>{"e2", "e1"});
  CHECK(f.list_names("/v1/experiment?project_name=b&experiment_name=e1") == std::vector<std::string>{"e1"});
}

TEST_CASE("rest: experiment ensure_new gives a new unique name, default public=false") {
  fixture f;
  auto pid = f.project("p");
  auto e1 = f.ok("POST", "/v1/experiment", R"({"project_id":")" + pid + R"(","name":"run"})");
  CHECK(e1.at("public") == false);
  auto same = f.ok("POST", "/v1/experiment", R"({"project_id":")" + pid + R"(","name":"run"})");
  CHECK(same.at("id") == e1.at("id"));
  auto e2 = f.ok("POST", "/v1/experiment", R"({"project_id":")" + pid + R"(","name":"run","ensure_new":true})");
  CHECK(e2.at("id") != e1.at("id"));
  CHECK(s(e2.at("name")) == "run-1");
  CHECK(!e2.contains("ensure_new"));
  auto unnamed = f.ok("POST", "/v1/experiment", R"({"project_id":")" + pid + R"("})");
  CHECK(!s(unnamed.at("name")).empty());
}

TEST_CASE("rest: prompt and function are unique by slug within a project; PUT replaces") {
  fixture f;
  auto pid = f.project("p");
  const std::string body =
      R"({"project_id":")" + pid + R"(","name":"F","slug":"f","function_data":{"type":"prompt"},"origin":{"object_type":"project_logs","object_id":")" + pid + R"(","id":"y"}})";
  auto fn = f.ok("POST", "/v1/function", body);
  CHECK(s(fn.at("log_id")) == "p");
  CHECK(s(fn.at("org_id")) == f.org.org_id);
  CHECK(fn.at("_xact_id").is_string());
  CHECK(fn.at("origin").as_object().at("object_type") == "project_logs");
  auto again = f.ok("POST", "/v1/function",
                    R"({"project_id":")" + pid + R"(","name":"Other","slug":"f","function_data":{"type":"prompt"}})");
  CHECK(again == fn);
  auto put = f.ok("PUT", "/v1/function",
                  R"({"project_id":")" + pid + R"(","name":"Other","slug":"f","function_data":{"type":"prompt"}})");
  CHECK(put.at("id") == fn.at("id"));
  CHECK(s(put.at("name")) == "Other");
  CHECK(!put.contains("origin"));
  CHECK(put.at("_xact_id") != fn.at("_xact_id"));
  CHECK(put.at("created") == fn.at("created"));
  // PUT of a new slug creates.
  auto created = f.ok("PUT", "/v1/prompt", R"({"project_id":")" + pid + R"(","name":"P","slug":"p"})");
  CHECK(created.at("id") != fn.at("id"));
  CHECK(f.list_names("/v1/prompt?slug=p", "slug") == std::vector<std::string>{"p"});
  // No PUT on project.
  f.error("PUT", "/v1/project", R"({"name":"x"})", 405);
}

TEST_CASE("rest: project PATCH deep-merges settings and cannot null them out") {
  fixture f;
  auto pid = f.project("p");
  f.ok("PATCH", "/v1/project/" + pid, R"({"settings":{"comparison_key":"input","remote_eval_sources":[{"url":"u"}]}})");
  auto p = f.ok("PATCH", "/v1/project/" + pid, R"({"settings":{"comparison_key":"output","baseline_experiment_id":null}})");
  auto& settings = p.at("settings").as_object();
  CHECK(s(settings.at("comparison_key")) == "output");
  CHECK(settings.at("remote_eval_sources").as_array().size() == 1);
  CHECK(!settings.contains("baseline_experiment_id"));
  auto p2 = f.ok("PATCH", "/v1/project/" + pid, R"({"settings":null,"name":"renamed"})");
  CHECK(p2.at("settings").is_object());
  CHECK(s(p2.at("name")) == "renamed");
}

TEST_CASE("rest: rename onto an existing name is 409") {
  fixture f;
  f.project("a");
  auto b = f.project("b");
  f.error("PATCH", "/v1/project/" + b, R"({"name":"a"})", 409);
}

TEST_CASE("rest: role and group PATCH add_/remove_ lists") {
  fixture f;
  auto child = f.ok("POST", "/v1/role", R"({"name":"child"})");
  auto role = f.ok("POST", "/v1/role", R"({"name":"r","member_permissions":[{"permission":"read"}]})");
  CHECK(s(role.at("org_id")) == f.org.org_id);
  const auto rid = s(role.at("id"));
  auto r2 = f.ok("PATCH", "/v1/role/" + rid,
                 R"({"add_member_permissions":[{"permission":"update"},{"permission":"read"}],"remove_member_permissions":[{"permission":"read"}],"add_member_roles":[")" +
                     s(child.at("id")) + R"("]})");
  CHECK(json::serialize(r2.at("member_permissions")) == R"([{"permission":"update"}])");
  CHECK(r2.at("member_roles").as_array().size() == 1);

  auto g = f.ok("POST", "/v1/group", R"({"name":"g","member_users":[")" + f.org.user_id + R"("]})");
  auto g2 = f.ok("PATCH", "/v1/group/" + s(g.at("id")),
                 R"({"remove_member_users":[")" + f.org.user_id + R"("],"add_member_groups":[")" + s(g.at("id")) +
                     R"("]})");
  CHECK(g2.at("member_users").as_array().empty());
  CHECK(g2.at("member_groups").as_array().size() == 1);
}

TEST_CASE("rest: ai_secret never returns the secret value; delete by name") {
  fixture f;
  auto a = f.ok("POST", "/v1/ai_secret", R"({"name":"OPENAI_API_KEY","type":"openai","secret":"sk-verysecret1234"})");
  const auto text = json::serialize(a);
  CHECK(text.find("sk-verysecret") == std::string::npos);
  CHECK(s(a.at("preview_secret")) == "********1234");
  CHECK(a.at("updated_at").is_string());
  auto listed = f.ok("GET", "/v1/ai_secret?ai_secret_type=openai");
  CHECK(json::serialize(listed).find("verysecret") == std::string::npos);
  CHECK(listed.at("objects").as_array().size() == 1);
  auto patched = f.ok("PATCH", "/v1/ai_secret/" + s(a.at("id")), R"({"secret":"sk-another9876"})");
  CHECK(s(patched.at("preview_secret")) == "********9876");
  auto del = f.ok("DELETE", "/v1/ai_secret", R"({"name":"OPENAI_API_KEY"})");
  CHECK(del.at("id") == a.at("id"));
  CHECK(f.list_names("/v1/ai_secret").empty());
  f.error("DELETE", "/v1/ai_secret", R"({"name":"OPENAI_API_KEY"})", 404);
}

TEST_CASE("rest: acl identity, list_org bare array, delete by content, batch_update") {
  fixture f;
  auto pid = f.project("p");
  auto g = f.ok("POST", "/v1/group", R"({"name":"g"})");
  const std::string item =
      R"({"object_type":"project","object_id":")" + pid + R"(","group_id":")" + s(g.at("id")) + R"(","permission":"read"})";
  auto acl = f.ok("POST", "/v1/acl", item);
  CHECK(s(acl.at("_object_org_id")) == f.org.org_id);
  CHECK(f.ok("POST", "/v1/acl", item) == acl);

  auto bare = f.call("GET", "/v1/acl/list_org");
  REQUIRE(bare.status == 200);
  REQUIRE(bare.body.is_array());
  CHECK(bare.body.as_array().size() == 1);
  CHECK(f.call("GET", "/v1/acl/list_org?permission=update").body.as_array().empty());

  CHECK(f.ok("GET", "/v1/acl?object_type=project&object_id=" + pid).at("objects").as_array().size() == 1);
  f.error("GET", "/v1/acl?object_type=project", "", 400);
  f.error("POST", "/v1/acl", R"({"object_type":"project","object_id":")" + pid + R"(","permission":"read"})", 400);
  f.error("POST", "/v1/acl",
          R"({"object_type":"project","object_id":")" + pid + R"(","user_id":")" + f.org.user_id +
              R"(","permission":"read","role_id":")" + s(g.at("id")) + R"("})",
          400);

  const std::string update_item = R"({"object_type":"project","object_id":")" + pid + R"(","group_id":")" +
                                  s(g.at("id")) + R"(","permission":"update"})";
  auto batch = f.ok("POST", "/v1/acl/batch_update", R"({"add_acls":[)" + update_item + R"(],"remove_acls":[)" + item + "]}");
  CHECK(batch.at("added_acls").as_array().size() == 1);
  CHECK(batch.at("removed_acls").as_array().size() == 1);
  auto remaining = f.call("GET", "/v1/acl/list_org").body.as_array();
  REQUIRE(remaining.size() == 1);
  CHECK(s(remaining[0].as_object().at("permission")) == "update");

  auto del = f.ok("DELETE", "/v1/acl",
                  R"({"object_type":"project","object_id":")" + pid + R"(","group_id":")" + s(g.at("id")) +
                      R"(","permission":"update"})");
  CHECK(del.at("id") == remaining[0].as_object().at("id"));
  CHECK(f.call("GET", "/v1/acl/list_org").body.as_array().empty());
}

TEST_CASE("rest: users, organization, member invites") {
  fixture f;
  auto users = f.ok("GET", "/v1/user").at("objects").as_array();
  REQUIRE(users.size() == 1);
  CHECK(s(users[0].as_object().at("id")) == f.org.user_id);
  CHECK(f.ok("GET", "/v1/user/" + f.org.user_id).at("id") == users[0].as_object().at("id"));
  f.error("POST", "/v1/user", "{}", 405);

  auto org = f.ok("GET", "/v1/organization/" + f.org.org_id);
  CHECK(s(org.at("name")) == "emu-org");
  CHECK(s(org.at("api_url")) == "http://127.0.0.1:1");
  CHECK(f.ok("GET", "/v1/organization").at("objects").as_array().size() == 1);
  f.error("GET", "/v1/organization/" + derived_uuid(3, "o", 3), "", 404);

  auto res = f.ok("PATCH", "/v1/organization/members",
                  R"({"invite_users":{"emails":["New.Person@Example.com "],"send_invite_emails":false}})");
  CHECK(s(res.at("status")) == "success");
  CHECK(res.at("added_users").as_array().size() == 1);
  CHECK(f.list_names("/v1/user?email=new.person@example.com", "email") ==
        std::vector<std::string>{"new.person@example.com"});
  // Inviting again adds nobody.
  CHECK(f.ok("PATCH", "/v1/organization/members", R"({"invite_users":{"emails":["new.person@example.com"]}})")
            .at("added_users")
            .as_array()
            .empty());
}

TEST_CASE("rest: the remaining resources follow the table (unique key, PUT, filters)") {
  fixture f;
  auto pid = f.project("p");
  const std::string p = R"("project_id":")" + pid + "\"";
  struct item {
    std::string type, body, name_param;
  };
  std::vector<item> items = {
      {"project_tag", "{" + p + R"(,"name":"n","color":"red"})", "project_tag_name"},
      {"span_iframe", "{" + p + R"(,"name":"n","url":"https://x"})", "span_iframe_name"},
      {"project_score", "{" + p + R"(,"name":"n","score_type":"slider"})", "project_score_name"},
      {"project_automation", "{" + p + R"(,"name":"n","config":{"event_type":"logs"}})", "project_automation_name"},
      {"view", R"({"object_type":"project","object_id":")" + pid + R"(","view_type":"logs","name":"n"})", "view_name"},
      {"env_var", R"({"object_type":"project","object_id":")" + pid + R"(","name":"n","value":"v-secret-value"})",
       "env_var_name"},
      {"mcp_server", "{" + p + R"(,"name":"n","url":"https://mcp"})", "mcp_server_name"},
  };
  for (const auto& it : items) {
    CAPTURE(it.type);
    auto a = f.ok("POST", "/v1/" + it.type, it.body);
    CHECK(f.ok("POST", "/v1/" + it.type, it.body) == a);
    CHECK(json::serialize(a).find("v-secret-value") == std::string::npos);
    std::string list = "/v1/" + it.type + "?" + it.name_param + "=n";
    if (it.type == "view" || it.type == "env_var") list += "&object_type=project&object_id=" + pid;
    CHECK(f.list_names(list).size() == 1);
    std::string patch = R"({"name":"m")";
    if (it.type == "view") patch += R"(,"object_type":"project","object_id":")" + pid + "\"";
    patch += "}";
    CHECK(s(f.ok("PATCH", "/v1/" + it.type + "/" + s(a.at("id")), patch).at("name")) == "m");
    f.ok("DELETE", "/v1/" + it.type + "/" + s(a.at("id")));
  }
  // dataset snapshot: parent is a dataset
  auto d = f.ok("POST", "/v1/dataset", "{" + p + R"(,"name":"d"})");
  auto snap = f.ok("POST", "/v1/dataset_snapshot", R"({"dataset_id":")" + s(d.at("id")) + R"(","name":"s","xact_id":"1"})");
  CHECK(snap.at("dataset_id") == d.at("id"));
  f.error("PATCH", "/v1/view/" + derived_uuid(1, "v", 1), R"({"name":"x"})", 404);
}

TEST_CASE("rest: paths it does not own are left to the caller") {
  fixture f;
  auto pid = f.project("p");
  CHECK(!f.rest.handle("POST", "/v1/project_logs/" + pid + "/insert", "{}", f.org));
  CHECK(!f.rest.handle("POST", "/v1/experiment/" + pid + "/fetch", "{}", f.org));
  CHECK(!f.rest.handle("POST", "/v1/insert", "{}", f.org));
  CHECK(!f.rest.handle("POST", "/btql", "{}", f.org));
  CHECK(f.rest.object_exists("project", pid, f.org.org_id));
  CHECK(!f.rest.object_exists("dataset", pid, f.org.org_id));
  CHECK(!f.rest.object_exists("project", pid, "other-org"));
}

TEST_CASE("rest: objects survive a reopen of a RocksDB store and ids keep increasing") {
  ferry::test::temp_dir dir("emu-rest");
  std::string pid;
  org_identity org{derived_uuid(1, "org", 0), "o", derived_uuid(1, "user", 0)};
  {
    auto kv = ferry::stores::kv_store::open_rocksdb(dir.str(), rest_store::column_families());
    rest_store rest(*kv, {});
    rest.ensure_org(org);
    auto r = rest.handle("POST", "/v1/project", R"({"name":"kept"})", org);
    pid = std::string(json::parse(r->body).as_object().at("id").as_string());
  }
  auto kv = ferry::stores::kv_store::open_rocksdb(dir.str(), rest_store::column_families());
  rest_store rest(*kv, {});
  rest.ensure_org(org);
  CHECK(rest.object_exists("project", pid, org.org_id));
  auto r = rest.handle("POST", "/v1/project", R"({"name":"later"})", org);
  auto list = json::parse(rest.handle("GET", "/v1/project", "", org)->body).as_object().at("objects").as_array();
  REQUIRE(list.size() == 2);
  CHECK(list[0].as_object().at("name") == "later");
}
