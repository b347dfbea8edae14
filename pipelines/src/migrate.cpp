// `ferry migrate`: the composition root. Read top to bottom: open the run (state dir + resume guard,
// recorder, runtime, both sides), then either the dry run or the migration: probe both sides, connect
// the streams' source and sink, start progress output, plan (the resources DAG) and launch
// every stream, wait for the runtime, report. With --follow that migration is one round, repeated
// (after a pause) as catch-up runs over the same run context and state until a shutdown or, with
// --until-caught-up, a round that copied no row. Each round measures every stream's lag (rows and
// seconds, streams/lag.hpp). Each phase lives in run/ (see pipelines/README.md).
#include "pipelines/migrate.hpp"
#include "pipelines/cluster.hpp"

#include "run/cluster_run.hpp"
#include "run/dry_run.hpp"
#include "run/plan.hpp"
#include "run/progress.hpp"
#include "run/reports.hpp"
#include "run/run_context.hpp"
#include "run/sides.hpp"
#include "resources/dataset_pins.hpp"

#include "pipelines/streams/entry.hpp"
#include "pipelines/streams/lag.hpp"
#include "pipelines/streams/launcher.hpp"

#include "engine/log.hpp"
#include "engine/runtime.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <set>

namespace ferry::pipelines {

namespace asio = boost::asio;

namespace {

/// Both sides probed (a bad key or URL is one line each in `errors`, and false), then the streams'
/// source and sink connected into `io`.
asio::awaitable<bool> probe_and_connect(run_context& c, std::vector<std::string>& errors,
                                        std::optional<stream_endpoints>& io) {
  auto problems = co_await probe_sides(c.src, c.dst, c.cfg);
  if (!problems.empty()) {
    errors = std::move(problems);
    co_return false;
  }
  auto endpoints = co_await connect_streams(c.src, c.dst, c.cfg);
  io.emplace(std::move(endpoints));
  co_return true;
}

/// One real (not dry) migration: what its phases share while the runtime runs.
struct migration {
  run_context& c;
  resources::migration_report report;
  streams::checkpoint_store cps{*c.state};
  engine::progress_registry progress{c.metrics_or_null()};
  progress_reporter reporter{c, progress, cps};
  std::optional<stream_endpoints> io;
  std::optional<streams::stream_launcher> launcher;  // once the sink is connected
  std::shared_ptr<engine::memory_budget> budget = streams::make_memory_budget(c.cfg);  // every stream's rows
  std::vector<std::string> run_errors;                // probe and setup failures
  int resources_rc = 0;
  std::atomic<bool> launching_done{false};

  explicit migration(run_context& ctx) : c(ctx) {}

  /// Progress output ends when every stream was launched and the last one ended.
  void maybe_finished() {
    if (launching_done && (!launcher || launcher->running() == 0)) reporter.stop();
  }

  streams::launcher_config launcher_cfg() {
    streams::launcher_config lc;
    lc.max_concurrent = static_cast<std::size_t>(std::max(c.cfg.max_concurrent_streams, 1));
    lc.options = [this](streams::stream_kind k) { return streams::options_from_config(c.cfg, k, io->payload_max, budget); };
    lc.progress = &progress;
    lc.on_launch = [this](const streams::stream_spec& s) { reporter.track(s); };
    lc.on_idle = [this] { maybe_finished(); };
    lc.slicing = streams::slicing_from_config(c.cfg);
    // One line at each slice start and end (bench/run's latency mode reads the slices running over time).
    lc.on_slices = [](const std::string& stream_id, std::size_t, std::size_t running) {
      engine::logger("pipeline")->info("slices stream={} running={}", stream_id, running);
    };
    return lc;
  }

  /// `pause`: waited first (a follow round after the previous one); a shutdown ends the wait.
  asio::awaitable<void> run(std::chrono::milliseconds pause) {
    if (pause.count() > 0) {
      asio::steady_timer t(co_await asio::this_coro::executor, pause);
      co_await t.async_wait(asio::use_awaitable);
    }
    if (!co_await probe_and_connect(c, run_errors, io)) co_return;
    launcher.emplace(*c.rt, *io->source, *io->sink, cps, engine::real_clock::instance(), launcher_cfg());
    reporter.start([this] { return launcher->running(); });
    resources_rc = co_await plan_and_launch(c.cfg, c.src, c.dst, *c.state, report, *launcher, c.units);
  }
};

/// After the streams (issue 13): dataset version pins the resource phase dropped are mapped where exact,
/// for the datasets whose stream reached its end in this round with every row written, every row selected
/// (no created window); only the drops recorded in the state are looked at (resources/dataset_pins.hpp).
void map_dataset_pins_after_streams(run_context& c, migration& m, const std::vector<streams::stream_outcome>& outs) {
  if (!m.io || !c.state || c.cfg.created_after || c.cfg.created_before ||
      c.rt->phase() != engine::shutdown_phase::running)
    return;
  std::set<std::string> complete, partial;  // a dataset read by several streams (slices) needs all of them
  for (const auto& o : outs) {
    if (o.result.state.kind != "dataset_events") continue;
    const bool whole = o.result.done && o.result.state.counters.unwritable_rows == 0;
    (whole ? complete : partial).insert(o.result.state.source_ids.begin(), o.result.state.source_ids.end());
  }
  for (const auto& id : partial) complete.erase(id);
  if (complete.empty()) return;
  c.rt->spawn(c.rt->executor(),
              resources::map_dataset_pins(*c.src.res, *c.dst.res, *c.state, m.report, std::move(complete)),
              [&m](std::exception_ptr e) {
                if (e && !engine::is_cancellation(e)) m.run_errors.push_back("dataset pins: " + engine::what_of(e));
              });
  c.rt->run();
}

/// One round: the whole composition once (probe, plan, launch every stream, wait) on the run's runtime.
std::unique_ptr<migration> run_round(run_context& c, std::chrono::milliseconds pause, migration_end& end) {
  auto m = std::make_unique<migration>(c);
  m->report.set_dry_run(false);
  c.rt->spawn(c.rt->executor(), m->run(pause), [m = m.get()](std::exception_ptr e) {
    if (e && !engine::is_cancellation(e)) m->run_errors.push_back("migration aborted: " + engine::what_of(e));
    m->launching_done = true;
    m->maybe_finished();
  });
  c.rt->run();
  end.interrupted = c.rt->phase() != engine::shutdown_phase::running;
  if (m->launcher) end.streams = m->launcher->outcomes();
  // (bench/run reads this line: what the budget bounded, beside the process's peak RSS)
  engine::logger("pipeline")->info("memory budget peak_held_bytes={} rows_budget_bytes={} budget_bytes={}",
                                   m->budget->high_water(), m->budget->capacity(), c.cfg.memory_budget_bytes);
  if (!end.interrupted) map_dataset_pins_after_streams(c, *m, end.streams);
  end.run_errors = m->run_errors;
  end.resources_rc = m->resources_rc;
  end.resume_command = c.ro.resume_command;
  return m;
}

/// Rows committed so far, per stream id.
std::map<std::string, std::uint64_t> committed_rows(run_context& c) {
  std::map<std::string, std::uint64_t> rows;
  for (const auto& s : streams::checkpoint_store(*c.state).all()) rows[s.stream_id] = s.counters.rows;
  return rows;
}

/// A round after which following may go on: every stream reached its end, nothing failed.
bool round_ok(const migration_end& end, const resources::migration_report& report) {
  for (const auto& o : end.streams)
    if (!o.result.done) return false;
  return end.run_errors.empty() && end.resources_rc == 0 && report.success();
}

/// --follow: each stream's lag this round (streams/lag.hpp), kept in the state dir for `ferry status`
/// and the next run, and in `end` for the report. Streams that did not reach their end are not measured.
void measure_round(run_context& c, migration_end& end, const std::map<std::string, std::uint64_t>& before,
                   std::map<std::string, streams::stream_lag>& lags) {
  for (const auto& o : end.streams) {
    if (!o.result.done) continue;
    auto it = before.find(o.stream_id);
    const auto copied = o.result.state.counters.rows - (it == before.end() ? 0 : it->second);
    auto prev = lags.find(o.stream_id);
    auto lag = streams::measure_lag(copied, o.result.newest_created,
                                    prev == lags.end() ? std::nullopt : std::optional<streams::stream_lag>(prev->second));
    streams::save_lag(*c.state, o.stream_id, lag);
    // The ferry_lag_seconds gauge (the round's progress registry is gone; its series are the metrics').
    if (auto* m = c.metrics_or_null(); m && lag.seconds)
      engine::stream_progress(engine::stream_metrics::of(*m, o.stream_id)).set_lag_seconds(*lag.seconds);
    lags[o.stream_id] = lag;
    end.lags[o.stream_id] = std::move(lag);
  }
}

/// The follow round's progress: one line per stream (its lag in rows and seconds when the round began;
/// `caught_up` = rows committed by catch-up runs so far) and a total line. Returns the rows copied.
std::uint64_t print_round(std::ostream& out, int round, const migration_end& end) {
  std::uint64_t copied = 0;
  std::size_t behind = 0;
  for (const auto& o : end.streams) {
    auto it = end.lags.find(o.stream_id);
    const streams::stream_lag lag = it == end.lags.end() ? streams::stream_lag{} : it->second;
    copied += lag.rows;
    if (lag.rows > 0) ++behind;
    out << "follow round " << round << ": stream " << o.stream_id << ' ' << streams::describe(lag)
        << " caught_up=" << o.result.state.counters.caught_up_rows << '\n';
  }
  out << "follow round " << round << ": " << end.streams.size() << " stream(s), " << behind << " behind, " << copied
      << " row(s) copied\n";
  out.flush();
  return copied;
}

/// --metrics-linger: the endpoint keeps serving the final values for a last scrape, on the runtime
/// so that SIGINT/SIGTERM end the wait (not after an interrupted run). Returns `rc`.
int linger_metrics(run_context& c, int rc) {
  if (!c.metrics_http || c.cfg.metrics_linger.count() == 0 || c.rt->phase() != engine::shutdown_phase::running)
    return rc;
  engine::logger("pipeline")->info("metrics linger seconds={} url={}", c.cfg.metrics_linger.count() / 1000.0,
                                   c.metrics_http->url());
  c.rt->spawn(c.rt->executor(), [](std::chrono::milliseconds d) -> asio::awaitable<void> {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(asio::use_awaitable);
  }(c.cfg.metrics_linger), [](std::exception_ptr) {});
  c.rt->run();
  return rc;
}

int migrate(run_context& c) {
  const auto started = std::chrono::steady_clock::now();
  auto before = committed_rows(c);
  std::map<std::string, streams::stream_lag> lags;
  if (c.cfg.follow) lags = streams::load_lags(*c.state);
  for (int round = 1;; ++round) {
    migration_end end;
    auto m = run_round(c, round == 1 ? std::chrono::milliseconds(0) : c.cfg.follow_interval, end);
    end.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (c.cfg.follow && !end.interrupted) measure_round(c, end, before, lags);
    if (!c.cfg.follow || end.interrupted || !round_ok(end, m->report))
      return linger_metrics(c, finish_migration(c.cfg, m->report, end, c.out, c.err));
    const auto copied = print_round(c.out, round, end);
    if (c.cfg.until_caught_up && copied == 0) {
      c.out << "follow round " << round << ": caught up: no stream copied a row (cut-over pass)\n";
      return linger_metrics(c, finish_migration(c.cfg, m->report, end, c.out, c.err));
    }
    before = committed_rows(c);
  }
}

int dry_run(run_context& c) {
  resources::migration_report report;
  report.set_dry_run(true);
  dry_run_planner planner(c, report);
  std::vector<std::string> run_errors;
  std::optional<stream_endpoints> io;  // connected as for a real run (reads only), not used
  auto plan = [&]() -> asio::awaitable<void> {
    if (co_await probe_and_connect(c, run_errors, io)) co_await planner.plan();
  };
  c.rt->spawn(c.rt->executor(), plan(), [&](std::exception_ptr e) {
    if (e && !engine::is_cancellation(e)) run_errors.push_back("migration aborted: " + engine::what_of(e));
  });
  c.rt->run();
  return planner.finish(c.rt->phase() != engine::shutdown_phase::running, run_errors);
}

}  // namespace

int run_migrate(const migrate_config& cfg) { return run_migrate(cfg, run_options{}); }

int run_migrate(const migrate_config& cfg, const run_options& ro) {
  if (!cfg.plan_path.empty()) return run_planned(cfg, ro, migrate);  // a phase or shard of a plan
  auto c = open_run_context(cfg, ro, "migrate", cfg.dry_run ? state_use::memory : state_use::guarded);
  if (!c) return 2;
  return cfg.dry_run ? dry_run(*c) : migrate(*c);
}

int run_finalize(const migrate_config& cfg, const run_options& ro) { return finalize_planned(cfg, ro, migrate); }

}  // namespace ferry::pipelines
