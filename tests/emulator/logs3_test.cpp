#include "emulator/events.hpp"

#include "events_test_util.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

#include <map>

using ferry::test::events_fixture;
using ferry::test::target_of;
using ferry::test::parse;
namespace json = boost::json;
namespace http = boost::beast::http;

TEST_CASE("logs3: replies JSON ids aligned with the rows, also without a Content-Type") {
  events_fixture f;
  auto r = f.call(http::verb::post, "/logs3",
                  R"({"rows":[{"id":"a","dataset_id":"d1"},{"id":"b","experiment_id":"e1"},{"project_id":"p1","log_id":"g"}],"api_version":2})",
                  /*json_content_type=*/false);
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/json");
  auto ids = r.json().at("ids").as_array();
  REQUIRE(ids.size() == 3);
  CHECK(ids[0] == "a");
  CHECK(ids[1] == "b");
  CHECK(ids[2].as_string().size() > 0);
  CHECK(f.api.count_rows("dataset", "d1") == 1);
  CHECK(f.api.count_rows("experiment", "e1") == 1);
  CHECK(f.api.count_rows("project_logs", "p1") == 1);
}

TEST_CASE("logs3: a body above logs3_payload_max_bytes is 413 and stores nothing") {
  auto cfg = events_fixture::default_config();
  cfg.logs3_payload_max_bytes = 200;
  events_fixture f(cfg);
  json::object row;
  row["dataset_id"] = "d1";
  row["input"] = std::string(300, 'x');
  json::object body;
  body["rows"] = json::array{row};
  auto r = f.post("/logs3", body);
  CHECK(r.status == 413);
  CHECK(r.body.find("logs3_payload_max_bytes") != std::string::npos);
  CHECK(f.api.count_rows("dataset", "d1") == 0);
  // Just under the cap is fine.
  auto ok = f.post("/logs3", R"({"rows":[{"dataset_id":"d1"}]})");
  CHECK(ok.status == 200);
}

TEST_CASE("logs3: an unknown object is 404 naming it and nothing of the request is stored") {
  events_fixture f;
  auto r = f.post("/logs3", R"({"rows":[{"id":"a","dataset_id":"d1"},{"id":"b","experiment_id":"missing-exp"}]})");
  CHECK(r.status == 404);
  CHECK(r.body.find("missing-exp") != std::string::npos);
  CHECK(f.api.count_rows("dataset", "d1") == 0);
  r = f.post("/logs3", R"({"rows":[{"project_id":"other-org-project","log_id":"g"}]})");
  CHECK(r.status == 404);
}

TEST_CASE("logs3: malformed bodies are 400 with a message") {
  events_fixture f;
  CHECK(f.post("/logs3", "{").status == 400);
  CHECK(f.post("/logs3", "[]").status == 400);
  CHECK(f.post("/logs3", R"({"api_version":2})").status == 400);
  CHECK(f.post("/logs3", R"({"rows":[1]})").status == 400);
  CHECK(f.post("/logs3", R"({"rows":[{"id":5,"dataset_id":"d1"}]})").status == 400);
  CHECK(f.post("/logs3", R"({"rows":{"type":"something"}})").status == 400);
  CHECK(f.call(http::verb::get, "/logs3").status == 405);
}

TEST_CASE("logs3: overflow round trip: signed URL, unauthenticated PUT, then the reference ingests the payload") {
  auto cfg = events_fixture::default_config();
  cfg.logs3_payload_max_bytes = 1000;
  events_fixture f(cfg);
  // The payload (built first: the grant declares its exact size and rows).
  json::array rows;
  for (int i = 0; i < 3; ++i) {
    json::object r;
    r["id"] = "big-" + std::to_string(i);
    r["dataset_id"] = "d1";
    r["input"] = std::string(1000, 'a' + i);
    rows.push_back(r);
  }
  json::object payload;
  payload["rows"] = rows;
  payload["api_version"] = 2;
  const std::string payload_text = json::serialize(payload);
  json::array descr;
  for (int i = 0; i < 3; ++i)
    descr.push_back(json::object{{"object_ids", json::object{{"dataset_id", "d1"}}}, {"is_delete", false},
                                 {"input_row", json::object{{"byte_size", 1040}}}});
  auto ov = f.post("/logs3/overflow", json::object{{"content_type", "application/json"},
                                                   {"size_bytes", payload_text.size()}, {"rows", descr}});
  REQUIRE_MESSAGE(ov.status == 200, ov.body);
  auto o = ov.json().as_object();
  CHECK(o.at("method") == "PUT");
  CHECK(o.at("headers").is_object());
  const std::string key(o.at("key").as_string());
  const std::string url(o.at("signedUrl").as_string());
  CHECK(url.rfind("http://127.0.0.1:1234/_signed/", 0) == 0);
  const std::string target = target_of(url);
  CHECK(f.api.is_public_path(target));

  // The payload is larger than the direct cap; a PUT of another size than declared is refused.
  CHECK(f.call(http::verb::put, target, payload_text + " ", /*json_content_type=*/false).status == 400);
  auto put = f.call(http::verb::put, target, payload_text, /*json_content_type=*/false);
  REQUIRE_MESSAGE(put.status == 200, put.body);

  json::object ref_rows;
  ref_rows["type"] = "logs3_overflow";
  ref_rows["key"] = key;
  ref_rows["size_bytes"] = payload_text.size() + 1;
  json::object body;
  body["rows"] = ref_rows;
  body["api_version"] = 2;
  // A reference whose size_bytes is not the payload's is refused and stores nothing.
  CHECK(f.post("/logs3", body).status == 400);
  CHECK(f.api.count_rows("dataset", "d1") == 0);
  body["rows"].as_object()["size_bytes"] = payload_text.size();
  auto ingest = f.post("/logs3", body);
  REQUIRE_MESSAGE(ingest.status == 200, ingest.body);
  CHECK(ingest.json().at("ids").as_array().size() == 3);
  CHECK(f.api.count_rows("dataset", "d1") == 3);
  auto data = f.btql("select: *\nfrom: dataset('d1')").at("data").as_array();
  REQUIRE(data.size() == 3);
  CHECK(data[1].at("input").as_string().size() == 1000);
  // The payload is single-use: it is gone from the store, and a re-sent reference stores nothing twice.
  CHECK(f.store.size("blobs") == 0);
  CHECK(f.post("/logs3", body).status == 404);
  CHECK(f.api.count_rows("dataset", "d1") == 3);
}

TEST_CASE("logs3: overflow requests are as strict as the SDK's shape") {
  events_fixture f;
  const std::string row = R"({"object_ids":{"dataset_id":"d1"},"is_delete":false,"input_row":{"byte_size":10}})";
  CHECK(f.post("/logs3/overflow", "{}").status == 400);
  CHECK(f.post("/logs3/overflow", R"({"content_type":"text/plain","size_bytes":10,"rows":[)" + row + "]}").status == 400);
  CHECK(f.post("/logs3/overflow", R"({"content_type":"application/json","size_bytes":0,"rows":[)" + row + "]}").status == 400);
  CHECK(f.post("/logs3/overflow", R"({"content_type":"application/json","size_bytes":10,"rows":[]})").status == 400);
  CHECK(f.post("/logs3/overflow", R"({"content_type":"application/json","size_bytes":10,"rows":[{"object_ids":{"dataset_id":"d1"}}]})").status == 400);
  CHECK(f.post("/logs3/overflow", R"({"content_type":"application/json","size_bytes":10,"rows":[{"object_ids":{"dataset_id":"nope"},"input_row":{"byte_size":1}}]})").status == 404);
  // A payload holding other rows than declared is refused at ingest.
  auto g = f.post("/logs3/overflow", R"({"content_type":"application/json","size_bytes":55,"rows":[)" + row + "," + row + "]}");
  REQUIRE_MESSAGE(g.status == 200, g.body);
  const std::string one = R"({"rows":[{"id":"x","dataset_id":"d1"}],"api_version":2})";
  REQUIRE(one.size() == 55);
  auto go = g.json().as_object();
  REQUIRE(f.call(http::verb::put, target_of(go.at("signedUrl").as_string()), one).status == 200);
  CHECK(f.post("/logs3", R"({"rows":{"type":"logs3_overflow","key":")" + std::string(go.at("key").as_string()) + R"("}})").status == 400);
  CHECK(f.api.count_rows("dataset", "d1") == 0);
}

TEST_CASE("logs3: overflow refuses forged signatures and unknown keys") {
  events_fixture f;
  auto o = f.post("/logs3/overflow", R"({"content_type":"application/json","size_bytes":2,"rows":[{"object_ids":{"dataset_id":"d1"},"input_row":{"byte_size":1}}]})").json().as_object();
  std::string target = target_of(o.at("signedUrl").as_string());
  std::string forged = target.substr(0, target.size() - 4) + "0000";
  if (forged == target) forged = target.substr(0, target.size() - 4) + "1111";
  CHECK(f.call(http::verb::put, forged, "{}").status == 403);
  CHECK(f.call(http::verb::put, "/_signed/logs3/zz/zz?sig=1", "{}").status == 404);
  auto ingest = f.post("/logs3", R"({"rows":{"type":"logs3_overflow","key":"never-uploaded"}})");
  CHECK(ingest.status == 404);
  CHECK(ingest.body.find("never-uploaded") != std::string::npos);
}

TEST_CASE("version: reports logs3_payload_max_bytes") {
  auto cfg = events_fixture::default_config();
  cfg.logs3_payload_max_bytes = 262144;
  events_fixture f(cfg);
  auto r = f.get("/version");
  REQUIRE(r.status == 200);
  auto v = r.json().as_object();
  CHECK(v.at("logs3_payload_max_bytes") == 262144);
  CHECK(v.at("version").is_string());
}

TEST_CASE("events_api: other paths are not handled - only signed targets are public") {
  events_fixture f;
  ferry::transports::http_request req{http::verb::get, "/v1/project", 11};
  CHECK_FALSE(f.api.handle_now(req, f.ctx).has_value());
  ferry::transports::http_request req2{http::verb::post, "/api/apikey/login", 11};
  CHECK_FALSE(f.api.handle_now(req2, f.ctx).has_value());
  ferry::transports::http_request req3{http::verb::get, "/v1/experiment/e1", 11};
  CHECK_FALSE(f.api.handle_now(req3, f.ctx).has_value());
  CHECK(f.api.is_public_path("/_signed/attachment/aa/bb?sig=cc"));
  CHECK_FALSE(f.api.is_public_path("/logs3"));
  CHECK_FALSE(f.api.is_public_path("/attachment"));
}

TEST_CASE("events_api: handle() is the coroutine form of handle_now()") {
  events_fixture f;
  boost::asio::io_context io;
  ferry::transports::http_request req{http::verb::get, "/version", 11};
  auto reply = ferry::test::run_coro(io, f.api.handle(req, f.ctx));
  REQUIRE(reply.has_value());
  CHECK(reply->response.result_int() == 200);
}

// /logs3 re-emits plain rows without a DOM (logs3.cpp); REST inserts keep the Boost.JSON path. Both must
// store the same row: same fields, same values (key order and number spelling may differ).
TEST_CASE("logs3: plain rows are stored with the same fields and values as the DOM path") {
  events_fixture f;
  const std::string rows = R"([
    {"id":"r1","created":"2023-01-02T03:04:05Z","span_id":"s1","span_parents":["s0"],"input":{"a":[1,2.5,-3e2,null,true]},
     "org_id":"someone-else","log_id":"x","project_id":"p-own","metadata":{"k":"caf\u00e9 \"q\" \\ \n"},"_is_merge":false,
     "_merge_paths":[["a"]],"_array_delete":[],"is_root":"stale","_xact_id":"1","_pagination_key":"p0"},
    {"id":"r2","created":"","span_id":"","root_span_id":"","span_parents":null,"scores":{"s":0.25}},
    {"id":"r3","span_parents":[],"root_span_id":"root-3","created":7,"tags":["t"]},
    {"id":"r4","span_id":"s4","dataset_id":"","output":"x","output":"y"}
  ])";
  auto with_object = [&](std::string_view key, std::string_view value) {
    // every row names the object (the REST insert overrides it anyway)
    std::string out;
    std::string needle = R"({"id":)";
    std::size_t pos = 0, at;
    std::string s = rows;
    while ((at = s.find(needle, pos)) != std::string::npos) {
      out.append(s, pos, at - pos);
      out.append("{\"").append(key).append("\":\"").append(value).append("\",\"id\":");
      pos = at + needle.size();
    }
    out.append(s, pos);
    return out;
  };
  auto fast = f.post("/logs3", R"({"rows":)" + with_object("experiment_id", "e1") + "}");
  REQUIRE_MESSAGE(fast.status == 200, fast.body);
  auto dom = f.post("/v1/experiment/e2/insert", R"({"events":)" + with_object("experiment_id", "e2") + "}");
  REQUIRE_MESSAGE(dom.status == 200, dom.body);

  auto fetch = [&](const std::string& obj) {
    auto data = f.btql("select: *\nfrom: experiment('" + obj + "')\nsort: _pagination_key asc\nlimit: 10").at("data").as_array();
    std::map<std::string, json::object> by_id;
    for (auto& v : data) {
      auto o = v.as_object();
      CHECK(o.at("_xact_id").is_string());
      CHECK(o.at("_pagination_key").is_string());
      CHECK(o.at("experiment_id") == json::value(obj));
      for (auto k : {"_xact_id", "_pagination_key", "experiment_id"}) o.erase(k);
      by_id[std::string(o.at("id").as_string())] = o;
    }
    return by_id;
  };
  const auto a = fetch("e1"), b = fetch("e2");
  REQUIRE(a.size() == 4);
  REQUIRE(b.size() == 4);
  for (const auto& [id, row] : a) {
    INFO("row " << id << ": logs3 " << json::serialize(row) << " vs insert " << json::serialize(b.at(id)));
    CHECK(row == b.at(id));
  }
  // And the server's fields themselves, on the fast path.
  CHECK(a.at("r1").at("created") == "2023-01-02T03:04:05Z");
  CHECK(a.at("r1").at("is_root") == false);
  CHECK(a.at("r1").at("root_span_id") == "s1");
  CHECK(a.at("r1").at("org_id") == "someone-else");  // not project logs: kept as sent
  CHECK(a.at("r1").at("metadata").at("k") == "caf\xc3\xa9 \"q\" \\ \n");
  CHECK(!a.at("r1").contains("_is_merge"));
  CHECK(!a.at("r1").contains("_merge_paths"));
  CHECK(a.at("r2").at("created") == "2024-05-01T00:00:00.000Z");
  CHECK(a.at("r2").at("span_id") == "r2");
  CHECK(a.at("r2").at("root_span_id") == "r2");
  CHECK(a.at("r2").at("is_root") == true);
  CHECK(a.at("r3").at("root_span_id") == "root-3");
  CHECK(a.at("r3").at("created") == "2024-05-01T00:00:00.000Z");
  CHECK(a.at("r4").at("output") == "y");  // a repeated key: the last one wins
}

TEST_CASE("logs3: project log rows get the server's org, project and log ids on the fast path") {
  events_fixture f;
  auto r = f.post("/logs3", R"({"rows":[{"id":"x","project_id":"p1","log_id":"g","org_id":"forged","input":1}]})");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto data = f.btql("select: *\nfrom: project_logs('p1')\nsort: _pagination_key asc\nlimit: 10").at("data").as_array();
  REQUIRE(data.size() == 1);
  const auto& row = data[0].as_object();
  CHECK(row.at("org_id") == "org-1");
  CHECK(row.at("project_id") == "p1");
  CHECK(row.at("log_id") == "g");
  CHECK(row.at("input") == 1);
  CHECK(row.at("_xact_id").as_string().size() == 19);
}

namespace {

// The rows of an object as BTQL returns them, by id, without the fields that differ between two objects
// or two transactions.
std::map<std::string, json::object> rows_by_id(events_fixture& f, const std::string& from) {
  auto data = f.btql("select: *\nfrom: " + from + "\nsort: _pagination_key asc\nlimit: 100").at("data").as_array();
  std::map<std::string, json::object> by_id;
  for (auto& v : data) {
    auto o = v.as_object();
    for (auto k : {"_xact_id", "_pagination_key", "experiment_id"}) o.erase(k);
    const std::string id(o.at("id").as_string());
    CHECK_MESSAGE(!by_id.contains(id), "two current versions of " << id);
    by_id[id] = o;
  }
  return by_id;
}

}  // namespace

// The fast path (plain /logs3 rows) and the DOM path (REST insert: every row) must leave the same rows
// after the same sequence of requests: replacements, duplicate ids within one request, merges and
// deletes mixed with plain rows, a merge on a missing id, a row re-created after its delete.
TEST_CASE("logs3: a sequence of plain, duplicate, merge and delete rows ends as on the DOM path") {
  events_fixture f;
  const std::vector<std::string> requests = {
      R"([{"id":"a","input":1,"tags":["x"]},{"id":"b","input":{"k":[1,2]}},{"id":"a","input":2,"metadata":{"m":1}},
          {"id":"c","output":"c1"}])",
      R"([{"id":"a","_is_merge":true,"metadata":{"n":2}},{"id":"b","output":"b2"},{"id":"m","_is_merge":true,"input":3},
          {"id":"c","_object_delete":true},{"id":"d","input":"d1"},{"id":"d","_is_merge":true,"output":"d2"},{"id":"d","scores":{"s":1}}])",
      R"([{"id":"c","input":"again"},{"id":"b","_is_merge":true,"input":{"k":[3]},"_merge_paths":[["input"]]},{"id":"e","input":5},
          {"id":"e","_object_delete":true}])",
  };
  auto with_object = [](const std::string& rows, const std::string& exp) {
    std::string out;
    std::size_t pos = 0, at;
    while ((at = rows.find(R"({"id":)", pos)) != std::string::npos) {
      out.append(rows, pos, at - pos);
      out.append(R"({"experiment_id":")" + exp + R"(","id":)");
      pos = at + 6;
    }
    out.append(rows, pos);
    return out;
  };
  for (const auto& rows : requests) {
    auto fast = f.post("/logs3", R"({"rows":)" + with_object(rows, "e1") + "}");
    REQUIRE_MESSAGE(fast.status == 200, fast.body);
    auto dom = f.post("/v1/experiment/e2/insert", R"({"events":)" + with_object(rows, "e2") + "}");
    REQUIRE_MESSAGE(dom.status == 200, dom.body);
    CHECK(parse(fast.body).at("ids") == parse(dom.body).at("row_ids"));
  }
  const auto a = rows_by_id(f, "experiment('e1')"), b = rows_by_id(f, "experiment('e2')");
  CHECK(a.size() == 5);  // a b c d m (e deleted in its own request)
  REQUIRE(a.size() == b.size());
  for (const auto& [id, row] : a) {
    INFO("row " << id << ": logs3 " << json::serialize(row) << " vs insert " << json::serialize(b.at(id)));
    REQUIRE(b.contains(id));
    CHECK(row == b.at(id));
  }
  // What the sequence means (the DOM path's reading, spelled out).
  CHECK(a.at("a").at("input") == 2);
  CHECK(a.at("a").at("metadata") == parse(R"({"m":1,"n":2})"));
  CHECK(!a.at("a").contains("tags"));
  CHECK(a.at("b").at("input") == parse(R"({"k":[3]})"));
  CHECK(a.at("c").at("input") == "again");
  CHECK(!a.at("c").contains("output"));
  CHECK(a.at("d").at("scores") == parse(R"({"s":1})"));
  CHECK(!a.at("d").contains("output"));
  CHECK(a.at("m").at("input") == 3);
}

// One /logs3 request is one transaction even when its rows name several objects in any order: one
// _xact_id, pagination keys ascending in row order, reply ids aligned with the rows.
TEST_CASE("logs3: rows of several interleaved objects share one transaction") {
  events_fixture f;
  auto r = f.post("/logs3", R"({"rows":[{"id":"x1","experiment_id":"e1","input":1},{"id":"y1","dataset_id":"d1","input":2},
      {"id":"z1","project_id":"p1","log_id":"g","input":3},{"id":"x2","experiment_id":"e1","input":4},
      {"id":"y1","dataset_id":"d1","input":5},{"id":"x1","experiment_id":"e2","input":6}]})");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  CHECK(parse(r.body).at("ids") == parse(R"(["x1","y1","z1","x2","y1","x1"])"));
  std::vector<std::pair<std::string, json::object>> rows;
  for (std::string from : {"experiment('e1')", "dataset('d1')", "project_logs('p1')", "experiment('e2')"}) {
    const auto page = f.btql("select: *\nfrom: " + from + "\nsort: _pagination_key asc\nlimit: 10");
    for (const auto& v : page.at("data").as_array()) rows.emplace_back(from, v.as_object());
  }
  REQUIRE(rows.size() == 5);
  std::map<std::string, std::string> pk_of;
  for (const auto& [from, row] : rows) {
    CHECK(row.at("_xact_id") == rows.front().second.at("_xact_id"));
    pk_of[from + "/" + std::string(row.at("id").as_string())] = std::string(row.at("_pagination_key").as_string());
  }
  CHECK(pk_of.at("experiment('e1')/x1") < pk_of.at("project_logs('p1')/z1"));
  CHECK(pk_of.at("project_logs('p1')/z1") < pk_of.at("experiment('e1')/x2"));
  CHECK(pk_of.at("experiment('e1')/x2") < pk_of.at("dataset('d1')/y1"));  // y1's second row is its version
  CHECK(pk_of.at("dataset('d1')/y1") < pk_of.at("experiment('e2')/x1"));
  for (const auto& [from, row] : rows)
    if (row.at("id") == "y1") CHECK(row.at("input") == 5);
}
