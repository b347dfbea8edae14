#include "emulator/events.hpp"

#include "events_test_util.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

using ferry::test::events_fixture;
using ferry::test::parse;
namespace json = boost::json;

namespace {

json::array all_rows(events_fixture& f, const std::string& from) {
  auto r = f.btql("select: *\nfrom: " + from + "\nsort: _pagination_key asc\nlimit: 100000");
  return r.at("data").as_array();
}

const json::object* find_row(const json::array& rows, std::string_view id) {
  for (const auto& r : rows)
    if (r.as_object().at("id").as_string() == id) return &r.as_object();
  return nullptr;
}

}  // namespace

TEST_CASE("events: a logged row reads back with the spec's read fields") {
  events_fixture f;
  auto ids = f.logs3(parse(R"([{"id":"r1","project_id":"p1","log_id":"g","input":{"q":1},"created":"2024-01-02T03:04:05Z"}])")
                         .as_array());
  REQUIRE(ids == std::vector<std::string>{"r1"});
  auto rows = all_rows(f, "project_logs('p1') spans");
  REQUIRE(rows.size() == 1);
  const auto& r = rows[0].as_object();
  CHECK(r.at("id") == "r1");
  CHECK(r.at("org_id") == "org-1");
  CHECK(r.at("project_id") == "p1");
  CHECK(r.at("log_id") == "g");
  CHECK(r.at("created") == "2024-01-02T03:04:05Z");  // kept when given
  CHECK(r.at("span_id") == "r1");                    // defaults to the id
  CHECK(r.at("root_span_id") == "r1");
  CHECK(r.at("is_root") == true);
  CHECK(r.at("input").at("q") == 1);
  CHECK(r.at("_xact_id").as_string().size() == 19);
  CHECK(r.at("_pagination_key").as_string().size() == 27);
  CHECK(f.api.count_rows("project_logs", "p1") == 1);
  CHECK(f.api.count_rows("project", "p1") == 1);
}

TEST_CASE("events: created defaults to now, generated ids, span fields kept when given, children are not roots") {
  events_fixture f;
  auto ids = f.logs3(parse(R"([{"dataset_id":"d1","input":1},
      {"experiment_id":"e1","id":"c","span_id":"s2","root_span_id":"s1","span_parents":["s1"]}])").as_array());
  REQUIRE(ids.size() == 2);
  CHECK(ids[0].size() == 32);  // generated
  auto d = all_rows(f, "dataset('d1')");
  REQUIRE(d.size() == 1);
  CHECK(d[0].at("created") == "2024-05-01T00:00:00.000Z");
  CHECK(d[0].at("dataset_id") == "d1");
  CHECK(d[0].at("id") == json::value(ids[0]));
  auto e = all_rows(f, "experiment('e1')");
  REQUIRE(e.size() == 1);
  CHECK(e[0].at("experiment_id") == "e1");
  CHECK(e[0].at("span_id") == "s2");
  CHECK(e[0].at("root_span_id") == "s1");
  CHECK(e[0].at("is_root") == false);
}

TEST_CASE("events: xact ids are fixed-width and increase per request - pagination keys increase") {
  events_fixture f;
  std::vector<std::string> xacts, keys;
  for (int i = 0; i < 5; ++i) {
    json::array rows;
    for (int j = 0; j < 3; ++j) {
      json::object r;
      r["id"] = "r" + std::to_string(i * 3 + j);
      r["dataset_id"] = "d1";
      rows.push_back(r);
    }
    f.logs3(rows);
  }
  for (const auto& r : all_rows(f, "dataset('d1')")) {
    xacts.emplace_back(r.at("_xact_id").as_string());
    keys.emplace_back(r.at("_pagination_key").as_string());
  }
  REQUIRE(keys.size() == 15);
  for (std::size_t i = 1; i < keys.size(); ++i) {
    CHECK(keys[i - 1] < keys[i]);
    CHECK(xacts[i - 1] <= xacts[i]);
    CHECK(xacts[i].size() == xacts[0].size());
  }
  CHECK(xacts[0] == xacts[2]);  // one request = one transaction
  CHECK(xacts[2] < xacts[3]);
  CHECK(std::all_of(xacts[0].begin(), xacts[0].end(), [](char c) { return c >= '0' && c <= '9'; }));
}

TEST_CASE("events: re-inserting an id replaces the row: new xact, new key, the old version is gone") {
  events_fixture f;
  f.logs3(parse(R"([{"id":"a","dataset_id":"d1","input":"v1","metadata":{"k":1}},{"id":"b","dataset_id":"d1"}])").as_array());
  auto before = all_rows(f, "dataset('d1')");
  f.logs3(parse(R"([{"id":"a","dataset_id":"d1","input":"v2"}])").as_array());
  auto after = all_rows(f, "dataset('d1')");
  REQUIRE(after.size() == 2);
  CHECK(after[0].at("id") == "b");  // a moved behind b
  const auto* a = find_row(after, "a");
  REQUIRE(a);
  CHECK(a->at("input") == "v2");
  CHECK(a->if_contains("metadata") == nullptr);  // replaced, not merged
  CHECK(a->at("_xact_id").as_string() > find_row(before, "a")->at("_xact_id").as_string());
  CHECK(f.api.count_rows("dataset", "d1") == 2);
}

TEST_CASE("events: _is_merge deep-merges by id across requests, creates when absent, ignores span_parents") {
  events_fixture f;
  f.logs3(parse(R"([{"id":"s","project_id":"p1","log_id":"g","created":"2024-01-01T00:00:00Z","_is_merge":false,
      "input":"q","metrics":{"start":1},"metadata":{"a":{"x":1,"y":2},"keep":true},"tags":["t1"]}])").as_array());
  f.logs3(parse(R"([{"id":"s","project_id":"p1","log_id":"g","_is_merge":true,"created":"2030-01-01T00:00:00Z",
      "span_parents":["zzz"],"output":"answer","metrics":{"end":2},"metadata":{"a":{"y":3}},"tags":["t2"]},
      {"id":"new","project_id":"p1","log_id":"g","_is_merge":true,"output":"fresh"}])").as_array());
  auto rows = all_rows(f, "project_logs('p1')");
  REQUIRE(rows.size() == 2);
  const auto* s = find_row(rows, "s");
  REQUIRE(s);
  CHECK(s->at("input") == "q");
  CHECK(s->at("output") == "answer");
  CHECK(s->at("metrics") == parse(R"({"start":1,"end":2})"));
  CHECK(s->at("metadata") == parse(R"({"a":{"x":1,"y":3},"keep":true})"));
  CHECK(s->at("tags") == parse(R"(["t2"])"));  // arrays are replaced
  CHECK(s->at("created") == "2024-01-01T00:00:00Z");
  CHECK(s->at("is_root") == true);
  CHECK(s->if_contains("span_parents") == nullptr);
  CHECK(s->if_contains("_is_merge") == nullptr);
  const auto* n = find_row(rows, "new");
  REQUIRE(n);
  CHECK(n->at("output") == "fresh");
}

TEST_CASE("events: _merge_paths stops the deep merge at the listed paths") {
  events_fixture f;
  f.logs3(parse(R"([{"id":"m","dataset_id":"d1","metadata":{"a":{"x":1},"b":{"x":1}}}])").as_array());
  f.logs3(parse(R"([{"id":"m","dataset_id":"d1","_is_merge":true,"_merge_paths":[["metadata","a"]],
      "metadata":{"a":{"y":2},"b":{"y":2}}}])").as_array());
  auto rows = all_rows(f, "dataset('d1')");
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].at("metadata") == parse(R"({"a":{"y":2},"b":{"x":1,"y":2}})"));
  CHECK(rows[0].as_object().if_contains("_merge_paths") == nullptr);
}

TEST_CASE("events: merges within one request apply in order (start row then merge row)") {
  events_fixture f;
  f.logs3(parse(R"([{"id":"x","experiment_id":"e1","input":1},{"id":"x","experiment_id":"e1","_is_merge":true,"output":2},
      {"id":"x","experiment_id":"e1","_is_merge":true,"scores":{"acc":1}}])").as_array());
  auto rows = all_rows(f, "experiment('e1')");
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].at("input") == 1);
  CHECK(rows[0].at("output") == 2);
  CHECK(rows[0].at("scores").at("acc") == 1);
  CHECK(f.api.count_rows("experiment", "e1") == 1);
}

TEST_CASE("events: _object_delete removes the row from reads and counts - deleting an absent id is harmless") {
  events_fixture f;
  f.logs3(parse(R"([{"id":"a","dataset_id":"d1"},{"id":"b","dataset_id":"d1"}])").as_array());
  auto ids = f.logs3(parse(R"([{"id":"a","dataset_id":"d1","_object_delete":true},{"id":"ghost","dataset_id":"d1","_object_delete":true}])").as_array());
  CHECK(ids == std::vector<std::string>{"a", "ghost"});
  auto rows = all_rows(f, "dataset('d1')");
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].at("id") == "b");
  CHECK(f.api.count_rows("dataset", "d1") == 1);
  // Re-inserting a deleted id brings it back.
  f.logs3(parse(R"([{"id":"a","dataset_id":"d1","input":"again"}])").as_array());
  CHECK(f.api.count_rows("dataset", "d1") == 2);
  // Insert and delete in one request: nothing remains.
  f.logs3(parse(R"([{"id":"tmp","dataset_id":"d1"},{"id":"tmp","dataset_id":"d1","_object_delete":true}])").as_array());
  CHECK(f.api.count_rows("dataset", "d1") == 2);
  CHECK(find_row(all_rows(f, "dataset('d1')"), "tmp") == nullptr);
}

TEST_CASE("events: the same id in two objects is two rows") {
  events_fixture f;
  f.logs3(parse(R"([{"id":"same","dataset_id":"d1","input":1},{"id":"same","dataset_id":"d2","input":2}])").as_array());
  CHECK(f.api.count_rows("dataset", "d1") == 1);
  CHECK(f.api.count_rows("dataset", "d2") == 1);
  CHECK(all_rows(f, "dataset('d1')")[0].at("input") == 1);
  CHECK(all_rows(f, "dataset('d2')")[0].at("input") == 2);
}

TEST_CASE("events: xact ids keep increasing after a restart over the same store") {
  ferry::test::map_kv_store store(ferry::emulator::events_api::column_families());
  std::string first;
  {
    ferry::emulator::events_api api(store, events_fixture::lookup(), events_fixture::default_config());
    ferry::emulator::request_context ctx{"org-1", "emu", "http://x"};
    ferry::transports::http_request req{boost::beast::http::verb::post, "/logs3", 11};
    req.body() = R"({"rows":[{"id":"a","dataset_id":"d1"}]})";
    REQUIRE(api.handle_now(req, ctx)->response.result_int() == 200);
  }
  ferry::emulator::events_api api2(store, events_fixture::lookup(), events_fixture::default_config());
  ferry::emulator::request_context ctx{"org-1", "emu", "http://x"};
  ferry::transports::http_request req{boost::beast::http::verb::post, "/logs3", 11};
  req.body() = R"({"rows":[{"id":"b","dataset_id":"d1"}]})";
  REQUIRE(api2.handle_now(req, ctx)->response.result_int() == 200);
  ferry::transports::http_request q{boost::beast::http::verb::post, "/btql", 11};
  q.body() = R"x({"query":"select: *\nfrom: dataset('d1')"})x";
  auto rows = parse(api2.handle_now(q, ctx)->response.body()).at("data").as_array();
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].at("id") == "a");
  CHECK(rows[0].at("_xact_id").as_string() < rows[1].at("_xact_id").as_string());
  CHECK(api2.count_rows("dataset", "d1") == 2);
}

TEST_CASE("events: a row above max_span_bytes is refused with 413 naming it, and nothing of the request is stored") {
  auto cfg = events_fixture::default_config();
  cfg.max_span_bytes = 1000;
  events_fixture f(cfg);
  json::object big;
  big["id"] = "huge-row";
  big["dataset_id"] = "d1";
  big["input"] = std::string(2000, 'x');
  json::object small;
  small["id"] = "small";
  small["dataset_id"] = "d1";
  json::object body;
  body["rows"] = json::array{small, big};
  auto r = f.post("/logs3", body);
  CHECK(r.status == 413);
  CHECK(r.body.find("huge-row") != std::string::npos);
  CHECK(f.api.count_rows("dataset", "d1") == 0);
}

TEST_CASE("events: project logs need log_id g - a row naming no object is a 400") {
  events_fixture f;
  auto r = f.post("/logs3", R"({"rows":[{"id":"a","input":1}]})");
  CHECK(r.status == 400);
  CHECK(r.body.find("names no object") != std::string::npos);
  r = f.post("/logs3", R"({"rows":[{"id":"a","project_id":"p1","log_id":"p"}]})");
  CHECK(r.status == 400);
  r = f.post("/logs3", R"({"rows":[{"id":"a","project_id":"p1"}]})");
  CHECK(r.status == 400);
  CHECK(f.api.count_rows("project_logs", "p1") == 0);
}

TEST_CASE("events: concurrent writers to shared and separate objects lose nothing and keep keys unique") {
  events_fixture f;
  constexpr int threads = 4, requests = 40, per_request = 5;
  std::vector<std::thread> pool;
  std::atomic<int> failures{0};
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&f, &failures, t] {
      for (int r = 0; r < requests; ++r) {
        std::string body = R"({"rows":[)";
        for (int i = 0; i < per_request; ++i) {
          const std::string id = "t" + std::to_string(t) + "-" + std::to_string(r) + "-" + std::to_string(i);
          if (i) body += ',';
          // Half the rows go to a shared dataset, half to a dataset per thread pair.
          const char* object = i % 2 ? "d1" : (t % 2 ? "d2" : "d1");
          body += R"({"id":")" + id + R"(","dataset_id":")" + object + R"("})";
        }
        body += "]}";
        ferry::transports::http_request req{boost::beast::http::verb::post, "/logs3", 11};
        req.body() = body;
        auto reply = f.api.handle_now(req, f.ctx);
        if (!reply || reply->response.result_int() != 200) ++failures;
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(failures == 0);
  auto d1 = all_rows(f, "dataset('d1')");
  auto d2 = all_rows(f, "dataset('d2')");
  CHECK(d1.size() + d2.size() == threads * requests * per_request);
  CHECK(f.api.count_rows("dataset", "d1") == d1.size());
  CHECK(f.api.count_rows("dataset", "d2") == d2.size());
  std::set<std::string> keys, ids;
  for (const auto* rows : {&d1, &d2})
    for (const auto& r : *rows) {
      CHECK(keys.insert(std::string(r.at("_pagination_key").as_string())).second);
      CHECK(ids.insert(std::string(r.at("id").as_string())).second);
    }
  // Keys order rows by transaction within an object.
  for (std::size_t i = 1; i < d1.size(); ++i)
    CHECK(d1[i - 1].at("_xact_id").as_string() <= d1[i].at("_xact_id").as_string());
}
