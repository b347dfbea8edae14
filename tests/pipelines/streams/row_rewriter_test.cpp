#include "pipelines/streams/row_rewriter.hpp"

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <string>

using namespace ferry::pipelines::streams;
namespace json = boost::json;

namespace {

rewrite_config logs_cfg() {
  rewrite_config c;
  c.kind = stream_kind::project_logs;
  c.stream_name = "logs project=sp";
  c.source_object_id = "sp";
  c.dest_ids = {{"sp", "dp"}};
  return c;
}

json::object parse_row(const event_row& r) { return json::parse(r.json).as_object(); }

}  // namespace

TEST_CASE("row_rewriter: logs keep allowed fields as raw bytes, inject dest ids and build origin") {
  row_rewriter rw(logs_cfg());
  std::string body = R"({"data":[{"id":"r1","_xact_id":"1000","_pagination_key":"p01","created":"2026-01-01T00:00:00Z",)"
                     R"("org_id":"o","project_id":"sp","log_id":"g","input":{"a":[1, 2.50, "x\u00e9"]},"output":"ok",)"
                     R"("facets":{"f":1},"is_root":true,"comments":[],"span_id":"s1","root_span_id":"s1","metrics":{"t":1e3}}]})";
  auto page = rw.rewrite(body, "");
  REQUIRE(page.rows.size() == 1);
  const auto& r = page.rows[0];
  CHECK(r.id == "r1");
  CHECK(r.key == "p01");
  // Raw bytes are copied verbatim (number spelling, escapes, spaces inside values).
  CHECK(r.json.find(R"("input":{"a":[1, 2.50, "x\u00e9"]})") != std::string::npos);
  CHECK(r.json.find(R"("metrics":{"t":1e3})") != std::string::npos);
  auto o = parse_row(r);
  CHECK(o.at("project_id").as_string() == "dp");
  CHECK(o.at("log_id").as_string() == "g");
  CHECK(o.at("output").as_string() == "ok");
  CHECK(o.contains("facets"));
  CHECK(o.at("span_id").as_string() == "s1");
  for (auto gone : {"_xact_id", "_pagination_key", "org_id", "is_root", "comments"}) CHECK_FALSE(o.contains(gone));
  auto& origin = o.at("origin").as_object();
  CHECK(origin.at("object_type").as_string() == "project_logs");
  CHECK(origin.at("object_id").as_string() == "sp");
  CHECK(origin.at("id").as_string() == "r1");
  CHECK(origin.at("_xact_id").as_string() == "1000");
  CHECK(origin.at("created").as_string() == "2026-01-01T00:00:00Z");
  CHECK(r.hash == hash_row("r1", r.json));
}

TEST_CASE("row_rewriter: a non-null source origin is kept verbatim; null origin is rebuilt") {
  row_rewriter rw(logs_cfg());
  std::string body = R"({"data":[{"id":"a","_pagination_key":"p1","origin":{"object_type":"dataset","object_id":"d9","id":"z"}},)"
                     R"({"id":"b","_pagination_key":"p2","origin":null,"_xact_id":null}]})";
  auto page = rw.rewrite(body, "");
  REQUIRE(page.rows.size() == 2);
  CHECK(page.rows[0].json.find(R"("origin":{"object_type":"dataset","object_id":"d9","id":"z"})") != std::string::npos);
  auto o = parse_row(page.rows[1]).at("origin").as_object();
  CHECK(o.at("id").as_string() == "b");
  CHECK_FALSE(o.contains("_xact_id"));  // null values are not copied into origin
  CHECK_FALSE(o.contains("created"));
}

TEST_CASE("row_rewriter: datasets drop span-only fields; deletes and merges pass through and are counted") {
  rewrite_config c;
  c.kind = stream_kind::dataset;
  c.stream_name = "dataset_events";
  c.source_object_id = "sd";
  c.dest_ids = {{"sd", "dd"}};
  row_rewriter rw(c);
  std::string body = R"({"data":[{"id":"a","_pagination_key":"p1","input":1,"expected":2,"output":3,"scores":{},"dataset_id":"sd","project_id":"x"},)"
                     R"({"id":"b","_pagination_key":"p2","_object_delete":true},{"id":"c","_pagination_key":"p3","_is_merge":true,"metadata":{"m":1}}]})";
  auto page = rw.rewrite(body, "");
  REQUIRE(page.rows.size() == 3);
  CHECK(page.deletes == 1);
  CHECK(page.merges == 1);
  auto a = parse_row(page.rows[0]);
  CHECK(a.at("dataset_id").as_string() == "dd");
  CHECK_FALSE(a.contains("output"));
  CHECK_FALSE(a.contains("scores"));
  CHECK_FALSE(a.contains("project_id"));
  CHECK(a.at("origin").as_object().at("object_type").as_string() == "dataset");
  CHECK(parse_row(page.rows[1]).at("_object_delete").as_bool());
  CHECK(parse_row(page.rows[2]).at("_is_merge").as_bool());
}

TEST_CASE("row_rewriter: grouped experiment streams remap each row's own experiment id") {
  rewrite_config c;
  c.kind = stream_kind::experiment;
  c.stream_name = "experiment_events group";
  c.grouped = true;
  c.dest_ids = {{"e1", "E1"}, {"e2", "E2"}};
  row_rewriter rw(c);
  std::string body = R"({"data":[{"id":"a","_pagination_key":"p1","experiment_id":"e2","scores":{"s":1}},)"
                     R"({"id":"b","_pagination_key":"p2","experiment_id":"e1","facets":{}}]})";
  auto page = rw.rewrite(body, "p0");
  REQUIRE(page.rows.size() == 2);
  auto a = parse_row(page.rows[0]);
  CHECK(a.at("experiment_id").as_string() == "E2");
  CHECK(a.at("origin").as_object().at("object_id").as_string() == "e2");
  CHECK(a.contains("scores"));
  auto b = parse_row(page.rows[1]);
  CHECK(b.at("experiment_id").as_string() == "E1");
  CHECK(b.contains("facets"));

  SUBCASE("a row without its object id is rejected") {
    std::string bad = R"({"data":[{"id":"z","_pagination_key":"p9"}]})";
    CHECK_THROWS_WITH_AS(rw.rewrite(bad, ""), doctest::Contains("row id=z: row has no `experiment_id`"), stream_error);
  }
  SUBCASE("an unmapped object id is rejected") {
    std::string bad = R"({"data":[{"id":"z","_pagination_key":"p9","experiment_id":"e3"}]})";
    CHECK_THROWS_WITH_AS(rw.rewrite(bad, ""), doctest::Contains("no destination id for source experiment e3"), stream_error);
  }
}

TEST_CASE("row_rewriter: bad rows fail the stream with a one-line error naming stream and row") {
  row_rewriter rw(logs_cfg());
  auto fails = [&](std::string body, std::string_view prev, const char* what) {
    CHECK_THROWS_WITH_AS(rw.rewrite(body, prev), doctest::Contains(what), stream_error);
  };
  fails(R"({"data":[{"_pagination_key":"p1"}]})", "", "stream logs project=sp row #0: row has no `id`");
  fails(R"({"data":[{"id":"r1"}]})", "", "row id=r1: row has no `_pagination_key`");
  fails(R"({"data":[{"id":"r1","_pagination_key":null}]})", "", "row has no `_pagination_key`");
  fails(R"({"data":[{"id":"r1","_pagination_key":"p5"},{"id":"r2","_pagination_key":"p4"}]})", "", "row id=r2: `_pagination_key` p4 is not after p5");
  fails(R"({"data":[{"id":"r1","_pagination_key":"p5"}]})", "p5", "keys go backwards");
  fails(R"({"data":[{"id":7,"_pagination_key":"p5"}]})", "", "`id` is not a string");
  fails(R"({"data":[1]})", "", "row #0: not a JSON object");
  fails(R"({"rows":[]})", "", "no \"data\" array");
  fails("not json", "", "stream logs project=sp");
  fails("{\"data\":[{\"id\":\"r\xff\",\"_pagination_key\":\"p\"}]}", "", "stream logs project=sp");
  fails(R"({"data":[{"id":"r1","_pagination_key":"p1","input":{"a":)", "", "stream logs project=sp");
}

TEST_CASE("row_rewriter: an empty page yields no rows") {
  row_rewriter rw(logs_cfg());
  std::string body = R"({"data":[]})";
  CHECK(rw.rewrite(body, "p1").rows.empty());
}

TEST_CASE("row_rewriter: a missing destination id for a single-object stream fails at construction") {
  auto c = logs_cfg();
  c.dest_ids.clear();
  CHECK_THROWS_AS(row_rewriter{c}, stream_error);
}

TEST_CASE("page_keys: reads only keys") {
  std::string body = R"({"data":[{"_pagination_key":"a"},{"x":1},{"_pagination_key":"c"}]})";
  CHECK(page_keys(body, "s") == std::vector<std::string>{"a", "", "c"});
}

// Issue 14 item 9: a row's comments become the comment rows the SDK's logFeedback writes, riding with
// the row; audit_data is not carried (counted). Today's code dropped comments without a trace.
TEST_CASE("row_rewriter: comments ride with their row as comment rows, audit_data rows are counted") {
  auto c = logs_cfg();
  c.origin_dest = [](std::string_view type, std::string_view id) -> std::optional<std::string> {
    if (type == "dataset" && id == "sd") return std::string("dd");
    return std::nullopt;
  };
  row_rewriter rw(c);
  std::string body =
      R"({"data":[{"id":"r1","_pagination_key":"p1","input":1,"comments":[)"
      R"({"id":"c1","created":"2026-01-02T00:00:00Z","_xact_id":"5","origin":{"id":"r1"},"comment":{"text":"looks \u00e9 right"},"source":"app","metadata":{"user":"u"}},)"
      R"({"id":"c2","created":"2026-01-03T00:00:00Z","comment":{"text":"second"},"origin":{"object_type":"dataset","object_id":"sd","id":"r1"}}],)"
      R"("audit_data":[{"_xact_id":"4","source":"app","audit_data":{"action":"merge"}}]},)"
      R"({"id":"r2","_pagination_key":"p2","comments":[],"audit_data":[]},)"
      R"({"id":"r3","_pagination_key":"p3","_object_delete":true,"comments":[{"id":"c3","comment":{"text":"x"}}]}]})";
  auto page = rw.rewrite(body, "");
  REQUIRE(page.rows.size() == 3);
  CHECK(page.commented_rows == 1);
  CHECK(page.audit_rows == 1);
  const auto& r1 = page.rows[0];
  CHECK_FALSE(parse_row(r1).contains("comments"));
  CHECK_FALSE(parse_row(r1).contains("audit_data"));
  REQUIRE(r1.riders.size() > 1);
  CHECK(r1.riders.front() == ',');
  auto riders = json::parse("[" + r1.riders.substr(1) + "]").as_array();
  REQUIRE(riders.size() == 2);
  auto a = riders[0].as_object();
  CHECK(a.at("id").as_string() == "c1");
  CHECK(a.at("created").as_string() == "2026-01-02T00:00:00Z");
  CHECK(a.at("comment").as_object().at("text").as_string() == "looks \xc3\xa9 right");
  CHECK(a.at("origin").as_object().at("id").as_string() == "r1");
  CHECK(a.at("_audit_source").as_string() == "app");
  CHECK(a.at("_audit_metadata").as_object().at("user").as_string() == "u");
  CHECK(a.at("project_id").as_string() == "dp");
  CHECK(a.at("log_id").as_string() == "g");
  CHECK_FALSE(a.contains("_xact_id"));
  CHECK(r1.riders.find(R"(looks \u00e9 right)") != std::string::npos);  // raw bytes, as in rows
  auto b = riders[1].as_object();
  CHECK(b.at("origin").as_object().at("object_id").as_string() == "dd");  // mapped like a row's origin
  CHECK_FALSE(b.contains("_audit_source"));
  CHECK(page.rows[1].riders.empty());  // an empty list carries nothing
  CHECK(page.rows[2].riders.empty());  // a delete keeps no comments

  std::string bad = R"({"data":[{"id":"r9","_pagination_key":"p1","comments":[{"id":"c9","comment":"text"}]}]})";
  try {
    rw.rewrite(bad, "");
    FAIL("a comment without a comment object must fail the stream");
  } catch (const stream_error& e) {
    CHECK(std::string(e.what()).find("row id=r9") != std::string::npos);
    CHECK(std::string(e.what()).find("comment #0") != std::string::npos);
  }
}
