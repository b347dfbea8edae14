// `ferry import --from DIR` (see pipelines/archive.hpp): the archive checked, then presented as the
// source side (archive_source.hpp) to the same plan, launcher and writer `ferry migrate` runs.
#include "pipelines/archive.hpp"

#include "pipelines/archive/archive_source.hpp"
#include "pipelines/archive/format.hpp"

#include "progress.hpp"

#include "../run/plan.hpp"
#include "../run/run_context.hpp"
#include "../run/reports.hpp"
#include "../run/sides.hpp"

#include "pipelines/streams/entry.hpp"
#include "pipelines/streams/http_stream_io.hpp"
#include "pipelines/streams/launcher.hpp"

#include "engine/log.hpp"
#include "engine/runtime.hpp"
#include "stores/state_store.hpp"
#include "transports/recorder.hpp"

#include <atomic>
#include <iostream>

namespace ferry::pipelines {

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

/// What one import holds while its runtime runs.
struct importer {
  const migrate_config& cfg;
  stores::state_store& st;
  engine::runtime& rt;
  side src;  // res: the archive; no client
  side dst;
  archive::archive_event_source source;
  streams::checkpoint_store cps{st};
  std::optional<streams::http_event_sink> sink;
  std::optional<streams::stream_launcher> launcher;
  resources::migration_report report;
  std::vector<std::string> errors;
  int resources_rc = 0;
  engine::progress_registry progress;
  archive::progress_ticker ticker;
  std::atomic<bool> launching_done{false};

  importer(const migrate_config& c, stores::state_store& s, engine::runtime& r, const std::string& dir,
           const archive::manifest& m, const run_options& ro, transports::exchange_observer observer,
           engine::metrics_registry* metrics)
      : cfg(c), st(s), rt(r), dst(make_side(r.executor(), side_role::destination, c, std::move(observer), metrics)),
        source(dir, m),
        progress(metrics), ticker("import", [this, total = archive_rows(m)] { return counts(total); }, ro.progress_interval) {
    src.res = std::make_unique<archive::archive_resource_api>(dir, m);
  }

  static std::uint64_t archive_rows(const archive::manifest& m) {
    std::uint64_t n = 0;
    for (const auto& s : m.streams) n += s.rows;
    return n;
  }

  /// The launcher's streams: every one launched, those ended; rows written this run.
  archive::progress_counts counts(std::uint64_t total) const {
    const auto launched = progress.snapshot().size();
    return {progress.total().rows, launched - std::min(launched, progress.active().size()), launched, 0, total};
  }

  /// The progress lines end once every stream was launched and the last one ended (migrate's rule).
  void maybe_finished() {
    if (launching_done && (!launcher || launcher->running() == 0)) ticker.stop();
  }

  asio::awaitable<void> run() {
    auto probe = co_await dst.api->get_json("/v1/project", one_limit());
    if (!probe.ok()) {
      errors.push_back("destination " + cfg.dest.url + " does not answer GET /v1/project (" + probe.error +
                       "): check BT_DEST_URL and BT_DEST_API_KEY");
      co_return;
    }
    const auto payload_max = co_await dst.api->version();
    const auto dst_org = co_await organization_id(dst);
    sink.emplace(*dst.api, dst_org);
    streams::launcher_config lc;
    lc.max_concurrent = static_cast<std::size_t>(std::max(cfg.max_concurrent_streams, 1));
    lc.options = [this, payload_max, budget = streams::make_memory_budget(cfg)](streams::stream_kind k) {
      return streams::options_from_config(cfg, k, payload_max, budget);
    };
    lc.progress = &progress;
    lc.on_idle = [this] { maybe_finished(); };
    launcher.emplace(rt, source, *sink, cps, engine::real_clock::instance(), lc);
    resources_rc = co_await plan_and_launch(cfg, src, dst, st, report, *launcher);
  }

  static transports::query_params one_limit() {
    transports::query_params q;
    q.emplace_back("limit", "1");
    return q;
  }
};

}  // namespace

int run_import(const migrate_config& cfg, const archive_options& a, const run_options& ro) {
  std::ostream& out = ro.out ? *ro.out : std::cout;
  std::ostream& err = ro.err ? *ro.err : std::cerr;
  if (cfg.dry_run || cfg.follow || cfg.until_caught_up) {
    err << "ferry import: --dry-run, --follow and --until-caught-up are not supported (an archive is one snapshot)\n";
    return 2;
  }
  if (cfg.dest.url.empty() || cfg.dest.api_key.empty()) {
    err << "ferry import: no destination: set BT_DEST_URL and BT_DEST_API_KEY\n";
    return 2;
  }
  engine::register_secret(cfg.dest.api_key);
  const auto started = std::chrono::steady_clock::now();
  archive::manifest m;
  std::optional<stores::state_store> st;
  migrate_config icfg = cfg;  // the archive's attachment bytes are copied as --copy-attachments copies them
  std::optional<transports::recorder> recorder;  // --record: the destination's exchanges, as migrate's
  std::optional<archive::archive_metrics> metrics;
  try {
    m = archive::read_and_check(a.dir);  // nothing is written before the whole archive checked out
    icfg.copy_attachments = cfg.copy_attachments || m.holds_attachments();
    stores::state_store_options so;
    so.kv.min_free_bytes = cfg.state_min_free_bytes;
    st.emplace(stores::state_store::open(cfg.state_dir, so));
    // The guard `ferry migrate` records, with the archived source's URL: an import is a migration from
    // that source, so a newer export of the same organization continues from the recorded cursors.
    st->check_and_record_meta({{"source_url", m.source_url},
                               {"dest_url", cfg.dest.url},
                               {"created_after", cfg.created_after.value_or("")},
                               {"created_before", cfg.created_before.value_or("")}});
    // As migrate records it: `ferry verify` then checks that every referenced attachment resolves.
    if (icfg.copy_attachments) st->check_and_record_meta({{"copy_attachments", "true"}});
    if (!cfg.record_dir.empty()) recorder.emplace(cfg.record_dir);
    metrics.emplace(cfg);
  } catch (const std::exception& e) {
    err << "ferry import: " << e.what() << '\n';
    return 2;
  }
  engine::runtime rt(runtime_config_for(ro));
  if (ro.on_runtime) ro.on_runtime(rt);
  importer imp(icfg, *st, rt, a.dir, m, ro, recorder ? recorder->observer("dest") : transports::exchange_observer{},
               metrics->registry());
  rt.on_shutdown([api = imp.dst.api](engine::shutdown_phase, const std::string&) { api->abort_waits(); });
  rt.spawn(rt.executor(), imp.ticker.run());
  rt.spawn(rt.executor(), imp.run(), [&](std::exception_ptr e) {
    if (e && !engine::is_cancellation(e)) imp.errors.push_back("import aborted: " + engine::what_of(e));
    imp.launching_done = true;
    imp.maybe_finished();
  });
  rt.run();
  migration_end end;
  end.interrupted = rt.phase() != engine::shutdown_phase::running;
  if (imp.launcher) end.streams = imp.launcher->outcomes();
  end.run_errors = imp.errors;
  end.resources_rc = imp.resources_rc;
  end.resume_command = ro.resume_command;
  end.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const int rc = finish_migration(icfg, imp.report, end, out, err);
  metrics->linger(rt);
  return rc;
}

}  // namespace ferry::pipelines
