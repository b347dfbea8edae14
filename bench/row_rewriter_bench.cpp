// bench_rewriter: the streams row rewriter (pipelines/streams/row_rewriter.hpp) on realistic BTQL
// pages, single thread: parse + rewrite (row_rewriter::rewrite: field location, splices, origin, id
// remap, row hash) and serialize (logs3_body: the /logs3 request bodies of those rows, 1000 rows per
// body), in ns per row, and the sum normalised to CPU-µs per 2 KB of input (issue 16's unit).
// Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not wall time: the box is shared and a
// descheduled thread must not count. Output: one line on stdout and --json FILE. Median of --runs runs
// of about --seconds each.
//   --rows N (rows per page, 1000)  --payload B (text bytes per row, 1800: ~2.3 KB rows; 1400: ~1.9 KB)
#include "bench_common.hpp"

#include "pipelines/streams/batcher.hpp"
#include "pipelines/streams/row_rewriter.hpp"

#include <malloc.h>
#include <time.h>

#include <cstdio>
#include <exception>
#include <string>

namespace fb = ferry::bench;
namespace ps = ferry::pipelines::streams;

namespace {
double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}
}  // namespace

int main(int argc, char** argv) try {
#if defined(__GLIBC__)
  // The allocator settings of `ferry` (apps/ferry/main.cpp): without them every page's rows and body
  // come from freshly faulted memory that is trimmed again, and page faults dominate the figure.
  mallopt(M_MMAP_THRESHOLD, 2 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
#endif
  fb::flags f(argc, argv);
  const auto runs = static_cast<int>(f.num("runs", 5));
  const double seconds = f.num("seconds", 0.5);
  const auto rows = static_cast<std::size_t>(f.num("rows", 1000));
  const auto payload = static_cast<std::size_t>(f.num("payload", 1800));
  const std::string pid = "c0ffee00-0000-4000-8000-000000000001";
  const std::string page = fb::make_page(rows, 1, 7, pid, payload);
  const double in_per_row = static_cast<double>(page.size()) / static_cast<double>(rows);

  ps::rewrite_config cfg;
  cfg.kind = ps::stream_kind::project_logs;
  cfg.stream_name = "logs project=" + pid;
  cfg.source_object_id = pid;
  cfg.dest_ids[pid] = "dddddddd-0000-4000-8000-000000000002";
  ps::row_rewriter rw(cfg);

  std::vector<double> rewrite_ns, body_ns;
  std::size_t out_bytes = 0;
  for (int r = 0; r < runs; ++r) {
    double busy_rw = 0, busy_body = 0;
    std::uint64_t done_rows = 0;
    const double t0 = fb::wall_s();
    while (fb::wall_s() - t0 < seconds) {
      std::string body = page;  // rewrite may pad the body: a fresh copy each time, outside the timer
      body.reserve(body.size() + 64);
      const double a = thread_cpu_s();
      auto out = rw.rewrite(body, "");
      const double b = thread_cpu_s();
      auto req = ps::logs3_body(out.rows);
      busy_body += thread_cpu_s() - b;
      busy_rw += b - a;
      done_rows += out.rows.size();
      out_bytes = 0;
      for (const auto& row : out.rows) out_bytes += row.json.size();
      fb::keep(req.size());
    }
    rewrite_ns.push_back(busy_rw * 1e9 / static_cast<double>(done_rows));
    body_ns.push_back(busy_body * 1e9 / static_cast<double>(done_rows));
  }
  const double ns = fb::median(rewrite_ns);
  const double body = fb::median(body_ns);
  const double in_mbs = in_per_row / ns * 1e3;
  const double us_per_2kb = (ns + body) / 1e3 * 2048.0 / in_per_row;
  boost::json::object out{{"bench", "row_rewriter"},
                          {"rows_per_page", rows},
                          {"input_bytes_per_row", in_per_row},
                          {"output_bytes_per_row", static_cast<double>(out_bytes) / static_cast<double>(rows)},
                          {"runs", runs},
                          {"ns_per_row", ns},
                          {"body_ns_per_row", body},
                          {"total_us_per_2kb", us_per_2kb},
                          {"input_mb_s", in_mbs}};
  fb::emit(f, std::move(out),
           "rewriter: " + fb::fmt(ns, 0) + " ns/row rewrite + " + fb::fmt(body, 0) + " ns/row /logs3 body (" +
               fb::fmt(in_mbs, 0) + " MB/s of input, " + fb::fmt(in_per_row, 0) + " B/row; " +
               fb::fmt(us_per_2kb, 2) + " CPU-us per 2 KB parse+rewrite+serialize)");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_rewriter: error: %s\n", e.what());
  return 1;
}
