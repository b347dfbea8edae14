#include "engine/bounded_channel.hpp"

#include "test_support.hpp"

#include <doctest/doctest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <map>
#include <string>
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


namespace {
void settle(asio::io_context& ctx) {
  ctx.restart();
  ctx.poll();
}
auto rethrow = [](std::exception_ptr e) {
  if (e) std::rethrow_exception(e);
};
}  // namespace

TEST_CASE("bounded_channel: send suspends when full, values arrive in FIFO order") {
  asio::io_context ctx;
  bounded_channel<int> ch(ctx.get_executor(), 2);
  int sent = 0;
  asio::co_spawn(ctx, hold([&]() -> asio::awaitable<void> {
    for (int i = 0; i < 5; ++i) {
      co_await ch.async_send(i);
      ++sent;
    }
  }), rethrow);
  settle(ctx);
  CHECK(sent == 2);  // the third send waits for room
  std::vector<int> got;
  asio::co_spawn(ctx, hold([&]() -> asio::awaitable<void> {
    for (int i = 0; i < 5; ++i) got.push_back(*co_await ch.async_receive());
  }), rethrow);
  settle(ctx);
  CHECK(sent == 5);
  CHECK(got == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("bounded_channel: after close receivers drain the buffer, then get nullopt") {
  asio::io_context ctx;
  bounded_channel<std::string> ch(ctx.get_executor(), 5);
  CHECK(ch.try_send("a"));
  CHECK(ch.try_send("b"));
  CHECK(ch.try_send("c"));
  ch.close();
  ch.close();  // idempotent
  CHECK(ch.is_closed());
  CHECK_FALSE(ch.try_send("d"));
  std::vector<std::optional<std::string>> got;
  bool send_threw = false;
  ferry::test::run_coro(ctx, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 5; ++i) got.push_back(co_await ch.async_receive());
    try {
      co_await ch.async_send("late");
    } catch (const channel_closed_error&) {
      send_threw = true;
    }
  }());
  REQUIRE(got.size() == 5);
  CHECK(got[0] == "a");
  CHECK(got[1] == "b");
  CHECK(got[2] == "c");
  CHECK_FALSE(got[3]);
  CHECK_FALSE(got[4]);
  CHECK(send_threw);
}

TEST_CASE("bounded_channel: close keeps a value a blocked sender handed over, rejects later sends") {
  asio::io_context ctx;
  bounded_channel<int> ch(ctx.get_executor(), 1);
  std::vector<std::string> events;
  asio::co_spawn(ctx, hold([&]() -> asio::awaitable<void> {
    co_await ch.async_send(1);
    events.push_back("sent 1");
    co_await ch.async_send(2);  // blocks: buffer full
    events.push_back("sent 2");
    try {
      co_await ch.async_send(3);
      events.push_back("sent 3");
    } catch (const channel_closed_error&) {
      events.push_back("3 rejected");
    }
  }), rethrow);
  settle(ctx);
  CHECK(events == std::vector<std::string>{"sent 1"});
  ch.close();
  settle(ctx);
  CHECK(events == std::vector<std::string>{"sent 1", "sent 2", "3 rejected"});
  std::vector<std::optional<int>> got;
  ferry::test::run_coro(ctx, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 3; ++i) got.push_back(co_await ch.async_receive());
  }());
  CHECK(got == std::vector<std::optional<int>>{1, 2, std::nullopt});
}

TEST_CASE("bounded_channel: close wakes a waiting receiver with nullopt") {
  asio::io_context ctx;
  bounded_channel<int> ch(ctx.get_executor(), 4);
  std::optional<std::optional<int>> got;
  asio::co_spawn(ctx, hold([&]() -> asio::awaitable<void> { got = co_await ch.async_receive(); }), rethrow);
  settle(ctx);
  CHECK_FALSE(got);
  ch.close();
  settle(ctx);
  REQUIRE(got);
  CHECK_FALSE(*got);
}

TEST_CASE("bounded_channel: a cancelled receive throws operation_aborted") {
  asio::io_context ctx;
  bounded_channel<int> ch(ctx.get_executor(), 4);
  asio::cancellation_signal sig;
  std::exception_ptr err;
  bool done = false;
  asio::co_spawn(ctx, hold([&]() -> asio::awaitable<void> { co_await ch.async_receive(); }),
                 asio::bind_cancellation_slot(sig.slot(), [&](std::exception_ptr e) {
                   err = e;
                   done = true;
                 }));
  settle(ctx);
  sig.emit(asio::cancellation_type::terminal);
  settle(ctx);
  REQUIRE(done);
  REQUIRE(err);
  CHECK_THROWS_AS(std::rethrow_exception(err), boost::system::system_error);
}

TEST_CASE("bounded_channel: many producers on strands, nothing lost or reordered per producer") {
  asio::io_context ctx;
  bounded_channel<std::pair<int, int>> ch(ctx.get_executor(), 8);
  constexpr int producers = 4;
  constexpr int per_producer = 1000;
  std::atomic<int> live{producers};
  for (int p = 0; p < producers; ++p) {
    asio::co_spawn(asio::make_strand(ctx), hold([&, p]() -> asio::awaitable<void> {
      for (int i = 0; i < per_producer; ++i) co_await ch.async_send({p, i});
      if (--live == 0) ch.close();
    }), rethrow);
  }
  std::map<int, int> next;
  int total = 0;
  bool in_order = true;
  asio::co_spawn(asio::make_strand(ctx), hold([&]() -> asio::awaitable<void> {
    while (auto v = co_await ch.async_receive()) {
      in_order = in_order && (next[v->first] == v->second);
      next[v->first] = v->second + 1;
      ++total;
    }
  }), rethrow);
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) threads.emplace_back([&] { ctx.run_for(std::chrono::seconds(20)); });
  for (auto& t : threads) t.join();
  CHECK(total == producers * per_producer);
  CHECK(in_order);
  for (int p = 0; p < producers; ++p) CHECK(next[p] == per_producer);
}
