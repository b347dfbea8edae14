#pragma once
// Internal to pipelines: run fn(0..n-1) as coroutines with at most `limit` in flight.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <vector>

namespace ferry::pipelines {

/// Runs fn(0..n-1) with at most `limit` in flight, on `ex` (workers may run on any of its threads:
/// what fn shares must be guarded). Exceptions (cancellation) are rethrown after all workers ended.
template <class Fn>
boost::asio::awaitable<void> for_each_bounded(boost::asio::any_io_executor ex, std::size_t n, std::size_t limit, Fn fn) {
  namespace asio = boost::asio;
  if (n == 0) co_return;
  std::atomic<std::size_t> next{0};
  auto worker = [&]() -> asio::awaitable<void> {
    for (std::size_t i = next++; i < n; i = next++) co_await fn(i);
  };
  using op_type = decltype(asio::co_spawn(ex, worker(), asio::deferred));
  std::vector<op_type> ops;
  for (std::size_t k = 0; k < std::min(std::max<std::size_t>(limit, 1), n); ++k)
    ops.push_back(asio::co_spawn(ex, worker(), asio::deferred));
  auto [order, errors] = co_await asio::experimental::make_parallel_group(std::move(ops))
                             .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
  (void)order;
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace ferry::pipelines
