#include "pipelines/streams/btql_query.hpp"

#include <boost/json.hpp>
#include <doctest/doctest.h>

using namespace ferry::pipelines::streams;

TEST_CASE("btql_query: first logs page matches the reference text byte for byte") {
  page_query q;
  q.object_ids = {"p1"};
  CHECK(build_page_query(q) == "select: *\nfrom: project_logs('p1') spans\nsort: _pagination_key asc\nlimit: 1000");
}

TEST_CASE("btql_query: conditions in reference order joined with and") {
  page_query q;
  q.object_ids = {"p1"};
  q.created_after = "2026-01-01T00:00:00Z";
  q.created_before = "2026-02-01T00:00:00Z";
  q.after_key = "p0001";
  q.limit = 250;
  CHECK(build_page_query(q) ==
        "select: *\nfrom: project_logs('p1') spans\n"
        "filter: created >= '2026-01-01T00:00:00Z' and created < '2026-02-01T00:00:00Z' and _pagination_key > 'p0001'\n"
        "sort: _pagination_key asc\nlimit: 250");
  SUBCASE("inclusive key uses >=") {
    q.created_after.reset();
    q.created_before.reset();
    q.inclusive = true;
    CHECK(build_page_query(q) ==
          "select: *\nfrom: project_logs('p1') spans\nfilter: _pagination_key >= 'p0001'\nsort: _pagination_key asc\nlimit: 250");
  }
  SUBCASE("empty strings count as unset") {
    q.created_after = "";
    q.created_before = "";
    q.after_key = "";
    CHECK(build_page_query(q) == "select: *\nfrom: project_logs('p1') spans\nsort: _pagination_key asc\nlimit: 250");
  }
}

TEST_CASE("btql_query: grouped from lists quoted ids separated by comma-space") {
  page_query q;
  q.kind = stream_kind::experiment;
  q.object_ids = {"a", "b", "c"};
  q.limit = 10;
  CHECK(build_page_query(q) == "select: *\nfrom: experiment('a', 'b', 'c') spans\nsort: _pagination_key asc\nlimit: 10");
  q.kind = stream_kind::dataset;
  q.object_ids = {"d1", "d2"};
  CHECK(build_page_query(q) == "select: *\nfrom: dataset('d1', 'd2') spans\nsort: _pagination_key asc\nlimit: 10");
}

TEST_CASE("btql_query: escaping doubles backslashes first, then escapes quotes") {
  CHECK(btql_escape(R"(a\b)") == R"(a\\b)");
  CHECK(btql_escape("o'neil") == R"(o\'neil)");
  CHECK(btql_escape(R"(\')") == R"(\\\')");
  page_query q;
  q.object_ids = {"x'y"};
  q.after_key = R"(k\')";
  CHECK(build_page_query(q) ==
        "select: *\nfrom: project_logs('x\\'y') spans\nfilter: _pagination_key > 'k\\\\\\''\nsort: _pagination_key asc\nlimit: 1000");
}

TEST_CASE("btql_query: created-after preflight selects one key, no created_before") {
  CHECK(build_preflight_query("p1", "2026-01-15T00:00:00Z") ==
        "select: _pagination_key\nfrom: project_logs('p1') spans\nfilter: created >= '2026-01-15T00:00:00Z'\n"
        "sort: _pagination_key asc\nlimit: 1");
}

TEST_CASE("btql_query: request body carries the reference fields") {
  auto v = boost::json::parse(build_btql_body("select: *\nfrom: x", "dev"));
  auto& o = v.as_object();
  CHECK(o.at("query").as_string() == "select: *\nfrom: x");
  CHECK(o.at("fmt").as_string() == "json");
  CHECK(o.at("api_version").as_int64() == 1);
  CHECK(o.at("use_brainstore").as_bool());
  CHECK(o.at("client_version").as_string() == "dev");
  CHECK(o.at("query_timeout_seconds").as_int64() == 120);
}
