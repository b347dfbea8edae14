#include "engine/memory_budget.hpp"

#include "test_support.hpp"

#include <doctest/doctest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <vector>

using namespace ferry::engine;
namespace asio = boost::asio;
using grant = memory_budget::grant;

namespace {

template <typename F>
asio::awaitable<void> hold(F f) {
  co_await f();
}

// Spawns a reader that acquires `bytes`, records its id, and keeps the grant in `held`.
void spawn_acquire(asio::io_context& ctx, memory_budget& b, int id, std::uint64_t bytes, std::vector<int>& order,
                   std::vector<grant>& held, std::vector<std::exception_ptr>* errors = nullptr,
                   asio::cancellation_slot slot = {}) {
  auto body = [&b, id, bytes, &order, &held]() -> asio::awaitable<void> {
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    auto g = co_await b.acquire(bytes);
    order.push_back(id);
    held.push_back(std::move(g));
  };
  asio::co_spawn(ctx, hold(std::move(body)), asio::bind_cancellation_slot(slot, [errors](std::exception_ptr e) {
                   if (errors) errors->push_back(e);
                   else if (e) std::rethrow_exception(e);
                 }));
}

void settle(asio::io_context& ctx) {
  ctx.restart();
  ctx.poll();
}

}  // namespace

TEST_CASE("memory_budget: acquire waits until the bytes fit, FIFO; released bytes admit the next") {
  asio::io_context ctx;
  memory_budget b(100);
  std::vector<int> order;
  std::vector<grant> held;
  spawn_acquire(ctx, b, 1, 60, order, held);
  spawn_acquire(ctx, b, 2, 50, order, held);  // 110 > 100: waits
  spawn_acquire(ctx, b, 3, 10, order, held);  // would fit, but never overtakes the queued 2
  settle(ctx);
  CHECK(order == std::vector<int>{1});
  CHECK(b.held() == 60);
  CHECK(b.waiting() == 2);
  CHECK(b.waits() == 2);  // 1 fitted at once; 2 and 3 queued (what a sliced stream's pacer samples)
  held.clear();  // 1 gives its 60 back
  settle(ctx);
  CHECK(order == std::vector<int>{1, 2, 3});
  CHECK(b.held() == 60);
  CHECK(b.high_water() == 60);
  CHECK(b.waits() == 2);  // admitting the queued ones does not count them again
  held.clear();
  CHECK(b.held() == 0);
}

TEST_CASE("memory_budget: a request above the capacity goes alone once nothing is held") {
  asio::io_context ctx;
  memory_budget b(100);
  std::vector<int> order;
  std::vector<grant> held;
  auto small = b.charge(10);
  spawn_acquire(ctx, b, 1, 500, order, held);
  settle(ctx);
  CHECK(order.empty());
  small.release();
  settle(ctx);
  CHECK(order == std::vector<int>{1});
  CHECK(b.held() == 500);
  CHECK(b.high_water() == 500);
}

TEST_CASE("memory_budget: charge never waits; split, absorb and resize move bytes without losing any") {
  memory_budget b(100);
  auto page = b.charge(150);  // may go above the capacity (bytes already in memory)
  CHECK(b.held() == 150);
  auto first = page.split(40);
  CHECK(first.bytes() == 40);
  CHECK(page.bytes() == 110);
  CHECK(b.held() == 150);  // moving bytes between grants changes nothing held
  auto too_much = page.split(1000);  // at most what the grant holds
  CHECK(too_much.bytes() == 110);
  CHECK(page.bytes() == 0);
  grant pending;
  pending.absorb(std::move(first));
  pending.absorb(std::move(too_much));
  CHECK(pending.bytes() == 150);
  CHECK(b.held() == 150);
  pending.resize(30);
  CHECK(b.held() == 30);
  pending.resize(80);
  CHECK(b.held() == 80);
  CHECK(b.high_water() == 150);
  pending.release();
  pending.release();  // idempotent
  CHECK(b.held() == 0);
}

TEST_CASE("memory_budget: a cancelled waiter leaves the queue and lets the ones behind it in") {
  asio::io_context ctx;
  memory_budget b(100);
  std::vector<int> order;
  std::vector<grant> held;
  std::vector<std::exception_ptr> errors;
  auto g = b.charge(90);
  asio::cancellation_signal sig;
  spawn_acquire(ctx, b, 1, 50, order, held, &errors, sig.slot());  // waits: 140 > 100
  spawn_acquire(ctx, b, 2, 5, order, held);                        // fits, but queued behind 1
  settle(ctx);
  CHECK(order.empty());
  sig.emit(asio::cancellation_type::total);
  settle(ctx);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] != nullptr);
  CHECK(order == std::vector<int>{2});
  CHECK(b.held() == 95);
}
