#include "pipelines/streams/verify.hpp"

#include <boost/json.hpp>
#include <doctest/doctest.h>

using namespace ferry::pipelines::streams;
namespace json = boost::json;

namespace {
json::object obj(std::string_view s) { return json::parse(s).as_object(); }
}  // namespace

TEST_CASE("verify: canonical hash ignores key order, whitespace and copy-only fields") {
  auto src = obj(R"({"id":"a","_xact_id":"1","_pagination_key":"p1","project_id":"sp","input":{"b":1,"a":[1,2]},"output":"x"})");
  auto dst = obj(R"({ "output" : "x", "input": {"a": [1, 2], "b": 1.0}, "id": "a", "project_id": "dp",
                     "origin": {"object_type":"project_logs","object_id":"sp","id":"a"}, "_xact_id": "99"})");
  CHECK(canonical_row_hash(src, stream_kind::project_logs) == canonical_row_hash(dst, stream_kind::project_logs));
  auto changed = dst;
  changed["output"] = "y";
  CHECK_FALSE(canonical_row_hash(src, stream_kind::project_logs) == canonical_row_hash(changed, stream_kind::project_logs));
  SUBCASE("datasets compare only dataset fields") {
    auto d2 = dst;
    d2["output"] = "ignored for datasets";
    CHECK(canonical_row_hash(src, stream_kind::dataset) == canonical_row_hash(d2, stream_kind::dataset));
  }
}

TEST_CASE("verify: tally reports missing, extra and mismatched ids and equal digests when equal") {
  verify_tally t("logs project=sp", stream_kind::project_logs);
  t.add_source(obj(R"({"id":"a","input":1})"));
  t.add_source(obj(R"({"id":"b","input":2})"));
  t.add_source(obj(R"({"id":"c","input":3})"));
  t.add_dest(obj(R"({"id":"b","input":2})"));
  t.add_dest(obj(R"({"id":"a","input":1})"));
  SUBCASE("complete copy") {
    t.add_dest(obj(R"({"id":"c","input":3})"));
    auto r = t.finish();
    CHECK(r.ok());
    CHECK(r.source_digest == r.dest_digest);
    CHECK(r.summary().find("digest=equal") != std::string::npos);
  }
  SUBCASE("differences") {
    t.add_dest(obj(R"({"id":"z","input":3})"));
    auto r = t.finish();
    CHECK_FALSE(r.ok());
    CHECK(r.missing_ids == std::vector<std::string>{"c"});
    CHECK(r.extra_ids == std::vector<std::string>{"z"});
    CHECK_FALSE(r.source_digest == r.dest_digest);
  }
  SUBCASE("mismatch") {
    t.add_dest(obj(R"({"id":"c","input":4})"));
    auto r = t.finish();
    CHECK(r.mismatched == 1);
    CHECK(r.mismatched_ids == std::vector<std::string>{"c"});
  }
}

// Issue 14 item 9: comments are compared (what a copy carries of each); audit_data is not.
TEST_CASE("verify: comments are compared by id, created, comment, source, metadata and origin.id") {
  auto src = obj(R"({"id":"a","input":1,"comments":[{"id":"c1","created":"t1","_xact_id":"5","origin":{"id":"a"},)"
                 R"("comment":{"text":"hi"},"source":"app","metadata":{}}],"audit_data":[{"_xact_id":"4"}]})");
  auto dst = obj(R"({"id":"a","input":1,"comments":[{"id":"c1","created":"t1","_xact_id":"77","origin":{"id":"a"},)"
                 R"("comment":{"text":"hi"},"source":"app","metadata":{}}]})");
  const auto k = stream_kind::project_logs;
  CHECK(canonical_row_hash(src, k) == canonical_row_hash(dst, k));
  auto none = obj(R"({"id":"a","input":1})");
  CHECK_FALSE(canonical_row_hash(src, k) == canonical_row_hash(none, k));
  CHECK(canonical_row_hash(none, k) == canonical_row_hash(obj(R"({"id":"a","input":1,"comments":[]})"), k));
  auto text = dst;
  text["comments"].as_array()[0].as_object()["comment"] = json::object{{"text", "bye"}};
  CHECK_FALSE(canonical_row_hash(src, k) == canonical_row_hash(text, k));
  auto when = dst;
  when["comments"].as_array()[0].as_object()["created"] = "t2";
  CHECK_FALSE(canonical_row_hash(src, k) == canonical_row_hash(when, k));
  auto on = dst;
  on["comments"].as_array()[0].as_object()["origin"] = json::object{{"id", "b"}};
  CHECK_FALSE(canonical_row_hash(src, k) == canonical_row_hash(on, k));
}

// Issue 14 item 5: a field the copy spilled to an attachment is compared as the value it holds.
TEST_CASE("verify: a spilled field is compared as its attachment's content (the logical row)") {
  auto src = obj(R"({"id":"a","input":{"big":[1,2,3]},"output":"x"})");
  auto dst = obj(R"({"id":"a","output":"x","input":{"type":"braintrust_attachment","key":"k1","filename":"input.json","content_type":"application/json"}})");
  // Before: the reference was compared as it is: a false difference.
  CHECK_FALSE(canonical_row_hash(src, stream_kind::project_logs) == canonical_row_hash(dst, stream_kind::project_logs));
  auto spilled = spilled_fields(dst);
  REQUIRE(spilled.size() == 1);
  CHECK(spilled[0].field == "input");
  CHECK(spilled[0].key == "k1");
  CHECK(spilled_fields(src).empty());
  SUBCASE("the right content is equal") {
    inline_spilled(dst, spilled[0], R"({"big": [1, 2, 3]})");
    CHECK(canonical_row_hash(src, stream_kind::project_logs) == canonical_row_hash(dst, stream_kind::project_logs));
  }
  SUBCASE("other content is a difference") {
    inline_spilled(dst, spilled[0], R"({"big":[1,2]})");
    CHECK_FALSE(canonical_row_hash(src, stream_kind::project_logs) == canonical_row_hash(dst, stream_kind::project_logs));
  }
  SUBCASE("content that is not JSON fails loudly") { CHECK_THROWS(inline_spilled(dst, spilled[0], "{not json")); }
  SUBCASE("a user's attachment (another file name) is not a spill") {
    auto user = obj(R"({"id":"a","input":{"type":"braintrust_attachment","key":"k","filename":"photo.png","content_type":"image/png"}})");
    CHECK(spilled_fields(user).empty());
  }
}
