// bench_btql_slices: the source emulator's CPU per event when a big object is read as K id-window slices,
// without HTTP: opens a seeded `ferry serve --data DIR` store read-only, and pages every slice with the
// query Ferry sends (`select: *`, `filter: id >= lo and id < hi and _pagination_key > cursor`, `sort:
// _pagination_key asc`, `limit: L`) through events_api::handle_now(), one page of each unfinished slice per
// round (slices in a shuffled order each round, as concurrent slices arrive). Slice boundaries are
// equal-width ranges of the ids' first two hex digits (the seeded ids are uniform hex). K=1 is the single
// cursor (no id filter). Prints rows, pages and the CPU-µs per row spent in handle_now (thread CPU time).
//
//   bench_btql_slices --data DIR [--slices K] [--limit L] [--max-rows N] [--object project_logs:<id>]
//                     [--json FILE] [--plain-scan] [--cuts ID,ID,...] [--keep-mib N]
// --cuts: the slice boundaries (K = cuts + 1) instead of equal widths, e.g. the unequal windows Ferry
// derives from its probes (3,5a,8,b,d on the seeded ids: slices of 3/16, 2.6/16, 2.4/16, 3/16, 2/16, 3/16).
// --keep-mib: events_config::btql_shared_scan_bytes (default: the emulator's, 512).
// --plain-scan adds `_pagination_key < 'q'` (every key starts with 'p'): the same rows through the plain
// key-order scan, which the shared scans do not serve (what every page cost before them).
// The store must not be open elsewhere only when it is written to: the read-only open takes no lock.
#include "bench_common.hpp"
#include "emulator/events.hpp"
#include "emulator/rest.hpp"
#include "stores/kv_store.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json.hpp>

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace em = ferry::emulator;
namespace json = boost::json;

namespace {

std::string hex2(unsigned v) {
  char b[8];
  std::snprintf(b, sizeof b, "%02x", v);
  return b;
}

struct slice {
  std::string lo, hi;  // "" = unbounded
  std::string cursor;
  bool done = false;
};

std::string query(const std::string& type, const std::string& id, const slice& s, unsigned limit, bool plain) {
  std::vector<std::string> conds;
  if (plain) conds.push_back("_pagination_key < 'q'");  // an upper key bound: the plain scan, never shared
  if (!s.lo.empty()) conds.push_back("id >= '" + s.lo + "'");
  if (!s.hi.empty()) conds.push_back("id < '" + s.hi + "'");
  if (!s.cursor.empty()) conds.push_back("_pagination_key > '" + s.cursor + "'");
  std::string q = "select: *\nfrom: " + type + "('" + id + "') spans\n";
  for (std::size_t i = 0; i < conds.size(); ++i) q += (i ? " and " : "filter: ") + conds[i];
  if (!conds.empty()) q += "\n";
  q += "sort: _pagination_key asc\nlimit: " + std::to_string(limit);
  return q;
}

}  // namespace

int main(int argc, char** argv) {
  std::string data, object, json_out, cuts;
  em::events_config cfg;
  unsigned k = 6, limit = 1000;
  std::uint64_t max_rows = 0;
  bool plain = false;
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--plain-scan") {
      plain = true;
      --i;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_btql_slices: %s needs a value\n", a.c_str());
      return 2;
    }
    const std::string v = argv[i + 1];
    if (a == "--data") data = v;
    else if (a == "--slices") k = static_cast<unsigned>(std::stoul(v));
    else if (a == "--limit") limit = static_cast<unsigned>(std::stoul(v));
    else if (a == "--max-rows") max_rows = std::stoull(v);
    else if (a == "--object") object = v;
    else if (a == "--cuts") cuts = v;
    else if (a == "--keep-mib") cfg.btql_shared_scan_bytes = std::stoull(v) << 20;
    else if (a == "--json") json_out = v;
    else {
      std::fprintf(stderr, "bench_btql_slices: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (data.empty() || k == 0 || k > 256) {
    std::fprintf(stderr, "usage: bench_btql_slices --data DIR [--slices K<=256] [--limit L] [--max-rows N]\n");
    return 2;
  }
  auto cfs = em::rest_store::column_families();
  for (auto& cf : em::events_api::column_families()) cfs.push_back(cf);
  ferry::stores::kv_options opts;
  opts.dir_label = "data dir";
  opts.read_only = true;
  em::events_api::tune_store(opts);
  auto store = ferry::stores::kv_store::open_rocksdb(data, cfs, opts);
  if (object.empty()) {  // the first object holding events
    store->scan("events", "", "", [&](std::string_view key, std::string_view) {
      object = std::string(key.substr(0, key.find('\0')));
      return false;
    });
  }
  const auto colon = object.find(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "bench_btql_slices: no events in %s\n", data.c_str());
    return 1;
  }
  const std::string type = object.substr(0, colon), id = object.substr(colon + 1);
  em::events_api api(*store, {}, cfg);
  em::request_context ctx;
  ctx.org_id = "bench";

  std::vector<std::string> bounds;
  if (!cuts.empty()) {
    for (std::size_t at = 0; at <= cuts.size();) {
      const auto comma = std::min(cuts.find(',', at), cuts.size());
      bounds.push_back(cuts.substr(at, comma - at));
      at = comma + 1;
    }
    k = static_cast<unsigned>(bounds.size() + 1);
  } else {
    for (unsigned i = 1; i < k; ++i) bounds.push_back(hex2(i * 256 / k));
  }
  std::vector<slice> slices(k);
  for (unsigned i = 1; i < k; ++i) slices[i - 1].hi = slices[i].lo = bounds[i - 1];
  std::mt19937 rng(1);
  std::vector<std::size_t> order(k);
  std::uint64_t rows = 0, pages = 0;
  double cpu = 0;
  for (bool any = true; any && (max_rows == 0 || rows < max_rows);) {
    any = false;
    for (std::size_t i = 0; i < k; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    for (auto i : order) {
      slice& s = slices[i];
      if (s.done) continue;
      any = true;
      json::object body{{"query", query(type, id, s, limit, plain)}, {"fmt", "json"}};
      ferry::transports::http_request req{boost::beast::http::verb::post, "/btql", 11};
      req.set(boost::beast::http::field::content_type, "application/json");
      req.body() = json::serialize(body);
      req.prepare_payload();
      const double t0 = ferry::bench::thread_cpu_s();
      auto reply = api.handle_now(req, ctx);
      cpu += ferry::bench::thread_cpu_s() - t0;
      if (!reply || reply->response.result_int() != 200) {
        std::fprintf(stderr, "bench_btql_slices: /btql failed: %s\n", reply ? reply->response.body().c_str() : "no reply");
        return 1;
      }
      ++pages;
      const auto page = json::parse(reply->response.body()).as_object();
      const auto& d = page.at("data").as_array();
      rows += d.size();
      if (d.empty() || page.at("cursor").is_null()) s.done = true;
      if (!d.empty()) s.cursor = std::string(d.back().as_object().at("_pagination_key").as_string());
    }
  }
  std::printf("bench_btql_slices: object=%s %s slices=%u limit=%u rows=%llu pages=%llu cpu=%.2fs cpu-us/row=%.2f\n",
              object.c_str(), plain ? "plain-scan" : "shared", k, limit, static_cast<unsigned long long>(rows), static_cast<unsigned long long>(pages),
              cpu, rows ? cpu * 1e6 / static_cast<double>(rows) : 0.0);
  if (!json_out.empty()) {
    std::ofstream f(json_out);
    f << json::serialize(json::object{{"slices", k}, {"plain_scan", plain}, {"limit", limit}, {"rows", rows}, {"pages", pages}, {"cpu_s", cpu},
                                      {"cpu_us_per_row", rows ? cpu * 1e6 / static_cast<double>(rows) : 0.0}});
  }
  return 0;
}
