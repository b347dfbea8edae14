// `ferry import --from DIR` (see pipelines/archive.hpp): the archive checked, then presented as the
// source side (archive_source.hpp) to the same plan, launcher and writer `ferry migrate` runs.
#include "pipelines/archive.hpp"

#include "pipelines/archive/archive_source.hpp"
#include "pipelines/archive/format.hpp"

#include "../run/plan.hpp"
#include "../run/reports.hpp"
#include "../run/sides.hpp"

#include "pipelines/streams/entry.hpp"
#include "pipelines/streams/http_stream_io.hpp"
#include "pipelines/streams/launcher.hpp"

#include "engine/log.hpp"
#include "engine/runtime.hpp"
#include "stores/state_store.hpp"

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

  importer(const migrate_config& c, stores::state_store& s, engine::runtime& r, const std::string& dir,
           const archive::manifest& m)
      : cfg(c), st(s), rt(r), dst(make_side(r.executor(), side_role::destination, c)), source(dir, m) {
    src.res = std::make_unique<archive::archive_resource_api>(dir, m);
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
    launcher.emplace(rt, source, *sink, cps, engine::real_clock::instance(), lc);
    resources_rc = co_await plan_and_launch(cfg, src, dst, st, report, *launcher);
  }

  static transports::query_params one_limit() {
    transports::query_params q;
    q.emplace_back("limit", "1");
    return q;
  }
};

engine::runtime_config runtime_cfg(const run_options& ro) {
  engine::runtime_config rc;
  rc.threads = std::max<std::size_t>(ro.threads, 1);
  rc.shutdown_grace = ro.shutdown_grace;
  rc.handle_signals = ro.handle_signals;
  return rc;
}

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
  try {
    m = archive::read_and_check(a.dir);  // nothing is written before the whole archive checked out
    stores::state_store_options so;
    so.kv.min_free_bytes = cfg.state_min_free_bytes;
    st.emplace(stores::state_store::open(cfg.state_dir, so));
    // The guard `ferry migrate` records, with the archived source's URL: an import is a migration from
    // that source, so a newer export of the same organization continues from the recorded cursors.
    st->check_and_record_meta({{"source_url", m.source_url},
                               {"dest_url", cfg.dest.url},
                               {"created_after", cfg.created_after.value_or("")},
                               {"created_before", cfg.created_before.value_or("")}});
  } catch (const std::exception& e) {
    err << "ferry import: " << e.what() << '\n';
    return 2;
  }
  engine::runtime rt(runtime_cfg(ro));
  if (ro.on_runtime) ro.on_runtime(rt);
  importer imp(cfg, *st, rt, a.dir, m);
  rt.on_shutdown([api = imp.dst.api](engine::shutdown_phase, const std::string&) { api->abort_waits(); });
  rt.spawn(rt.executor(), imp.run(), [&](std::exception_ptr e) {
    if (e && !engine::is_cancellation(e)) imp.errors.push_back("import aborted: " + engine::what_of(e));
  });
  rt.run();
  migration_end end;
  end.interrupted = rt.phase() != engine::shutdown_phase::running;
  if (imp.launcher) end.streams = imp.launcher->outcomes();
  end.run_errors = imp.errors;
  end.resources_rc = imp.resources_rc;
  end.resume_command = ro.resume_command;
  end.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return finish_migration(cfg, imp.report, end, out, err);
}

}  // namespace ferry::pipelines
