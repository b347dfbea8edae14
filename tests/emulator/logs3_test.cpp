#include "emulator/events.hpp"

#include "events_test_util.hpp"
#include "test_support.hpp"

#include <boost/url/parse.hpp>

#include <doctest/doctest.h>

using ferry::test::events_fixture;
using ferry::test::parse;
namespace json = boost::json;
namespace http = boost::beast::http;

namespace {

// The path+query of a signed URL handed out by the emulator (base_url is http://127.0.0.1:1234).
std::string target_of(std::string_view url) {
  auto u = boost::urls::parse_uri(url);
  REQUIRE(u.has_value());
  return std::string(u->encoded_target());
}

}  // namespace

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
  auto ov = f.post("/logs3/overflow",
                   R"({"content_type":"application/json","size_bytes":5000,"rows":[{"object_ids":{"dataset_id":"d1"},"is_delete":false,"input_row":{"byte_size":4900}}]})");
  REQUIRE_MESSAGE(ov.status == 200, ov.body);
  auto o = ov.json().as_object();
  CHECK(o.at("method") == "PUT");
  CHECK(o.at("headers").is_object());
  const std::string key(o.at("key").as_string());
  const std::string url(o.at("signedUrl").as_string());
  CHECK(url.rfind("http://127.0.0.1:1234/_signed/", 0) == 0);
  const std::string target = target_of(url);
  CHECK(f.api.is_public_path(target));

  // The payload is larger than the direct cap.
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
  auto put = f.call(http::verb::put, target, json::serialize(payload), /*json_content_type=*/false);
  REQUIRE_MESSAGE(put.status == 200, put.body);

  json::object ref_rows;
  ref_rows["type"] = "logs3_overflow";
  ref_rows["key"] = key;
  ref_rows["size_bytes"] = 5000;
  json::object body;
  body["rows"] = ref_rows;
  body["api_version"] = 2;
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

TEST_CASE("logs3: overflow refuses forged signatures and unknown keys") {
  events_fixture f;
  auto o = f.post("/logs3/overflow", "{}").json().as_object();
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
