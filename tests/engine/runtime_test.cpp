#include "engine/runtime.hpp"

#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/channel_error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

using namespace ferry::engine;
namespace asio = boost::asio;

// Moves a coroutine lambda into the coroutine frame: an immediately invoked capturing lambda would
// leave the frame pointing at a destroyed closure once co_spawn returns.
template <typename F>
boost::asio::awaitable<void> hold(F f) {
  co_await f();
}

using namespace std::chrono_literals;

namespace {

runtime_config test_config() {
  runtime_config c;
  c.threads = 1;
  c.handle_signals = false;
  c.shutdown_grace = 1h;  // tests that need the grace to elapse set it short
  c.terminal_grace = 1h;
  return c;
}

struct recorder {
  std::mutex mu;
  std::vector<std::string> events;
  void add(std::string e) {
    std::lock_guard lock(mu);
    events.push_back(std::move(e));
  }
  std::vector<std::string> get() {
    std::lock_guard lock(mu);
    return events;
  }
};

// A stream-like loop: waits for work "for ever"; on total cancellation it persists and returns;
// on terminal it gives up.
asio::awaitable<void> stream_loop(recorder& r, bool honour_total = true) {
  if (!honour_total) co_await asio::this_coro::reset_cancellation_state(asio::enable_terminal_cancellation());
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (;;) {
    t.expires_after(1h);
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!ec) continue;
    auto cs = co_await asio::this_coro::cancellation_state;
    if ((cs.cancelled() & asio::cancellation_type::terminal) != asio::cancellation_type::none) {
      r.add("terminal");
      throw boost::system::system_error(ec);
    }
    r.add("persisted cursor");
    co_return;
  }
}

}  // namespace

TEST_CASE("runtime: run returns when every task finished by itself") {
  runtime rt(test_config());
  std::atomic<int> ran{0};
  std::exception_ptr err;
  rt.spawn(hold([&]() -> asio::awaitable<void> {
    ++ran;
    co_return;
  }));
  rt.spawn(hold([&]() -> asio::awaitable<void> {
    ++ran;
    throw std::runtime_error("stream failed");
    co_return;
  }), [&](std::exception_ptr e) { err = e; });
  REQUIRE(rt.run_for(10s));
  CHECK(ran == 2);
  CHECK(rt.active_tasks() == 0);
  REQUIRE(err);
  CHECK_THROWS_WITH(std::rethrow_exception(err), "stream failed");
  CHECK(rt.phase() == shutdown_phase::running);
}

TEST_CASE("runtime: graceful shutdown sends total cancellation and tasks finish their batch") {
  runtime rt(test_config());
  recorder r;
  std::vector<shutdown_phase> phases;
  rt.on_shutdown([&](shutdown_phase p, const std::string& reason) {
    phases.push_back(p);
    r.add("phase " + std::string(to_string(p)) + " " + reason);
  });
  rt.spawn(stream_loop(r));
  rt.spawn(stream_loop(r));
  rt.spawn(hold([&]() -> asio::awaitable<void> {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    rt.request_shutdown("test");
  }));
  REQUIRE(rt.run_for(10s));
  CHECK(rt.phase() == shutdown_phase::graceful);
  CHECK(phases == std::vector<shutdown_phase>{shutdown_phase::graceful});
  auto ev = r.get();
  CHECK(std::count(ev.begin(), ev.end(), "persisted cursor") == 2);
  CHECK(std::count(ev.begin(), ev.end(), "terminal") == 0);
}

TEST_CASE("runtime: terminal cancellation follows when the grace period elapses") {
  auto cfg = test_config();
  cfg.shutdown_grace = 1ms;
  runtime rt(cfg);
  recorder r;
  std::vector<shutdown_phase> phases;
  rt.on_shutdown([&](shutdown_phase p, const std::string&) { phases.push_back(p); });
  rt.spawn(stream_loop(r, /*honour_total=*/false), [](std::exception_ptr) {});
  rt.request_shutdown("test");
  REQUIRE(rt.run_for(10s));
  CHECK(phases == std::vector<shutdown_phase>{shutdown_phase::graceful, shutdown_phase::terminal});
  CHECK(r.get() == std::vector<std::string>{"terminal"});
}

TEST_CASE("runtime: a second request goes terminal at once") {
  runtime rt(test_config());
  recorder r;
  rt.spawn(stream_loop(r, /*honour_total=*/false), [](std::exception_ptr) {});
  rt.spawn(hold([&]() -> asio::awaitable<void> {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    rt.request_shutdown("first");
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    rt.request_shutdown("second");
    rt.request_shutdown("third: ignored");
  }));
  REQUIRE(rt.run_for(10s));
  CHECK(rt.phase() == shutdown_phase::terminal);
  CHECK(r.get() == std::vector<std::string>{"terminal"});
}

TEST_CASE("runtime: terminal grace stops the io_context even if a task ignores cancellation") {
  auto cfg = test_config();
  cfg.shutdown_grace = 1ms;
  cfg.terminal_grace = 1ms;
  runtime rt(cfg);
  bool finished = false;
  rt.spawn(hold([&]() -> asio::awaitable<void> {
    co_await asio::this_coro::reset_cancellation_state([](asio::cancellation_type) {
      return asio::cancellation_type::none;  // deaf to every cancellation
    });
    asio::steady_timer t(co_await asio::this_coro::executor, 1h);
    co_await t.async_wait(asio::use_awaitable);
    finished = true;
  }), [](std::exception_ptr) {});
  rt.request_shutdown("test");
  REQUIRE(rt.run_for(10s));
  CHECK(rt.phase() == shutdown_phase::terminal);
  CHECK_FALSE(finished);
  CHECK(rt.active_tasks() == 1);  // destroyed with the runtime
}

TEST_CASE("runtime: a task spawned after shutdown began is not started") {
  runtime rt(test_config());
  rt.request_shutdown("early");
  bool started = false;
  std::exception_ptr err;
  rt.spawn(hold([&]() -> asio::awaitable<void> {
    started = true;
    co_return;
  }), [&](std::exception_ptr e) { err = e; });
  REQUIRE(rt.run_for(10s));
  CHECK_FALSE(started);
  REQUIRE(err);
  CHECK_THROWS_AS(std::rethrow_exception(err), boost::system::system_error);
}

TEST_CASE("runtime: tasks run on several threads") {
  auto cfg = test_config();
  cfg.threads = 3;
  runtime rt(cfg);
  std::atomic<int> done{0};
  for (int i = 0; i < 12; ++i) {
    rt.spawn(hold([&]() -> asio::awaitable<void> {
      for (int k = 0; k < 50; ++k) co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
      ++done;
    }));
  }
  REQUIRE(rt.run_for(20s));
  CHECK(done == 12);
}

TEST_CASE("runtime: is_cancellation tells a shutdown's cancellation from a failure; what_of gives the message") {
  const auto ptr = [](auto ex) { return std::make_exception_ptr(ex); };
  CHECK(is_cancellation(ptr(boost::system::system_error(asio::error::operation_aborted))));
  CHECK(is_cancellation(ptr(boost::system::system_error(asio::experimental::error::channel_cancelled))));
  CHECK_FALSE(is_cancellation(ptr(boost::system::system_error(asio::error::connection_refused))));
  CHECK_FALSE(is_cancellation(ptr(std::runtime_error("boom"))));
  CHECK(what_of(ptr(std::runtime_error("boom"))) == "boom");
  CHECK(what_of(ptr(42)) == "unknown error");
}
