#include "pipelines/streams/page_size.hpp"

#include <algorithm>

namespace ferry::pipelines::streams {

namespace {
engine::aimd_config to_aimd(const page_size_config& c) {
  engine::aimd_config a;
  const double max = static_cast<double>(std::max<std::size_t>(c.initial_limit, 1));
  const double min = std::min(static_cast<double>(std::max<std::size_t>(c.min_limit, 1)), max);
  a.min = min;
  a.max = max;
  a.initial = max;
  a.additive_step = std::max(1.0, max / 8);
  a.successes_per_step = std::max<std::uint32_t>(c.successes_per_step, 1);
  a.decrease_factor = 0.5;
  a.failure_factor = 0.5;
  a.cooldown_successes = 0;  // every 500/504 is about this very page: shrink each time
  a.cooldown = std::chrono::milliseconds(0);
  return a;
}
}  // namespace

page_size_controller::page_size_controller(page_size_config cfg) : cfg_(cfg), aimd_(to_aimd(cfg)) {
  cfg_.min_limit = static_cast<std::size_t>(aimd_.config().min);
}

void page_size_controller::on_page(engine::steady_duration latency, engine::steady_time now) {
  if (latency > cfg_.slow_page) {
    aimd_.on_throttle(now);
  } else {
    aimd_.on_success(latency, now);
  }
}

bool page_size_controller::on_server_error(engine::steady_time now) {
  if (aimd_.value() <= cfg_.min_limit) return false;
  aimd_.on_failure(now);
  return true;
}

std::uint64_t page_bytes_estimate::expected() const {
  if (pages_ == 0) return initial_;
  std::uint64_t most = 64u << 10;
  for (std::size_t i = 0; i < std::min(pages_, window); ++i) most = std::max(most, recent_[i]);
  return most;
}

void page_bytes_estimate::add(std::uint64_t page_bytes) { recent_[pages_++ % window] = page_bytes; }

}  // namespace ferry::pipelines::streams
