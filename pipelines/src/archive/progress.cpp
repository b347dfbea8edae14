#include "progress.hpp"

#include "engine/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstdio>

namespace ferry::pipelines::archive {

namespace asio = boost::asio;

std::string progress_ticker::line(const std::string& command, const progress_counts& c, double rows_per_s) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "progress %s rows=%llu rows_per_s=%.0f streams=%zu/%zu", command.c_str(),
                static_cast<unsigned long long>(c.rows), rows_per_s, c.streams_done, c.streams_total);
  std::string out = buf;
  if (c.attachments) out += " attachments=" + std::to_string(c.attachments);
  if (c.archive_rows) out += " of_rows=" + std::to_string(*c.archive_rows);
  return out;
}

asio::awaitable<void> progress_ticker::run() {
  asio::steady_timer t(co_await asio::this_coro::executor);
  const auto poll = std::min(interval_, std::chrono::milliseconds(100));
  auto last = std::chrono::steady_clock::now();
  std::uint64_t last_rows = 0;
  while (!stop_) {
    t.expires_after(poll);
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    (void)ec;
    if (stop_ || (co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none) break;
    const auto now = std::chrono::steady_clock::now();
    if (now - last < interval_) continue;
    const auto c = read_();
    const double dt = std::max(std::chrono::duration<double>(now - last).count(), 1e-3);
    engine::logger("pipeline")->info("{}", line(command_, c, static_cast<double>(c.rows - std::min(c.rows, last_rows)) / dt));
    last = now;
    last_rows = c.rows;
  }
}

archive_metrics::archive_metrics(const migrate_config& cfg) : linger_(cfg.metrics_linger) {
  if (cfg.metrics_addr.empty()) return;
  if (!cfg.metrics_shard.empty()) registry_.set_const_label("shard", cfg.metrics_shard);
  engine::add_process_metrics(registry_);
  try {
    http_ = std::make_unique<metrics_service>(cfg.metrics_addr, registry_);
  } catch (const std::exception& e) {
    throw std::runtime_error("metrics_addr " + cfg.metrics_addr + ": " + e.what());
  }
  engine::logger("pipeline")->info("metrics url={}", http_->url());
}

archive_metrics::~archive_metrics() = default;

void archive_metrics::linger(engine::runtime& rt) const {
  if (!http_ || linger_.count() == 0 || rt.phase() != engine::shutdown_phase::running) return;
  engine::logger("pipeline")->info("metrics linger seconds={} url={}", linger_.count() / 1000.0, http_->url());
  rt.spawn(rt.executor(), [](std::chrono::milliseconds d) -> asio::awaitable<void> {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(asio::use_awaitable);
  }(linger_), [](std::exception_ptr) {});
  rt.run();
}

}  // namespace ferry::pipelines::archive
