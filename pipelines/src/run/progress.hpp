#pragma once
// Internal to pipelines: a migration's progress output while streams run. With a TTY (or
// run_options::live_progress) a status area pinned at the bottom of stderr (engine::status_area,
// redrawn every second; log lines are printed above it, never on its rows): overall rows, rate, ETA
// (from each launched stream's remaining rows, counted on the source with key-only pages, one stream at
// a time), MB/s and streams running, then one line per active stream with its rate and percentage.
// Otherwise one structured log line per active stream, and one overall line, every progress_interval.
// With metrics on, the remaining-rows count runs too and each tick sets the streams' ferry_lag_rows
// and the run's ferry_streams_running.

#include "run_context.hpp"

#include "pipelines/streams/checkpoint_store.hpp"
#include "pipelines/streams/stream_runner.hpp"

#include "engine/progress.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ferry::pipelines {

class progress_reporter {
 public:
  progress_reporter(run_context& c, engine::progress_registry& progress, streams::checkpoint_store& cps);
  ~progress_reporter();

  bool live() const;
  /// A launched stream (call once per stream): with a live line, queues the count of its remaining rows.
  void track(const streams::stream_spec& spec);
  /// Spawns the ticker (and, live, the remaining-rows counter) on the runtime; `running` counts the
  /// streams still running.
  void start(std::function<std::size_t()> running);
  /// Ends the ticker and the counter (thread-safe; the run is over).
  void stop();

 private:
  struct count_job {
    streams::stream_spec spec;
    std::string cursor;
    bool inclusive = false;
    bool done = false;
  };
  boost::asio::awaitable<void> ticker();
  boost::asio::awaitable<void> counter();
  /// The live header and stream lines (pure but for the members it reads under mu_).
  std::vector<std::string> status_lines(std::chrono::steady_clock::time_point now, double dt);
  void draw_status(std::chrono::steady_clock::time_point now, double dt);
  void log_stream_rates(std::map<std::string, engine::progress_counts>& last, double dt);
  void set_lag_gauges();
  bool counting() const;  // live line or metrics: the remaining rows are counted

  run_context& c_;
  engine::progress_registry& progress_;
  streams::checkpoint_store& cps_;
  std::function<std::size_t()> running_;
  std::mutex mu_;
  std::vector<std::string> tracked_;                 // stream ids, launch order; under mu_
  std::deque<count_job> count_jobs_;                 // under mu_
  std::map<std::string, std::uint64_t> remaining_;   // stream id -> rows this run copies; under mu_
  std::map<std::string, std::pair<std::uint64_t, double>> rates_;  // stream -> (rows at last tick, smoothed rows/s); ticker only
  engine::status_area area_;
  bool area_active_ = false;                         // ticker only (and the destructor, after it)
  engine::metric_gauge* running_gauge_ = nullptr;    // ferry_streams_running, with metrics
  std::atomic<bool> stop_{false};
  engine::runtime::strand_type strand_;
  boost::asio::steady_timer* timer_ = nullptr;  // only touched on strand_
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace ferry::pipelines
