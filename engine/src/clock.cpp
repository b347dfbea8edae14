#include "engine/clock.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace ferry::engine {
namespace asio = boost::asio;

asio::awaitable<void> real_clock::sleep_for(steady_duration d) const {
  if (d <= steady_duration::zero()) co_return;
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

const real_clock& real_clock::instance() {
  static const real_clock c;
  return c;
}

namespace {
// 2015-10-21T07:28:00Z, a fixed, recognisable wall-clock start for tests.
constexpr std::chrono::seconds manual_system_epoch{1445412480};
}  // namespace

manual_clock::manual_clock()
    : offset_(std::chrono::duration_cast<steady_duration>(std::chrono::hours(1)).count()),
      system_base_(std::chrono::duration_cast<std::chrono::system_clock::duration>(manual_system_epoch)) {}

steady_time manual_clock::now() const { return steady_time(steady_duration(offset_.load())); }

system_time manual_clock::system_now() const {
  const steady_duration since_start =
      steady_duration(offset_.load()) - std::chrono::duration_cast<steady_duration>(std::chrono::hours(1));
  return system_base_ + std::chrono::duration_cast<std::chrono::system_clock::duration>(since_start);
}

void manual_clock::advance(steady_duration d) {
  if (d <= steady_duration::zero()) return;
  offset_.fetch_add(d.count());
}

void manual_clock::advance_to(steady_duration::rep target) const {
  auto cur = offset_.load();
  while (cur < target && !offset_.compare_exchange_weak(cur, target)) {
  }
}

asio::awaitable<void> manual_clock::sleep_for(steady_duration d) const {
  if (d > steady_duration::zero()) {
    sleeps_.fetch_add(1);
    slept_.fetch_add(d.count());
    advance_to(offset_.load() + d.count());
  }
  // Yield once so that a sleeping loop lets other coroutines run, as a real wait would.
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
}

}  // namespace ferry::engine
