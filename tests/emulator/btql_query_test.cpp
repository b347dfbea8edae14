#include "emulator/events.hpp"

#include "emulator/btql.hpp"
#include "events_test_util.hpp"

#include <doctest/doctest.h>

#include <set>

using ferry::test::events_fixture;
using ferry::test::parse;
namespace json = boost::json;

namespace {

// Inserts n rows into an object over several requests; rows get created = 2024-01-<day>.
void fill(events_fixture& f, const std::string& field, const std::string& object_id, int n, int per_request = 7) {
  int done = 0;
  while (done < n) {
    json::array rows;
    for (int i = 0; i < per_request && done < n; ++i, ++done) {
      json::object r;
      r["id"] = object_id + "-" + std::to_string(done);
      r[field] = object_id;
      if (field == "project_id") r["log_id"] = "g";
      char day[32];
      std::snprintf(day, sizeof day, "2024-01-%02dT00:00:00Z", 1 + done % 28);
      r["created"] = day;
      r["input"] = done;
      rows.push_back(r);
    }
    f.logs3(rows);
  }
}

std::string text_query(const std::string& from, const std::string& filter, int limit, bool pk_only = false) {
  std::string q = std::string("select: ") + (pk_only ? "_pagination_key" : "*") + "\nfrom: " + from;
  if (!filter.empty()) q += "\nfilter: " + filter;
  q += "\nsort: _pagination_key asc\nlimit: " + std::to_string(limit);
  return q;
}

json::object ast_body(const std::string& type, const std::vector<std::string>& ids, int limit,
                      const json::value& cursor) {
  json::array args;
  for (const auto& id : ids) args.push_back(json::object{{"op", "literal"}, {"value", id}});
  json::object q;
  q["select"] = json::array{json::object{{"op", "star"}}};
  q["from"] = json::object{{"op", "function"}, {"name", json::object{{"op", "ident"}, {"name", json::array{type}}}}, {"args", args}};
  q["limit"] = limit;
  if (!cursor.is_null()) q["cursor"] = cursor;
  json::object body;
  body["query"] = q;
  body["use_columnstore"] = false;
  body["brainstore_realtime"] = true;
  return body;
}

}  // namespace

TEST_CASE("btql text: keyset paging with _pagination_key > until an empty page returns every row once, in order") {
  events_fixture f;
  fill(f, "project_id", "p1", 53);
  fill(f, "project_id", "p2", 5);  // another object is never mixed in
  std::vector<std::string> keys;
  std::set<std::string> ids;
  std::string last;
  int pages = 0;
  for (;;) {
    auto r = f.btql(text_query("project_logs('p1') spans",
                               last.empty() ? "" : "_pagination_key > " + ferry::emulator::btql_quote(last), 10));
    const auto& data = r.at("data").as_array();
    ++pages;
    if (data.empty()) break;
    CHECK(data.size() <= 10);
    for (const auto& row : data) {
      keys.emplace_back(row.at("_pagination_key").as_string());
      CHECK(ids.insert(std::string(row.at("id").as_string())).second);
      CHECK(row.at("project_id") == "p1");
    }
    last = keys.back();
    REQUIRE(pages < 100);
  }
  CHECK(keys.size() == 53);
  CHECK(ids.size() == 53);
  CHECK(std::is_sorted(keys.begin(), keys.end()));
  CHECK(pages == 7);  // 5 full pages, one of 3, one empty
}

TEST_CASE("btql text: >= is inclusive, <, <=, = bound the key range") {
  events_fixture f;
  fill(f, "dataset_id", "d1", 10);
  auto all = f.btql(text_query("dataset('d1')", "", 100)).at("data").as_array();
  REQUIRE(all.size() == 10);
  const std::string k3(all[3].at("_pagination_key").as_string());
  const std::string k6(all[6].at("_pagination_key").as_string());
  auto q = [&](const std::string& filter) { return f.btql(text_query("dataset('d1')", filter, 100)).at("data").as_array(); };
  auto ge = q("_pagination_key >= " + ferry::emulator::btql_quote(k3));
  REQUIRE(ge.size() == 7);
  CHECK(ge[0].at("_pagination_key") == json::value(k3));
  CHECK(q("_pagination_key > " + ferry::emulator::btql_quote(k3)).size() == 6);
  CHECK(q("_pagination_key >= '" + k3 + "' and _pagination_key < '" + k6 + "'").size() == 3);
  CHECK(q("_pagination_key >= '" + k3 + "' and _pagination_key <= '" + k6 + "'").size() == 4);
  auto eq = q("_pagination_key = '" + k6 + "'");
  REQUIRE(eq.size() == 1);
  CHECK(eq[0].at("id") == all[6].at("id"));
  CHECK(q("_pagination_key > '" + k6 + "' and _pagination_key < '" + k3 + "'").empty());
}

TEST_CASE("btql text: created window (after inclusive, before exclusive) compares times, not spellings") {
  events_fixture f;
  fill(f, "project_id", "p1", 28);  // days 1..28
  auto q = [&](const std::string& filter) {
    return f.btql(text_query("project_logs('p1') spans", filter, 1000)).at("data").as_array();
  };
  // Rows say "2024-01-05T00:00:00Z"; the filter spells the same instant with fractions.
  auto rows = q("created >= '2024-01-05T00:00:00.000000Z' and created < '2024-01-10'");
  REQUIRE(rows.size() == 5);
  for (const auto& r : rows) {
    CHECK(r.at("created").as_string() >= "2024-01-05");
    CHECK(r.at("created").as_string() < "2024-01-10");
  }
  CHECK(q("created >= '2024-02-01'").empty());
  CHECK(q("created < '2024-01-01T00:00:00Z'").empty());
  CHECK(q("created >= '2024-01-01'").size() == 28);
}

TEST_CASE("btql text: the created-after preflight (select _pagination_key, limit 1) returns only the key") {
  events_fixture f;
  fill(f, "project_id", "p1", 20);
  auto r = f.btql(text_query("project_logs('p1') spans", "created >= '2024-01-10'", 1, /*pk_only=*/true));
  const auto& data = r.at("data").as_array();
  REQUIRE(data.size() == 1);
  const auto& row = data[0].as_object();
  CHECK(row.size() == 1);
  REQUIRE(row.contains("_pagination_key"));
  // It is the key of the first row created on or after the 10th.
  auto full = f.btql(text_query("project_logs('p1') spans", "created >= '2024-01-10'", 1)).at("data").as_array();
  CHECK(full[0].at("_pagination_key") == row.at("_pagination_key"));
  CHECK(full[0].at("created") == "2024-01-10T00:00:00Z");
}

TEST_CASE("btql text: grouped from merges rows of several objects in key order") {
  events_fixture f;
  // Interleave writes to two experiments.
  for (int i = 0; i < 6; ++i) {
    json::array rows;
    json::object r;
    r["id"] = "r" + std::to_string(i);
    r["experiment_id"] = i % 2 ? "e2" : "e1";
    rows.push_back(r);
    f.logs3(rows);
  }
  auto data = f.btql(text_query("experiment('e1', 'e2') spans", "", 100)).at("data").as_array();
  REQUIRE(data.size() == 6);
  for (int i = 0; i < 6; ++i) CHECK(data[static_cast<std::size_t>(i)].at("id") == json::value("r" + std::to_string(i)));
  auto page = f.btql(text_query("experiment('e1', 'e2') spans", "", 4)).at("data").as_array();
  REQUIRE(page.size() == 4);
  auto rest = f.btql(text_query("experiment('e1', 'e2') spans",
                                "_pagination_key > '" + std::string(page[3].at("_pagination_key").as_string()) + "'", 4))
                  .at("data")
                  .as_array();
  REQUIRE(rest.size() == 2);
  CHECK(rest[0].at("id") == "r4");
  CHECK(rest[1].at("id") == "r5");
}

TEST_CASE("btql text: limit edge cases 0, 1, exactly the count, and descending order") {
  events_fixture f;
  fill(f, "dataset_id", "d1", 5);
  auto count = [&](int limit) { return f.btql(text_query("dataset('d1')", "", limit)).at("data").as_array().size(); };
  CHECK(count(0) == 0);
  CHECK(count(1) == 1);
  CHECK(count(5) == 5);
  CHECK(count(6) == 5);
  auto exact = f.btql(text_query("dataset('d1')", "", 5));
  CHECK(exact.at("cursor").is_null());  // nothing more to read
  auto partial = f.btql(text_query("dataset('d1')", "", 4));
  CHECK(partial.at("cursor").is_string());
  auto desc = f.btql("select: *\nfrom: dataset('d1')\nsort: _pagination_key desc\nlimit: 2").at("data").as_array();
  REQUIRE(desc.size() == 2);
  CHECK(desc[0].at("id") == "d1-4");
  CHECK(desc[1].at("id") == "d1-3");
}

TEST_CASE("btql text: filters on id and _xact_id") {
  events_fixture f;
  fill(f, "dataset_id", "d1", 14, /*per_request=*/7);
  auto all = f.btql(text_query("dataset('d1')", "", 100)).at("data").as_array();
  const std::string x2(all[7].at("_xact_id").as_string());
  CHECK(f.btql(text_query("dataset('d1')", "_xact_id >= '" + x2 + "'", 100)).at("data").as_array().size() == 7);
  CHECK(f.btql(text_query("dataset('d1')", "_xact_id < '" + x2 + "'", 100)).at("data").as_array().size() == 7);
  auto one = f.btql(text_query("dataset('d1')", "id = 'd1-3'", 100)).at("data").as_array();
  REQUIRE(one.size() == 1);
  CHECK(one[0].at("input") == 3);
}

TEST_CASE("btql: parse errors are 400 naming the clause - unknown objects are 404 - bodies must be JSON") {
  events_fixture f;
  auto r = f.post("/btql", R"x({"query":"select: *\nfrom: dataset('d1')\nfilter: input ~ 'x'"})x");
  CHECK(r.status == 400);
  CHECK(r.body.find("filter clause") != std::string::npos);
  r = f.post("/btql", R"x({"query":"select: *\nfrom: dataset('nope') spans"})x");
  CHECK(r.status == 404);
  CHECK(r.body.find("nope") != std::string::npos);
  r = f.post("/btql", R"x({"query":"select: *\nfrom: project_logs('other-org-project') spans"})x");
  CHECK(r.status == 404);  // belongs to another org
  r = f.post("/btql", "not json");
  CHECK(r.status == 400);
  r = f.post("/btql", R"({"fmt":"json"})");
  CHECK(r.status == 400);
  r = f.call(boost::beast::http::verb::get, "/btql");
  CHECK(r.status == 405);
}

TEST_CASE("btql AST: the SDK's cursor loop reads every row once and ends with a null cursor") {
  events_fixture f;
  fill(f, "dataset_id", "d1", 10);
  std::set<std::string> ids;
  json::value cursor = nullptr;
  int pages = 0;
  for (;;) {
    auto r = f.post("/btql", ast_body("dataset", {"d1"}, 4, cursor));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    auto body = r.json().as_object();
    const auto& data = body.at("data").as_array();
    ++pages;
    for (const auto& row : data) CHECK(ids.insert(std::string(row.at("id").as_string())).second);
    cursor = body.at("cursor");
    if (cursor.is_null()) break;
    CHECK_FALSE(data.empty());  // never a non-null cursor with empty data
    REQUIRE(pages < 20);
  }
  CHECK(ids.size() == 10);
  CHECK(pages == 3);  // 4 + 4 + 2
}

TEST_CASE("btql AST: exactly-full last page ends with a null cursor - empty object gives empty data and null") {
  events_fixture f;
  fill(f, "dataset_id", "d1", 8);
  auto first = f.post("/btql", ast_body("dataset", {"d1"}, 4, nullptr)).json().as_object();
  REQUIRE(first.at("cursor").is_string());
  auto second = f.post("/btql", ast_body("dataset", {"d1"}, 4, first.at("cursor"))).json().as_object();
  CHECK(second.at("data").as_array().size() == 4);
  CHECK(second.at("cursor").is_null());
  auto empty = f.post("/btql", ast_body("dataset", {"d2"}, 4, nullptr)).json().as_object();
  CHECK(empty.at("data").as_array().empty());
  CHECK(empty.at("cursor").is_null());
  auto bad = f.post("/btql", ast_body("dataset", {"d1"}, 4, json::value("zz-not-a-cursor")));
  CHECK(bad.status == 400);
}

TEST_CASE("btql AST: a version pins the read to rows written up to that transaction") {
  events_fixture f;
  fill(f, "dataset_id", "d1", 3, /*per_request=*/3);
  auto first = f.post("/btql", ast_body("dataset", {"d1"}, 100, nullptr)).json().as_object();
  const auto version = first.at("data").as_array().back().at("_xact_id");
  f.logs3(parse(R"([{"id":"later","dataset_id":"d1"}])").as_array());
  auto body = ast_body("dataset", {"d1"}, 100, nullptr);
  body["version"] = version;
  auto pinned = f.post("/btql", body).json().as_object();
  CHECK(pinned.at("data").as_array().size() == 3);
  auto unpinned = f.post("/btql", ast_body("dataset", {"d1"}, 100, nullptr)).json().as_object();
  CHECK(unpinned.at("data").as_array().size() == 4);
}
