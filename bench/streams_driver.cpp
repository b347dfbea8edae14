// bench_streams: runs Ferry's streams engine (pipelines::streams::stream_launcher, the driver `ferry
// migrate` uses, over real HTTP clients,
// a RocksDB state dir, synced commits) for given source -> destination project pairs, without the
// resources migration or discovery. bench/run uses it for the end-to-end runs when `ferry migrate` is
// not available, and it is the "streams engine alone" figure otherwise. It also captures a source
// BTQL page (--capture-page FILE) so bench_json can measure the bare parse+serialize of the same bytes.
//
//   bench_streams --source-url U --dest-url U --state-dir D --pairs SRC=DST[,SRC=DST...]
//                 [--threads 2] [--max-concurrent-streams 4] [--capture-page FILE] [--no-gzip]
// --no-gzip stops asking the source for gzip (Accept-Encoding): on loopback, inflating BTQL pages is
// about a third of the migrator's CPU (bench/README.md), so bench/run measures both.
// Keys: BT_SOURCE_API_KEY, BT_DEST_API_KEY (environment). Prints one summary line; exit 0 when every
// stream is done, 1 otherwise. Threading: one engine::runtime run by --threads threads.
#include "bench_common.hpp"

#include "engine/clock.hpp"
#include "engine/log.hpp"
#include "engine/runtime.hpp"
#include "pipelines/migrate_config.hpp"
#include "pipelines/streams/btql_query.hpp"
#include "pipelines/streams/checkpoint_store.hpp"
#include "pipelines/streams/entry.hpp"
#include "pipelines/streams/http_stream_io.hpp"
#include "pipelines/streams/launcher.hpp"
#include "stores/state_store.hpp"
#include "transports/braintrust_client.hpp"


#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace fb = ferry::bench;
namespace ps = ferry::pipelines::streams;
namespace tr = ferry::transports;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) throw std::invalid_argument(std::string("set ") + name + " in the environment");
  return v;
}

}  // namespace

int main(int argc, char** argv) try {
  fb::flags f(argc, argv);
  const auto source_url = f.str("source-url"), dest_url = f.str("dest-url"), state_dir = f.str("state-dir");
  const auto pairs = f.str("pairs");
  if (source_url.empty() || dest_url.empty() || state_dir.empty() || pairs.empty())
    throw std::invalid_argument("--source-url, --dest-url, --state-dir and --pairs SRC=DST[,...] are required");
  const auto source_key = env("BT_SOURCE_API_KEY"), dest_key = env("BT_DEST_API_KEY");
  ferry::engine::register_secret(source_key);
  ferry::engine::register_secret(dest_key);
  ferry::engine::log_config lc;
  lc.level = f.str("log-level", "warn");
  ferry::engine::init_logging(lc);

  std::vector<ps::stream_spec> specs;
  for (std::size_t start = 0; start < pairs.size();) {
    auto comma = std::min(pairs.find(',', start), pairs.size());
    auto item = pairs.substr(start, comma - start);
    auto eq = item.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("--pairs item '" + item + "' is not SRC=DST");
    ps::stream_spec s;
    s.kind = ps::stream_kind::project_logs;
    s.source_ids = {item.substr(0, eq)};
    s.dest_ids[s.source_ids[0]] = item.substr(eq + 1);
    s.stream_id = "logs:" + s.source_ids[0];
    specs.push_back(std::move(s));
    start = comma + 1;
  }

  ferry::engine::runtime_config rc;
  rc.threads = static_cast<std::size_t>(std::max(f.num("threads", 2), 1.0));
  rc.handle_signals = false;
  ferry::engine::runtime rt(rc);
  ferry::pipelines::migrate_config cfg;
  cfg.source = {source_url, source_key};
  cfg.dest = {dest_url, dest_key};
  cfg.accept_gzip = f.has("no-gzip") ? tr::gzip_policy::off : tr::gzip_policy::on;
  // The sides as production builds them (side_config_for): request semaphore, timeouts, retries.
  tr::braintrust_client src_client(rt.executor(), ferry::pipelines::side_config_for(cfg, ferry::pipelines::side_role::source));
  tr::braintrust_client dst_client(rt.executor(), ferry::pipelines::side_config_for(cfg, ferry::pipelines::side_role::destination));
  ps::http_event_source source(src_client.api());
  ps::http_event_sink sink(dst_client.api(), "");
  auto state = ferry::stores::state_store::open(state_dir);
  ps::checkpoint_store store(state);

  std::optional<std::uint64_t> payload;
  ps::launcher_config launch_cfg;
  launch_cfg.max_concurrent = static_cast<std::size_t>(f.num("max-concurrent-streams", 4));
  auto budget = ps::make_memory_budget(cfg);
  launch_cfg.options = [&](ps::stream_kind kind) { return ps::options_from_config(cfg, kind, payload, budget); };
  ps::stream_launcher launcher(rt, source, sink, store, ferry::engine::real_clock::instance(), launch_cfg);
  std::exception_ptr failure;
  const std::string capture = f.str("capture-page");
  auto start = [&]() -> asio::awaitable<void> {
    if (!capture.empty()) {
      ps::page_query q;
      q.object_ids = specs.front().source_ids;
      q.limit = static_cast<std::size_t>(cfg.logs_fetch_limit);
      auto r = co_await source.btql(ps::build_btql_body(ps::build_page_query(q)));
      if (r.status != 200) throw std::runtime_error("capturing a source page failed: " + r.error);
      std::ofstream(capture, std::ios::binary) << r.body;
      co_return;
    }
    payload = co_await sink.payload_max_bytes();
    for (const auto& s : specs) launcher.launch(s);
  };
  rt.spawn(start(), [&](std::exception_ptr e) { failure = e; });
  rt.run();
  if (failure) std::rethrow_exception(failure);
  if (!capture.empty()) {
    std::printf("bench_streams: captured a source page into %s\n", capture.c_str());
    return 0;
  }
  std::uint64_t rows = 0, bytes = 0, done = 0;
  std::vector<ps::stream_result> results;
  for (auto& o : launcher.outcomes()) results.push_back(std::move(o.result));
  for (const auto& r : results) {
    rows += r.state.counters.rows;
    bytes += r.state.counters.bytes;
    done += r.done ? 1 : 0;
    if (!r.error.empty()) std::fprintf(stderr, "bench_streams: %s\n", ferry::engine::redact(r.error).c_str());
  }
  std::printf("bench_streams: streams=%zu done=%llu rows=%llu bytes=%llu\n", results.size(),
              static_cast<unsigned long long>(done), static_cast<unsigned long long>(rows),
              static_cast<unsigned long long>(bytes));
  return done == results.size() ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_streams: error: %s\n", ferry::engine::redact(e.what()).c_str());
  return 1;
}
