// Over-the-wire tests of the emulator's REST surface with the production api_client: every resource type
// through create / create-returns-existing / get / patch / list / delete, the spec's required read fields,
// list pagination edge cases, 400 / 404 / 409 and their classification, ACLs, users and the organization.
#include "wire_support.hpp"

#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <set>

using namespace ferry::test::wire_names;

namespace {

json::object obj(std::string_view text) { return json::parse(text).as_object(); }

struct resource_case {
  std::string type;
  json::object create;
  std::vector<std::string> required;  // the OpenAPI schema's `required` read fields
  std::string name_param;             // list filter by name
  query_params scope;                 // query params a list needs (view, env_var)
  json::object patch_extra;           // fields a PATCH must carry besides the patched one (view)
  std::string patch_field = "description";  // a string field the type's PATCH accepts
};

/// One case per REST resource type; `pid` / `did` are an existing project and dataset.
std::vector<resource_case> resource_cases(const std::string& pid, const std::string& did) {
  const json::object in_project = jo("object_type", "project", "object_id", pid);
  const query_params project_scope = qp("object_type", "project", "object_id", pid);

  return {
      {"project", obj(R"({"name":"wp"})"), {"id", "org_id", "name"}, "project_name", {}, {}},
      {"dataset", jo("project_id", pid, "name", "wd"), {"id", "project_id", "name", "url_slug"}, "dataset_name", {}, {}},
      {"experiment", jo("project_id", pid, "name", "we"), {"id", "project_id", "name", "public"}, "experiment_name",
       {}, {}},
      {"prompt", jo("project_id", pid, "name", "wpr", "slug", "wpr", "prompt_data", json::object()),
       {"id", "_xact_id", "project_id", "log_id", "org_id", "name", "slug"}, "prompt_name", {}, {}},
      {"function",
       jo("project_id", pid, "name", "wf", "slug", "wf", "function_data", obj(R"({"type":"prompt"})")),
       {"id", "_xact_id", "project_id", "log_id", "org_id", "name", "slug", "function_data"}, "function_name", {}, {}},
      {"project_score", jo("project_id", pid, "name", "ws", "score_type", "slider"),
       {"id", "project_id", "user_id", "name", "score_type"}, "project_score_name", {}, {}},
      {"project_tag", jo("project_id", pid, "name", "wt"), {"id", "project_id", "user_id", "name"},
       "project_tag_name", {}, {}},
      {"span_iframe", jo("project_id", pid, "name", "wi", "url", "https://iframe.example.com"),
       {"id", "project_id", "name", "url"}, "span_iframe_name", {}, {}},
      {"view", jo("object_type", "project", "object_id", pid, "view_type", "logs", "name", "wv"),
       {"id", "object_type", "object_id", "view_type", "name"}, "view_name", project_scope, in_project, "view_type"},
      {"project_automation", jo("project_id", pid, "name", "wa", "config", obj(R"({"event_type":"logs"})")),
       {"id", "project_id", "name", "config"}, "project_automation_name", {}, {}},
      {"role", obj(R"({"name":"wr","member_permissions":[]})"), {"id", "name"}, "role_name", {}, {}},
      {"group", obj(R"({"name":"wg"})"), {"id", "org_id", "name"}, "group_name", {}, {}},
      {"ai_secret", obj(R"({"name":"wk","type":"openai","secret":"sk-wire-secret-value"})"),
       {"id", "org_id", "name"}, "ai_secret_name", {}, {}, "type"},
      {"env_var", jo("object_type", "project", "object_id", pid, "name", "WIRE_VAR", "value", "v-secret"),
       {"id", "object_type", "object_id", "name"}, "env_var_name", project_scope, {}, "name"},
      {"mcp_server", jo("project_id", pid, "name", "wm", "url", "https://mcp.example.com"),
       {"id", "project_id", "name", "url"}, "mcp_server_name", {}, {}},
      {"dataset_snapshot", jo("dataset_id", did, "name", "wss", "xact_id", "1000000000000000001"),
       {"id", "dataset_id", "name", "description", "xact_id", "created"}, "dataset_snapshot_name", {}, {}},
  };
}

}  // namespace

TEST_CASE("wire rest: every resource type - create, create returns existing, get, patch, list, delete") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    auto p = co_await w.api->post_json("/v1/project", obj(R"({"name":"wire-parent"})"));
    REQUIRE(p.ok());
    const auto pid = str(p.json.at("id"));
    auto d = co_await w.api->post_json("/v1/dataset", jo("project_id", pid, "name", "wire-parent-ds"));
    REQUIRE(d.ok());
    const auto did = str(d.json.at("id"));
    const auto cases = resource_cases(pid, did);

    for (auto& c : cases) {
      CAPTURE(c.type);
      const std::string path = "/v1/" + c.type;
      auto created = co_await w.api->post_json(path, c.create);
      REQUIRE_MESSAGE(created.ok(), created.error);
      CHECK(created.status == 200);
      const auto& o = created.json.as_object();
      for (const auto& f : c.required) CHECK_MESSAGE(o.contains(f), "missing read field " << f);
      CHECK(ferry::emulator::is_uuid(str(o.at("id"))));
      const auto id = str(o.at("id"));

      // POST again with another description: the existing object comes back unmodified.
      auto again_body = c.create;
      again_body["description"] = "second post";
      auto again = co_await w.api->post_json(path, again_body);
      REQUIRE(again.ok());
      CHECK(str(again.json.at("id")) == id);
      const auto* kept_description = again.json.as_object().if_contains("description");
      CHECK((kept_description == nullptr || kept_description->is_null()));

      auto got = co_await w.api->get_json(path + "/" + id);
      REQUIRE(got.ok());
      CHECK(got.json == created.json);

      // PATCH one string field (view_type / type / name where the type has no description).
      const std::string new_value = c.patch_field == "view_type" ? "experiments"
                                    : c.patch_field == "type"    ? "anthropic"
                                    : c.patch_field == "name"    ? "WIRE_VAR_RENAMED"
                                                                 : "patched over the wire";
      auto patch = c.patch_extra;
      patch[c.patch_field] = new_value;
      auto patched = co_await w.api->patch_json(path + "/" + id, patch);
      REQUIRE_MESSAGE(patched.ok(), patched.error);
      CHECK(str(patched.json.at(c.patch_field)) == new_value);
      CHECK(str(patched.json.at("id")) == id);
      {
        auto reread = co_await w.api->get_json(path + "/" + id);
        CHECK(str(reread.json.at(c.patch_field)) == new_value);
      }

      auto q = c.scope;
      q.emplace_back(c.name_param, str(patched.json.at("name")));
      auto listed = co_await w.api->get_json(path, q);
      REQUIRE(listed.ok());
      REQUIRE(listed.json.at("objects").as_array().size() == 1);
      CHECK(str(listed.json.at("objects").at(0).at("id")) == id);

      if (c.type == "ai_secret") {
        CHECK_FALSE(o.contains("secret"));
        CHECK(str(o.at("preview_secret")) == "********alue");
        CHECK(listed.body.find("sk-wire-secret-value") == std::string::npos);
      }
      if (c.type == "env_var") CHECK(listed.body.find("v-secret") == std::string::npos);

      auto deleted = co_await w.api->del(path + "/" + id);
      REQUIRE_MESSAGE(deleted.ok(), deleted.error);
      CHECK(str(deleted.json.at("id")) == id);
      auto gone = co_await w.api->get_json(path + "/" + id);
      CHECK(gone.status == 404);
      CHECK(gone.outcome == io_outcome::not_found);
      CHECK(gone.attempts == 1);
      {
        auto aw2 = co_await w.api->get_json(path, q);
        CHECK(aw2.json.at("objects").as_array().empty());
      }
    }
  }());
}

TEST_CASE("wire rest: list pagination - limit=1 walk, ending_before, both cursors, unknown cursor, empty, filters") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    std::vector<std::string> ids;  // oldest first
    for (int i = 0; i < 5; ++i) {
      auto r = co_await w.api->post_json("/v1/project", jo("name", "page-" + std::to_string(i)));
      REQUIRE(r.ok());
      ids.push_back(str(r.json.at("id")));
    }
    std::vector<std::string> newest_first(ids.rbegin(), ids.rend());

    // limit=1 walk with starting_after until an empty page.
    std::vector<std::string> walked;
    std::string after;
    for (int page = 0; page < 10; ++page) {
      query_params q = qp("limit", "1");
      if (!after.empty()) q.emplace_back("starting_after", after);
      auto r = co_await w.api->get_json("/v1/project", q);
      REQUIRE(r.ok());
      const auto& objs = r.json.at("objects").as_array();
      if (objs.empty()) break;
      REQUIRE(objs.size() == 1);
      after = str(objs[0].at("id"));
      walked.push_back(after);
    }
    CHECK(walked == newest_first);
    {
      auto aw3 = co_await w.api->list_objects("/v1/project", {}, 2);
      CHECK(aw3.size() == 5);
    }

    // ending_before the oldest with limit 2: the two just newer than it, still newest first.
    auto before = co_await w.api->get_json("/v1/project", qp("ending_before", ids[0], "limit", "2"));
    REQUIRE(before.ok());
    REQUIRE(before.json.at("objects").as_array().size() == 2);
    CHECK(str(before.json.at("objects").at(0).at("id")) == ids[2]);
    CHECK(str(before.json.at("objects").at(1).at("id")) == ids[1]);
    {
      auto aw4 = co_await w.api->get_json("/v1/project", qp("ending_before", ids[4]));
      CHECK(aw4.json.at("objects").as_array().empty());
    }

    auto both = co_await w.api->get_json("/v1/project", qp("starting_after", ids[3], "ending_before", ids[1]));
    CHECK(both.status == 400);
    CHECK(both.outcome == io_outcome::fatal);
    CHECK(both.error.find("mutually exclusive") != std::string::npos);
    CHECK(both.attempts == 1);

    auto unknown = co_await w.api->get_json("/v1/project", qp("starting_after", "00000000-0000-4000-8000-000000000000"));
    CHECK(unknown.status == 400);
    CHECK(unknown.error.find("starting_after") != std::string::npos);

    // A deleted id still works as a cursor (a client paginating while objects are deleted).
    {
      auto aw5 = co_await w.api->del("/v1/project/" + ids[3]);
      REQUIRE(aw5.ok());
    }
    auto past_deleted = co_await w.api->get_json("/v1/project", qp("starting_after", ids[3]));
    REQUIRE(past_deleted.ok());
    CHECK(past_deleted.json.at("objects").as_array().size() == 3);

    {
      auto aw6 = co_await w.api->get_json("/v1/project", qp("limit", "0"));
      CHECK(aw6.json.at("objects").as_array().empty());
    }
    auto bad_limit = co_await w.api->get_json("/v1/project", qp("limit", "-1"));
    CHECK(bad_limit.status == 400);
    auto empty = co_await w.api->get_json("/v1/project_tag");
    REQUIRE(empty.ok());
    CHECK(empty.body == R"({"objects":[]})");

    // Filters: name, project_id, project_name, ids, org_name.
    auto named = co_await w.api->get_json("/v1/project", qp("project_name", "page-2"));
    REQUIRE(named.json.at("objects").as_array().size() == 1);
    CHECK(str(named.json.at("objects").at(0).at("id")) == ids[2]);
    for (int i = 0; i < 3; ++i)
      {
        auto aw7 = co_await w.api->post_json("/v1/dataset", jo("project_id", ids[i % 2], "name", "ds-" + std::to_string(i)));
        REQUIRE(aw7
                  .ok());
      }
    {
      auto aw8 = co_await w.api->get_json("/v1/dataset", qp("project_id", ids[0]));
      CHECK(aw8.json.at("objects").as_array().size() == 2);
    }
    {
      auto aw9 = co_await w.api->get_json("/v1/dataset", qp("project_name", "page-1"));
      CHECK(aw9.json.at("objects").as_array().size() ==
          1);
    }
    {
      auto aw10 = co_await w.api->get_json("/v1/dataset", qp("project_name", "no-such"));
      CHECK(aw10.json.at("objects").as_array().empty());
    }
    {
      auto aw11 = co_await w.api->get_json("/v1/project", qp("ids", ids[0], "ids", ids[4]));
      CHECK(aw11
              .json.at("objects")
              .as_array()
              .size() == 2);
    }
    {
      auto aw12 = co_await w.api->get_json("/v1/project", qp("org_name", "wire-org"));
      CHECK(aw12.json.at("objects").as_array().size() ==
          4);
    }
    {
      auto aw13 = co_await w.api->get_json("/v1/project", qp("org_name", "other-org"));
      CHECK(aw13.json.at("objects").as_array().empty());
    }
  }());
}

TEST_CASE("wire rest: 400, 401, 403, 404, 405 and 409 reach the client classified with the server's message") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    auto missing = co_await w.api->post_json("/v1/project", json::object{});
    CHECK(missing.status == 400);
    CHECK(missing.outcome == io_outcome::fatal);
    CHECK(missing.error.find("missing required field: name") != std::string::npos);
    auto malformed = co_await w.api->call(http::verb::post, "/v1/project", "{not json");
    CHECK(malformed.status == 400);
    CHECK(malformed.body.find("\"error\"") != std::string::npos);

    auto orphan = co_await w.api->post_json(
        "/v1/dataset", jo("project_id", "00000000-0000-4000-8000-000000000000", "name", "d"));
    CHECK(orphan.status == 404);
    CHECK(orphan.outcome == io_outcome::not_found);
    CHECK(orphan.error.find("project 00000000-0000-4000-8000-000000000000 not found") != std::string::npos);
    {
      auto aw14 = co_await w.api->get_json("/v1/project/not-a-uuid");
      CHECK(aw14.status == 400);
    }
    {
      auto aw15 = co_await w.api->get_json("/v1/no_such_resource");
      CHECK(aw15.status == 404);
    }
    {
      auto aw16 = co_await w.api->post_json("/v1/project", jo("name", "x", "org_name", "someone-else"));
      CHECK(aw16
              .status == 403);
    }

    auto a = co_await w.api->post_json("/v1/project", jo("name", "a"));
    auto b = co_await w.api->post_json("/v1/project", jo("name", "b"));
    REQUIRE((a.ok() && b.ok()));
    // A rename onto an existing name conflicts: 409 is retryable for the client, so ask for one attempt.
    auto conflict = co_await w.api->patch_json("/v1/project/" + str(b.json.at("id")), jo("name", "a"),
                                               no_retry());
    CHECK(conflict.status == 409);
    CHECK(conflict.outcome == io_outcome::transient);
    CHECK(conflict.error.find("already exists") != std::string::npos);
    auto wrong_type = co_await w.api->patch_json("/v1/acl/" + str(a.json.at("id")), json::object{});
    CHECK(wrong_type.status == 404);  // a project id is not an acl id
    auto no_put = co_await w.api->put_json("/v1/project", jo("name", "a"));
    CHECK(no_put.status == 405);  // projects have POST only
    CHECK(no_put.outcome == io_outcome::fatal);

    // A wrong key: 401, fatal, not retried.
    ferry::transports::api_client_config bad;
    bad.api_key = "not-a-key";
    bad.clock = &w.clock;
    ferry::transports::api_client stranger(*w.http, bad);
    auto denied = co_await stranger.get_json("/v1/project");
    CHECK(denied.status == 401);
    CHECK(denied.outcome == io_outcome::fatal);
    CHECK(denied.attempts == 1);
  }());
}

TEST_CASE("wire rest: ACLs (list_org bare array, identity, batch_update, delete by content), users, organization") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    auto p = co_await w.api->post_json("/v1/project", jo("name", "acl-project"));
    auto g = co_await w.api->post_json("/v1/group", jo("name", "acl-group"));
    auto users = co_await w.api->get_json("/v1/user");
    REQUIRE((p.ok() && g.ok() && users.ok()));
    REQUIRE(users.json.at("objects").as_array().size() == 1);
    const auto uid = str(users.json.at("objects").at(0).at("id"));
    {
      auto aw17 = co_await w.api->get_json("/v1/user/" + uid);
      CHECK(str(aw17.json.at("id")) == uid);
    }
    const auto pid = str(p.json.at("id"));
    const auto gid = str(g.json.at("id"));

    const json::object user_read = jo("object_type", "project", "object_id", pid, "user_id", uid, "permission", "read");
    const json::object group_update = jo("object_type", "project", "object_id", pid, "group_id", gid, "permission", "update");
    auto a1 = co_await w.api->post_json("/v1/acl", user_read);
    REQUIRE(a1.ok());
    CHECK(str(a1.json.at("_object_org_id")) == w.server.emu.orgs()[0].org_id);
    {
      auto aw18 = co_await w.api->post_json("/v1/acl", user_read);
      CHECK(aw18.json.at("id") == a1.json.at("id"));
    }
    {
      auto aw19 = co_await w.api->post_json("/v1/acl", group_update);
      REQUIRE(aw19.ok());
    }
    auto neither = co_await w.api->post_json("/v1/acl", jo("object_type", "project", "object_id", pid));
    CHECK(neither.status == 400);

    auto org_wide = co_await w.api->get_json("/v1/acl/list_org");
    REQUIRE(org_wide.ok());
    REQUIRE(org_wide.json.is_array());
    CHECK(org_wide.json.as_array().size() == 2);
    {
      auto aw20 = co_await w.api->list_objects("/v1/acl/list_org", qp("group_id", gid));
      CHECK(aw20.size() == 1);
    }
    {
      auto aw21 = co_await w.api->get_json("/v1/acl", qp("object_type", "project", "object_id", pid));
      CHECK(aw21
              .json.at("objects")
              .as_array()
              .size() == 2);
    }
    {
      auto aw22 = co_await w.api->get_json("/v1/acl");
      CHECK(aw22.status == 400);
    }
    {
      auto aw23 = co_await w.api->get_json("/v1/acl/" + str(a1.json.at("id")));
      CHECK(str(aw23.json.at("permission")) == "read");
    }

    json::object batch = jo("add_acls", ja(jo("object_type", "project", "object_id", pid, "user_id", uid, "permission", "delete")),
                            "remove_acls", ja(group_update));
    auto batched = co_await w.api->post_json("/v1/acl/batch_update", batch);
    REQUIRE(batched.ok());
    CHECK(batched.json.at("added_acls").as_array().size() == 1);
    CHECK(batched.json.at("removed_acls").as_array().size() == 1);

    auto by_content = co_await w.api->call(http::verb::delete_, "/v1/acl", json::serialize(user_read));
    REQUIRE_MESSAGE(by_content.ok(), by_content.error);
    auto left = co_await w.api->list_objects("/v1/acl/list_org", {});
    REQUIRE(left.size() == 1);
    CHECK(str(left[0].at("permission")) == "delete");

    // ai_secret DELETE by name.
    {
      auto aw24 = co_await w.api->post_json("/v1/ai_secret", jo("name", "OPENAI_KEY", "secret", "sk-abcdefgh"));
      REQUIRE(aw24
                .ok());
    }
    {
      auto aw25 = co_await w.api->call(http::verb::delete_, "/v1/ai_secret", R"({"name":"OPENAI_KEY"})");
      REQUIRE(aw25.ok());
    }
    {
      auto aw26 = co_await w.api->get_json("/v1/ai_secret");
      CHECK(aw26.json.at("objects").as_array().empty());
    }

    // Organization and members.
    auto orgs = co_await w.api->get_json("/v1/organization");
    REQUIRE(orgs.ok());
    const auto& org = orgs.json.at("objects").at(0);
    CHECK(str(org.at("name")) == "wire-org");
    CHECK(str(org.at("api_url")) == w.base_url());
    {
      auto aw27 = co_await w.api->get_json("/v1/organization/" + str(org.at("id")));
      CHECK(aw27.json.at("name") == "wire-org");
    }
    auto invited = co_await w.api->patch_json(
        "/v1/organization/members", jo("invite_users", jo("emails", ja("New@Example.com"))));
    REQUIRE(invited.ok());
    CHECK(str(invited.json.at("status")) == "success");
    REQUIRE(invited.json.at("added_users").as_array().size() == 1);
    auto found = co_await w.api->get_json("/v1/user", qp("email", "new@example.com"));
    REQUIRE(found.json.at("objects").as_array().size() == 1);
    CHECK(found.json.at("objects").at(0).at("id") == invited.json.at("added_users").at(0).at("id"));
    {
      auto aw28 = co_await w.api->list_objects("/v1/user", {}, 1);
      CHECK(aw28.size() == 2);
    }
  }());
}
