// Each pipelines interface is a thin view over the side's one braintrust_client (side_config_for): the
// discrepancies of issue 12 between migrate, verify and validate, each against a small loopback server
// (127.0.0.1, port 0). Backoff and rate-limit waits run on a manual clock (no real time).
#include "pipelines/migrate_config.hpp"
#include "pipelines/resources/api.hpp"
#include "pipelines/resources/http_api.hpp"
#include "pipelines/streams/http_stream_io.hpp"
#include "pipelines/streams/page_reader.hpp"

#include "engine/clock.hpp"
#include "json_reply.hpp"
#include "test_support.hpp"
#include "transports/braintrust_client.hpp"
#include "transports/http_server.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <sstream>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using namespace ferry::pipelines;
using ferry::test::run_coro;
using ferry::transports::http_reply;
using ferry::transports::http_request;
using ferry::transports::http_server;

namespace {

migrate_config config_for(std::uint16_t port) {
  migrate_config cfg;
  cfg.source = {"http://127.0.0.1:" + std::to_string(port), "sk-side-client-source-key"};
  cfg.dest = {"http://127.0.0.1:" + std::to_string(port), "sk-side-client-dest-key"};
  cfg.retry_delay = std::chrono::milliseconds(10);
  return cfg;
}

// A source of `total` rows keyed k00000.. answering BTQL pages by the query's LIMIT and keyset filter.
struct btql_rows {
  int total = 3000;
  std::vector<std::size_t> limits;  // LIMIT of every request, in order
  std::function<bool(int n)> fail;  // n: 1-based request number; true = answer 500

  http_reply answer(const http_request& req) {
    auto q = std::string(json::parse(req.body()).as_object().at("query").as_string());
    const auto lp = q.find("limit: ");
    const std::size_t limit = std::stoul(q.substr(lp + 7));
    limits.push_back(limit);
    if (fail && fail(static_cast<int>(limits.size()))) return ferry::test::json_reply(500, R"({"error":"page too large"})");
    int start = 0;
    if (auto kp = q.find("_pagination_key > '"); kp != std::string::npos) start = std::stoi(q.substr(kp + 20)) + 1;
    json::array data;
    for (int i = start; i < total && data.size() < limit; ++i) {
      char key[16];
      std::snprintf(key, sizeof key, "k%05d", i);
      data.push_back(json::object{{"id", std::string("row") + std::to_string(i)}, {"_pagination_key", key}});
    }
    return ferry::test::json_reply(200, json::serialize(json::object{{"data", std::move(data)}}));
  }
};

struct loopback {
  asio::io_context ctx;
  ferry::engine::manual_clock clock;
  std::function<asio::awaitable<http_reply>(http_request&)> route;
  http_server srv{ctx.get_executor(), {}, [this](http_request& req) { return route(req); }};
  loopback() { srv.start(); }
  void serve(btql_rows& rows) {
    route = [&rows](http_request& req) -> asio::awaitable<http_reply> { co_return rows.answer(req); };
  }

  std::unique_ptr<ferry::transports::braintrust_client> client(const migrate_config& cfg) {
    auto sc = side_config_for(cfg, side_role::source);
    sc.clock = &clock;
    return std::make_unique<ferry::transports::braintrust_client>(ctx.get_executor(), std::move(sc));
  }
  // Runs `body`, then stops the server inside the coroutine so the io_context runs out of work.
  template <class T>
  T run(ferry::transports::braintrust_client& c, asio::awaitable<T> body) {
    return run_coro(ctx, [](loopback& l, ferry::transports::braintrust_client& c, asio::awaitable<T> b) -> asio::awaitable<T> {
      struct stop {
        loopback& l;
        ferry::transports::braintrust_client& c;
        ~stop() {
          l.srv.stop();
          c.http().close_idle();
        }
      } s{l, c};
      co_return co_await std::move(b);
    }(*this, c, std::move(body)));
  }
};

streams::page_query logs_of_p1() {
  streams::page_query q;
  q.object_ids = {"p1"};
  q.limit = 1000;
  return q;
}

streams::page_reader_options reader_options(const migrate_config& cfg, const ferry::engine::clock& clk) {
  streams::page_reader_options o;
  o.sizes.min_limit = static_cast<std::size_t>(cfg.min_fetch_limit);
  o.retry = side_config_for(cfg, side_role::source).retry();
  o.clock = &clk;
  return o;
}

}  // namespace

TEST_CASE("max_concurrent_requests bounds the streams' BTQL pages and /logs3 batches of a side") {
  // Before: the stream views sent on the bare http_client; only the resources took the semaphore.
  loopback l;
  int in_flight = 0, max_in_flight = 0, served = 0;
  l.route = [&](http_request& req) -> asio::awaitable<http_reply> {
    max_in_flight = std::max(max_in_flight, ++in_flight);
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(20));
    co_await t.async_wait(asio::use_awaitable);
    --in_flight;
    ++served;
    co_return ferry::test::json_reply(200, req.target() == "/btql" ? R"({"data":[]})" : R"({"ids":[]})");
  };
  auto cfg = config_for(l.srv.port());
  cfg.max_concurrent_requests = 2;
  auto c = l.client(cfg);
  streams::http_event_source source(c->api());
  streams::http_event_sink sink(c->api(), "org");
  l.run(*c, [&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    int done = 0;
    for (int i = 0; i < 8; ++i)
      asio::co_spawn(
          ex,
          [&, i]() -> asio::awaitable<void> {
            streams::call_result r;  // (no co_await inside ?: with GCC 12)
            if (i % 2) r = co_await source.btql("{}");
            else r = co_await sink.logs3("{}");
            CHECK(r.status == 200);
            ++done;
          },
          asio::detached);
    asio::steady_timer t(ex);
    while (done < 8) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(asio::use_awaitable);
    }
  }());
  CHECK(served == 8);
  CHECK(max_in_flight <= 2);
  CHECK(max_in_flight >= 1);
}

TEST_CASE("verify reader: a 500 halves the page, later pages grow it back, every row is read once") {
  // Before: verify's reader halved on each 500/504 down to 1 row and never grew the page back.
  loopback l;
  btql_rows src;
  src.fail = [](int n) { return n <= 2; };
  l.serve(src);
  auto cfg = config_for(l.srv.port());
  auto c = l.client(cfg);
  const auto q = logs_of_p1();
  std::vector<std::string> ids;
  auto n = l.run(*c, streams::read_all(c->api(), q, reader_options(cfg, l.clock),
                                       [&](const json::object& r) { ids.emplace_back(r.at("id").as_string()); }));
  CHECK(n == 3000);
  CHECK(ids.size() == 3000);
  CHECK(std::unique(ids.begin(), ids.end()) == ids.end());
  REQUIRE(src.limits.size() >= 4);
  CHECK(src.limits[0] == 1000);
  CHECK(src.limits[1] == 500);
  CHECK(src.limits[2] == 250);
  CHECK(*std::max_element(src.limits.begin() + 3, src.limits.end()) > 250);  // grew back
}

TEST_CASE("verify reader: a page failing at every size stops at min_fetch_limit with a clear error") {
  loopback l;
  btql_rows src;
  src.fail = [](int) { return true; };
  l.serve(src);
  auto cfg = config_for(l.srv.port());
  cfg.min_fetch_limit = 100;
  auto c = l.client(cfg);
  const auto q = logs_of_p1();
  std::string error;
  l.run(*c, [&]() -> asio::awaitable<void> {
    try {
      co_await streams::read_all(c->api(), q, reader_options(cfg, l.clock), [](const json::object&) {});
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
  }());
  CHECK(error.find("minimum page size 100") != std::string::npos);
  CHECK(*std::min_element(src.limits.begin(), src.limits.end()) == 100);  // before: down to 1
}

TEST_CASE("verify reader: the side's request rate limit paces its pages") {
  // Before: verify built its clients without the side's rate limits.
  loopback l;
  btql_rows src;
  l.serve(src);
  auto cfg = config_for(l.srv.port());
  cfg.max_requests_per_s = 1;
  auto c = l.client(cfg);
  const auto q = logs_of_p1();
  auto n = l.run(*c, streams::read_all(c->api(), q, reader_options(cfg, l.clock), [](const json::object&) {}));
  CHECK(n == 3000);
  CHECK(src.limits.size() == 5);  // 3 full pages and the empty one read twice (a confirmed end)
  CHECK(l.clock.slept_total() >= std::chrono::milliseconds(2'900));
}

TEST_CASE("resource view: a call makes retry_attempts + 1 attempts, as validate and migrate both do now") {
  loopback l;
  int served = 0;
  l.route = [&](http_request&) -> asio::awaitable<http_reply> {
    ++served;
    co_return ferry::test::json_reply(503, R"({"error":"busy"})");
  };
  auto cfg = config_for(l.srv.port());
  cfg.retry_attempts = 2;
  auto c = l.client(cfg);
  resources::client_resource_api api(*c);
  auto r = l.run(*c, api.call("GET", "/v1/project", ""));
  CHECK(r.status == 503);
  CHECK(served == 3);  // before: migrate's resource client made 2
}

TEST_CASE("ferry validate: a server echoing the API key in an error body never shows it") {
  // Before: validate printed the first 300 bytes of the body as they came.
  asio::io_context server_ctx;
  http_server srv(server_ctx.get_executor(), {}, [](http_request& req) -> asio::awaitable<http_reply> {
    if (req.target() == "/v1") co_return ferry::test::json_reply(200, "{}");
    std::string auth(req[http::field::authorization]);
    co_return ferry::test::json_reply(401, json::serialize(json::object{{"error", "unknown key " + auth.substr(auth.find(' ') + 1)}}));
  });
  srv.start();
  std::thread th([&] { server_ctx.run(); });
  auto cfg = config_for(srv.port());
  cfg.source.api_key = "sk-echoed-validate-key-0123";
  cfg.dest.api_key = "sk-echoed-validate-key-4567";
  std::ostringstream out;
  const int rc = resources::run_validate(cfg, out);
  asio::post(server_ctx, [&] { srv.stop(); });
  th.join();
  CHECK(rc == 1);
  CHECK(out.str().find("FAIL source auth") != std::string::npos);
  CHECK(out.str().find("sk-echoed-validate-key") == std::string::npos);
  CHECK(out.str().find("[REDACTED]") != std::string::npos);
}

TEST_CASE("resource view: a shutdown's cancellation cuts a Retry-After wait short") {
  // Before: migrate ran each resource call shielded from cancellation, backoff included, so SIGTERM
  // waited out whatever Retry-After the server sent.
  asio::io_context ctx;
  int served = 0;
  http_server srv(ctx.get_executor(), {}, [&](http_request&) -> asio::awaitable<http_reply> {
    ++served;
    auto r = ferry::test::json_reply(429, R"({"error":"slow down"})");
    r.response.set(http::field::retry_after, "30");
    co_return r;
  });
  srv.start();
  auto cfg = config_for(srv.port());
  ferry::transports::braintrust_client c(ctx.get_executor(), side_config_for(cfg, side_role::source));  // real clock
  resources::client_resource_api api(c);
  asio::cancellation_signal cancel;
  bool done = false, aborted = false;
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(ex, api.call("GET", "/v1/project", ""),
                   asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr e, resources::api_reply) {
                     aborted = e != nullptr;
                     done = true;
                   }));
    asio::steady_timer t(ex);
    while (served < 1) {
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(asio::use_awaitable);
    }
    t.expires_after(std::chrono::milliseconds(50));
    co_await t.async_wait(asio::use_awaitable);
    cancel.emit(asio::cancellation_type::terminal);
    while (!done) {  // bounded by run_coro's 10 s, far below the 30 s wait
      t.expires_after(std::chrono::milliseconds(5));
      co_await t.async_wait(asio::use_awaitable);
    }
    srv.stop();
    c.http().close_idle();
  }());
  CHECK(aborted);
  CHECK(served == 1);
}
