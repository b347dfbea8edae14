// `ferry verify --archive DIR` (see pipelines/archive.hpp): every archived stream against the destination,
// row by row, through the import's id maps.
#include "pipelines/archive.hpp"

#include "pipelines/archive/format.hpp"

#include "../run/plan.hpp"
#include "../run/sides.hpp"

#include "pipelines/streams/page_reader.hpp"
#include "pipelines/streams/verify.hpp"

#include "engine/json_parse.hpp"
#include "engine/log.hpp"
#include "engine/runtime.hpp"
#include "stores/state_store.hpp"

#include <boost/json/parse.hpp>

#include <iostream>

namespace ferry::pipelines {

namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

struct archive_verifier {
  const migrate_config& cfg;
  fs::path dir;
  const archive::manifest& m;
  stores::state_store* st;  // null: no import state, objects compared under their own ids
  side& dst;
  std::ostream& out;
  std::vector<std::string> failures;
  std::size_t diffs = 0;

  std::string stream_name(streams::stream_kind k, const std::string& id) const {
    return std::string(streams::resource_name(k)) + ":" + id;
  }

  asio::awaitable<void> compare(const archive::stream_entry& s) {
    const auto kind = archive::kind_of(s.kind);
    std::string dest_id = s.object_id;
    if (st)
      if (auto mapped = st->get_id(id_type(kind), s.object_id)) dest_id = *mapped;
    streams::verify_tally tally(stream_name(kind, s.object_id), kind, {{dest_id, s.object_id}});
    for (const auto& c : s.chunks)
      for (const auto& line : archive::read_chunk(dir, c)) tally.add_source(ferry::engine::parse_json(line).as_object());
    streams::page_query q;
    q.kind = kind;
    q.object_ids = {dest_id};
    q.limit = static_cast<std::size_t>(std::max(cfg.logs_fetch_limit, 1));
    co_await streams::read_all(*dst.api, q, dst.reads, [&](const boost::json::object& row) { tally.add_dest(row); });
    const auto rep = tally.finish();
    if (!rep.ok()) ++diffs;
    out << (rep.ok() ? "ok   " : "DIFF ") << rep.summary() << '\n';
  }

  asio::awaitable<void> run() {
    for (const auto& s : m.streams) {
      if ((co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none) co_return;
      try {
        co_await compare(s);
      } catch (const std::exception& e) {
        if (engine::is_cancellation(std::current_exception())) throw;
        failures.push_back("stream " + s.kind + ":" + s.object_id + ": " + e.what());
      }
    }
  }
};

}  // namespace

int run_verify_archive(const migrate_config& cfg, const archive_options& a, const run_options& ro) {
  std::ostream& out = ro.out ? *ro.out : std::cout;
  std::ostream& err = ro.err ? *ro.err : std::cerr;
  if (cfg.dest.url.empty() || cfg.dest.api_key.empty()) {
    err << "ferry verify: no deployment to compare the archive with: set BT_DEST_URL and BT_DEST_API_KEY\n";
    return 2;
  }
  engine::register_secret(cfg.dest.api_key);
  archive::manifest m;
  std::optional<stores::state_store> st;
  try {
    m = archive::read_and_check(a.dir);
    if (fs::exists(fs::path(cfg.state_dir) / "CURRENT")) st.emplace(stores::state_store::open_read_only(cfg.state_dir));
  } catch (const std::exception& e) {
    err << "ferry verify: " << e.what() << '\n';
    return 2;
  }
  engine::runtime_config rc;
  rc.threads = std::max<std::size_t>(ro.threads, 1);
  rc.shutdown_grace = ro.shutdown_grace;
  rc.handle_signals = ro.handle_signals;
  engine::runtime rt(rc);
  if (ro.on_runtime) ro.on_runtime(rt);
  side dst = make_side(rt.executor(), side_role::destination, cfg);
  archive_verifier v{cfg, a.dir, m, st ? &*st : nullptr, dst, out, {}, 0};
  rt.spawn(rt.executor(), v.run(), [&](std::exception_ptr e) {
    if (e && !engine::is_cancellation(e)) v.failures.push_back("verify aborted: " + engine::what_of(e));
  });
  rt.run();
  for (const auto& f : v.failures) err << "ferry verify: " << f << '\n';
  const bool interrupted = rt.phase() != engine::shutdown_phase::running;
  out << "verify --archive: " << m.streams.size() << " stream(s), " << v.diffs << " with differences, "
      << v.failures.size() << " failure(s)" << (interrupted ? ", interrupted" : "") << '\n';
  if (interrupted) return 130;
  return v.diffs == 0 && v.failures.empty() ? 0 : 1;
}

}  // namespace ferry::pipelines
