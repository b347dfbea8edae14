#include "engine/aimd.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace ferry::engine {

aimd_controller::aimd_controller(aimd_config cfg) : cfg_(cfg) {
  auto bad = [](const std::string& what) { throw std::invalid_argument("aimd config: " + what); };
  if (!(cfg_.min >= 0)) bad("min must be >= 0");
  if (!(cfg_.max >= cfg_.min)) bad("max (" + std::to_string(cfg_.max) + ") must be >= min (" + std::to_string(cfg_.min) + ")");
  if (!(cfg_.decrease_factor > 0 && cfg_.decrease_factor < 1)) bad("decrease_factor must be in (0, 1)");
  if (!(cfg_.failure_factor > 0 && cfg_.failure_factor < 1)) bad("failure_factor must be in (0, 1)");
  if (!(cfg_.additive_step >= 0)) bad("additive_step must be >= 0");
  if (cfg_.successes_per_step == 0) cfg_.successes_per_step = 1;
  value_ = std::clamp(cfg_.initial, cfg_.min, cfg_.max);
}

std::size_t aimd_controller::current() const {
  return static_cast<std::size_t>(std::floor(std::clamp(value_, cfg_.min, cfg_.max)));
}

std::size_t aimd_controller::value() const {
  std::lock_guard lock(mu_);
  return current();
}

std::uint64_t aimd_controller::decreases() const {
  std::lock_guard lock(mu_);
  return decreases_;
}

std::size_t aimd_controller::on_success(steady_duration latency, steady_time /*now*/) {
  std::lock_guard lock(mu_);
  ++successes_since_decrease_;
  if (cfg_.latency_target && latency > *cfg_.latency_target) return current();  // slow: hold
  if (++successes_since_step_ >= cfg_.successes_per_step) {
    successes_since_step_ = 0;
    value_ = std::min(cfg_.max, value_ + cfg_.additive_step);
  }
  return current();
}

std::size_t aimd_controller::on_throttle(steady_time now) { return decrease(cfg_.decrease_factor, now); }
std::size_t aimd_controller::on_failure(steady_time now) { return decrease(cfg_.failure_factor, now); }

std::size_t aimd_controller::decrease(double factor, steady_time now) {
  std::lock_guard lock(mu_);
  if (last_decrease_) {
    const bool by_successes = cfg_.cooldown_successes > 0 && successes_since_decrease_ >= cfg_.cooldown_successes;
    const bool by_time = cfg_.cooldown > std::chrono::milliseconds::zero() && now - *last_decrease_ >= cfg_.cooldown;
    const bool no_cooldown = cfg_.cooldown_successes == 0 && cfg_.cooldown == std::chrono::milliseconds::zero();
    if (!(no_cooldown || by_successes || by_time)) return current();
  }
  value_ = std::max(cfg_.min, value_ * factor);
  last_decrease_ = now;
  successes_since_decrease_ = 0;
  successes_since_step_ = 0;
  ++decreases_;
  return current();
}

}  // namespace ferry::engine
