// `ferry migrate`: the composition root. Read top to bottom: open the run (state dir + resume guard,
// recorder, runtime, both sides), then either the dry run or the migration: probe both sides, connect
// the streams' source and sink, start progress output, plan (the resources DAG) and launch
// every stream, wait for the runtime, report. With --follow that migration is one round, repeated
// (after a pause) as catch-up runs over the same run context and state until a shutdown or, with
// --until-caught-up, a round that copied no row. Each phase lives in run/ (see pipelines/README.md).
#include "pipelines/migrate.hpp"
#include "pipelines/cluster.hpp"

#include "run/cluster_run.hpp"
#include "run/dry_run.hpp"
#include "run/plan.hpp"
#include "run/progress.hpp"
#include "run/reports.hpp"
#include "run/run_context.hpp"
#include "run/sides.hpp"

#include "pipelines/streams/entry.hpp"
#include "pipelines/streams/launcher.hpp"

#include "engine/log.hpp"
#include "engine/runtime.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <map>

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
  engine::progress_registry progress;
  progress_reporter reporter{c, progress, cps};
  std::optional<stream_endpoints> io;
  std::optional<streams::stream_launcher> launcher;  // once the sink is connected
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
    lc.options = [this](streams::stream_kind k) { return streams::options_from_config(c.cfg, k, io->payload_max); };
    lc.progress = &progress;
    lc.on_launch = [this](const streams::stream_spec& s) { reporter.track(s); };
    lc.on_idle = [this] { maybe_finished(); };
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

/// The follow round's progress: one line per stream (rows it copied this round = how far behind the
/// source it was; `caught_up` = rows committed by catch-up runs so far) and a total line. Seconds
/// behind are not measured. Returns the rows copied by the round.
std::uint64_t print_round(std::ostream& out, int round, const migration_end& end,
                          const std::map<std::string, std::uint64_t>& before) {
  std::uint64_t copied = 0;
  std::size_t behind = 0;
  for (const auto& o : end.streams) {
    auto it = before.find(o.stream_id);
    const auto lag = o.result.state.counters.rows - (it == before.end() ? 0 : it->second);
    copied += lag;
    if (lag > 0) ++behind;
    out << "follow round " << round << ": stream " << o.stream_id << " lag_rows=" << lag
        << " caught_up=" << o.result.state.counters.caught_up_rows << '\n';
  }
  out << "follow round " << round << ": " << end.streams.size() << " stream(s), " << behind << " behind, " << copied
      << " row(s) copied\n";
  out.flush();
  return copied;
}

int migrate(run_context& c) {
  const auto started = std::chrono::steady_clock::now();
  auto before = committed_rows(c);
  for (int round = 1;; ++round) {
    migration_end end;
    auto m = run_round(c, round == 1 ? std::chrono::milliseconds(0) : c.cfg.follow_interval, end);
    end.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (!c.cfg.follow || end.interrupted || !round_ok(end, m->report))
      return finish_migration(c.cfg, m->report, end, c.out, c.err);
    const auto copied = print_round(c.out, round, end, before);
    if (c.cfg.until_caught_up && copied == 0) {
      c.out << "follow round " << round << ": caught up: no stream copied a row (cut-over pass)\n";
      return finish_migration(c.cfg, m->report, end, c.out, c.err);
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
