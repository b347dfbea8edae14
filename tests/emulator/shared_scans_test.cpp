// The shared scans (events.cpp): forward pages of id-window slices (Ferry's sliced streams) are served
// partly from rows kept by other windows' scans. These tests compare every page with a model computed
// from the whole object read in one go (no row filter: never shared), under interleaved readers, random
// windows, limits and cursors, re-read pages, writes (new rows, new versions, deletes) between pages, and
// budgets that make windows fill up and fall behind.
#include "emulator/events.hpp"

#include "events_test_util.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <optional>
#include <random>
#include <string>
#include <vector>

using ferry::test::events_fixture;
namespace json = boost::json;

namespace {

struct model_row {
  std::string pk, id, created;
  json::object row;
};

// Every current row of p1 in key order, read without row filters (the plain scan).
std::vector<model_row> all_rows(events_fixture& f) {
  auto r = f.btql("select: *\nfrom: project_logs('p1') spans\nsort: _pagination_key asc\nlimit: 100000");
  std::vector<model_row> out;
  for (const auto& v : r.at("data").as_array()) {
    const auto& o = v.as_object();
    out.push_back({std::string(o.at("_pagination_key").as_string()), std::string(o.at("id").as_string()),
                   std::string(o.at("created").as_string()), o});
  }
  return out;
}

struct reader {
  std::string lo, hi;        // id window ("" = unbounded)
  std::string created_from;  // "" = none: a `created >=` condition too
  std::string cursor;        // last key read ("" = from the start)
  bool inclusive = false;    // `_pagination_key >= cursor` (a resumed slice's first page)
};

std::string page_query(const reader& r, unsigned limit) {
  std::vector<std::string> conds;
  if (!r.lo.empty()) conds.push_back("id >= '" + r.lo + "'");
  if (!r.hi.empty()) conds.push_back("id < '" + r.hi + "'");
  if (!r.created_from.empty()) conds.push_back("created >= '" + r.created_from + "'");
  if (!r.cursor.empty()) conds.push_back(std::string("_pagination_key ") + (r.inclusive ? ">= '" : "> '") + r.cursor + "'");
  std::string q = "select: *\nfrom: project_logs('p1') spans\n";
  for (std::size_t i = 0; i < conds.size(); ++i) q += (i ? " and " : "filter: ") + conds[i];
  if (!conds.empty()) q += "\n";
  return q + "sort: _pagination_key asc\nlimit: " + std::to_string(limit);
}

// The page the model says: rows of the window after the cursor, the first `limit`, and whether more exist.
std::pair<std::vector<const model_row*>, bool> expected_page(const std::vector<model_row>& rows, const reader& r,
                                                              unsigned limit) {
  std::vector<const model_row*> out;
  for (const auto& m : rows) {
    if (!r.lo.empty() && m.id < r.lo) continue;
    if (!r.hi.empty() && m.id >= r.hi) continue;
    if (!r.created_from.empty() && m.created < r.created_from) continue;
    if (!r.cursor.empty() && (r.inclusive ? m.pk < r.cursor : m.pk <= r.cursor)) continue;
    if (out.size() == limit) return {out, true};
    out.push_back(&m);
  }
  return {out, false};
}

std::string random_id(std::mt19937& rng) {
  static const char* alphabet = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 3; ++i) id.push_back(alphabet[rng() % 16]);
  return id;
}

// Writes a batch: new rows, new versions of existing ids, deletes.
void random_writes(events_fixture& f, std::mt19937& rng, std::vector<std::string>& ids, int n) {
  json::array rows;
  for (int i = 0; i < n; ++i) {
    const unsigned kind = rng() % 10;
    if (kind < 2 && !ids.empty()) {
      const std::string id = ids[rng() % ids.size()];
      rows.push_back(json::object{{"id", id}, {"project_id", "p1"}, {"log_id", "g"}, {"_object_delete", true}});
      continue;
    }
    const std::string id = (kind < 5 && !ids.empty()) ? ids[rng() % ids.size()] : random_id(rng);
    ids.push_back(id);
    const std::string created = "2024-01-0" + std::to_string(1 + rng() % 9) + "T00:00:00Z";
    rows.push_back(json::object{{"id", id}, {"project_id", "p1"}, {"log_id", "g"}, {"created", created},
                                {"input", json::object{{"n", static_cast<std::uint64_t>(rng() % 1000)}}}});
  }
  f.logs3(rows);
}

void check_page(events_fixture& f, const std::vector<model_row>& model, reader& r, unsigned limit) {
  const auto [want, more] = expected_page(model, r, limit);
  const auto reply = f.btql(page_query(r, limit));
  const auto& got = reply.at("data").as_array();
  INFO("window [" << r.lo << ", " << r.hi << ") created>=" << r.created_from << " after " << r.cursor
                  << (r.inclusive ? " (inclusive)" : "") << " limit " << limit);
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) CHECK(got[i].as_object() == want[i]->row);
  CHECK(reply.at("cursor").is_null() == !more);
  if (!want.empty()) {
    r.cursor = want.back()->pk;
    r.inclusive = false;
  }
}

}  // namespace

TEST_CASE("shared scans: interleaved id-window pages equal the model, through writes, re-reads and jumps") {
  // Budgets: ample; a few rows (windows fill up, fall behind and catch up); none (nothing is ever kept).
  for (std::size_t budget : {std::size_t{128} << 20, std::size_t{1500}, std::size_t{300}, std::size_t{0}})
  for (unsigned seed = 1; seed <= 12; ++seed) {
    CAPTURE(budget);
    CAPTURE(seed);
    auto cfg = events_fixture::default_config();
    cfg.btql_shared_scan_bytes = budget;
    events_fixture f(cfg);
    std::mt19937 rng(seed);
    std::vector<std::string> ids;
    for (int b = 0; b < 6; ++b) random_writes(f, rng, ids, 40);
    auto model = all_rows(f);

    // K windows over the id space (some slices also filter on created), plus an overlapping one.
    const unsigned k = 2 + rng() % 6;
    std::vector<std::string> cuts;
    for (unsigned i = 1; i < k; ++i) cuts.push_back(random_id(rng));
    std::sort(cuts.begin(), cuts.end());
    std::vector<reader> readers(k);
    for (unsigned i = 0; i < k; ++i) {
      if (i > 0) readers[i].lo = cuts[i - 1];
      if (i + 1 < k) readers[i].hi = cuts[i];
      if (rng() % 4 == 0) readers[i].created_from = "2024-01-04T00:00:00Z";
    }
    readers.push_back(reader{"4", "c", "", "", false});

    for (int step = 0; step < 400; ++step) {
      reader& r = readers[rng() % readers.size()];
      const unsigned roll = rng() % 100;
      if (roll < 4) {  // writes between pages
        random_writes(f, rng, ids, 1 + static_cast<int>(rng() % 5));
        model = all_rows(f);
        continue;
      }
      if (roll < 8 && !model.empty()) {  // a jump: any key, back or forward, inclusive or not
        r.cursor = model[rng() % model.size()].pk;
        r.inclusive = rng() % 2 == 0;
      } else if (roll < 10) {  // starts over
        r.cursor.clear();
      }
      const unsigned limit = 1 + rng() % 9;
      if (roll >= 10 && roll < 14) {  // the same page twice (a retried request)
        reader again = r;
        check_page(f, model, again, limit);
      }
      check_page(f, model, r, limit);
    }
  }
}

TEST_CASE("shared scans: a row kept for another window is not served after a write changed it") {
  events_fixture f;
  json::array rows;
  for (int i = 0; i < 20; ++i) {
    const std::string id = std::string(1, static_cast<char>('a' + i % 2)) + std::to_string(10 + i);
    rows.push_back(json::object{{"id", id}, {"project_id", "p1"}, {"log_id", "g"}, {"created", "2024-01-01T00:00:00Z"}, {"v", 1}});
  }
  f.logs3(rows);
  reader a{"a", "b", "", "", false}, b{"b", "c", "", "", false};
  auto model = all_rows(f);
  check_page(f, model, b, 1);  // window b is known ...
  check_page(f, model, a, 8);  // ... so a's scan keeps b's rows that it passes over
  // b's next rows change: one is deleted, one gets a new version (it moves to the end of the key order).
  f.logs3(json::array{json::object{{"id", "b13"}, {"project_id", "p1"}, {"log_id", "g"}, {"_object_delete", true}},
                      json::object{{"id", "b15"}, {"project_id", "p1"}, {"log_id", "g"}, {"created", "2024-01-01T00:00:00Z"}, {"v", 2}}});
  model = all_rows(f);
  for (int i = 0; i < 4; ++i) check_page(f, model, b, 3);
  for (int i = 0; i < 4; ++i) check_page(f, model, a, 3);
}
