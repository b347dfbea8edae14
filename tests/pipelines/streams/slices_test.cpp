// Sliced streams, the pure parts: the slice filters and probe text, the cut points, the pacer.
#include "pipelines/streams/slices.hpp"

#include <doctest/doctest.h>

using namespace ferry::pipelines::streams;

TEST_CASE("slices: a slice's id window joins the filter before the keyset position, the probe counts the window") {
  page_query q;
  q.object_ids = {"p1"};
  q.created_after = "2026-01-01T00:00:00Z";
  q.id_from = "4";
  q.id_to = "8'x";
  q.after_key = "p0001";
  q.limit = 100;
  CHECK(build_page_query(q) ==
        "select: *\nfrom: project_logs('p1') spans\n"
        "filter: created >= '2026-01-01T00:00:00Z' and id >= '4' and id < '8\\'x' and _pagination_key > 'p0001'\n"
        "sort: _pagination_key asc\nlimit: 100");
  CHECK(build_slice_probe_query(q) ==
        "measures: count(1) as n, min(id) as id_min, max(id) as id_max\nfrom: project_logs('p1') spans\n"
        "filter: created >= '2026-01-01T00:00:00Z' and id >= '4' and id < '8\\'x'");
  q.created_after.reset();
  q.id_from.reset();
  q.id_to.reset();
  CHECK(build_slice_probe_query(q) == "measures: count(1) as n, min(id) as id_min, max(id) as id_max\nfrom: project_logs('p1') spans");
}

TEST_CASE("slices: cut points lie strictly above the smallest id, at most the largest, increasing") {
  auto check = [](const std::string& lo, const std::string& hi, std::size_t parts) {
    auto cuts = interpolate_ids(lo, hi, parts);
    for (std::size_t i = 0; i < cuts.size(); ++i) {
      CHECK(lo < cuts[i]);
      CHECK(cuts[i] <= hi);
      if (i) CHECK(cuts[i - 1] < cuts[i]);
    }
    return cuts;
  };
  CHECK(check("00000000-aaaa", "ffffffff-0000", 4).size() == 3);
  CHECK(check("row-000001", "row-030000", 8).size() == 7);
  auto c = check("row-000001", "row-030000", 2);
  REQUIRE(c.size() == 1);
  CHECK(c[0].rfind("row-01", 0) == 0);  // the middle of 000001..030000
  CHECK(check("a", "a", 4).empty());
  CHECK(check("b", "a", 4).empty());
  CHECK(check("a", "a ", 4).empty());  // nothing fits between them
  CHECK(check("x\x01", "x\x7f\xff", 3).size() <= 2);
  CHECK(check("", "z", 5).size() == 4);
}

TEST_CASE("slices: the pacer grows K while throughput grows, halves on throttling, steps down on latency") {
  slice_pacer p(6, 10);
  CHECK(p.k() == 2);
  CHECK(p.on_tick(100, false, 150) == 4);  // slow start: doubles while throughput grows
  CHECK(p.on_tick(101, false, 150) == 4);  // no gain: K holds, and grows one at a time from now on
  CHECK(p.on_tick(200, false, 150) == 5);
  CHECK(p.on_tick(400, true, 150) == 2);   // 429/503: halved
  CHECK(p.on_tick(500, false, 400) == 1);  // pages take more than twice the best: one fewer
  CHECK(p.on_tick(600, false, 150) == 2);
  for (int i = 0; i < 20; ++i) p.on_tick(1000.0 * (i + 2), false, 150);
  CHECK(p.k() == 6);  // the cap
  slice_pacer small(8, 3);  // never above the slice count
  for (int i = 0; i < 10; ++i) small.on_tick(100.0 * (i + 1), false, 0);
  CHECK(small.k() == 3);
  slice_pacer one(1, 5);
  CHECK(one.k() == 1);
}

TEST_CASE("slices: a source is sliced for only when its one-row page took at least min_source_latency") {
  using namespace std::chrono_literals;
  slice_config c;
  CHECK(slow_enough_to_slice(0us, c));  // 0 = always probe
  c.min_source_latency = 20ms;
  CHECK_FALSE(slow_enough_to_slice(2500us, c));  // a local emulator
  CHECK_FALSE(slow_enough_to_slice(19999us, c));
  CHECK(slow_enough_to_slice(20ms, c));
  CHECK(slow_enough_to_slice(150ms, c));  // a remote API
}
