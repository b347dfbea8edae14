#include "engine/clock.hpp"

#include "test_support.hpp"

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>

using namespace ferry::engine;
using namespace std::chrono_literals;

TEST_CASE("manual_clock: moves only when advanced") {
  manual_clock c;
  const auto t0 = c.now();
  const auto s0 = c.system_now();
  CHECK(c.now() == t0);
  c.advance(1500ms);
  CHECK(c.now() - t0 == 1500ms);
  CHECK(c.system_now() - s0 == 1500ms);
  c.advance(-5s);  // time never goes back
  CHECK(c.now() - t0 == 1500ms);
}

TEST_CASE("manual_clock: sleep_for advances virtual time without waiting") {
  manual_clock c;
  boost::asio::io_context ctx;
  const auto t0 = c.now();
  ferry::test::run_coro(ctx, [&]() -> boost::asio::awaitable<void> {
    co_await c.sleep_for(1h);
    co_await c.sleep_for(0s);
    co_await c.sleep_for(30min);
  }());
  CHECK(c.now() - t0 == 90min);
  CHECK(c.sleep_count() == 2);
  CHECK(c.slept_total() == 90min);
}

TEST_CASE("real_clock: zero sleep completes at once") {
  boost::asio::io_context ctx;
  ferry::test::run_coro(ctx, real_clock::instance().sleep_for(0s));
  CHECK(real_clock::instance().now() >= real_clock::instance().now() - 1s);
}
