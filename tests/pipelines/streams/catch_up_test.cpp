// Streams are never terminal (issue 14 item 1): a re-run resumes every stream at its committed cursor
// and copies the rows the source received since, new ones and updates (an update comes back with a
// newer _pagination_key); those rows count as caught up.

#include "pipelines/streams/stream_runner.hpp"

#include "fakes.hpp"
#include "stream_harness.hpp"
#include "test_support.hpp"

#include <boost/json.hpp>
#include <doctest/doctest.h>

using namespace ferry::pipelines::streams;
using ferry::test::fake_row;
using ferry::test::make_rows;

namespace {

std::string output_of(const std::string& row_json) {
  auto o = boost::json::parse(row_json).as_object();
  auto* f = o.if_contains("output");
  return f && f->is_string() ? std::string(f->as_string()) : std::string();
}

}  // namespace

TEST_CASE("stream: a re-run after the end copies new rows and updates of copied rows, counted as caught up") {
  ferry::test::stream_harness<> h;
  h.src.rows = make_rows(20);
  auto first = h.run();
  REQUIRE(first.done);
  CHECK(h.dst.rows.size() == 20);
  // The source goes on: 5 new rows, and 3 copied rows updated (same id, a newer key).
  for (int i = 0; i < 5; ++i)
    h.src.rows.push_back({"n" + std::to_string(i), "q" + std::to_string(i), "2026-02-01T00:00:00Z", "\"output\":\"new\""});
  int k = 0;
  for (const char* id : {"r0", "r7", "r19"})
    h.src.rows.push_back({id, "q9" + std::to_string(k++), "2026-01-01T00:00:00Z", "\"output\":\"updated\""});
  auto second = h.run();
  CHECK(second.error == "");
  CHECK(second.done);
  CHECK(h.dst.rows.size() == 25);
  for (const char* id : {"r0", "r7", "r19"}) CHECK(output_of(h.dst.rows.at(id)) == "updated");
  for (int i = 0; i < 5; ++i) CHECK(output_of(h.dst.rows.at("n" + std::to_string(i))) == "new");
  auto st = h.store.load("logs:sp");
  REQUIRE(st);
  CHECK(st->done);
  CHECK(st->counters.rows == 28);
  CHECK(st->counters.caught_up_rows == 8);
  CHECK(st->cursor == h.src.rows.back().key);
}

TEST_CASE("stream: logs with created_after and nothing in the window yet pick up rows that arrive later") {
  ferry::test::stream_harness<> h;
  h.opts.created_after = "2026-03-01T00:00:00Z";
  h.src.rows = make_rows(6);  // all created in January
  auto first = h.run();
  CHECK(first.done);
  CHECK(h.dst.rows.empty());
  h.src.rows.push_back({"late", "q1", "2026-03-02T00:00:00Z", "\"output\":\"late\""});
  auto second = h.run();
  CHECK(second.done);
  REQUIRE(h.dst.rows.count("late") == 1);
  CHECK(h.dst.rows.size() == 1);
}
