#include "transports/api_client.hpp"

#include "json_reply.hpp"
#include "test_support.hpp"
#include "transports/http_client.hpp"
#include "transports/http_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <map>

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using namespace ferry::transports;
using ferry::engine::io_outcome;
using ferry::test::run_coro;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::map<std::string, std::string> query_of(const http_request& req) {
  std::map<std::string, std::string> out;
  auto u = boost::urls::parse_origin_form(std::string_view(req.target().data(), req.target().size()));
  if (!u) return out;
  for (auto p : u->params()) out[std::string(p.key)] = std::string(p.value);
  return out;
}

struct fixture {
  asio::io_context ctx;
  ferry::engine::manual_clock clock;  // backoff sleeps take no real time
  std::function<asio::awaitable<http_reply>(http_request&)> route;
  std::vector<std::string> targets;
  std::vector<std::string> auths;
  http_server srv{ctx.get_executor(), {}, [this](http_request& req) -> asio::awaitable<http_reply> {
                    targets.emplace_back(req.target());
                    auths.emplace_back(req[http::field::authorization]);
                    co_return co_await route(req);
                  }};
  std::unique_ptr<http_client> http;
  std::unique_ptr<api_client> api;

  explicit fixture(std::size_t concurrency = 20) {
    srv.start();
    http_client_config hc;
    hc.base_url = "http://127.0.0.1:" + std::to_string(srv.port());
    http = std::make_unique<http_client>(ctx.get_executor(), hc);
    api_client_config ac;
    ac.api_key = "  sk-test-key-abcdef  ";
    ac.max_concurrent_requests = concurrency;
    ac.clock = &clock;
    ac.retry.base_delay = std::chrono::milliseconds(100);
    api = std::make_unique<api_client>(*http, ac);
  }
  void run(asio::awaitable<void> body) {
    run_coro(ctx, [](fixture& f, asio::awaitable<void> b) -> asio::awaitable<void> {
      struct stop {
        fixture& f;
        ~stop() {
          f.srv.stop();
          f.http->close_idle();
        }
      } s{f};
      co_await std::move(b);
    }(*this, std::move(body)));
  }
};

}  // namespace

TEST_CASE("api_client: list_objects pages with limit and starting_after") {
  fixture f;
  f.route = [](http_request& req) -> asio::awaitable<http_reply> {
    auto q = query_of(req);
    // 25 objects, newest first: p25..p1
    std::size_t limit = std::stoul(q["limit"]);
    int start = 25;
    if (q.count("starting_after")) start = std::stoi(q["starting_after"].substr(1)) - 1;
    json::array objs;
    for (int i = start; i >= 1 && objs.size() < limit; --i)
      objs.push_back(json::object{{"id", "p" + std::to_string(i)}, {"name", "n" + std::to_string(i)}});
    co_return ferry::test::json_reply(200, json::serialize(json::object{{"objects", objs}}));
  };
  f.run([&]() -> asio::awaitable<void> {
    query_params q{{"org_name", "acme co"}};
    auto all = co_await f.api->list_objects("/v1/project", q, 10);
    REQUIRE(all.size() == 25);
    CHECK(all.front().at("id") == "p25");
    CHECK(all.back().at("id") == "p1");
  }());
  REQUIRE(f.targets.size() == 3);
  CHECK(f.targets[0] == "/v1/project?org_name=acme%20co&limit=10");
  CHECK(f.targets[1] == "/v1/project?org_name=acme%20co&limit=10&starting_after=p16");
  CHECK(f.targets[2] == "/v1/project?org_name=acme%20co&limit=10&starting_after=p6");
  CHECK(f.auths[0] == "Bearer sk-test-key-abcdef");  // trimmed
}

TEST_CASE("api_client: list_objects accepts the bare array of acl/list_org and throws on failure") {
  fixture f;
  f.route = [](http_request& req) -> asio::awaitable<http_reply> {
    if (req.target().starts_with("/v1/acl/list_org"))
      co_return ferry::test::json_reply(200, R"([{"id":"a1"},{"id":"a2"}])");
    co_return ferry::test::json_reply(403, R"({"error":"not allowed for sk-test-key-abcdef"})");
  };
  f.run([&]() -> asio::awaitable<void> {
    auto acls = co_await f.api->list_objects("/v1/acl/list_org", {}, 2);
    CHECK(acls.size() == 2);
    std::string message;
    try {
      co_await f.api->list_objects("/v1/role", {});
    } catch (const api_error& e) {
      message = e.what();
      CHECK(e.status() == 403);
      CHECK(e.outcome() == io_outcome::fatal);
    }
    CHECK(message.find("listing /v1/role page 1: GET") != std::string::npos);
    CHECK(message.find("403 Forbidden: not allowed for [REDACTED]") != std::string::npos);
    CHECK(message.find("sk-test-key-abcdef") == std::string::npos);
  }());
  CHECK(f.targets.size() == 2);  // fatal: no retry
}

TEST_CASE("api_client: 429 with Retry-After is retried after the hinted delay, then succeeds") {
  fixture f;
  int calls = 0;
  f.route = [&](http_request&) -> asio::awaitable<http_reply> {
    if (++calls < 3) {
      auto r = ferry::test::json_reply(429, R"({"error":"rate limited"})");
      r.response.set(http::field::retry_after, "3");
      co_return r;
    }
    co_return ferry::test::json_reply(200, R"({"ok":true})");
  };
  f.run([&]() -> asio::awaitable<void> {
    json::value body = json::object{{"name", "p"}};
    auto r = co_await f.api->post_json("/v1/project", body);
    CHECK(r.ok());
    CHECK(r.attempts == 3);
    CHECK(r.json.at("ok").as_bool());
  }());
  CHECK(f.clock.sleep_count() == 2);
  CHECK(f.clock.slept_total() >= std::chrono::seconds(6));
}

TEST_CASE("api_client: fatal 401 is surfaced at once; retry=false makes one attempt") {
  fixture f;
  f.route = [](http_request& req) -> asio::awaitable<http_reply> {
    if (req.target() == "/v1/project") co_return ferry::test::json_reply(401, R"({"error":"Invalid API key"})");
    co_return ferry::test::json_reply(500, "oops");
  };
  f.run([&]() -> asio::awaitable<void> {
    auto r = co_await f.api->get_json("/v1/project");
    CHECK(r.outcome == io_outcome::fatal);
    CHECK(r.status == 401);
    CHECK(r.attempts == 1);
    CHECK(r.error.ends_with("401 Unauthorized: Invalid API key"));
    call_options once;
    once.retry = false;
    auto b = co_await f.api->btql("select: *", once);
    CHECK(b.outcome == io_outcome::transient);
    CHECK(b.attempts == 1);
    auto c = co_await f.api->logs3("{}");  // retried up to max_attempts (6) on 500
    CHECK(c.attempts == 6);
    CHECK(c.error.find("after 6 attempts") != std::string::npos);
  }());
}

TEST_CASE("api_client: btql, logs3 and version speak the wire format") {
  fixture f;
  std::string btql_body, logs3_body;
  f.route = [&](http_request& req) -> asio::awaitable<http_reply> {
    if (req.target() == "/btql") {
      btql_body = req.body();
      co_return ferry::test::json_reply(200, R"({"data":[{"id":"r1","input":"a"},{"id":"r2"}],"cursor":null})");
    }
    if (req.target() == "/logs3") {
      logs3_body = req.body();
      co_return ferry::test::json_reply(200, R"({"ids":["r1"]})");
    }
    if (req.target() == "/version") co_return ferry::test::json_reply(200, R"({"logs3_payload_max_bytes":6291456})");
    co_return ferry::test::json_reply(404, "{}");
  };
  f.run([&]() -> asio::awaitable<void> {
    auto page = co_await f.api->btql("select: * | from: project_logs('p') | limit: 2");
    REQUIRE(page.ok());
    REQUIRE(page.rows.size() == 2);
    CHECK(page.rows[0].at("id") == "r1");
    auto l = co_await f.api->logs3(R"({"rows":[{"id":"r1"}],"api_version":2})");
    CHECK(l.ok());
    auto v = co_await f.api->version();
    REQUIRE(v);
    CHECK(*v == 6291456u);
  }());
  auto sent = json::parse(btql_body).as_object();
  CHECK(sent.at("query") == "select: * | from: project_logs('p') | limit: 2");
  CHECK(sent.at("fmt") == "json");
  CHECK(sent.at("api_version") == 1);
  CHECK(sent.at("use_brainstore") == true);
  CHECK(sent.at("query_timeout_seconds") == 120);
  CHECK(logs3_body == R"({"rows":[{"id":"r1"}],"api_version":2})");
}

TEST_CASE("api_client: signed transfers carry no Authorization; attachment calls do") {
  fixture f;
  std::string put_blob_type;
  f.route = [&](http_request& req) -> asio::awaitable<http_reply> {
    if (req.method() == http::verb::put) {
      put_blob_type = std::string(req["x-custom"]);
      co_return ferry::test::json_reply(200, "");
    }
    if (req.target().starts_with("/attachment?")) co_return ferry::test::json_reply(200, R"({"downloadUrl":"x","status":{"upload_status":"done"}})");
    if (req.target() == "/attachment") co_return ferry::test::json_reply(200, R"({"signedUrl":"/upload/1","headers":{}})");
    co_return ferry::test::json_reply(200, "raw-bytes");
  };
  const std::string base = "http://127.0.0.1:" + std::to_string(f.srv.port());
  f.run([&]() -> asio::awaitable<void> {
    auto info = co_await f.api->attachment_info("k1", "a b.png", "image/png", "org");
    CHECK(info.ok());
    auto up = co_await f.api->attachment_upload_url("k1", "a.png", "image/png", "org");
    CHECK(up.json.at("signedUrl") == "/upload/1");
    std::vector<std::pair<std::string, std::string>> headers{{"x-custom", "v"}};
    auto put = co_await f.api->signed_put(base + "/upload/1", "bytes", headers);
    CHECK(put.ok());
    auto get = co_await f.api->signed_get(base + "/download/1?sig=abc");
    CHECK(get.body == "raw-bytes");
  }());
  REQUIRE(f.targets.size() == 4);
  CHECK(f.targets[0] == "/attachment?key=k1&filename=a%20b.png&content_type=image%2Fpng&org_id=org");
  CHECK(f.auths[0] == "Bearer sk-test-key-abcdef");
  CHECK(f.auths[1] == "Bearer sk-test-key-abcdef");
  CHECK(f.auths[2].empty());
  CHECK(f.auths[3].empty());
  CHECK(put_blob_type == "v");
}

TEST_CASE("api_client: the request semaphore bounds concurrency and can be resized") {
  fixture f(2);
  std::atomic<int> active{0}, peak{0};
  f.route = [&](http_request&) -> asio::awaitable<http_reply> {
    int now = ++active;
    for (int p = peak.load(); now > p && !peak.compare_exchange_weak(p, now);) {
    }
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(std::chrono::milliseconds(3));
    co_await t.async_wait(use_tuple);
    --active;
    co_return ferry::test::json_reply(200, "{}");
  };
  int ok = 0;
  f.run([&]() -> asio::awaitable<void> {
    auto one = [&]() -> asio::awaitable<void> {
      auto r = co_await f.api->get_json("/v1/x");
      if (r.ok()) ++ok;
    };
    co_await (one() && one() && one() && one() && one() && one());
    CHECK(peak.load() == 2);
    f.api->set_concurrency(4);
    peak = 0;
    co_await (one() && one() && one() && one() && one() && one() && one() && one());
    CHECK(peak.load() <= 4);
    CHECK(peak.load() > 2);
  }());
  CHECK(ok == 14);
  CHECK(f.api->request_semaphore().in_use() == 0);
}

TEST_CASE("api_client: with_query percent-encodes keys and values") {
  CHECK(with_query("/v1/x", {}) == "/v1/x");
  CHECK(with_query("/v1/x", {{"a b", "c&d=e/ü"}}) == "/v1/x?a%20b=c%26d%3De%2F%C3%BC");
  CHECK(with_query("/v1/x?y=1", {{"z", "2"}}) == "/v1/x?y=1&z=2");
}
