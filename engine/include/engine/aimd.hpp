#pragma once
// Additive-increase / multiplicative-decrease controller, for a concurrency limit (feed value() to
// semaphore::set_capacity) or a page size (value() = BTQL limit, shrinking on 500/504 and growing back).
//
// - on_success(latency, now): after every `successes_per_step` successes, value += additive_step, unless
//   a latency target is set and this success was slower than it (then the value holds).
// - on_throttle(now) / on_failure(now): value *= decrease_factor (never below min), at most once per
//   cooldown: a decrease is ignored until `cooldown_successes` successes or `cooldown` time have passed
//   since the previous one, so one burst of 429s from requests already in flight halves only once.
//   With both cooldowns 0 every signal decreases.
//
// Thread-safe (one mutex); pure: it takes `now` and never sleeps.

#include "engine/clock.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>

namespace ferry::engine {

struct aimd_config {
  double min = 1;
  double max = 64;
  double initial = 8;
  double additive_step = 1;
  std::uint32_t successes_per_step = 1;
  double decrease_factor = 0.5;         // in (0, 1)
  double failure_factor = 0.5;          // used by on_failure (e.g. 500/504 on a big BTQL LIMIT)
  std::optional<std::chrono::milliseconds> latency_target;
  std::uint32_t cooldown_successes = 0;  // successes since the last decrease before another may happen
  std::chrono::milliseconds cooldown{0};  // time since the last decrease before another may happen
};

class aimd_controller {
 public:
  /// Throws std::invalid_argument naming the field for an inconsistent config (min > max, factor
  /// outside (0,1), ...).
  explicit aimd_controller(aimd_config cfg);

  /// Each returns the value after the update.
  std::size_t on_success(steady_duration latency, steady_time now);
  std::size_t on_throttle(steady_time now);
  std::size_t on_failure(steady_time now);

  /// The current value, floored and clamped to [min, max].
  std::size_t value() const;
  std::uint64_t decreases() const;
  const aimd_config& config() const { return cfg_; }

 private:
  std::size_t decrease(double factor, steady_time now);
  std::size_t current() const;  // requires mu_

  aimd_config cfg_;
  mutable std::mutex mu_;
  double value_;
  std::uint32_t successes_since_step_ = 0;
  std::uint64_t successes_since_decrease_ = 0;
  std::optional<steady_time> last_decrease_;
  std::uint64_t decreases_ = 0;
};

}  // namespace ferry::engine
