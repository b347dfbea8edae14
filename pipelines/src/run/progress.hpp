#pragma once
// Internal to pipelines: a migration's progress output while streams run. With a TTY (or
// run_options::live_progress) a live line on stderr: rows, rate, ETA (from each launched stream's
// remaining rows, counted on the source with key-only pages, one stream at a time), MB/s and streams
// running; otherwise one structured log line per active stream every progress_interval.

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
  void print_live_line(std::chrono::steady_clock::time_point now);
  void log_stream_rates(std::map<std::string, engine::progress_counts>& last, double dt);

  run_context& c_;
  engine::progress_registry& progress_;
  streams::checkpoint_store& cps_;
  std::function<std::size_t()> running_;
  std::mutex mu_;
  std::vector<std::string> tracked_;                 // stream ids, launch order; under mu_
  std::deque<count_job> count_jobs_;                 // under mu_
  std::map<std::string, std::uint64_t> remaining_;   // stream id -> rows this run copies; under mu_
  std::atomic<bool> stop_{false};
  engine::runtime::strand_type strand_;
  boost::asio::steady_timer* timer_ = nullptr;  // only touched on strand_
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace ferry::pipelines
