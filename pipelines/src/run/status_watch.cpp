#include "pipelines/status_watch.hpp"

#include "pipelines/streams/checkpoint_store.hpp"

#include "engine/progress.hpp"
#include "stores/state_store.hpp"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>
#include <unistd.h>

namespace ferry::pipelines {

namespace {

volatile std::sig_atomic_t stop_requested = 0;
extern "C" void on_stop_signal(int) { stop_requested = 1; }

// SIGINT/SIGTERM set the flag for the watch's lifetime; the previous handlers come back after it.
struct stop_signals {
  struct sigaction old_int {}, old_term {};
  stop_signals() {
    stop_requested = 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
  }
  ~stop_signals() {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
  }
};

std::vector<watched_stream> read_streams(const std::string& state_dir) {
  auto st = stores::state_store::open_read_only(state_dir);
  streams::checkpoint_store cs(st);
  std::vector<watched_stream> out;
  for (auto& s : cs.all())
    out.push_back({s.stream_id, s.done, s.counters.rows, s.counters.batches, s.last_error});
  return out;
}

/// Waits `d` in short steps; false when a stop signal came.
bool wait_or_stop(std::chrono::milliseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (!stop_requested && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        std::chrono::milliseconds(50), until - std::chrono::steady_clock::now()));
  return !stop_requested;
}

}  // namespace

std::vector<std::string> status_watch_lines(const std::vector<watched_stream>& now,
                                            const std::map<std::string, std::uint64_t>& before, double dt) {
  auto sorted = now;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.done != b.done ? !a.done : a.id < b.id;
  });
  std::uint64_t rows = 0, moved = 0;
  std::size_t done = 0;
  std::vector<std::string> lines(1);
  auto rate = [&](std::uint64_t delta) {
    return dt > 0 ? static_cast<double>(delta) / dt : 0.0;
  };
  for (const auto& s : sorted) {
    rows += s.rows;
    if (s.done) ++done;
    const auto it = before.find(s.id);
    const std::uint64_t delta = it == before.end() ? s.rows : s.rows - std::min(s.rows, it->second);
    moved += delta;
    std::string l = s.id + (s.done ? " done" : " pending") + " rows=" + std::to_string(s.rows) +
                    " rows_per_s=" + engine::format_count(rate(delta)) + " batches=" + std::to_string(s.batches);
    if (!s.last_error.empty()) l += " error=" + s.last_error;
    lines.push_back(std::move(l));
  }
  lines[0] = "ferry status: " + std::to_string(sorted.size()) + " stream(s), " + std::to_string(done) + " done, " +
             std::to_string(rows) + " rows, " + engine::format_count(rate(moved)) + " rows/s";
  return lines;
}

int run_status_watch(const std::string& state_dir, const status_watch_options& opts, std::ostream& out,
                     std::ostream& err) {
  const bool tty = opts.tty ? *opts.tty : (&out == &std::cout && ::isatty(STDOUT_FILENO) == 1);
  stop_signals signals;
  engine::status_area area(out);
  std::map<std::string, std::uint64_t> before;
  auto last = std::chrono::steady_clock::now();
  for (int round = 1; !stop_requested; ++round) {
    std::vector<std::string> lines;
    const auto now = std::chrono::steady_clock::now();
    try {
      auto streams = read_streams(state_dir);
      const double dt = round == 1 ? 0.0 : std::chrono::duration<double>(now - last).count();  // no rate yet
      lines = status_watch_lines(streams, before, dt);
      before.clear();
      for (const auto& s : streams) before[s.id] = s.rows;
    } catch (const std::exception& e) {
      if (round == 1) {
        err << "ferry status: " << e.what() << '\n';
        return 1;
      }
      lines = {"ferry status: " + std::string(e.what())};  // e.g. the run is replacing a file: next round
    }
    last = now;
    if (tty) {
      const auto size = engine::terminal_size(STDOUT_FILENO).value_or(std::make_pair(std::size_t{120}, std::size_t{24}));
      const std::vector<std::string> rest(lines.begin() + 1, lines.end());
      area.update(engine::layout_status(lines.front(), rest, size.first, std::max<std::size_t>(size.second - 1, 2)));
    } else {
      for (const auto& l : lines)
        if (l.find(" done rows=") == std::string::npos) out << l << '\n';  // periodic lines: what still moves
      out.flush();
    }
    if (opts.rounds > 0 && round >= opts.rounds) break;
    if (!wait_or_stop(opts.interval)) break;
  }
  return 0;
}

}  // namespace ferry::pipelines
