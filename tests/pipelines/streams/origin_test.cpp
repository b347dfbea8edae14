// Event `origin` (issue 14 item 4): a source row's own origin names another source object; where that
// object was migrated, the copy's origin names the object's destination copy (other keys and bytes
// kept); where it was not, the origin is left as it is and counted. Origins Ferry builds (the row had
// none) record where the copy came from and keep the source ids.

#include "pipelines/streams/row_rewriter.hpp"
#include "pipelines/streams/stream_runner.hpp"

#include "fakes.hpp"
#include "stream_harness.hpp"
#include "test_support.hpp"

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <map>

using namespace ferry::pipelines::streams;
namespace json = boost::json;

namespace {

rewrite_config mapped_cfg(std::map<std::string, std::string>* looked_up = nullptr) {
  rewrite_config c;
  c.kind = stream_kind::dataset;
  c.stream_name = "dataset_events dataset=sd";
  c.source_object_id = "sd";
  c.dest_ids = {{"sd", "dd"}};
  c.origin_dest = [looked_up](std::string_view type, std::string_view id) -> std::optional<std::string> {
    if (looked_up) (*looked_up)[std::string(id)] = std::string(type);
    if (type == "project_logs" && id == "sp") return std::string("dp");
    if (type == "experiment" && id == "se") return std::string("de");
    return std::nullopt;
  };
  return c;
}

}  // namespace

TEST_CASE("row_rewriter: a source origin naming a migrated object names its destination copy; others are left as is") {
  std::map<std::string, std::string> looked_up;
  row_rewriter rw(mapped_cfg(&looked_up));
  std::string body =
      R"({"data":[)"
      R"({"id":"a","_pagination_key":"p1","origin":{"object_type":"project_logs", "object_id" : "sp" ,"id":"l1","_xact_id":"77"}},)"
      R"({"id":"b","_pagination_key":"p2","origin":{"id":"e1","object_id":"se","object_type":"experiment"}},)"
      R"({"id":"c","_pagination_key":"p3","origin":{"object_type":"experiment","object_id":"gone","id":"x"}},)"
      R"({"id":"d","_pagination_key":"p4","origin":{"object_type":"experiment","object_id":5}},)"
      R"({"id":"e","_pagination_key":"p5","_xact_id":"9"}]})";
  auto page = rw.rewrite(body, "");
  REQUIRE(page.rows.size() == 5);
  auto origin = [&](int i) { return json::parse(page.rows[i].json).as_object().at("origin").as_object(); };
  CHECK(page.rows[0].json.find(R"("origin":{"object_type":"project_logs", "object_id" : "dp" ,"id":"l1","_xact_id":"77"})") !=
        std::string::npos);
  CHECK(page.rows[0].origin == event_row::origin_kind::mapped);
  CHECK(origin(1).at("object_id").as_string() == "de");
  CHECK(origin(1).at("id").as_string() == "e1");
  CHECK(page.rows[1].origin == event_row::origin_kind::mapped);
  CHECK(origin(2).at("object_id").as_string() == "gone");  // not migrated: as it was
  CHECK(page.rows[2].origin == event_row::origin_kind::unmapped);
  CHECK(origin(3).at("object_id").as_int64() == 5);  // not an id string: as it was
  CHECK(page.rows[3].origin == event_row::origin_kind::unmapped);
  CHECK(origin(4).at("object_id").as_string() == "sd");  // built: the provenance keeps the source id
  CHECK(page.rows[4].origin == event_row::origin_kind::built);
  CHECK(looked_up == std::map<std::string, std::string>{{"sp", "project_logs"}, {"se", "experiment"}, {"gone", "experiment"}});
  for (const auto& r : page.rows) CHECK(r.hash == hash_row(r.id, r.json));
}

TEST_CASE("stream: origins are mapped through the run's id map and counted") {
  ferry::test::stream_harness<> h;
  h.st.put_id("dataset", "sds", "dds", true);
  h.st.put_id("project", "sp", "dp", true);
  h.src.rows = {
      {"a", "p1", "2026-01-01T00:00:00Z", R"("origin":{"object_type":"dataset","object_id":"sds","id":"r"})"},
      {"b", "p2", "2026-01-01T00:00:00Z", R"("origin":{"object_type":"project_logs","object_id":"sp","id":"r"})"},
      {"c", "p3", "2026-01-01T00:00:00Z", R"("origin":{"object_type":"dataset","object_id":"other","id":"r"})"},
      {"d", "p4", "2026-01-01T00:00:00Z", R"("origin":{"object_type":"organization","object_id":"sds"})"},
      {"e", "p5", "2026-01-01T00:00:00Z", ""},
  };
  auto res = h.run();
  CHECK(res.error == "");
  REQUIRE(res.done);
  auto origin_id = [&](const char* id) {
    return std::string(json::parse(h.dst.rows.at(id)).as_object().at("origin").as_object().at("object_id").as_string());
  };
  CHECK(origin_id("a") == "dds");
  CHECK(origin_id("b") == "dp");
  CHECK(origin_id("c") == "other");
  CHECK(origin_id("d") == "sds");  // not a migrated object type
  CHECK(origin_id("e") == "sp");   // built by Ferry: the source project
  auto st = h.store.load("logs:sp");
  REQUIRE(st);
  CHECK(st->counters.origins_mapped == 2);
  CHECK(st->counters.origins_unmapped == 2);
}
