// Sliced streams, the pure parts: the slice filters and probe text, the cut points, the pacer.
#include "pipelines/streams/slices.hpp"
#include "pipelines/streams/slice_split.hpp"

#include "engine/clock.hpp"
#include "test_support.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cstdio>
#include <random>
#include <regex>

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
        "filter: created >= '2026-01-01T00:00:00Z' and id >= '4' and id < '8\\'x' and _pagination_key > 'p0001'");
  q.after_key.reset();  // (plan_slices: the whole window)
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
  slice_pacer p(6);
  CHECK(p.k() == 2);
  CHECK(p.on_tick(100, false, 150) == 4);  // slow start: doubles while throughput grows
  CHECK(p.on_tick(101, false, 150) == 4);  // no gain: K holds, and grows one at a time from now on
  CHECK(p.on_tick(200, false, 150) == 5);
  CHECK(p.on_tick(400, true, 150) == 2);   // 429/503: halved
  CHECK(p.on_tick(500, false, 400) == 1);  // pages take more than twice the best: one fewer
  CHECK(p.on_tick(600, false, 150) == 2);
  for (int i = 0; i < 20; ++i) p.on_tick(1000.0 * (i + 2), false, 150);
  CHECK(p.k() == 6);  // the cap
  slice_pacer one(1);
  CHECK(one.k() == 1);
}

TEST_CASE("slices: K is not capped by the layout's slice count, and does not grow while the memory budget binds") {
  // The layout may hold 3 slices at first: K still reaches the cap, so the idle slots are there for
  // a split to fill (the pacer used to take min(cap, the initial count) and the split never came).
  slice_pacer p(8);
  for (int i = 0; i < 10; ++i) p.on_tick(100.0 * (i + 1), false, 150);
  CHECK(p.k() == 8);
  // Memory: the rate grows but a reader waited for the budget: K holds (and leaves slow start).
  slice_pacer m(8);
  CHECK(m.on_tick(100, false, 150, true) == 2);
  CHECK(m.on_tick(200, false, 150, true) == 2);
  CHECK(m.on_tick(300, false, 150) == 3);  // room again: one at a time
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

// ---- splitting a running slice (slice_split.hpp) ------------------------------------------------

namespace {

slice_window win(std::string from, std::string to, std::uint64_t rows = 0) {
  slice_window w;
  w.id_from = std::move(from);
  w.id_to = std::move(to);
  w.rows = rows;
  return w;
}

}  // namespace

TEST_CASE("slice split: the probe of a running slice counts only the rows after its committed cursor") {
  page_query q;
  q.object_ids = {"p1"};
  q.id_from = "m";
  q.after_key = "p0042";
  CHECK(build_slice_probe_query(q) ==
        "measures: count(1) as n, min(id) as id_min, max(id) as id_max\nfrom: project_logs('p1') spans\n"
        "filter: id >= 'm' and _pagination_key > 'p0042'");
  q.inclusive = true;  // a created-after preflight start key
  CHECK(build_slice_probe_query(q).find("_pagination_key >= 'p0042'") != std::string::npos);
}

TEST_CASE("slice split: a slice is split only into idle slots, within the layout's cap, in parts worth a restart") {
  slice_config c;
  c.max_slices = 8;
  c.min_slice_rows = 100;  // a part: at least split_part_pages x 100 = 400 rows
  REQUIRE(split_part_pages == 4);
  CHECK(split_parts(10'000, 0, 4, c) == 0);  // no idle slot: nothing would run the new part
  CHECK(split_parts(10'000, 1, 4, c) == 2);  // one idle slot: the slice and one more
  CHECK(split_parts(10'000, 3, 4, c) == 4);
  // The layout may pass max_slices (finished slices stay in it; K bounds what runs)...
  CHECK(split_parts(10'000, 3, 8, c) == 4);
  CHECK(split_parts(10'000, 3, 30, c) == 4);
  // ...up to max_layout_slices.
  CHECK(split_parts(10'000, 3, max_layout_slices - 2, c) == 3);
  CHECK(split_parts(10'000, 3, max_layout_slices, c) == 0);
  CHECK(split_parts(799, 3, 4, c) == 0);     // not two parts of 400
  CHECK(split_parts(800, 3, 4, c) == 2);
  CHECK(split_parts(1'300, 3, 4, c) == 3);
  c.max_slices = 1;  // slicing off
  CHECK(split_parts(10'000, 3, 1, c) == 0);
}

TEST_CASE("slice split: the layout change keeps the slice's start, appends the new windows continuing from its cursor") {
  ferry::stores::stream_state s;
  s.stream_id = "logs:p";
  s.slices.resize(3);
  s.slices[0].id_to = "g";
  s.slices[1].id_from = "g";
  s.slices[1].id_to = "t";
  s.slices[2].id_from = "t";
  s.slices[2].done = true;
  auto& mid = s.slices[1];
  mid.cursor = "p0900";
  mid.cursor_inclusive = true;
  mid.preflight_done = true;
  mid.next_seq = 37;
  mid.counters.rows = 900;
  mid.digest.w[0] = 42;
  auto before = s;

  // Windows that do not tile [g, t) exactly change nothing.
  CHECK_FALSE(apply_split(s, 1, {win("g", "m")}));                      // one part
  CHECK_FALSE(apply_split(s, 1, {win("g", "m"), win("n", "t")}));       // a gap
  CHECK_FALSE(apply_split(s, 1, {win("g", "m"), win("m", "")}));        // beyond the window
  CHECK_FALSE(apply_split(s, 1, {win("a", "m"), win("m", "t")}));       // before it
  CHECK_FALSE(apply_split(s, 1, {win("g", "m"), win("m", "k"), win("k", "t")}));  // out of order
  CHECK_FALSE(apply_split(s, 3, {win("g", "m"), win("m", "t")}));       // no such slice
  CHECK(s == before);

  REQUIRE(apply_split(s, 1, {win("g", "k"), win("k", "p"), win("p", "t")}));
  REQUIRE(s.slices.size() == 5);
  // Slice 1 keeps its cursor, counters and digest (its rows before the cursor were written by it).
  CHECK(s.slices[1].id_from == "g");
  CHECK(s.slices[1].id_to == "k");
  CHECK(s.slices[1].cursor == "p0900");
  CHECK(s.slices[1].next_seq == 37);
  CHECK(s.slices[1].counters.rows == 900);
  // The new slices start at the same committed cursor, with nothing counted yet.
  for (std::size_t i : {3u, 4u}) {
    CHECK(s.slices[i].cursor == "p0900");
    CHECK(s.slices[i].cursor_inclusive);
    CHECK(s.slices[i].preflight_done);
    CHECK_FALSE(s.slices[i].done);
    CHECK(s.slices[i].next_seq == 1);
    CHECK(s.slices[i].counters.rows == 0);
    CHECK(s.slices[i].digest.empty());
  }
  CHECK(s.slices[3].id_from == "k");
  CHECK(s.slices[3].id_to == "p");
  CHECK(s.slices[4].id_from == "p");
  CHECK(s.slices[4].id_to == "t");
  // The windows still partition the id space: sorted by start, each ends where the next begins.
  std::vector<std::pair<std::string, std::string>> sorted;
  for (const auto& x : s.slices) sorted.emplace_back(x.id_from, x.id_to);
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted.front().first.empty());
  CHECK(sorted.back().second.empty());
  for (std::size_t i = 0; i + 1 < sorted.size(); ++i) CHECK(sorted[i].second == sorted[i + 1].first);
  CHECK_FALSE(s.done);
  // The open last slice splits too.
  REQUIRE(apply_split(s, 2, {win("t", "w"), win("w", "")}));
  CHECK(s.slices.back().id_from == "w");
  CHECK(s.slices.back().id_to.empty());
  CHECK(s.slices.back().done);  // a window that reached its end once catches up, as its slice
}

TEST_CASE("slice split: balanced grouping cuts at the boundary nearest each share, never leaves a part under min_rows") {
  // Interpolated cuts that missed: most parts empty, the rows at both ends.
  std::vector<slice_window> w{win("m", "n", 700), win("n", "o", 0), win("o", "p", 0), win("p", "q", 0), win("q", "r", 1000)};
  auto g = balance_windows(w, 2, 20);
  REQUIRE(g.size() == 2);  // ("at least the target" grouping would take all five into one)
  CHECK(g[0].id_from == "m");
  CHECK(g[0].id_to == "n");
  CHECK(g[0].rows == 700);
  CHECK(g[1].id_from == "n");
  CHECK(g[1].id_to == "r");
  CHECK(g[1].rows == 1000);
  auto three = balance_windows({win("", "b", 100), win("b", "c", 100), win("c", "d", 100), win("d", "", 100)}, 3, 1);
  REQUIRE(three.size() == 3);
  CHECK(three.front().id_from.empty());
  CHECK(three.back().id_to.empty());
  CHECK(three[0].id_to == three[1].id_from);
  CHECK(three[1].id_to == three[2].id_from);
  auto small = balance_windows({win("a", "b", 5), win("b", "c", 500)}, 2, 20);  // 5 < min_rows: joined
  REQUIRE(small.size() == 1);
  CHECK(small[0].rows == 505);
  CHECK(small[0].id_to == "c");
}

namespace {

/// A source that answers slice probes (count, min and max of id) over rows (id, _pagination_key),
/// reading the window and keyset position from the query text.
struct probe_source : event_source {
  std::vector<std::pair<std::string, std::string>> rows;  // id, key
  int probes = 0;

  boost::asio::awaitable<call_result> btql(std::string body) override {
    ++probes;
    const std::string q(boost::json::parse(body).as_object().at("query").as_string());
    auto cond = [&](const std::string& op) -> std::optional<std::string> {
      std::smatch m;
      if (std::regex_search(q, m, std::regex(op + " '([^']*)'"))) return m[1].str();
      return std::nullopt;
    };
    const auto from = cond("id >="), to = cond("id <"), after = cond("_pagination_key >");
    std::uint64_t n = 0;
    std::string lo, hi;
    for (const auto& [id, key] : rows) {
      if ((from && id < *from) || (to && id >= *to) || (after && key <= *after)) continue;
      if (n == 0 || id < lo) lo = id;
      if (n == 0 || id > hi) hi = id;
      ++n;
    }
    call_result r;
    r.status = 200;
    r.body = boost::json::serialize(boost::json::object{
        {"data", boost::json::array{boost::json::object{{"n", n}, {"id_min", lo}, {"id_max", hi}}}}});
    co_return r;
  }
};

}  // namespace

TEST_CASE("slice split: the cuts tile the slice's window and count exactly its rows after the cursor") {
  probe_source src;
  std::mt19937 rng(7);
  std::vector<int> order(3000);
  for (int i = 0; i < 3000; ++i) order[static_cast<std::size_t>(i)] = i;
  std::shuffle(order.begin(), order.end(), rng);  // keys in another order than ids: updates came later
  char id[16], key[16];
  for (int i = 0; i < 3000; ++i) {
    std::snprintf(id, sizeof id, "row-%05d", i);
    std::snprintf(key, sizeof key, "k%05d", order[static_cast<std::size_t>(i)]);
    src.rows.emplace_back(id, key);
  }
  page_query q;
  q.object_ids = {"p1"};
  q.id_from = "row-00500";  // the slice's window: [row-00500, open)
  q.after_key = "k01000";   // its committed cursor
  std::uint64_t left = 0;
  for (const auto& [i, k] : src.rows)
    if (i >= "row-00500" && k > "k01000") ++left;
  boost::asio::io_context ctx;
  auto& clk = ferry::engine::real_clock::instance();
  auto one = ferry::test::run_coro(ctx, plan_split(src, q, 1, 100, {}, clk));
  REQUIRE(one.size() == 1);
  CHECK(one[0].rows == left);
  CHECK(src.probes == 1);  // the rows left: one probe
  auto parts = ferry::test::run_coro(ctx, plan_split(src, q, 3, 100, {}, clk));
  REQUIRE(parts.size() == 3);
  CHECK(parts.front().id_from == "row-00500");
  CHECK(parts.back().id_to.empty());
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i) CHECK(parts[i - 1].id_to == parts[i].id_from);
    CHECK(parts[i].rows >= 100);
    CHECK(parts[i].rows <= left * 2 / 3);  // about a third each, never most of them
    sum += parts[i].rows;
  }
  CHECK(sum == left);
  // Too few rows for two parts of min_slice_rows: one window.
  CHECK(ferry::test::run_coro(ctx, plan_split(src, q, 3, left, {}, clk)).size() == 1);
}

TEST_CASE("slices: the layout has as many slices as asked, about equal, when the rows allow") {
  // 8 asked of 10,000 uniform ids: the layout used to group the probed thirds into slices of "at least
  // the target", which gave 6-7 slices for 8 (and K, capped by the layout, stayed there).
  probe_source src;
  char id[16];
  for (int i = 0; i < 10'000; ++i) {
    std::snprintf(id, sizeof id, "r%05d", i * 7 % 10'000);
    src.rows.emplace_back(id, id);
  }
  std::sort(src.rows.begin(), src.rows.end());
  boost::asio::io_context ctx;
  auto& clk = ferry::engine::real_clock::instance();
  page_query q;
  q.object_ids = {"p1"};
  for (std::size_t asked : {2u, 3u, 7u, 8u, 12u}) {
    CAPTURE(asked);
    slice_config c;
    c.max_slices = asked;
    c.min_slice_rows = 100;
    const auto layout = ferry::test::run_coro(ctx, plan_slices(src, q, c, {}, clk));
    REQUIRE(layout.size() == asked);
    CHECK(layout.front().id_from.empty());
    CHECK(layout.back().id_to.empty());
    for (std::size_t i = 0; i + 1 < layout.size(); ++i) {
      CHECK(layout[i].id_to == layout[i + 1].id_from);
      std::uint64_t n = 0;
      for (const auto& [row, key] : src.rows)
        if (row >= layout[i].id_from && row < layout[i].id_to) ++n;
      CHECK(n * asked >= 10'000 * 2 / 3);  // none under 2/3 of an equal share
      CHECK(n * asked <= 10'000 * 3 / 2);
    }
  }
  // Fewer rows than min_slice_rows a slice allows: fewer slices, never one under it.
  slice_config few;
  few.max_slices = 8;
  few.min_slice_rows = 3'000;
  CHECK(ferry::test::run_coro(ctx, plan_slices(src, q, few, {}, clk)).size() == 3);
}
