#include "engine/dag.hpp"

#include "test_support.hpp"

#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

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

using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;

namespace {

asio::awaitable<void> yield_n(int n) {
  for (int i = 0; i < n; ++i) co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
}

dag::node_fn record(std::vector<std::string>& log, std::string name, int yields = 1) {
  return [&log, name, yields]() -> asio::awaitable<void> {
    log.push_back("start " + name);
    co_await yield_n(yields);
    log.push_back("end " + name);
  };
}

// Waits "for ever" unless cancelled; records the cancellation type it saw.
dag::node_fn wait_forever(std::vector<std::string>& log, std::string name, bool finish_batch_on_total = false) {
  return [&log, name, finish_batch_on_total]() -> asio::awaitable<void> {
    log.push_back("start " + name);
    asio::steady_timer t(co_await asio::this_coro::executor, 1h);
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!ec) co_return;
    auto cs = co_await asio::this_coro::cancellation_state;
    const bool total = (cs.cancelled() & asio::cancellation_type::total) != asio::cancellation_type::none;
    log.push_back(name + (total ? " saw total" : " saw terminal"));
    if (total && finish_batch_on_total) co_return;  // finished the in-flight batch
    throw boost::system::system_error(ec);
  };
}

std::size_t index_of(const std::vector<std::string>& v, const std::string& s) {
  for (std::size_t i = 0; i < v.size(); ++i)
    if (v[i] == s) return i;
  FAIL("missing " << s);
  return 0;
}

}  // namespace

TEST_CASE("dag: nodes start only after their prerequisites succeeded") {
  asio::io_context ctx;
  std::vector<std::string> log;
  dag d(0);
  d.add_node("d", {"b", "c"}, record(log, "d"));
  d.add_node("a", {}, record(log, "a", 3));
  d.add_node("b", {"a"}, record(log, "b", 2));
  d.add_node("c", {"a"}, record(log, "c"));
  ferry::test::run_coro(ctx, d.run());
  CHECK(d.all_succeeded());
  CHECK(index_of(log, "end a") < index_of(log, "start b"));
  CHECK(index_of(log, "end a") < index_of(log, "start c"));
  CHECK(index_of(log, "end b") < index_of(log, "start d"));
  CHECK(index_of(log, "end c") < index_of(log, "start d"));
  auto a = d.result("a");
  auto dd = d.result("d");
  REQUIRE(a);
  REQUIRE(dd);
  CHECK(a->start_order == 0);
  CHECK(dd->start_order == 3);
  CHECK(dd->end_order == 3);
  CHECK(d.results().front().name == "d");  // insertion order
}

TEST_CASE("dag: at most max_parallel nodes run at once") {
  asio::io_context ctx;
  dag d(3);
  int running = 0;
  int peak = 0;
  for (int i = 0; i < 10; ++i) {
    d.add_node("n" + std::to_string(i), {}, [&]() -> asio::awaitable<void> {
      peak = std::max(peak, ++running);
      co_await yield_n(5);
      --running;
    });
  }
  ferry::test::run_coro(ctx, d.run());
  CHECK(d.all_succeeded());
  CHECK(peak == 3);
}

TEST_CASE("dag: a failed node skips its transitive dependents, others continue") {
  asio::io_context ctx;
  std::vector<std::string> log;
  dag d(2);
  d.add_node("a", {}, []() -> asio::awaitable<void> {
    co_await yield_n(1);
    throw std::runtime_error("boom");
  });
  d.add_node("b", {"a"}, record(log, "b"));
  d.add_node("c", {"b"}, record(log, "c"));
  d.add_node("x", {}, record(log, "x", 4));
  d.add_node("y", {"x"}, record(log, "y"));
  ferry::test::run_coro(ctx, d.run());
  CHECK_FALSE(d.all_succeeded());
  CHECK(d.result("a")->state == node_state::failed);
  CHECK(d.result("a")->message == "boom");
  CHECK(d.result("b")->state == node_state::skipped);
  CHECK(d.result("b")->message == "dependency a failed: boom");
  CHECK(d.result("c")->state == node_state::skipped);
  CHECK(d.result("c")->message == "dependency a failed: boom");
  CHECK(d.result("c")->start_order == -1);
  CHECK(d.result("y")->state == node_state::succeeded);
  CHECK(log == std::vector<std::string>{"start x", "end x", "start y", "end y"});
}

TEST_CASE("dag: cycles, unknown dependencies and duplicates are rejected with the node named") {
  asio::io_context ctx;
  std::vector<std::string> log;
  SUBCASE("cycle") {
    dag d;
    d.add_node("ok", {}, record(log, "ok"));
    d.add_node("a", {"c"}, record(log, "a"));
    d.add_node("b", {"a"}, record(log, "b"));
    d.add_node("c", {"b"}, record(log, "c"));
    CHECK_THROWS_WITH_AS(ferry::test::run_coro(ctx, d.run()), doctest::Contains("cycle"), dag_error);
    CHECK(log.empty());  // nothing started
  }
  SUBCASE("self dependency") {
    dag d;
    d.add_node("self", {"self"}, record(log, "self"));
    CHECK_THROWS_WITH_AS(ferry::test::run_coro(ctx, d.run()), doctest::Contains("'self'"), dag_error);
  }
  SUBCASE("unknown dependency") {
    dag d;
    d.add_node("experiments", {"projcts"}, record(log, "e"));
    CHECK_THROWS_WITH_AS(ferry::test::run_coro(ctx, d.run()),
                         "dag: node 'experiments' depends on unknown node 'projcts'", dag_error);
  }
  SUBCASE("duplicate") {
    dag d;
    d.add_node("a", {}, record(log, "a"));
    CHECK_THROWS_WITH_AS(d.add_node("a", {}, record(log, "a")), "dag: duplicate node 'a'", dag_error);
  }
}

TEST_CASE("dag: cancel() stops scheduling and aborts running nodes") {
  asio::io_context ctx;
  std::vector<std::string> log;
  dag d(1);
  d.add_node("a", {}, wait_forever(log, "a"));
  d.add_node("b", {"a"}, record(log, "b"));
  d.add_node("c", {}, record(log, "c"));
  auto cancel_soon = [&]() -> asio::awaitable<void> {
    co_await yield_n(3);
    d.cancel();
  };
  ferry::test::run_coro(ctx, [&]() -> asio::awaitable<void> { co_await (d.run() && cancel_soon()); }());
  CHECK(log == std::vector<std::string>{"start a", "a saw terminal"});
  CHECK(d.result("a")->state == node_state::cancelled);
  CHECK(d.result("b")->state == node_state::cancelled);
  CHECK(d.result("c")->state == node_state::cancelled);
  CHECK(d.result("c")->start_order == -1);
}

TEST_CASE("dag: the awaiting coroutine's total cancellation reaches running nodes as total") {
  asio::io_context ctx;
  std::vector<std::string> log;
  dag d(0);
  d.add_node("stream", {}, wait_forever(log, "stream", /*finish_batch_on_total=*/true));
  d.add_node("next", {"stream"}, record(log, "next"));
  asio::cancellation_signal sig;
  bool done = false;
  std::exception_ptr err;
  asio::co_spawn(ctx, hold([&]() -> asio::awaitable<void> {
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    co_await d.run();
  }), asio::bind_cancellation_slot(sig.slot(), [&](std::exception_ptr e) {
    err = e;
    done = true;
  }));
  ctx.poll();
  REQUIRE(log == std::vector<std::string>{"start stream"});
  sig.emit(asio::cancellation_type::total);
  ctx.restart();
  ctx.run_for(10s);  // bound only: everything completes without waiting
  REQUIRE(done);
  CHECK_FALSE(err);
  CHECK(log == std::vector<std::string>{"start stream", "stream saw total"});
  CHECK(d.result("stream")->state == node_state::succeeded);  // it finished its batch
  CHECK(d.result("next")->state == node_state::cancelled);    // but nothing new starts
}

TEST_CASE("dag: nodes added while running are scheduled") {
  asio::io_context ctx;
  std::vector<std::string> log;
  dag d(0);
  d.add_node("project", {}, [&]() -> asio::awaitable<void> {
    log.push_back("project created");
    d.add_node("project_logs", {"project"}, record(log, "project_logs"));
    d.add_node("dataset", {}, record(log, "dataset"));
    co_await yield_n(2);
  });
  d.add_node("fails", {}, []() -> asio::awaitable<void> { throw std::runtime_error("nope"); co_return; });
  ferry::test::run_coro(ctx, d.run());
  CHECK(d.result("project_logs")->state == node_state::succeeded);
  CHECK(d.result("dataset")->state == node_state::succeeded);
  CHECK(index_of(log, "project created") < index_of(log, "start project_logs"));
  SUBCASE("a late node on a failed prerequisite is skipped, an unknown one rejected") {
    CHECK_THROWS_AS(d.add_node("late", {"nowhere"}, record(log, "late")), dag_error);
  }
}
