#include "emulator/events.hpp"

#include "events_test_util.hpp"

#include <doctest/doctest.h>

#include <set>

using ferry::test::events_fixture;
using ferry::test::parse;
namespace json = boost::json;
namespace http = boost::beast::http;

TEST_CASE("rest insert: row_ids align with events - object ids come from the path") {
  events_fixture f;
  auto r = f.post("/v1/dataset/d1/insert", R"({"events":[{"id":"a","input":1,"dataset_id":"spoofed"},{"input":2}]})");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto ids = r.json().at("row_ids").as_array();
  REQUIRE(ids.size() == 2);
  CHECK(ids[0] == "a");
  CHECK(f.api.count_rows("dataset", "d1") == 2);
  auto rows = f.btql("select: *\nfrom: dataset('d1')").at("data").as_array();
  CHECK(rows[0].at("dataset_id") == "d1");
  r = f.post("/v1/project_logs/p1/insert", R"({"events":[{"id":"l"}]})");
  REQUIRE(r.status == 200);
  auto logs = f.btql("select: *\nfrom: project_logs('p1')").at("data").as_array();
  REQUIRE(logs.size() == 1);
  CHECK(logs[0].at("log_id") == "g");
  CHECK(logs[0].at("org_id") == "org-1");
}

TEST_CASE("rest insert: unknown object 404, malformed body 400, wrong method 405") {
  events_fixture f;
  CHECK(f.post("/v1/experiment/nope/insert", R"({"events":[]})").status == 404);
  CHECK(f.post("/v1/experiment/e1/insert", R"({"rows":[]})").status == 400);
  CHECK(f.post("/v1/experiment/e1/insert", R"({"events":[3]})").status == 400);
  CHECK(f.get("/v1/experiment/e1/insert").status == 405);
}

TEST_CASE("rest fetch: newest first, opaque cursor, absent on the last page, GET and POST forms") {
  events_fixture f;
  for (int i = 0; i < 5; ++i)
    f.post("/v1/experiment/e1/insert", R"({"events":[{"id":"r)" + std::to_string(i) + R"("}]})");
  std::vector<std::string> ids;
  json::value cursor = nullptr;
  for (int page = 0; page < 10; ++page) {
    json::object body;
    body["limit"] = 2;
    if (!cursor.is_null()) body["cursor"] = cursor;
    auto r = f.post("/v1/experiment/e1/fetch", body);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    auto o = r.json().as_object();
    for (const auto& e : o.at("events").as_array()) ids.emplace_back(e.at("id").as_string());
    if (!o.contains("cursor")) break;
    cursor = o.at("cursor");
  }
  CHECK(ids == std::vector<std::string>{"r4", "r3", "r2", "r1", "r0"});
  auto g = f.get("/v1/experiment/e1/fetch?limit=3");
  REQUIRE(g.status == 200);
  auto go = g.json().as_object();
  CHECK(go.at("events").as_array().size() == 3);
  CHECK(go.contains("cursor"));
  auto all = f.get("/v1/experiment/e1/fetch").json().as_object();
  CHECK(all.at("events").as_array().size() == 5);
  CHECK_FALSE(all.contains("cursor"));
  CHECK(f.get("/v1/experiment/e1/fetch?limit=x").status == 400);
  CHECK(f.get("/v1/experiment/zzz/fetch").status == 404);
}

TEST_CASE("rest fetch: max_xact_id gives the rows as of that transaction") {
  events_fixture f;
  f.post("/v1/dataset/d1/insert", R"({"events":[{"id":"a"}]})");
  auto x = f.get("/v1/dataset/d1/fetch").json().at("events").as_array()[0].at("_xact_id");
  f.post("/v1/dataset/d1/insert", R"({"events":[{"id":"b"}]})");
  json::object body;
  body["max_xact_id"] = x;
  auto r = f.post("/v1/dataset/d1/fetch", body).json().as_object();
  REQUIRE(r.at("events").as_array().size() == 1);
  CHECK(r.at("events").as_array()[0].at("id") == "a");
}

TEST_CASE("rest: cross-object /v1/insert writes every object in one transaction and maps row_ids back") {
  events_fixture f;
  auto r = f.post("/v1/insert", R"({"experiment":{"e1":{"events":[{"id":"x1"},{"id":"x2"}]}},
      "dataset":{"d1":{"events":[{"id":"y1"}]}},"project_logs":{"p1":{"events":[{"id":"z1"}]}}})");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto o = r.json();
  CHECK(o.at("experiment").at("e1").at("row_ids") == parse(R"(["x1","x2"])"));
  CHECK(o.at("dataset").at("d1").at("row_ids") == parse(R"(["y1"])"));
  CHECK(o.at("project_logs").at("p1").at("row_ids") == parse(R"(["z1"])"));
  auto e = f.btql("select: *\nfrom: experiment('e1')").at("data").as_array();
  auto d = f.btql("select: *\nfrom: dataset('d1')").at("data").as_array();
  CHECK(e[0].at("_xact_id") == d[0].at("_xact_id"));
  CHECK(f.post("/v1/insert", R"({"experiment":{"missing":{"events":[{"id":"q"}]}}})").status == 404);
  CHECK(f.post("/v1/insert", R"({"prompt":{"x":{}}})").status == 400);
  CHECK(f.api.count_rows("experiment", "e1") == 2);
}

TEST_CASE("rest: feedback merges scores/metadata into the event") {
  events_fixture f;
  f.post("/v1/experiment/e1/insert", R"({"events":[{"id":"a","scores":{"x":0},"input":"i"}]})");
  auto r = f.post("/v1/experiment/e1/feedback", R"({"feedback":[{"id":"a","scores":{"y":1},"comment":"nice"}]})");
  REQUIRE(r.status == 200);
  auto rows = f.btql("select: *\nfrom: experiment('e1')").at("data").as_array();
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].at("scores") == parse(R"({"x":0,"y":1})"));
  CHECK(rows[0].at("input") == "i");
  CHECK(f.post("/v1/experiment/e1/feedback", R"({"feedback":[{"scores":{}}]})").status == 400);
}

TEST_CASE("dataset-summary counts live rows") {
  events_fixture f;
  f.logs3(parse(R"([{"id":"a","dataset_id":"d1"},{"id":"b","dataset_id":"d1"},{"id":"c","dataset_id":"d1"}])").as_array());
  f.logs3(parse(R"([{"id":"b","dataset_id":"d1","_object_delete":true}])").as_array());
  auto s = f.get("/dataset-summary?dataset_id=d1");
  REQUIRE(s.status == 200);
  CHECK(s.json().at("total_records") == 2);
  CHECK(f.get("/dataset-summary?dataset_id=unknown").status == 404);
  CHECK(f.get("/dataset-summary").status == 400);
}
