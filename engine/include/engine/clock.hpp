#pragma once
// Clocks: the one place where "now" and "wait" come from, so that every time-dependent primitive can
// be driven by a manual clock in tests.
//
// `clock` is an interface with a steady time (for durations, deadlines, token buckets) and a system
// time (only for parsing HTTP dates such as Retry-After), plus a coroutine `sleep_for`.
//  - `real_clock` reads std::chrono clocks and sleeps with an asio::steady_timer on the awaiting
//    coroutine's executor (cancellable through the coroutine's cancellation slot).
//  - `manual_clock` only moves when told to: `advance(d)`, or `sleep_for(d)`, which advances the clock
//    to at least (time of the call + d) and then yields once, so retry loops and rate limiters run
//    instantly and deterministically in unit tests.
// Both are thread-safe; neither owns an executor. A clock must outlive every object that uses it.

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace ferry::engine {

using steady_time = std::chrono::steady_clock::time_point;
using steady_duration = std::chrono::steady_clock::duration;
using system_time = std::chrono::system_clock::time_point;

class clock {
 public:
  virtual ~clock() = default;
  virtual steady_time now() const = 0;
  virtual system_time system_now() const = 0;
  /// Completes after `d` (at once for d <= 0). Throws boost::system::system_error(operation_aborted)
  /// when the awaiting coroutine is cancelled while waiting.
  virtual boost::asio::awaitable<void> sleep_for(steady_duration d) const = 0;
};

class real_clock final : public clock {
 public:
  steady_time now() const override { return std::chrono::steady_clock::now(); }
  system_time system_now() const override { return std::chrono::system_clock::now(); }
  boost::asio::awaitable<void> sleep_for(steady_duration d) const override;
  /// A process-wide instance (stateless).
  static const real_clock& instance();
};

class manual_clock final : public clock {
 public:
  /// Starts at an arbitrary steady epoch + 1h (so "now - 1s" stays representable) and at
  /// 2015-10-21T07:28:00Z in system time.
  manual_clock();
  steady_time now() const override;
  system_time system_now() const override;
  /// Advances to at least (now at the call + d), then yields once through the executor.
  boost::asio::awaitable<void> sleep_for(steady_duration d) const override;

  /// Moves both clocks forward by `d` (negative values are ignored: time never goes back).
  void advance(steady_duration d);
  /// How many times sleep_for was awaited with a positive duration, and their total.
  std::uint64_t sleep_count() const { return sleeps_.load(); }
  steady_duration slept_total() const { return steady_duration(slept_.load()); }

 private:
  void advance_to(steady_duration::rep target) const;

  mutable std::atomic<steady_duration::rep> offset_{0};  // since the steady epoch
  mutable std::atomic<std::uint64_t> sleeps_{0};
  mutable std::atomic<steady_duration::rep> slept_{0};
  system_time system_base_;
};

}  // namespace ferry::engine
