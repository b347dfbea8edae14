#include "engine/semaphore.hpp"

#include "test_support.hpp"

#include <doctest/doctest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

using namespace ferry::engine;
namespace asio = boost::asio;

// Moves a coroutine lambda into the coroutine frame: an immediately invoked capturing lambda would
// leave the frame pointing at a destroyed closure once co_spawn returns.
template <typename F>
boost::asio::awaitable<void> hold(F f) {
  co_await f();
}

using permit = semaphore::permit;

namespace {

// Spawns a waiter that acquires, records its id, and keeps its permit in `held`.
void spawn_waiter(asio::io_context& ctx, semaphore& sem, int id, std::vector<int>& order, std::vector<permit>& held,
                  std::vector<std::exception_ptr>* errors = nullptr, asio::cancellation_slot slot = {}) {
  auto body = [&sem, id, &order, &held]() -> asio::awaitable<void> {
    // As runtime tasks and DAG nodes do: accept total cancellation too (Asio's default is terminal).
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    auto p = co_await sem.acquire();
    order.push_back(id);
    held.push_back(std::move(p));
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

TEST_CASE("semaphore: try_acquire respects capacity and permits release on destruction") {
  semaphore sem(2);
  auto a = sem.try_acquire();
  auto b = sem.try_acquire();
  REQUIRE(a);
  REQUIRE(b);
  CHECK_FALSE(sem.try_acquire());
  CHECK(sem.in_use() == 2);
  {
    permit moved = std::move(*a);  // moving transfers, does not release
    CHECK(sem.in_use() == 2);
    CHECK_FALSE(a->valid());
  }
  CHECK(sem.in_use() == 1);
  b->release();
  b->release();  // idempotent
  CHECK(sem.in_use() == 0);
}

TEST_CASE("semaphore: acquire suspends when full and resumes waiters in FIFO order") {
  asio::io_context ctx;
  semaphore sem(1);
  auto holder = sem.try_acquire();
  std::vector<int> order;
  std::vector<permit> held;
  for (int i = 0; i < 3; ++i) spawn_waiter(ctx, sem, i, order, held);
  settle(ctx);
  CHECK(order.empty());
  CHECK(sem.waiting() == 3);
  holder->release();
  settle(ctx);
  CHECK(order == std::vector<int>{0});
  held.clear();
  settle(ctx);
  CHECK(order == std::vector<int>{0, 1});
  held.clear();
  settle(ctx);
  CHECK(order == std::vector<int>{0, 1, 2});
  held.clear();
  CHECK(sem.in_use() == 0);
  CHECK(sem.waiting() == 0);
}

TEST_CASE("semaphore: try_acquire does not overtake a queued waiter") {
  asio::io_context ctx;
  semaphore sem(1);
  auto holder = sem.try_acquire();
  std::vector<int> order;
  std::vector<permit> held;
  spawn_waiter(ctx, sem, 7, order, held);
  settle(ctx);
  holder.reset();  // the slot goes to the waiter, not to the next try_acquire
  CHECK_FALSE(sem.try_acquire());
  settle(ctx);
  CHECK(order == std::vector<int>{7});
}

TEST_CASE("semaphore: growing capacity wakes waiters, shrinking drains in-flight permits first") {
  asio::io_context ctx;
  semaphore sem(1);
  auto holder = sem.try_acquire();
  std::vector<int> order;
  std::vector<permit> held;
  spawn_waiter(ctx, sem, 1, order, held);
  spawn_waiter(ctx, sem, 2, order, held);
  settle(ctx);
  sem.set_capacity(3);
  settle(ctx);
  CHECK(order == std::vector<int>{1, 2});
  CHECK(sem.in_use() == 3);

  sem.set_capacity(1);
  spawn_waiter(ctx, sem, 3, order, held);
  settle(ctx);
  CHECK(sem.waiting() == 1);
  held.pop_back();
  settle(ctx);
  CHECK(sem.in_use() == 2);
  CHECK(sem.waiting() == 1);  // 2 in use >= capacity 1
  held.pop_back();
  settle(ctx);
  CHECK(sem.waiting() == 1);  // 1 in use >= capacity 1
  holder.reset();
  settle(ctx);
  CHECK(order == std::vector<int>{1, 2, 3});
  CHECK(sem.in_use() == 1);
  CHECK(sem.capacity() == 1);

  SUBCASE("capacity 0 pauses admission") {
    held.clear();
    sem.set_capacity(0);
    CHECK_FALSE(sem.try_acquire());
    spawn_waiter(ctx, sem, 4, order, held);
    settle(ctx);
    CHECK(sem.waiting() == 1);
    sem.set_capacity(1);
    settle(ctx);
    CHECK(order.back() == 4);
  }
}

TEST_CASE("semaphore: a cancelled acquire leaves the queue and leaks no permit") {
  asio::io_context ctx;
  semaphore sem(1);
  auto holder = sem.try_acquire();
  std::vector<int> order;
  std::vector<permit> held;
  std::vector<std::exception_ptr> errors;
  asio::cancellation_signal sig;
  spawn_waiter(ctx, sem, 1, order, held, &errors, sig.slot());
  spawn_waiter(ctx, sem, 2, order, held, &errors);
  settle(ctx);
  REQUIRE(sem.waiting() == 2);
  SUBCASE("terminal") { sig.emit(asio::cancellation_type::terminal); }
  SUBCASE("total") { sig.emit(asio::cancellation_type::total); }
  settle(ctx);
  CHECK(sem.waiting() == 1);
  REQUIRE(errors.size() == 1);
  try {
    std::rethrow_exception(errors[0]);
  } catch (const boost::system::system_error& e) {
    CHECK(e.code() == asio::error::operation_aborted);
  }
  holder.reset();
  settle(ctx);
  CHECK(order == std::vector<int>{2});  // the cancelled waiter was skipped
  held.clear();
  CHECK(sem.in_use() == 0);
}

TEST_CASE("semaphore: a grant whose waiter is destroyed before running is released") {
  semaphore sem(1);
  auto holder = sem.try_acquire();
  std::vector<int> order;
  std::vector<permit> held;
  {
    asio::io_context ctx2;
    spawn_waiter(ctx2, sem, 1, order, held);
    settle(ctx2);
    REQUIRE(sem.waiting() == 1);
    holder.reset();                // grant posted to ctx2 ...
    CHECK(sem.in_use() == 1);
  }                                // ... which is destroyed without running it
  CHECK(order.empty());
  CHECK(sem.in_use() == 0);
  CHECK(sem.try_acquire());
}

TEST_CASE("semaphore: never more than capacity holders across threads and strands") {
  asio::io_context ctx;
  semaphore sem(3);
  std::atomic<int> current{0};
  std::atomic<int> peak{0};
  std::atomic<int> finished{0};
  constexpr int workers = 8;
  constexpr int rounds = 200;
  for (int w = 0; w < workers; ++w) {
    asio::co_spawn(asio::make_strand(ctx), hold([&]() -> asio::awaitable<void> {
      for (int i = 0; i < rounds; ++i) {
        auto p = co_await sem.acquire();
        const int now = ++current;
        int prev = peak.load();
        while (now > prev && !peak.compare_exchange_weak(prev, now)) {
        }
        co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
        --current;
      }
      ++finished;
    }), [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { ctx.run_for(std::chrono::seconds(20)); });
  for (auto& t : threads) t.join();
  CHECK(finished == workers);
  CHECK(peak <= 3);
  CHECK(peak >= 1);
  CHECK(sem.in_use() == 0);
  CHECK(sem.waiting() == 0);
}
