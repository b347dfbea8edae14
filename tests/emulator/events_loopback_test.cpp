// Loopback tests of the event side: events_api behind the real transports::http_server on 127.0.0.1:0,
// driven by a minimal Beast client the way the SDKs use it (no Content-Type on /logs3, signed-URL PUT/GET
// without Authorization, the JS SDK's BTQL cursor loop, a 1000-row page of ~2 KB rows).
#include "emulator/events.hpp"

#include "events_test_util.hpp"
#include "transports/http_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/parse.hpp>

#include <doctest/doctest.h>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace json = boost::json;
using ferry::test::events_fixture;

namespace {

struct response {
  unsigned status = 0;
  std::string body;
};

// The event api served over loopback; requests are made from coroutines on the same io_context.
struct loopback {
  loopback() : store(ferry::stores::kv_store::open_memory(ferry::emulator::events_api::column_families())) {
    auto cfg = events_fixture::default_config();
    cfg.logs3_payload_max_bytes = 64 * 1024;
    api = std::make_unique<ferry::emulator::events_api>(*store, events_fixture::lookup(), cfg);
    ferry::transports::http_server_config scfg;
    server = std::make_unique<ferry::transports::http_server>(
        io.get_executor(), scfg, [this](ferry::transports::http_request& req) -> asio::awaitable<ferry::transports::http_reply> {
          ferry::emulator::request_context ctx{"org-1", "emu-org", base_url};
          auto r = co_await api->handle(req, ctx);
          if (r) co_return std::move(*r);
          ferry::transports::http_reply nf;
          nf.response.result(http::status::not_found);
          nf.response.version(req.version());
          nf.response.prepare_payload();
          co_return nf;
        });
    server->start();
    base_url = "http://127.0.0.1:" + std::to_string(server->port());
  }
  ~loopback() { server->stop(); }

  asio::awaitable<response> request(http::verb method, std::string target, std::string body,
                                    std::optional<std::string> content_type = std::nullopt) {
    beast::tcp_stream stream(co_await asio::this_coro::executor);
    stream.expires_after(std::chrono::seconds(5));
    co_await stream.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->port()),
                                  asio::use_awaitable);
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (content_type) req.set(http::field::content_type, *content_type);
    req.body() = std::move(body);
    req.prepare_payload();
    co_await http::async_write(stream, req, asio::use_awaitable);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    co_await http::async_read(stream, buf, parser, asio::use_awaitable);
    response r;
    r.status = parser.get().result_int();
    r.body = std::move(parser.get().body());
    co_return r;
  }

  // Runs one request to completion. The server's acceptor keeps the io_context busy, so this runs it
  // until the request is done (not until it runs out of work) and fails after a bound.
  response call(http::verb method, std::string target, std::string body = {},
                std::optional<std::string> content_type = std::nullopt) {
    std::optional<response> result;
    std::exception_ptr error;
    bool done = false;
    asio::co_spawn(io, request(method, std::move(target), std::move(body), std::move(content_type)),
                   [&](std::exception_ptr e, response r) {
                     error = e;
                     if (!e) result = std::move(r);
                     done = true;
                   });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    io.restart();
    while (!done && std::chrono::steady_clock::now() < deadline) io.run_one_for(std::chrono::milliseconds(100));
    if (!done) throw std::runtime_error("loopback request did not finish");
    if (error) std::rethrow_exception(error);
    return std::move(*result);
  }

  static std::string target_of(std::string_view url) {
    auto u = boost::urls::parse_uri(url);
    REQUIRE(u.has_value());
    return std::string(u->encoded_target());
  }

  asio::io_context io;
  std::unique_ptr<ferry::stores::kv_store> store;
  std::unique_ptr<ferry::emulator::events_api> api;
  std::unique_ptr<ferry::transports::http_server> server;
  std::string base_url;
};

std::string rows_body(const std::string& object_field, const std::string& object_id, int first, int n,
                      std::size_t filler) {
  json::array rows;
  for (int i = first; i < first + n; ++i) {
    json::object r;
    r["id"] = "row-" + std::to_string(i);
    r[object_field] = object_id;
    if (object_field == "project_id") r["log_id"] = "g";
    r["input"] = std::string(filler, static_cast<char>('a' + i % 26));
    rows.push_back(r);
  }
  json::object body;
  body["rows"] = rows;
  body["api_version"] = 2;
  return json::serialize(body);
}

}  // namespace

TEST_CASE("loopback: /logs3 without Content-Type, /version, and the JS SDK's BTQL cursor loop") {
  loopback lb;
  auto v = lb.call(http::verb::get, "/version");
  REQUIRE(v.status == 200);
  CHECK(json::parse(v.body).at("logs3_payload_max_bytes") == 64 * 1024);
  auto w = lb.call(http::verb::post, "/logs3", rows_body("dataset_id", "d1", 0, 10, 100));
  REQUIRE_MESSAGE(w.status == 200, w.body);
  CHECK(json::parse(w.body).at("ids").as_array().size() == 10);

  std::set<std::string> ids;
  json::value cursor = nullptr;
  for (int page = 0; page < 10; ++page) {
    json::object q = json::parse(R"({"select":[{"op":"star"}],"from":{"op":"function","name":{"op":"ident","name":["dataset"]},
        "args":[{"op":"literal","value":"d1"}]},"limit":4})").as_object();
    if (!cursor.is_null()) q["cursor"] = cursor;
    json::object body;
    body["query"] = q;
    auto r = lb.call(http::verb::post, "/btql", json::serialize(body), "application/json");
    REQUIRE_MESSAGE(r.status == 200, r.body);
    auto o = json::parse(r.body).as_object();
    for (const auto& row : o.at("data").as_array()) CHECK(ids.insert(std::string(row.at("id").as_string())).second);
    cursor = o.at("cursor");
    if (cursor.is_null()) break;
  }
  CHECK(ids.size() == 10);
  CHECK(cursor.is_null());
}

TEST_CASE("loopback: a payload over the cap is 413 - the overflow protocol stores it through the signed URL") {
  loopback lb;
  const std::string big = rows_body("project_id", "p1", 0, 40, 2000);  // ~80 KB > 64 KiB
  auto direct = lb.call(http::verb::post, "/logs3", big);
  CHECK(direct.status == 413);
  // As the SDK declares it: the exact payload size and one description per row.
  json::array descr;
  for (int i = 0; i < 40; ++i)
    descr.push_back(json::object{{"object_ids", json::object{{"project_id", "p1"}, {"log_id", "g"}}},
                                 {"is_delete", false},
                                 {"input_row", json::object{{"byte_size", 2000}}}});
  auto ov = lb.call(http::verb::post, "/logs3/overflow",
                    json::serialize(json::object{{"content_type", "application/json"}, {"size_bytes", big.size()}, {"rows", descr}}),
                    "application/json");
  REQUIRE_MESSAGE(ov.status == 200, ov.body);
  auto o = json::parse(ov.body).as_object();
  const std::string url(o.at("signedUrl").as_string());
  CHECK(url.rfind(lb.base_url + "/_signed/", 0) == 0);
  auto put = lb.call(http::verb::put, loopback::target_of(url), big);
  REQUIRE(put.status == 200);
  auto ingest = lb.call(http::verb::post, "/logs3",
                        R"({"rows":{"type":"logs3_overflow","key":")" + std::string(o.at("key").as_string()) +
                            R"(","size_bytes":)" + std::to_string(big.size()) + R"(},"api_version":2})");
  REQUIRE_MESSAGE(ingest.status == 200, ingest.body);
  CHECK(lb.api->count_rows("project_logs", "p1") == 40);
}

TEST_CASE("loopback: attachment upload and download round trip without Authorization") {
  loopback lb;
  auto up = lb.call(http::verb::post, "/attachment",
                    R"({"key":"k","filename":"h.txt","content_type":"text/plain","org_id":"org-1"})", "application/json");
  REQUIRE(up.status == 200);
  const std::string signed_url(json::parse(up.body).at("signedUrl").as_string());
  REQUIRE(lb.call(http::verb::put, loopback::target_of(signed_url), "hello attachment", "text/plain").status == 200);
  REQUIRE(lb.call(http::verb::post, "/attachment/status", R"({"key":"k","org_id":"org-1","status":{"upload_status":"done"}})",
                  "application/json")
              .status == 200);
  auto info = lb.call(http::verb::get, "/attachment?key=k&filename=h.txt&content_type=text%2Fplain&org_id=org-1");
  REQUIRE(info.status == 200);
  auto io = json::parse(info.body).as_object();
  CHECK(io.at("status").at("upload_status") == "done");
  auto got = lb.call(http::verb::get, loopback::target_of(io.at("downloadUrl").as_string()));
  CHECK(got.status == 200);
  CHECK(got.body == "hello attachment");
}

TEST_CASE("loopback: a 1000-row page of ~2 KB rows comes back whole and in key order") {
  loopback lb;
  for (int b = 0; b < 40; ++b)
    REQUIRE(lb.call(http::verb::post, "/logs3", rows_body("experiment_id", "e1", b * 25, 25, 2000)).status == 200);
  json::object body;
  body["query"] = "select: *\nfrom: experiment('e1') spans\nsort: _pagination_key asc\nlimit: 1000";
  body["fmt"] = "json";
  auto r = lb.call(http::verb::post, "/btql", json::serialize(body));
  REQUIRE(r.status == 200);
  CHECK(r.body.size() > 2'000'000);
  auto data = json::parse(r.body).at("data").as_array();
  REQUIRE(data.size() == 1000);
  for (std::size_t i = 1; i < data.size(); ++i)
    CHECK(data[i - 1].at("_pagination_key").as_string() < data[i].at("_pagination_key").as_string());
}
