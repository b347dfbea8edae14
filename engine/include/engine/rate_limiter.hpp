#pragma once
// Token bucket for requests/s or bytes/s.
//
// `reserve(n, now)` takes n tokens at once and returns how long the caller must wait before using them
// (zero when they were available). The bucket may go into debt, so a single request larger than the
// burst still passes after waiting (n - available) / rate instead of deadlocking, and later callers
// queue behind it in reservation order. A rate of 0 means unlimited.
//
// Thread-safe (one mutex, no I/O under it). `acquire(n)` reserves and then waits on the clock given at
// construction, on the awaiting coroutine's executor; a cancelled wait keeps its reservation (tokens
// are not returned), which errs on the side of sending less. The clock must outlive the limiter.

#include "engine/clock.hpp"

#include <boost/asio/awaitable.hpp>

#include <mutex>

namespace ferry::engine {

struct rate_limit_config {
  double rate_per_second = 0;  // 0 = unlimited
  double burst = 0;            // bucket size; 0 = one second's worth (at least 1)
};

class rate_limiter {
 public:
  explicit rate_limiter(rate_limit_config cfg, const clock& clk = real_clock::instance());

  /// Takes `n` tokens; returns the wait before they may be used (zero if available now).
  steady_duration reserve(double n, steady_time now);
  /// Takes `n` tokens only if available now, without debt.
  bool try_take(double n, steady_time now);
  /// reserve(n, clock.now()) then sleep for the returned wait.
  boost::asio::awaitable<void> acquire(double n);

  /// Changes rate and burst at run time; the current level is kept (clipped to the new burst).
  void reconfigure(rate_limit_config cfg, steady_time now);
  bool unlimited() const;
  /// Tokens available at `now` (negative while in debt).
  double available(steady_time now);

 private:
  void refill(steady_time now);  // requires mu_
  static double effective_burst(const rate_limit_config& cfg);

  mutable std::mutex mu_;
  rate_limit_config cfg_;
  const clock& clock_;
  double tokens_;
  steady_time last_{};
  bool started_ = false;
};

}  // namespace ferry::engine
