// Loopback tests of `ferry verify` as an oracle for EVERY resource type (issue 13 item 5): a seeded
// organization migrated once verifies with zero differences for each type of the resource table; then
// the destination is tampered with, one kind per organization-level type family (roles, groups, ACLs,
// env vars, AI secrets, MCP servers, dataset snapshots): a dropped or dangling reference, a missing
// setting, a field edited after the migration, an object deleted there. Each makes verify exit 1 with a
// line naming the type, the object and the field. Emulators in memory on 127.0.0.1:0, run_migrate /
// run_verify as the CLI calls them.
#include "pipelines/migrate.hpp"
#include "pipelines/resources/specs.hpp"

#include "emulator/emulator.hpp"
#include "emulator/seed.hpp"
#include "loopback_support.hpp"
#include "test_support.hpp"

#include <boost/beast/http/verb.hpp>
#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <string>

namespace json = boost::json;
namespace http = boost::beast::http;
namespace fs = std::filesystem;
using namespace ferry;

namespace {

using ferry::test::call;
using ferry::test::run_out;
using ferry::test::str;

emulator::emulator_config emu_config(std::string key, std::string org) {
  emulator::emulator_config c;
  c.api_keys = {{std::move(key), std::move(org), ""}};
  return c;
}

/// `limit=N` of a request target lowered to `cap` (a server or proxy that caps its pages).
void cap_limit(transports::http_request& req, std::size_t cap) {
  std::string t(req.target());
  const auto at = t.find("limit=");
  if (at == std::string::npos || (at > 0 && t[at - 1] != '?' && t[at - 1] != '&')) return;
  const auto end = t.find('&', at);
  const auto n = std::stoull(t.substr(at + 6, end == std::string::npos ? std::string::npos : end - at - 6));
  if (n > cap) req.target(t.replace(at + 6, std::to_string(n).size(), std::to_string(cap)));
}

/// Source and destination, the destination reached through the socket server (as Ferry reaches it),
/// which caps its pages at `page_cap` when set.
struct emulators : ferry::test::emulator_pair {
  std::atomic<std::size_t> page_cap{0};
  std::atomic<bool> no_mcp_servers{false};  // GET /v1/mcp_server answers 404 (a deployment without them)
  emulators() : emulator_pair(emu_config("src-key", "src-org"), emu_config("dst-key", "dst-org")) {
    serve([this](transports::http_request& req) -> boost::asio::awaitable<transports::http_reply> {
      if (const auto cap = page_cap.load(); cap && req.method() == http::verb::get) cap_limit(req, cap);
      if (no_mcp_servers && req.target().starts_with("/v1/mcp_server")) {
        transports::http_reply r;
        r.response.result(http::status::not_found);
        r.response.body() = R"({"error":"no such route"})";
        r.response.prepare_payload();
        co_return r;
      }
      co_return co_await dst.handle(req);
    });
  }
  ~emulators() { stop(); }
};

/// A small org with every resource type the seed makes (roles and groups with cycles, ACLs, env vars,
/// AI secrets, an MCP server, a dataset snapshot, views, functions...).
emulator::seed_options small_seed() {
  emulator::seed_options o;
  o.projects = 1;
  o.events_per_project = 10;
  o.experiments_per_project = 1;
  o.datasets_per_project = 1;
  o.events_per_experiment = 5;
  o.events_per_dataset = 5;
  o.seed = 5;
  o.attachment_ratio = 0;
  o.large_payload_ratio = 0;
  return o;
}

pipelines::migrate_config base_config(const emulators& e, const ferry::test::temp_dir& dir) {
  pipelines::migrate_config c;
  c.source = {e.src.base_url(), "src-key"};
  c.dest = {e.server_url(), "dst-key"};
  c.state_dir = (dir.path() / "state").string();
  c.retry_attempts = 3;
  c.retry_delay = std::chrono::milliseconds(2);
  c.request_timeout = std::chrono::milliseconds(5000);
  c.max_concurrent_streams = 1;
  return c;
}

run_out migrate(const pipelines::migrate_config& cfg) { return ferry::test::run_command(pipelines::run_migrate, cfg); }
run_out verify(const pipelines::migrate_config& cfg) { return ferry::test::run_command(pipelines::run_verify, cfg); }

json::value dst_call(emulators& e, http::verb verb, const std::string& target, const json::object& body = {}) {
  return call(e.dst, "dst-key", verb, target, body.empty() ? std::string() : json::serialize(body));
}
json::value src_call(emulators& e, http::verb verb, const std::string& target, const json::object& body = {}) {
  return call(e.src, "src-key", verb, target, body.empty() ? std::string() : json::serialize(body));
}

json::array objects(const json::value& v) { return v.is_array() ? v.as_array() : v.as_object().at("objects").as_array(); }

/// The one object of a listing whose `field` is `value` (the test fails when there is none).
json::object named(const json::value& listing, const std::string& value, const std::string& field = "name") {
  for (const auto& o : objects(listing))
    if (str(o.as_object(), field) == value) return o.as_object();
  FAIL("no object with " << field << "=" << value << " in " << json::serialize(listing));
  return {};
}

bool has_line(const std::string& out, const std::string& text) { return out.find(text) != std::string::npos; }

/// The line of `out` that starts with `prefix` ("" when none).
std::string line_of(const std::string& out, const std::string& prefix) {
  for (std::size_t at = 0; at < out.size();) {
    const auto end = std::min(out.find('\n', at), out.size());
    if (out.compare(at, prefix.size(), prefix) == 0) return out.substr(at, end - at);
    at = end + 1;
  }
  return {};
}

/// A seeded source migrated into the destination: verify says equal.
struct migrated {
  emulators e;
  ferry::test::temp_dir dir{"ferry-resource-verify"};
  pipelines::migrate_config cfg;
  /// `before` adds to the seeded source before the migration.
  explicit migrated(const std::function<void(emulators&)>& before = {}) : cfg(base_config(e, dir)) {
    e.seed(small_seed());
    if (before) before(e);
    auto m = migrate(cfg);
    INFO(m.out << m.err);
    REQUIRE(m.rc == 0);
  }
  /// verify after a tampering: exit 1, every `want` line present.
  void expect_diff(const std::vector<std::string>& want) {
    auto v = verify(cfg);
    INFO(v.out << v.err);
    CHECK(v.rc == 1);
    for (const auto& w : want) CHECK_MESSAGE(has_line(v.out, w), "missing line: " << w);
    CHECK(has_line(v.err, "resource field difference(s)"));
  }
};

}  // namespace

TEST_CASE("resource verify loopback: a seeded org migrated once verifies with 0 differences for every resource type") {
  migrated m;
  auto v = verify(m.cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 0);
  // Every type of the resource table (a type added there is checked without further edits), environment
  // assignments too (read per object; before: left out).
  for (const auto& spec : pipelines::resources::resource_specs())
    CHECK_MESSAGE(has_line(v.out, "ok   resource fields type=" + spec.type + " objects="), "type " << spec.type);
  CHECK_FALSE(has_line(v.out, "objects=0 "));  // org-level types were really compared (before: never listed)
  CHECK(has_line(v.out, "ok   resource fields: "));
  CHECK_FALSE(has_line(v.out, "DIFF"));
  CHECK_FALSE(has_line(v.out, "sk-seed-"));  // AI secret values are never read nor printed
  CHECK_FALSE(has_line(v.out, "that no source object pairs with"));  // nothing duplicated or left over
}

TEST_CASE("resource verify loopback: roles: a description edited and a member role removed in the destination are named") {
  migrated m;
  auto& e = m.e;
  const auto src_editor = named(src_call(e, http::verb::get, "/v1/role"), "seed-editor");
  const auto dst_roles = dst_call(e, http::verb::get, "/v1/role");
  const auto viewer = named(dst_roles, "seed-viewer"), editor = named(dst_roles, "seed-editor");
  dst_call(e, http::verb::patch, "/v1/role/" + str(viewer, "id"), {{"description", "edited after the migration"}});
  dst_call(e, http::verb::patch, "/v1/role/" + str(editor, "id"),
           {{"remove_member_roles", json::array{json::value(str(viewer, "id"))}}});
  const auto src_viewer = named(src_call(e, http::verb::get, "/v1/role"), "seed-viewer");
  // Before: roles were never read by verify: exit 0.
  m.expect_diff({"DIFF resource role 'seed-viewer' (" + str(src_viewer, "id") + ") field description: differs",
                 "DIFF resource role 'seed-editor' (" + str(src_editor, "id") + ") field member_roles: "});
  // verify_report.json lists every difference line too.
  std::ifstream f(fs::path(m.cfg.state_dir) / "verify_report.json");
  const auto report = json::parse(std::string(std::istreambuf_iterator<char>(f), {})).as_object();
  std::string lines;
  for (const auto& c : report.at("resources").as_array())
    if (str(c.as_object(), "type") == "fields") lines = json::serialize(c.at("difference_lines"));
  CHECK(has_line(lines, "resource role 'seed-viewer' (" + str(src_viewer, "id") + ") field description: differs"));
}

TEST_CASE("resource verify loopback: groups: a member group removed, a group deleted (the ACL granting to it dangles)") {
  migrated m;
  auto& e = m.e;
  const auto src_groups = src_call(e, http::verb::get, "/v1/group");
  const auto dst_groups = dst_call(e, http::verb::get, "/v1/group");
  const auto readers = named(dst_groups, "seed-readers"), leads = named(dst_groups, "seed-leads");
  SUBCASE("member removed") {
    dst_call(e, http::verb::patch, "/v1/group/" + str(leads, "id"),
             {{"remove_member_groups", json::array{json::value(str(readers, "id"))}}});
    m.expect_diff({"DIFF resource group 'seed-leads' (" + str(named(src_groups, "seed-leads"), "id") +
                   ") field member_groups: differs"});
  }
  SUBCASE("group deleted") {
    dst_call(e, http::verb::delete_, "/v1/group/" + str(readers, "id"));
    m.expect_diff({"DIFF resource group 'seed-readers' (" + str(named(src_groups, "seed-readers"), "id") +
                       "): deleted in the destination",
                   "field group_id: references group " + str(readers, "id") + ", which does not exist in the destination",
                   "DIFF resource group 'seed-leads' (" + str(named(src_groups, "seed-leads"), "id") +
                       ") field member_groups: references group " + str(readers, "id")});
  }
}

TEST_CASE("resource verify loopback: ACLs: an ACL deleted in the destination, an ACL whose role was deleted") {
  migrated m;
  auto& e = m.e;
  const auto src_acls = objects(src_call(e, http::verb::get, "/v1/acl/list_org"));
  const auto dst_acls = objects(dst_call(e, http::verb::get, "/v1/acl/list_org"));
  REQUIRE(src_acls.size() == dst_acls.size());
  SUBCASE("ACL deleted") {
    const auto& victim = dst_acls[0].as_object();
    dst_call(e, http::verb::delete_, "/v1/acl/" + str(victim, "id"));
    m.expect_diff({"DIFF resource acl '", "): deleted in the destination (destination id " + str(victim, "id") + ")"});
  }
  SUBCASE("role of an ACL deleted") {
    std::string role;
    for (const auto& a : dst_acls)
      if (!str(a.as_object(), "role_id").empty()) role = str(a.as_object(), "role_id");
    REQUIRE_FALSE(role.empty());
    dst_call(e, http::verb::delete_, "/v1/role/" + role);
    m.expect_diff({"field role_id: references role " + role + ", which does not exist in the destination"});
  }
}

TEST_CASE("resource verify loopback: org-level env vars: a name and metadata edited, a variable deleted (values are write-only)") {
  // An organization-level variable (before: verify listed env vars of projects only).
  migrated m([](emulators& e) {
    const auto org = objects(src_call(e, http::verb::get, "/v1/organization"))[0].as_object();
    src_call(e, http::verb::post, "/v1/env_var",
             {{"object_type", "organization"}, {"object_id", str(org, "id")}, {"name", "ORG_ENV"}, {"value", "org-value-1"}});
  });
  auto& e = m.e;
  const auto src_org = objects(src_call(e, http::verb::get, "/v1/organization"))[0].as_object();
  const auto dst_org = objects(dst_call(e, http::verb::get, "/v1/organization"))[0].as_object();
  const auto src_var = named(src_call(e, http::verb::get, "/v1/env_var?object_type=organization&object_id=" + str(src_org, "id")), "ORG_ENV");
  const auto dst_var = named(dst_call(e, http::verb::get, "/v1/env_var?object_type=organization&object_id=" + str(dst_org, "id")), "ORG_ENV");
  const std::string what = "DIFF resource env_var 'ORG_ENV' (" + str(src_var, "id") + ")";
  SUBCASE("edited") {
    dst_call(e, http::verb::patch, "/v1/env_var/" + str(dst_var, "id"),
             {{"name", "ORG_ENV_RENAMED"}, {"metadata", json::object{{"edited", true}}}});
    m.expect_diff({what + " field name: differs", what + " field metadata: "});
  }
  SUBCASE("deleted") {
    dst_call(e, http::verb::delete_, "/v1/env_var/" + str(dst_var, "id"));
    m.expect_diff({what + ": deleted in the destination"});
  }
  auto v = verify(m.cfg);
  CHECK_FALSE(has_line(v.out + v.err, "org-value-1"));
}

TEST_CASE("resource verify loopback: AI secrets: metadata and type compared, the secret value never read nor printed") {
  migrated m;
  auto& e = m.e;
  const auto src_secret = named(src_call(e, http::verb::get, "/v1/ai_secret"), "OPENAI_API_KEY");
  const auto dst_secret = named(dst_call(e, http::verb::get, "/v1/ai_secret"), "OPENAI_API_KEY");
  dst_call(e, http::verb::patch, "/v1/ai_secret/" + str(dst_secret, "id"),
           {{"metadata", json::object{{"seeded", false}}}, {"type", "azure"}, {"secret", "sk-tampered-value-123"}});
  const std::string what = "DIFF resource ai_secret 'OPENAI_API_KEY' (" + str(src_secret, "id") + ")";
  m.expect_diff({what + " field metadata: differs", what + " field type: differs"});
  auto v = verify(m.cfg);
  CHECK_FALSE(has_line(v.out + v.err, "sk-tampered-value-123"));
  CHECK_FALSE(has_line(v.out + v.err, "sk-seed-"));
  CHECK_FALSE(has_line(v.out, " field secret"));
}

TEST_CASE("resource verify loopback: MCP servers: a server deleted in the destination, and the prompt using it now dangles") {
  migrated m([](emulators& e) {
    const auto server = named(src_call(e, http::verb::get, "/v1/mcp_server"), "seed-mcp");
    json::object pd{{"prompt", json::object{{"type", "chat"}, {"messages", json::array{json::object{{"role", "user"}, {"content", "hi"}}}}}},
                    {"mcp", json::object{{"seed", json::object{{"type", "id"}, {"id", str(server, "id")}}}}}};
    src_call(e, http::verb::post, "/v1/prompt",
             {{"project_id", str(server, "project_id")}, {"name", "With tools"}, {"slug", "with-tools"}, {"prompt_data", pd}});
  });
  auto& e = m.e;
  const auto src_server = named(src_call(e, http::verb::get, "/v1/mcp_server"), "seed-mcp");
  const auto dst_server = named(dst_call(e, http::verb::get, "/v1/mcp_server"), "seed-mcp");
  dst_call(e, http::verb::delete_, "/v1/mcp_server/" + str(dst_server, "id"));
  // Before: the server's own deletion was named, not the prompt left pointing at nothing.
  m.expect_diff({"DIFF resource mcp_server 'seed-mcp' (" + str(src_server, "id") + "): deleted in the destination",
                 "DIFF resource prompt 'With tools' (",
                 "field prompt_data: references mcp_server " + str(dst_server, "id") + ", which does not exist in the destination"});
}

TEST_CASE("resource verify loopback: projects: a setting changed or missing in the destination is named") {
  migrated m;
  auto& e = m.e;
  const auto src_project = named(src_call(e, http::verb::get, "/v1/project"), "seed-project-0");
  const auto dst_project = named(dst_call(e, http::verb::get, "/v1/project"), "seed-project-0");
  const std::string what = "DIFF resource project 'seed-project-0' (" + str(src_project, "id") + ") field settings: ";
  SUBCASE("changed") {
    dst_call(e, http::verb::patch, "/v1/project/" + str(dst_project, "id"),
             {{"settings", json::object{{"comparison_key", "expected"}}}});
    m.expect_diff({what + "differs"});
  }
  SUBCASE("missing") {
    // A setting the destination lacks (made in the source after the migration: PATCH cannot remove one).
    src_call(e, http::verb::patch, "/v1/project/" + str(src_project, "id"),
             {{"settings", json::object{{"spanFieldOrder", json::array{json::object{{"object_type", "span"}}}}}}});
    m.expect_diff({what + "differs"});
  }
}

TEST_CASE("resource verify loopback: dataset snapshots: the destination's snapshot compared by dataset and name") {
  migrated m;
  auto& e = m.e;
  // The seeded snapshot is at its dataset's newest version: the migration creates it once the dataset's
  // rows are copied (its xact_id mapped); verify pairs and compares it.
  const auto src_snap = objects(src_call(e, http::verb::get, "/v1/dataset_snapshot"));
  REQUIRE(src_snap.size() == 1);
  const auto& snap = src_snap[0].as_object();
  const auto made = objects(dst_call(e, http::verb::get, "/v1/dataset_snapshot"));
  REQUIRE(made.size() == 1);
  auto v = verify(m.cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 0);
  CHECK(has_line(line_of(v.out, "ok   resource fields type=dataset_snapshot "), "objects=1 differences=0 as_reported=0"));
  dst_call(e, http::verb::patch, "/v1/dataset_snapshot/" + str(made[0].as_object(), "id"), {{"description", "edited"}});
  m.expect_diff({"DIFF resource dataset_snapshot 'seed-snapshot' (" + str(snap, "id") + ") field description: differs"});
}

TEST_CASE("resource verify loopback: environment assignments: one changed, one deleted, one added in the destination are named") {
  migrated m;
  auto& e = m.e;
  // The seeded prompt assigned in environment "production", and its destination twin (same name).
  json::object prompt;
  for (const auto& p : objects(src_call(e, http::verb::get, "/v1/prompt")))
    if (!objects(src_call(e, http::verb::get, "/environment-object/prompt/" + str(p.as_object(), "id"))).empty())
      prompt = p.as_object();
  REQUIRE_FALSE(prompt.empty());
  const auto sid = str(prompt, "id");
  const auto did = str(named(dst_call(e, http::verb::get, "/v1/prompt"), str(prompt, "name")), "id");
  const auto at = "/environment-object/prompt/" + did + "/";
  REQUIRE(objects(dst_call(e, http::verb::get, "/environment-object/prompt/" + did)).size() == 1);
  auto v = verify(m.cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 0);
  CHECK(has_line(line_of(v.out, "ok   resource fields type=environment_object "), "differences=0"));
  CHECK_FALSE(has_line(v.out, "ok   resource fields type=environment_object objects=0 "));
  const std::string what = "DIFF resource environment_object '" + str(prompt, "name") + "' (" + sid + ") in environment ";
  // A newer destination version of the prompt (the emulator checks that an assigned version exists).
  dst_call(e, http::verb::patch, "/v1/prompt/" + did, {{"description", "a later version"}});
  const auto newer = str(dst_call(e, http::verb::get, "/v1/prompt/" + did).as_object(), "_xact_id");
  dst_call(e, http::verb::put, at + "production", {{"object_version", newer}});
  m.expect_diff({what + "production field object_version: differs: source "});
  dst_call(e, http::verb::delete_, at + "production");
  dst_call(e, http::verb::put, at + "staging", {{"object_version", newer}});
  m.expect_diff({what + "production: missing in the destination",
                 what + "staging: set in the destination only (object_version " + newer + ")"});
}

TEST_CASE("resource verify loopback: without a state dir, objects are paired by name or natural key and compared the same way") {
  migrated m;
  auto& e = m.e;
  const auto src_viewer = named(src_call(e, http::verb::get, "/v1/role"), "seed-viewer");
  const auto dst_viewer = named(dst_call(e, http::verb::get, "/v1/role"), "seed-viewer");
  dst_call(e, http::verb::patch, "/v1/role/" + str(dst_viewer, "id"), {{"description", "edited after the migration"}});
  ferry::test::temp_dir other("ferry-resource-verify-nostate");
  auto cfg = m.cfg;
  cfg.state_dir = (other.path() / "none").string();
  auto v = verify(cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 1);
  // Before: "resource fields not compared: no state dir".
  CHECK(has_line(v.out, "DIFF resource role 'seed-viewer' (" + str(src_viewer, "id") + ") field description: differs"));
  // With no migration report to say why, what the migration skipped is missing (a code bundle cannot be copied).
  CHECK(has_line(v.out, "DIFF resource function 'Bundled scorer' ("));
  CHECK(has_line(v.out, "): missing in the destination (no destination object with the same slug)"));
  // ACLs pair by content, their ids mapped through the pairs of groups, roles and projects found by name.
  CHECK(has_line(v.out, "ok   resource fields type=acl objects="));
  CHECK(has_line(v.out, "ok   resource fields type=view objects="));
  // The snapshot pins its dataset's newest version: paired with its twin's newest version (no pin record).
  CHECK(has_line(v.out, "ok   resource fields type=dataset_snapshot objects=1 differences=0"));
}

TEST_CASE("resource verify loopback: a destination object no source object pairs with is named, not a difference") {
  migrated m;
  auto& e = m.e;
  const auto viewer = named(src_call(e, http::verb::get, "/v1/role"), "seed-viewer");
  dst_call(e, http::verb::post, "/v1/role", {{"name", "seed-viewer (2)"}, {"description", viewer.at("description")}});
  auto v = verify(m.cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 0);
  CHECK(has_line(line_of(v.out, "ok   resource fields type=role "), " dest_only=1"));
  CHECK(has_line(v.out, "NOTE resource role: 1 destination object(s) that no source object pairs with (not compared): 'seed-viewer (2)' ("));
}

TEST_CASE("resource verify loopback: a destination that caps its pages at 100 is read to the end (150 datasets verify equal)") {
  emulators e;
  const auto pid = str(src_call(e, http::verb::post, "/v1/project", {{"name", "big"}}).as_object(), "id");
  for (int i = 0; i < 150; ++i)
    src_call(e, http::verb::post, "/v1/dataset", {{"project_id", pid}, {"name", "ds-" + std::to_string(i)}});
  ferry::test::temp_dir dir("ferry-resource-verify");
  auto cfg = base_config(e, dir);
  cfg.fetch_group_size = 50;
  e.page_cap = 100;
  auto m = migrate(cfg);
  INFO(m.out << m.err);
  REQUIRE(m.rc == 0);
  auto v = verify(cfg);
  INFO(v.out << v.err);
  // Before: the counts (and the old field check) stopped at the first short page: 100 of 150 destination
  // datasets were seen, 50 "missing", exit 1.
  CHECK(v.rc == 0);
  CHECK(has_line(v.out, "ok   resources type=dataset source=150 dest_by_name=150 missing=0"));
  CHECK(has_line(line_of(v.out, "ok   resource fields type=dataset "), "objects=150 differences=0"));
}

TEST_CASE("resource verify loopback: a type the destination cannot list fails alone; the other types are still compared") {
  migrated m;
  m.e.no_mcp_servers = true;
  auto v = verify(m.cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 1);
  CHECK(has_line(v.out, "FAIL resource mcp_server: not compared: GET /v1/mcp_server: 404"));
  CHECK(has_line(v.err, "resource mcp_server: not compared"));
  // Before: the whole resource check stopped at the first listing that failed.
  CHECK(has_line(v.out, "ok   resource fields type=acl objects="));
  CHECK(has_line(v.out, "DIFF resource fields: "));
}

// ---- dataset version pins (issue 13): mapped after the dataset's stream when exact -------------------

namespace {

/// The newest _xact_id of a dataset's rows ("" = none), by BTQL as Ferry probes it.
std::string newest_xact(emulator::emulator& emu, const std::string& key, const std::string& dataset) {
  json::object body{{"query", "select: *\nfrom: dataset('" + dataset + "')\nsort: _xact_id desc\nlimit: 1"},
                    {"fmt", "json"}};
  auto r = call(emu, key, http::verb::post, "/btql", json::serialize(body));
  const auto& rows = r.as_object().at("data").as_array();
  return rows.empty() ? std::string() : str(rows[0].as_object(), "_xact_id");
}

/// The seeded project's dataset on one side: (project id, dataset id).
std::pair<std::string, std::string> seeded_dataset(emulators& e, bool source) {
  auto get = [&](const std::string& t) {
    return source ? src_call(e, http::verb::get, t) : dst_call(e, http::verb::get, t);
  };
  const auto pid = str(named(get("/v1/project"), "seed-project-0"), "id");
  return {pid, str(objects(get("/v1/dataset?project_id=" + pid))[0].as_object(), "id")};
}

/// Source additions: an experiment "pinned" on the seeded dataset at its newest version, and that version
/// assigned to the dataset in environment "staging". Returns the pinned version.
std::string pin_newest(emulators& e) {
  const auto [pid, ds] = seeded_dataset(e, true);
  const auto version = newest_xact(e.src, "src-key", ds);
  REQUIRE_FALSE(version.empty());
  src_call(e, http::verb::post, "/v1/experiment",
           {{"project_id", pid}, {"name", "pinned"}, {"dataset_id", ds}, {"dataset_version", version}});
  src_call(e, http::verb::put, "/environment-object/dataset/" + ds + "/staging", {{"object_version", version}});
  return version;
}

}  // namespace

TEST_CASE("dataset version pins: an experiment, a snapshot and an environment pinned at the dataset's newest version are mapped") {
  std::string version;
  migrated m([&](emulators& e) { version = pin_newest(e); });
  auto& e = m.e;
  const auto [dpid, dds] = seeded_dataset(e, false);
  const auto dest_version = newest_xact(e.dst, "dst-key", dds);
  REQUIRE_FALSE(dest_version.empty());
  // Before: dataset_version dropped, the snapshot skipped, the assignment skipped ("not mappable").
  const auto exp = named(dst_call(e, http::verb::get, "/v1/experiment?project_id=" + dpid), "pinned");
  CHECK(str(exp, "dataset_version") == dest_version);
  const auto snaps = objects(dst_call(e, http::verb::get, "/v1/dataset_snapshot"));
  REQUIRE(snaps.size() == 1);
  CHECK(str(snaps[0].as_object(), "name") == "seed-snapshot");
  CHECK(str(snaps[0].as_object(), "xact_id") == dest_version);
  const auto assigned = dst_call(e, http::verb::get, "/environment-object/dataset/" + dds + "/staging");
  CHECK(str(assigned.as_object(), "object_version") == dest_version);
  auto v = verify(m.cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 0);
  CHECK(has_line(line_of(v.out, "ok   resource fields type=experiment "), "as_reported=0"));
  CHECK(has_line(line_of(v.out, "ok   resource fields type=dataset_snapshot "), "objects=1 differences=0 as_reported=0"));
  // A re-run maps the pins through the recorded pin:dataset: nothing changes, nothing is duplicated.
  auto again = migrate(m.cfg);
  INFO(again.out << again.err);
  CHECK(again.rc == 0);
  CHECK(objects(dst_call(e, http::verb::get, "/v1/dataset_snapshot")).size() == 1);
  CHECK(str(named(dst_call(e, http::verb::get, "/v1/experiment?project_id=" + dpid), "pinned"), "dataset_version") ==
        dest_version);
  CHECK(verify(m.cfg).rc == 0);
  // The mapped pin is compared: edited in the destination, it is a difference.
  dst_call(e, http::verb::patch, "/v1/experiment/" + str(exp, "id"), {{"dataset_version", version}});
  m.expect_diff({"DIFF resource experiment 'pinned' ("});
}

TEST_CASE("dataset version pins: a pin older than a later row stays dropped with its reason") {
  migrated m([](emulators& e) {
    pin_newest(e);
    const auto [pid, ds] = seeded_dataset(e, true);
    src_call(e, http::verb::post, "/v1/dataset/" + ds + "/insert",
             {{"events", json::array{json::object{{"id", "later-row"}, {"input", "added after the pin"}}}}});
  });
  auto& e = m.e;
  const auto [dpid, dds] = seeded_dataset(e, false);
  const auto exp = named(dst_call(e, http::verb::get, "/v1/experiment?project_id=" + dpid), "pinned");
  const bool pinned = exp.contains("dataset_version") && !exp.at("dataset_version").is_null();
  CHECK_FALSE(pinned);
  CHECK(objects(dst_call(e, http::verb::get, "/v1/dataset_snapshot")).empty());
  auto v = verify(m.cfg);
  INFO(v.out << v.err);
  CHECK(v.rc == 0);
  CHECK(has_line(line_of(v.out, "ok   resource fields type=experiment "), "as_reported=1"));
  std::ifstream report(fs::path(m.cfg.state_dir) / "migration_report.json");
  const std::string text{std::istreambuf_iterator<char>(report), {}};
  CHECK(has_line(text, "it is mapped after the dataset's rows are copied only when no row of the dataset is newer"));
}

TEST_CASE("dataset version pins: a destination dataset holding rows of its own (adopted by name) keeps the pin dropped") {
  migrated m([](emulators& e) {
    pin_newest(e);
    // The destination already has the project and the dataset (same names), with a row of its own.
    const auto [pid, ds] = seeded_dataset(e, true);
    const auto name = str(src_call(e, http::verb::get, "/v1/dataset/" + ds).as_object(), "name");
    const auto dpid = str(dst_call(e, http::verb::post, "/v1/project", {{"name", "seed-project-0"}}).as_object(), "id");
    const auto dds = str(dst_call(e, http::verb::post, "/v1/dataset", {{"project_id", dpid}, {"name", name}}).as_object(), "id");
    dst_call(e, http::verb::post, "/v1/dataset/" + dds + "/insert",
             {{"events", json::array{json::object{{"id", "dest-own-row"}, {"input", "not from the source"}}}}});
  });
  auto& e = m.e;
  const auto [dpid, dds] = seeded_dataset(e, false);
  // Before the row count check: the pin mapped to a destination version that also holds the extra row.
  const auto exp = named(dst_call(e, http::verb::get, "/v1/experiment?project_id=" + dpid), "pinned");
  const bool pinned = exp.contains("dataset_version") && !exp.at("dataset_version").is_null();
  CHECK_FALSE(pinned);
  CHECK(objects(dst_call(e, http::verb::get, "/v1/dataset_snapshot")).empty());
}
