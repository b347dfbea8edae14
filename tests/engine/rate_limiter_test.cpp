#include "engine/rate_limiter.hpp"

#include "test_support.hpp"

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>

using namespace ferry::engine;
using namespace std::chrono_literals;

TEST_CASE("rate_limiter: burst is available at once, then tokens come at the rate") {
  manual_clock clk;
  rate_limiter rl({10, 5}, clk);  // 10/s, burst 5
  for (int i = 0; i < 5; ++i) CHECK(rl.reserve(1, clk.now()) == 0ms);
  CHECK(rl.reserve(1, clk.now()) == 100ms);  // in debt by one token
  CHECK(rl.reserve(1, clk.now()) == 200ms);  // queued behind the previous reservation
  clk.advance(200ms);
  CHECK(rl.available(clk.now()) == doctest::Approx(0.0));
  clk.advance(10s);
  CHECK(rl.available(clk.now()) == doctest::Approx(5.0));  // refill stops at the burst
}

TEST_CASE("rate_limiter: a request larger than the burst passes after waiting") {
  manual_clock clk;
  rate_limiter rl({1000, 100}, clk);  // 1000 bytes/s, burst 100
  const auto wait = rl.reserve(600, clk.now());
  CHECK(wait == 500ms);
  clk.advance(wait);
  CHECK(rl.available(clk.now()) == doctest::Approx(0.0));
  CHECK(rl.reserve(50, clk.now()) == 50ms);
}

TEST_CASE("rate_limiter: rate 0 is unlimited") {
  manual_clock clk;
  rate_limiter rl({0, 0}, clk);
  CHECK(rl.unlimited());
  for (int i = 0; i < 1000; ++i) CHECK(rl.reserve(1e9, clk.now()) == 0ms);
  CHECK(rl.try_take(1e12, clk.now()));
}

TEST_CASE("rate_limiter: try_take never goes into debt") {
  manual_clock clk;
  rate_limiter rl({2, 2}, clk);
  CHECK(rl.try_take(2, clk.now()));
  CHECK_FALSE(rl.try_take(1, clk.now()));
  clk.advance(500ms);
  CHECK(rl.try_take(1, clk.now()));
}

TEST_CASE("rate_limiter: reconfigure keeps the level, clipped to the new burst") {
  manual_clock clk;
  rate_limiter rl({10, 10}, clk);
  rl.reconfigure({100, 4}, clk.now());
  CHECK(rl.available(clk.now()) == doctest::Approx(4.0));
  rl.reconfigure({0, 0}, clk.now());
  CHECK(rl.unlimited());
  rl.reconfigure({1, 3}, clk.now());
  CHECK(rl.available(clk.now()) == doctest::Approx(3.0));  // from unlimited: starts full
}

TEST_CASE("rate_limiter: acquire waits on the clock for the reservation") {
  manual_clock clk;
  boost::asio::io_context ctx;
  rate_limiter rl({100, 10}, clk);
  const auto t0 = clk.now();
  ferry::test::run_coro(ctx, [&]() -> boost::asio::awaitable<void> {
    for (int i = 0; i < 30; ++i) co_await rl.acquire(1);
  }());
  // 10 from the burst, 20 more at 100/s (waits are rounded up to the nanosecond).
  CHECK(clk.now() - t0 >= 200ms);
  CHECK(clk.now() - t0 < 201ms);
  CHECK(clk.sleep_count() == 20);
}
