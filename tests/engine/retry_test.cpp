#include "engine/retry.hpp"

#include "test_support.hpp"

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>

#include <set>
#include <vector>

using namespace ferry::engine;
using namespace std::chrono_literals;

namespace {
retry_config cfg_basic() {
  retry_config c;
  c.max_attempts = 5;
  c.base_delay = 100ms;
  c.max_delay = 1s;
  return c;
}
std::function<double()> constant(double u) {
  return [u] { return u; };
}
}  // namespace

TEST_CASE("retry: only throttled, timed_out and transient retry") {
  manual_clock clk;
  retry_policy p(cfg_basic(), constant(1.0));
  CHECK(p.next(1, clk.now(), io_outcome::throttled).allowed);
  CHECK(p.next(1, clk.now(), io_outcome::timed_out).allowed);
  CHECK(p.next(1, clk.now(), io_outcome::transient).allowed);
  for (auto o : {io_outcome::fatal, io_outcome::not_found, io_outcome::ok}) {
    auto d = p.next(1, clk.now(), o);
    CHECK_FALSE(d.allowed);
    CHECK(!d.reason.empty());
  }
  CHECK(p.next(1, clk.now(), io_outcome::fatal).reason.find("fatal is not retryable") != std::string::npos);
}

TEST_CASE("retry: exponential cap doubles up to max_delay") {
  retry_policy p(cfg_basic(), constant(1.0));
  CHECK(p.backoff_cap(1) == 100ms);
  CHECK(p.backoff_cap(2) == 200ms);
  CHECK(p.backoff_cap(3) == 400ms);
  CHECK(p.backoff_cap(4) == 800ms);
  CHECK(p.backoff_cap(5) == 1s);
  CHECK(p.backoff_cap(1000) == 1s);  // no overflow for absurd attempt numbers
  manual_clock clk;
  CHECK(p.next(3, clk.now(), io_outcome::transient).delay == 400ms);
}

TEST_CASE("retry: full jitter stays in [0, cap], is seeded and spreads") {
  manual_clock clk;
  retry_policy a(cfg_basic(), std::uint64_t{42});
  retry_policy b(cfg_basic(), std::uint64_t{42});
  std::set<steady_duration::rep> distinct;
  for (int i = 0; i < 200; ++i) {
    auto da = a.next(3, clk.now(), io_outcome::transient);
    auto db = b.next(3, clk.now(), io_outcome::transient);
    REQUIRE(da.allowed);
    CHECK(da.delay >= 0ms);
    CHECK(da.delay <= 400ms);
    CHECK(da.delay == db.delay);  // same seed, same sequence
    distinct.insert(da.delay.count());
  }
  CHECK(distinct.size() > 100);  // actually random, not a constant
  CHECK(retry_policy(cfg_basic(), constant(0.0)).next(4, clk.now(), io_outcome::throttled).delay == 0ms);
}

TEST_CASE("retry: unseeded policies share a per-thread generator that keeps drawing fresh values") {
  // Policies are built per HTTP call: each must continue the thread's sequence, not restart one
  // (a per-policy generator seeded alike would give every call the same "random" delays).
  manual_clock clk;
  std::set<steady_duration::rep> firsts;
  for (int i = 0; i < 200; ++i) {
    retry_policy p(cfg_basic());
    auto d = p.next(3, clk.now(), io_outcome::transient);
    REQUIRE(d.allowed);
    CHECK(d.delay >= 0ms);
    CHECK(d.delay <= 400ms);
    firsts.insert(d.delay.count());
  }
  CHECK(firsts.size() > 100);
  // Seeded policies stay reproducible and independent of the thread's generator.
  retry_policy a(cfg_basic(), std::uint64_t{7});
  const auto first = a.next(3, clk.now(), io_outcome::transient).delay;
  retry_policy(cfg_basic()).next(3, clk.now(), io_outcome::transient);
  retry_policy b(cfg_basic(), std::uint64_t{7});
  CHECK(b.next(3, clk.now(), io_outcome::transient).delay == first);
}

TEST_CASE("retry: max_attempts bounds the attempts") {
  manual_clock clk;
  retry_policy p(cfg_basic(), constant(0.5));
  CHECK(p.next(4, clk.now(), io_outcome::transient).allowed);
  auto d = p.next(5, clk.now(), io_outcome::transient);
  CHECK_FALSE(d.allowed);
  CHECK(d.reason.find("gave up after 5 attempts") != std::string::npos);
  retry_config once = cfg_basic();
  once.max_attempts = 1;
  CHECK_FALSE(retry_policy(once, constant(0.5)).next(1, clk.now(), io_outcome::throttled).allowed);
}

TEST_CASE("retry: Retry-After wins over a shorter jittered delay") {
  manual_clock clk;
  retry_policy p(cfg_basic(), constant(0.5));
  SUBCASE("longer Retry-After is used as is") {
    auto d = p.next(1, clk.now(), io_outcome::throttled, 5s);
    CHECK(d.allowed);
    CHECK(d.delay == 5s);
    CHECK(d.reason.find("Retry-After") != std::string::npos);
  }
  SUBCASE("shorter Retry-After keeps the backoff") {
    auto d = p.next(3, clk.now(), io_outcome::throttled, 10ms);
    CHECK(d.delay == 200ms);
  }
}

TEST_CASE("retry: the overall deadline caps delays, including Retry-After") {
  manual_clock clk;
  retry_config c = cfg_basic();
  c.overall_timeout = 2s;
  retry_policy p(c, constant(1.0));
  p.start(clk.now());
  REQUIRE(p.deadline());
  CHECK(p.next(1, clk.now(), io_outcome::transient).allowed);
  auto d = p.next(1, clk.now(), io_outcome::throttled, 3s);
  CHECK_FALSE(d.allowed);
  CHECK(d.reason.find("would pass the overall deadline") != std::string::npos);
  clk.advance(1950ms);
  auto late = p.next(2, clk.now(), io_outcome::transient);  // 200ms backoff > 50ms left
  CHECK_FALSE(late.allowed);
  SUBCASE("a parent deadline that is earlier wins") {
    retry_policy q(c, constant(1.0));
    q.start(clk.now());
    q.cap_deadline(clk.now() + 50ms);
    CHECK_FALSE(q.next(1, clk.now(), io_outcome::transient).allowed);  // 100ms > 50ms
    q.cap_deadline(clk.now() + 10s);                                   // later: ignored
    CHECK(*q.deadline() == clk.now() + 50ms);
  }
}

TEST_CASE("parse_retry_after: delta-seconds and IMF-fixdate") {
  const auto now = system_time(std::chrono::seconds(1445412480));  // Wed, 21 Oct 2015 07:28:00 GMT
  CHECK(parse_retry_after("120", now) == steady_duration(120s));
  CHECK(parse_retry_after(" 0 ", now) == steady_duration(0s));
  CHECK(parse_retry_after("1.5", now) == steady_duration(1500ms));
  CHECK(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now) == steady_duration(30s));
  CHECK(parse_retry_after("Thu, 22 Oct 2015 07:28:00 GMT", now) == steady_duration(24h));
  CHECK(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now) == steady_duration(0s));  // past
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now) == steady_duration(0s));
  for (const char* bad : {"", "soon", "-5", "12abc", "Wed, 21 Oct 2015 07:28:00 UTC", "Wed, 32 Oct 2015 07:28:00 GMT",
                          "Wed, 21 Foo 2015 07:28:00 GMT", "Wed, 21 Oct 2015 25:28:00 GMT",
                          "Wednesday, 21-Oct-15 07:28:00 GMT", "Wed, 30 Feb 2015 07:28:00 GMT"}) {
    INFO("value: " << bad);
    CHECK_FALSE(parse_retry_after(bad, now).has_value());
  }
}

TEST_CASE("with_retry: retries retryable outcomes with policy delays on the clock") {
  manual_clock clk;
  boost::asio::io_context ctx;
  retry_config c = cfg_basic();
  retry_policy p(c, constant(1.0));
  std::vector<int> seen;
  std::vector<steady_duration> delays;
  retry_hooks hooks;
  hooks.what = "GET /test";
  hooks.on_retry = [&](int, const attempt_result&, const retry_decision& d) { delays.push_back(d.delay); };
  auto res = ferry::test::run_coro(ctx, with_retry(p, clk,
                                                   [&](int attempt) -> boost::asio::awaitable<attempt_result> {
                                                     seen.push_back(attempt);
                                                     if (attempt < 3) co_return attempt_result{io_outcome::transient, {}, "HTTP 503"};
                                                     co_return attempt_result{io_outcome::ok, {}, ""};
                                                   },
                                                   hooks));
  CHECK(res.ok());
  CHECK(res.attempts == 3);
  CHECK(seen == std::vector<int>{1, 2, 3});
  CHECK(delays == std::vector<steady_duration>{100ms, 200ms});
  CHECK(clk.slept_total() == 300ms);
}

TEST_CASE("with_retry: stops at a fatal outcome and honours Retry-After") {
  manual_clock clk;
  boost::asio::io_context ctx;
  retry_policy p(cfg_basic(), constant(0.0));
  int calls = 0;
  auto res = ferry::test::run_coro(ctx, with_retry(p, clk, [&](int) -> boost::asio::awaitable<attempt_result> {
    ++calls;
    if (calls == 1) co_return attempt_result{io_outcome::throttled, steady_duration(7s), "HTTP 429"};
    co_return attempt_result{io_outcome::fatal, {}, "HTTP 400"};
  }));
  CHECK_FALSE(res.ok());
  CHECK(res.attempts == 2);
  CHECK(clk.slept_total() == 7s);
  CHECK(res.reason.find("not retryable") != std::string::npos);
  CHECK(res.reason.find("HTTP 400") != std::string::npos);
}

TEST_CASE("with_retry: gives up after max_attempts with the last outcome") {
  manual_clock clk;
  boost::asio::io_context ctx;
  retry_config c = cfg_basic();
  c.max_attempts = 3;
  retry_policy p(c, constant(0.5));
  auto res = ferry::test::run_coro(ctx, with_retry(p, clk, [&](int) -> boost::asio::awaitable<attempt_result> {
    co_return attempt_result{io_outcome::timed_out, {}, "read timeout"};
  }));
  CHECK(res.attempts == 3);
  CHECK(res.last.outcome == io_outcome::timed_out);
  CHECK(res.reason.find("gave up after 3 attempts") != std::string::npos);
}

TEST_CASE("format_duration: compact forms") {
  CHECK(format_duration(250ms) == "250ms");
  CHECK(format_duration(1500ms) == "1.50s");
  CHECK(format_duration(185s) == "3m05s");
  CHECK(format_duration(2h + 3min) == "2h03m");
  CHECK(format_duration(10us) == "10us");
}
