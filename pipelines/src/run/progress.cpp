#include "progress.hpp"

#include "source_count.hpp"

#include "engine/log.hpp"
#include "pipelines/streams/http_stream_io.hpp"
#include "pipelines/streams/slices.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstdio>
#include <ostream>
#include <unistd.h>

namespace ferry::pipelines {

namespace asio = boost::asio;

progress_reporter::progress_reporter(run_context& c, engine::progress_registry& progress, streams::checkpoint_store& cps)
    : c_(c), progress_(progress), cps_(cps), area_(c.err), strand_(c.rt->strand()) {
  if (auto* m = c.metrics_or_null())
    running_gauge_ = &m->gauges("ferry_streams_running", "Event streams copying right now.").with({});
}

progress_reporter::~progress_reporter() {
  // A terminal shutdown may destroy the ticker before it ends: the log sink must not keep the area.
  if (area_active_) engine::set_active_status_area(nullptr);
}

bool progress_reporter::counting() const { return live() || c_.metrics_or_null() != nullptr; }

bool progress_reporter::live() const {
  return c_.ro.live_progress ? *c_.ro.live_progress : ::isatty(STDERR_FILENO) == 1;
}

void progress_reporter::track(const streams::stream_spec& spec) {
  count_job job;
  if (counting()) {
    job.spec = spec;
    if (auto s = cps_.load(spec.stream_id)) {
      job.cursor = s->cursor;
      job.inclusive = s->cursor_inclusive;
      job.done = s->done;
    }
  }
  std::lock_guard lk(mu_);
  tracked_.push_back(spec.stream_id);
  if (counting()) count_jobs_.push_back(std::move(job));
}

void progress_reporter::start(std::function<std::size_t()> running) {
  running_ = std::move(running);
  c_.rt->spawn(strand_, ticker());
  if (counting()) c_.rt->spawn(c_.rt->strand(), counter());
}

void progress_reporter::stop() {
  asio::post(strand_, [this] {
    stop_ = true;
    if (timer_) timer_->cancel();
  });
}

// Counts the rows each launched stream still has to copy (one `count(1)` probe of the rows after its
// committed cursor, as slices count theirs; one stream at a time), for the live line's ETA. (Paging every
// key read the whole source once more: ~1.5-2 CPU-us per event on the source, 0.4 here.) Stops when the
// migration ends or shuts down; a failed count just leaves that stream's total unknown.
asio::awaitable<void> progress_reporter::counter() {
  asio::steady_timer t(co_await asio::this_coro::executor);
  auto cancelled = [](asio::cancellation_state cs) { return cs.cancelled() != asio::cancellation_type::none; };
  while (!stop_) {
    std::optional<count_job> job;
    {
      std::lock_guard lk(mu_);
      if (!count_jobs_.empty()) {
        job = std::move(count_jobs_.front());
        count_jobs_.pop_front();
      }
    }
    if (!job) {
      t.expires_after(std::chrono::milliseconds(200));
      auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      (void)ec;
      if (cancelled(co_await asio::this_coro::cancellation_state)) break;
      continue;
    }
    std::optional<std::uint64_t> n = 0;
    if (!job->done) {
      auto q = first_page_query(c_.cfg, job->spec.kind, job->spec.source_ids);
      if (!job->cursor.empty()) q.after_key = job->cursor;
      q.inclusive = job->inclusive;
      try {
        streams::http_event_source source(*c_.src.api);
        const engine::clock& clk = c_.src.reads.clock ? *c_.src.reads.clock : c_.src.api->wait_clock();
        std::vector<streams::page_query> qs;  // (named: GCC 12 rejects a braced temporary in a co_await)
        qs.push_back(std::move(q));
        auto counts = co_await streams::count_left(source, qs, c_.src.reads.retry, clk);
        n = counts.at(0);
      } catch (const std::exception& e) {
        n.reset();
        engine::logger("pipeline")->debug("remaining-rows count stream={}: {}", job->spec.stream_id, e.what());
      }
      if (stop_ || cancelled(co_await asio::this_coro::cancellation_state)) break;
    }
    if (n && !stop_) {
      std::lock_guard lk(mu_);
      remaining_[job->spec.stream_id] = *n;
    }
  }
}

std::vector<std::string> progress_reporter::status_lines(std::chrono::steady_clock::time_point now, double dt) {
  const auto total = progress_.total();
  const double secs = std::max(std::chrono::duration<double>(now - started_).count(), 1e-3);
  std::vector<std::string> streams;
  std::lock_guard lk(mu_);
  // ETA once every launched stream's remaining rows are counted.
  std::optional<std::uint64_t> todo = std::uint64_t{0};
  for (const auto& id : tracked_) {
    auto it = remaining_.find(id);
    if (it == remaining_.end()) {
      todo.reset();
      break;
    }
    *todo += it->second;
  }
  if (tracked_.empty()) todo.reset();
  const auto rate = engine::estimate(total.rows, todo, std::chrono::duration_cast<std::chrono::nanoseconds>(now - started_));
  char line[320];
  std::snprintf(line, sizeof line, "ferry migrate: %llu rows, %s, %.2f MB/s, %zu stream(s) running",
                static_cast<unsigned long long>(total.rows), engine::format_rate_eta(rate, "rows").c_str(),
                static_cast<double>(total.bytes) / 1e6 / secs, running_ ? running_() : std::size_t{0});
  const std::string header = line;
  const auto active = progress_.active();
  for (const auto& [name, c] : progress_.snapshot()) {
    auto& [last_rows, smoothed] = rates_[name];
    const double inst = static_cast<double>(c.rows - std::min(c.rows, last_rows)) / dt;
    smoothed = last_rows == 0 && smoothed == 0 ? inst : 0.7 * smoothed + 0.3 * inst;  // steadier than one tick
    last_rows = c.rows;
    if (!std::binary_search(active.begin(), active.end(), name)) continue;
    std::string text = name + "  " + engine::format_count(smoothed) + " rows/s  " + std::to_string(c.rows) + " rows";
    if (auto it = remaining_.find(name); it != remaining_.end() && it->second > 0)
      text += "  " + std::to_string(std::min<std::uint64_t>(100, c.rows * 100 / it->second)) + "%";
    streams.push_back(std::move(text));
  }
  streams.insert(streams.begin(), header);
  return streams;
}

void progress_reporter::draw_status(std::chrono::steady_clock::time_point now, double dt) {
  auto lines = status_lines(now, dt);
  const auto size = engine::terminal_size(STDERR_FILENO).value_or(std::make_pair(std::size_t{120}, std::size_t{24}));
  const std::string header = lines.front();
  lines.erase(lines.begin());
  // At most a third of the screen (and 12 rows): the log lines above stay readable.
  const std::size_t max_lines = std::clamp<std::size_t>(size.second / 3, 2, 12);
  area_.update(engine::layout_status(header, lines, size.first, max_lines));
  if (!area_active_) {
    engine::set_active_status_area(&area_);
    area_active_ = true;
  }
}

void progress_reporter::log_stream_rates(std::map<std::string, engine::progress_counts>& last, double dt) {
  auto log = engine::logger("pipeline");
  const auto total = progress_.total();
  const auto secs = std::max(std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count(), 1e-3);
  log->info("progress total rows={} mb_per_s={:.2f} streams_running={}", total.rows,
            static_cast<double>(total.bytes) / 1e6 / secs, running_ ? running_() : std::size_t{0});
  for (const auto& [name, c] : progress_.snapshot()) {
    auto& prev = last[name];
    if (c == prev) continue;
    log->info("progress stream={} rows={} rows_per_s={:.0f} mb_per_s={:.2f} retries={}", name, c.rows,
              static_cast<double>(c.rows - prev.rows) / dt, static_cast<double>(c.bytes - prev.bytes) / 1e6 / dt,
              c.retries);
    prev = c;
  }
}

asio::awaitable<void> progress_reporter::ticker() {
  asio::steady_timer t(co_await asio::this_coro::executor);
  timer_ = &t;
  const bool is_live = live();
  // The live area and the metrics' gauges move every second at most; log lines every progress_interval.
  const auto interval = is_live || counting() ? std::min(std::chrono::milliseconds(1000), c_.ro.progress_interval)
                                              : c_.ro.progress_interval;
  std::map<std::string, engine::progress_counts> last;
  auto last_time = std::chrono::steady_clock::now(), last_log = last_time;
  while (!stop_) {
    t.expires_after(interval);
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    (void)ec;  // cancelled by stop() or shutdown: the flags below decide
    if (stop_ || (co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none) break;
    auto now = std::chrono::steady_clock::now();
    const double dt = std::max(std::chrono::duration<double>(now - last_time).count(), 1e-3);
    set_lag_gauges();
    if (is_live) {
      draw_status(now, dt);
    } else if (now - last_log >= c_.ro.progress_interval) {
      log_stream_rates(last, std::max(std::chrono::duration<double>(now - last_log).count(), 1e-3));
      last_log = now;
    }
    last_time = now;
  }
  timer_ = nullptr;
  set_lag_gauges();  // the final values
  if (area_active_) {
    engine::set_active_status_area(nullptr);
    area_active_ = false;
  }
  area_.clear();
}

// ferry_lag_rows: the rows each counted stream still has to copy in this run; ferry_streams_running.
void progress_reporter::set_lag_gauges() {
  if (!c_.metrics_or_null()) return;
  if (running_gauge_) running_gauge_->set(static_cast<double>(running_ ? running_() : 0));
  std::map<std::string, std::uint64_t> remaining;
  {
    std::lock_guard lk(mu_);
    remaining = remaining_;
  }
  for (const auto& [name, c] : progress_.snapshot())
    if (auto it = remaining.find(name); it != remaining.end())
      progress_.stream(name).set_lag_rows(it->second - std::min(it->second, c.rows));
}

}  // namespace ferry::pipelines
