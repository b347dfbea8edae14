// The event side over the real stores: RocksDB (`ferry serve --data DIR`) across a restart, and the
// memory store's chunked scans under paging.
#include "emulator/events.hpp"

#include "events_test_util.hpp"
#include "test_support.hpp"

#include <boost/url/parse.hpp>

#include <doctest/doctest.h>

namespace json = boost::json;
namespace http = boost::beast::http;
using ferry::emulator::events_api;
using ferry::test::events_fixture;

namespace {

struct api_over {
  explicit api_over(ferry::stores::kv_store& store) : api(store, events_fixture::lookup(), events_fixture::default_config()) {
    ctx.org_id = "org-1";
    ctx.base_url = "http://127.0.0.1:9";
  }
  std::pair<unsigned, std::string> call(http::verb method, std::string_view target, std::string body = {}) {
    ferry::transports::http_request req{method, target, 11};
    req.body() = std::move(body);
    req.prepare_payload();
    auto reply = api.handle_now(req, ctx);
    REQUIRE(reply.has_value());
    return {reply->response.result_int(), reply->response.body()};
  }
  json::array rows(const std::string& from, const std::string& filter = "", int limit = 100000, bool desc = false) {
    json::object body;
    body["query"] = "select: *\nfrom: " + from + (filter.empty() ? "" : "\nfilter: " + filter) +
                    "\nsort: _pagination_key " + (desc ? "desc" : "asc") + "\nlimit: " + std::to_string(limit);
    auto [status, text] = call(http::verb::post, "/btql", json::serialize(body));
    REQUIRE_MESSAGE(status == 200, text);
    return json::parse(text).at("data").as_array();
  }
  events_api api;
  ferry::emulator::request_context ctx;
};

std::string target_of(std::string_view url) {
  auto u = boost::urls::parse_uri(url);
  REQUIRE(u.has_value());
  return std::string(u->encoded_target());
}

}  // namespace

TEST_CASE("events on RocksDB: rows, counts, xact order and signed URLs survive a restart") {
  ferry::test::temp_dir dir("ferry-emu-events");
  std::string last_xact, download_target;
  {
    auto store = ferry::stores::kv_store::open_rocksdb(dir.str(), events_api::column_families());
    api_over a(*store);
    REQUIRE(a.call(http::verb::post, "/logs3",
                   R"({"rows":[{"id":"a","dataset_id":"d1","input":1},{"id":"b","dataset_id":"d1"}]})").first == 200);
    REQUIRE(a.call(http::verb::post, "/logs3", R"({"rows":[{"id":"a","dataset_id":"d1","_is_merge":true,"output":2}]})").first == 200);
    auto rows = a.rows("dataset('d1')");
    REQUIRE(rows.size() == 2);
    last_xact = std::string(rows.back().at("_xact_id").as_string());
    auto [st, up] = a.call(http::verb::post, "/attachment", R"({"key":"k1","filename":"f","content_type":"text/plain","org_id":"org-1"})");
    REQUIRE(st == 200);
    REQUIRE(a.call(http::verb::put, target_of(json::parse(up).at("signedUrl").as_string()), "bytes!").first == 200);
    auto [st2, info] = a.call(http::verb::get, "/attachment?key=k1&org_id=org-1");
    REQUIRE(st2 == 200);
    download_target = target_of(json::parse(info).at("downloadUrl").as_string());
  }
  auto store = ferry::stores::kv_store::open_rocksdb(dir.str(), events_api::column_families());
  api_over b(*store);
  CHECK(b.api.count_rows("dataset", "d1") == 2);
  REQUIRE(b.call(http::verb::post, "/logs3", R"({"rows":[{"id":"c","dataset_id":"d1"}]})").first == 200);
  auto rows = b.rows("dataset('d1')");
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].at("id") == "b");
  CHECK(rows[1].at("id") == "a");
  CHECK(rows[1].at("output") == 2);
  CHECK(rows[1].at("input") == 1);
  CHECK(rows[2].at("id") == "c");
  CHECK(rows[2].at("_xact_id").as_string() > last_xact);
  CHECK(rows[2].at("_xact_id").as_string().size() == last_xact.size());
  auto [st, bytes] = b.call(http::verb::get, download_target);
  CHECK(st == 200);
  CHECK(bytes == "bytes!");
}

TEST_CASE("events on the memory store: paging across its scan chunks, both directions") {
  auto store = ferry::stores::kv_store::open_memory(events_api::column_families());
  api_over a(*store);
  for (int r = 0; r < 7; ++r) {
    std::string body = R"({"rows":[)";
    for (int i = 0; i < 100; ++i) {
      if (i) body += ',';
      body += R"({"id":"r)" + std::to_string(r * 100 + i) + R"(","project_id":"p1","log_id":"g"})";
    }
    body += "]}";
    REQUIRE(a.call(http::verb::post, "/logs3", body).first == 200);
  }
  std::size_t seen = 0;
  std::string last;
  for (int page = 0; page < 10; ++page) {
    auto rows = a.rows("project_logs('p1') spans", last.empty() ? "" : "_pagination_key > '" + last + "'", 300);
    if (rows.empty()) break;
    for (const auto& row : rows) {
      const std::string key(row.at("_pagination_key").as_string());
      CHECK(key > last);
      last = key;
      ++seen;
    }
  }
  CHECK(seen == 700);
  auto desc = a.rows("project_logs('p1') spans", "", 1000, /*desc=*/true);
  REQUIRE(desc.size() == 700);
  CHECK(desc.front().at("id") == "r699");
  CHECK(desc.back().at("id") == "r0");
  CHECK(a.api.count_rows("project", "p1") == 700);
}
