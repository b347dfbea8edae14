// bench_state_commit: RocksDB state commits as the streams engine does them (stores::state_store):
// begin_batch (journal, not synced) then commit_batch (cursor + counters + digest + journal removal,
// ONE atomic synced write), in a fresh state dir on the disk given by --dir (default /tmp).
//   commits/s     synced commit_batch calls per second with no extra keys (the per-batch floor)
//   keys/s        id-map keys per second when each commit carries --keys entries (keys riding in a commit)
// Output: one line on stdout and --json FILE. Median of --runs runs.
#include "bench_common.hpp"

#include "stores/state_store.hpp"

#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace fb = ferry::bench;
namespace st = ferry::stores;

namespace {

// Seconds per commit over `commits` commits, each carrying `keys` id-map entries.
double run_commits(st::state_store& s, int commits, std::size_t keys, std::uint64_t& next_row) {
  st::stream_state state;
  state.stream_id = "project_logs:bench";
  state.kind = "project_logs";
  state.source_ids = {"src"};
  fb::rng r(next_row + 1);
  const double t0 = fb::wall_s();
  for (int c = 0; c < commits; ++c) {
    st::commit_extras extras;
    extras.id_type = "bench";
    extras.ids.reserve(keys);
    for (std::size_t k = 0; k < keys; ++k) extras.ids.emplace_back(fb::uuid(r), "d");
    const auto seq = ++state.counters.batches;
    const auto first = fb::pagination_key(next_row), last = fb::pagination_key(next_row + 999);
    s.begin_batch(state.stream_id, seq, first, last, 1000);
    next_row += 1000;
    state.cursor = last;
    state.next_seq = seq + 1;
    state.counters.rows += 1000;
    state.counters.bytes += 2'000'000;
    s.commit_batch(state, seq, extras);
  }
  return (fb::wall_s() - t0) / commits;
}

}  // namespace

int main(int argc, char** argv) try {
  fb::flags f(argc, argv);
  const auto runs = static_cast<int>(f.num("runs", 3));
  const auto commits = static_cast<int>(f.num("commits", 300));
  const auto keys = static_cast<std::size_t>(f.num("keys", 1000));
  const std::string base = f.str("dir", "/tmp");
  const auto dir = std::filesystem::path(base) / ("ferry-bench-state-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);

  std::vector<double> commit_s, keyed_s;
  {
    auto s = st::state_store::open(dir.string());
    std::uint64_t row = 0;
    for (int r = 0; r < runs; ++r) {
      commit_s.push_back(run_commits(s, commits, 0, row));
      keyed_s.push_back(run_commits(s, std::max(commits / 3, 10), keys, row));
    }
  }
  std::filesystem::remove_all(dir);
  const double commits_per_s = 1.0 / fb::median(commit_s);
  const double keyed_commits_per_s = 1.0 / fb::median(keyed_s);
  const double keys_per_s = keyed_commits_per_s * static_cast<double>(keys);
  boost::json::object out{{"bench", "state_commit"},
                          {"dir", base},
                          {"runs", runs},
                          {"commits_per_run", commits},
                          {"keys_per_commit", keys},
                          {"synced_commits_per_s", commits_per_s},
                          {"commit_us", 1e6 / commits_per_s},
                          {"keyed_commits_per_s", keyed_commits_per_s},
                          {"keys_per_s", keys_per_s}};
  fb::emit(f, std::move(out),
           "state commit: " + fb::fmt(commits_per_s, 0) + " synced commits/s (" + fb::fmt(1e6 / commits_per_s, 0) +
               " us each); with " + std::to_string(keys) + " keys each: " + fb::fmt(keys_per_s / 1e3, 0) +
               "k keys/s");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_state_commit: error: %s\n", e.what());
  return 1;
}
