// bench_rewriter: the streams row rewriter (pipelines/streams/row_rewriter.hpp) on realistic BTQL
// pages: ns per row and MB/s of input, single thread. This is the per-row CPU the migrator spends
// between reading a page and batching it (field filtering, origin, id remap, row hash).
// Output: one line on stdout and --json FILE. Median of --runs runs of about --seconds each.
#include "bench_common.hpp"

#include "pipelines/streams/row_rewriter.hpp"

#include <cstdio>
#include <exception>
#include <string>

namespace fb = ferry::bench;
namespace ps = ferry::pipelines::streams;

int main(int argc, char** argv) try {
  fb::flags f(argc, argv);
  const auto runs = static_cast<int>(f.num("runs", 5));
  const double seconds = f.num("seconds", 0.5);
  const auto rows = static_cast<std::size_t>(f.num("rows", 1000));
  const std::string pid = "c0ffee00-0000-4000-8000-000000000001";
  const std::string page = fb::make_page(rows, 1, 7, pid);

  ps::rewrite_config cfg;
  cfg.kind = ps::stream_kind::project_logs;
  cfg.stream_name = "logs project=" + pid;
  cfg.source_object_id = pid;
  cfg.dest_ids[pid] = "dddddddd-0000-4000-8000-000000000002";
  ps::row_rewriter rw(cfg);

  std::vector<double> ns_per_row;
  std::size_t out_bytes = 0;
  for (int r = 0; r < runs; ++r) {
    double busy = 0;
    std::uint64_t done_rows = 0;
    const double t0 = fb::wall_s();
    while (fb::wall_s() - t0 < seconds) {
      std::string body = page;  // rewrite may pad the body: a fresh copy each time, outside the timer
      body.reserve(body.size() + 64);
      const double a = fb::wall_s();
      auto out = rw.rewrite(body, "");
      busy += fb::wall_s() - a;
      done_rows += out.rows.size();
      out_bytes = 0;
      for (const auto& row : out.rows) out_bytes += row.json.size();
      fb::keep(out.rows.size());
    }
    ns_per_row.push_back(busy * 1e9 / static_cast<double>(done_rows));
  }
  const double ns = fb::median(ns_per_row);
  const double in_mbs = static_cast<double>(page.size()) / static_cast<double>(rows) / ns * 1e3;
  boost::json::object out{{"bench", "row_rewriter"},
                          {"rows_per_page", rows},
                          {"input_bytes_per_row", static_cast<double>(page.size()) / static_cast<double>(rows)},
                          {"output_bytes_per_row", static_cast<double>(out_bytes) / static_cast<double>(rows)},
                          {"runs", runs},
                          {"ns_per_row", ns},
                          {"input_mb_s", in_mbs}};
  fb::emit(f, std::move(out),
           "rewriter: " + fb::fmt(ns, 0) + " ns/row (" + fb::fmt(in_mbs, 0) + " MB/s of input, " +
               fb::fmt(static_cast<double>(page.size()) / static_cast<double>(rows), 0) + " B/row)");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_rewriter: error: %s\n", e.what());
  return 1;
}
