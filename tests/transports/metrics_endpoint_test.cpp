#include "transports/metrics_endpoint.hpp"

#include "json_reply.hpp"
#include "test_support.hpp"
#include "transports/api_client.hpp"
#include "transports/http_client.hpp"
#include "transports/http_server.hpp"

#include <boost/asio/io_context.hpp>
#include <doctest/doctest.h>

namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace ferry::transports;
using ferry::test::run_coro;

TEST_CASE("metrics endpoint: endpoint labels keep the route and drop ids, queries and signed URLs") {
  CHECK(endpoint_label("/btql") == "/btql");
  CHECK(endpoint_label("/v1/project?project_name=a&limit=10") == "/v1/project");
  CHECK(endpoint_label("/v1/project_logs/0b6f2a7c-1c4e-4e7a-9f43-2d9f1a6a1b2c/insert") == "/v1/project_logs/:id/insert");
  CHECK(endpoint_label("/v1/experiment/e1") == "/v1/experiment/e1");  // short and readable: not an id
  CHECK(endpoint_label("https://bucket.s3.amazonaws.com/k?X-Amz-Signature=abc") == "signed_url");
  CHECK(endpoint_label("") == "/");
}

TEST_CASE("metrics endpoint: HOST:PORT is parsed, a bad one is named") {
  CHECK(parse_host_port("127.0.0.1:0") == std::pair<std::string, std::uint16_t>{"127.0.0.1", 0});
  CHECK(parse_host_port("[::1]:9464") == std::pair<std::string, std::uint16_t>{"::1", 9464});
  CHECK(parse_host_port(":9464").first == "0.0.0.0");
  CHECK_THROWS_WITH_AS(parse_host_port("localhost"), doctest::Contains("'localhost'"), std::invalid_argument);
  CHECK_THROWS_AS(parse_host_port("h:99999"), std::invalid_argument);
  CHECK_THROWS_AS(parse_host_port("h:x"), std::invalid_argument);
}

TEST_CASE("metrics endpoint: the client hook counts attempts, retries and throttles; /metrics serves them") {
  asio::io_context ctx;
  ferry::engine::manual_clock clock;
  ferry::engine::metrics_registry registry;
  int calls = 0;
  http_server upstream{ctx.get_executor(), {}, [&](http_request& req) -> asio::awaitable<http_reply> {
                         const bool throttle = req.target().starts_with("/v1/project_logs/") && ++calls == 1;
                         auto r = throttle ? ferry::test::json_reply(429, R"({"error":"slow down"})", "0")
                                           : ferry::test::json_reply(200, R"({"ok":true})");
                         co_return r;
                       }};
  upstream.start();
  http_client_config hc;
  hc.base_url = "http://127.0.0.1:" + std::to_string(upstream.port());
  http_client client(ctx.get_executor(), hc);
  api_client_config ac;
  ac.side = "destination";
  ac.api_key = "sk-metrics-test-key-123456";
  ac.clock = &clock;
  ac.metrics = &registry;
  api_client api(client, ac);
  metrics_server server(ctx.get_executor(), "127.0.0.1:0", registry);
  server.start();
  REQUIRE(server.port() != 0);

  std::string scraped, content_type;
  unsigned other_status = 0;
  bool a_ok = false, b_ok = false;
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    // (arguments are named first: GCC 12 mishandles initializer lists inside a co_await expression)
    boost::json::value events = boost::json::object{{"events", boost::json::array{}}};
    auto a = co_await api.post_json("/v1/project_logs/0b6f2a7c-1c4e-4e7a-9f43-2d9f1a6a1b2c/insert", events);
    a_ok = a.ok();
    query_params q{{"project_name", "secret-looking name"}};
    auto b = co_await api.get_json("/v1/project", q);
    b_ok = b.ok();
    http_client_config sc;
    sc.base_url = "http://127.0.0.1:" + std::to_string(server.port());
    auto ex = co_await asio::this_coro::executor;
    http_client scraper(ex, sc);
    http_request_spec get;
    get.target = "/metrics";
    auto m = co_await scraper.send(get);
    scraped = m.body;
    content_type = m.content_type;
    get.target = "/other";
    auto o = co_await scraper.send(get);
    other_status = o.status;
    scraper.close_idle();
    server.stop();
    upstream.stop();
    client.close_idle();
  }());
  INFO(scraped);
  CHECK(a_ok);
  CHECK(b_ok);
  CHECK(content_type == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(other_status == 404);
  CHECK(scraped.find("# TYPE ferry_http_requests_total counter\n") != std::string::npos);
  CHECK(scraped.find("ferry_http_requests_total{side=\"destination\",method=\"POST\",endpoint=\"/v1/project_logs/:id/"
                     "insert\",status=\"429\"} 1\n") != std::string::npos);
  CHECK(scraped.find("ferry_http_requests_total{side=\"destination\",method=\"POST\",endpoint=\"/v1/project_logs/:id/"
                     "insert\",status=\"200\"} 1\n") != std::string::npos);
  CHECK(scraped.find("ferry_http_requests_total{side=\"destination\",method=\"GET\",endpoint=\"/v1/project\","
                     "status=\"200\"} 1\n") != std::string::npos);
  CHECK(scraped.find("ferry_http_retries_total{side=\"destination\",method=\"POST\",endpoint=\"/v1/project_logs/:id/"
                     "insert\"} 1\n") != std::string::npos);
  CHECK(scraped.find("ferry_http_throttles_total{side=\"destination\",endpoint=\"/v1/project_logs/:id/insert\","
                     "status=\"429\"} 1\n") != std::string::npos);
  // No key, no id, no query value in any label.
  CHECK(scraped.find("sk-metrics") == std::string::npos);
  CHECK(scraped.find("0b6f2a7c") == std::string::npos);
  CHECK(scraped.find("secret-looking") == std::string::npos);
}
