#include "engine/rate_limiter.hpp"

#include <algorithm>
#include <cmath>

namespace ferry::engine {
namespace asio = boost::asio;

double rate_limiter::effective_burst(const rate_limit_config& cfg) {
  if (cfg.burst > 0) return cfg.burst;
  return std::max(1.0, cfg.rate_per_second);
}

rate_limiter::rate_limiter(rate_limit_config cfg, const clock& clk)
    : cfg_(cfg), clock_(clk), tokens_(effective_burst(cfg)) {}

void rate_limiter::refill(steady_time now) {
  if (!started_) {
    started_ = true;
    last_ = now;
    return;
  }
  if (now <= last_) return;  // callers may pass slightly older "now"s from other threads
  const double secs = std::chrono::duration<double>(now - last_).count();
  tokens_ = std::min(effective_burst(cfg_), tokens_ + secs * cfg_.rate_per_second);
  last_ = now;
}

steady_duration rate_limiter::reserve(double n, steady_time now) {
  std::lock_guard lock(mu_);
  if (cfg_.rate_per_second <= 0 || n <= 0) return steady_duration::zero();
  refill(now);
  tokens_ -= n;
  if (tokens_ >= 0) return steady_duration::zero();
  const double wait_s = -tokens_ / cfg_.rate_per_second;
  // Round up so that waking at now + wait finds the tokens there.
  return std::chrono::ceil<steady_duration>(std::chrono::duration<double>(wait_s));
}

bool rate_limiter::try_take(double n, steady_time now) {
  std::lock_guard lock(mu_);
  if (cfg_.rate_per_second <= 0 || n <= 0) return true;
  refill(now);
  if (tokens_ < n) return false;
  tokens_ -= n;
  return true;
}

asio::awaitable<void> rate_limiter::acquire(double n) {
  const steady_duration wait = reserve(n, clock_.now());
  if (wait > steady_duration::zero()) co_await clock_.sleep_for(wait);
}

void rate_limiter::reconfigure(rate_limit_config cfg, steady_time now) {
  std::lock_guard lock(mu_);
  refill(now);
  const bool was_unlimited = cfg_.rate_per_second <= 0;
  cfg_ = cfg;
  tokens_ = was_unlimited ? effective_burst(cfg_) : std::min(tokens_, effective_burst(cfg_));
}

bool rate_limiter::unlimited() const {
  std::lock_guard lock(mu_);
  return cfg_.rate_per_second <= 0;
}

double rate_limiter::available(steady_time now) {
  std::lock_guard lock(mu_);
  if (cfg_.rate_per_second <= 0) return INFINITY;
  refill(now);
  return tokens_;
}

}  // namespace ferry::engine
