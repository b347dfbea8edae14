// transports::side_config / braintrust_client: the one mapping from a side's settings to HTTP policy,
// over loopback (127.0.0.1, port 0). Backoff and rate-limit sleeps run on a manual clock (no real time),
// except the cancellation case, which needs a real wait to cut short.
#include "transports/braintrust_client.hpp"

#include "engine/log.hpp"
#include "json_reply.hpp"
#include "test_support.hpp"
#include "transports/http_server.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <atomic>
#include <sstream>

namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace ferry::transports;
using ferry::engine::io_outcome;
using ferry::test::run_coro;

namespace {

struct fixture {
  asio::io_context ctx;
  ferry::engine::manual_clock clock;
  std::function<http_reply(int n)> route;  // n: 1-based request count
  std::atomic<int> requests{0};
  http_server srv{ctx.get_executor(), {}, [this](http_request&) -> asio::awaitable<http_reply> {
                    co_return route(++requests);
                  }};
  std::unique_ptr<braintrust_client> client;

  explicit fixture(side_config sc, bool manual = true) {
    srv.start();
    sc.url = "http://127.0.0.1:" + std::to_string(srv.port());
    sc.api_key = "sk-side-config-test-key";
    if (manual) sc.clock = &clock;
    client = std::make_unique<braintrust_client>(ctx.get_executor(), std::move(sc));
  }
  // Runs `body`, then stops the server inside the coroutine so the io_context runs out of work.
  template <class T>
  T run(asio::awaitable<T> body) {
    return run_coro(ctx, [](fixture& f, asio::awaitable<T> b) -> asio::awaitable<T> {
      struct stop {
        fixture& f;
        ~stop() {
          f.srv.stop();
          f.client->http().close_idle();
        }
      } s{f};
      co_return co_await std::move(b);
    }(*this, std::move(body)));
  }
};

side_config base() {
  side_config sc;
  sc.retry_delay = std::chrono::milliseconds(100);
  return sc;
}

}  // namespace

TEST_CASE("side_config: retry_attempts counts retries after the first try (N + 1 attempts in all)") {
  // Before: migrate built max_attempts = retry_attempts, validate retry_attempts + 1.
  for (int n : {0, 2}) {
    auto sc = base();
    sc.retry_attempts = n;
    CHECK(sc.retry().max_attempts == n + 1);
    fixture f(sc);
    f.route = [](int) { return ferry::test::json_reply(503, R"({"error":"busy"})"); };
    auto r = f.run(f.client->api().get_json("/v1/project"));
    CHECK(r.outcome == io_outcome::transient);
    CHECK(r.attempts == n + 1);
    CHECK(f.requests.load() == n + 1);
  }
}

TEST_CASE("side_config: request_timeout is the total of one attempt; connect and each read fit inside it") {
  auto sc = base();
  sc.request_timeout = std::chrono::milliseconds(30'000);
  auto h = sc.http();
  CHECK(h.request_timeout == std::chrono::milliseconds(30'000));
  CHECK(h.read_timeout <= h.request_timeout);
  CHECK(h.connect_timeout <= h.request_timeout);
  CHECK(sc.api().btql_timeout == std::chrono::milliseconds(30'000));
  sc.request_timeout = std::chrono::milliseconds(600'000);
  CHECK(sc.http().request_timeout == std::chrono::milliseconds(600'000));  // not doubled, not per read
}

TEST_CASE("braintrust_client: a long Retry-After is cut to retry_after_max and logged at warn") {
  std::ostringstream logs;
  ferry::engine::init_logging({"info", ferry::engine::log_format::text},
                              std::make_shared<spdlog::sinks::ostream_sink_mt>(logs));
  auto sc = base();
  sc.retry_after_max = std::chrono::seconds(2);
  fixture f(sc);
  f.route = [](int n) { return n == 1 ? ferry::test::json_reply(429, R"({"error":"slow down"})", "3600") : ferry::test::json_reply(200, "{}"); };
  auto r = f.run(f.client->api().get_json("/v1/project"));
  ferry::engine::init_logging({"info", ferry::engine::log_format::text});  // back to stderr
  CHECK(r.ok());
  CHECK(r.attempts == 2);
  // One backoff, of exactly the cap (the jitter, at most 100 ms, is below it): not an hour.
  CHECK(f.clock.slept_total() == std::chrono::seconds(2));
  const auto text = logs.str();
  CHECK(text.find("retry-after side=source call=GET /v1/project status=429 wait=2") != std::string::npos);
  CHECK(text.find("capped by retry_after_max") != std::string::npos);
}

TEST_CASE("braintrust_client: a single-attempt call reports the capped Retry-After to its caller") {
  auto sc = base();
  sc.retry_after_max = std::chrono::seconds(3);
  fixture f(sc);
  f.route = [](int) { return ferry::test::json_reply(503, R"({"error":"later"})", "120"); };
  call_options once;
  once.retry = false;
  auto r = f.run(f.client->api().call(http::verb::post, "/btql", "{}", once));
  REQUIRE(r.retry_after);
  CHECK(*r.retry_after == std::chrono::seconds(3));
}

TEST_CASE("braintrust_client: max_requests_per_s paces every attempt, retries and single attempts alike") {
  auto sc = base();
  sc.max_requests_per_s = 1;
  fixture f(sc);
  f.route = [](int) { return ferry::test::json_reply(200, "{}"); };
  call_options once;
  once.retry = false;
  f.run([&]() -> asio::awaitable<void> {
    for (int i = 0; i < 5; ++i) co_await f.client->api().call(http::verb::post, "/logs3", "{}", once);
  }());
  CHECK(f.requests.load() == 5);
  // 5 requests at 1/s: at least 4 s of (manual) waiting.
  CHECK(f.clock.slept_total() >= std::chrono::milliseconds(3'900));
}

// Starts GET /v1/project against a server answering 429 + Retry-After: 30 (real clock), lets the client
// begin its 30 s wait, calls `stop`, and returns whether the call ended with operation_aborted (bounded
// by run_coro's 10 s limit, far below the wait). `slot`: the cancellation slot the call is bound to.
bool ends_by(fixture& f, asio::cancellation_slot slot, const std::function<void()>& stop) {
  f.route = [](int) { return ferry::test::json_reply(429, R"({"error":"slow down"})", "30"); };
  bool aborted = false, done = false;
  f.run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(ex, f.client->api().get_json("/v1/project"),
                   asio::bind_cancellation_slot(slot, [&](std::exception_ptr e, json_result) {
                     try {
                       if (e) std::rethrow_exception(e);
                     } catch (const boost::system::system_error& se) {
                       aborted = se.code() == asio::error::operation_aborted;
                     } catch (...) {
                     }
                     done = true;
                   }));
    asio::steady_timer t(ex);
    auto pause = [&](int ms) {
      t.expires_after(std::chrono::milliseconds(ms));
      return t.async_wait(asio::use_awaitable);
    };
    while (f.requests.load() < 1) co_await pause(5);  // the 429 went out; the client now waits 30 s
    co_await pause(50);
    stop();
    while (!done) co_await pause(5);
  }());
  return aborted;
}

TEST_CASE("braintrust_client: cancelling a call cuts a Retry-After wait short") {
  auto sc = base();
  sc.retry_after_max = std::chrono::seconds(60);
  fixture f(sc, /*manual=*/false);
  asio::cancellation_signal cancel;
  CHECK(ends_by(f, cancel.slot(), [&] { cancel.emit(asio::cancellation_type::terminal); }));
  CHECK(f.requests.load() == 1);
}

TEST_CASE("braintrust_client: abort_waits ends a Retry-After wait that cancellation does not reach") {
  fixture f(base(), /*manual=*/false);
  // No cancellation slot at all: only abort_waits can end the wait.
  CHECK(ends_by(f, asio::cancellation_slot(), [&] { f.client->api().abort_waits(); }));
  CHECK(f.requests.load() == 1);
}
