#include "pipelines/copy/copy_stream.hpp"

#include "stores/state_store.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <map>
#include <string>

using namespace ferry::pipelines::copy;
namespace json = boost::json;

namespace {

/// Rows with keys 1..n, cursor = the key (zero-padded, so text order is key order).
class fake_source final : public source {
 public:
  explicit fake_source(int n) : n_(n) {}
  page read_after(const std::string& cursor, std::size_t limit) override {
    page p;
    int k = cursor.empty() ? 1 : std::stoi(cursor) + 1;
    for (; k <= n_ && p.rows.size() < limit; ++k) {
      char c[16];
      std::snprintf(c, sizeof c, "%06d", k);
      p.rows.push_back(row{c, std::to_string(k), json::object{{"id", k}, {"even", k % 2 == 0}}});
    }
    p.end = k > n_;
    return p;
  }

 private:
  int n_;
};

/// Keeps rows by id; throws on the write of batch `fail_seq` (0 = never) before storing anything.
class fake_sink final : public sink {
 public:
  std::map<std::int64_t, json::object> rows;
  std::uint64_t fail_seq = 0;
  std::uint64_t batches = 0;
  void write_batch(std::uint64_t seq, const std::vector<json::object>& batch) override {
    if (seq == fail_seq) throw copy_error("sink down at batch " + std::to_string(seq));
    ++batches;
    for (const auto& r : batch) rows[r.at("id").as_int64()] = r;
  }
};

}  // namespace

TEST_CASE("copy_stream: the cursor moves only with acknowledged batches; a resume re-sends nothing acknowledged") {
  auto store = ferry::stores::state_store::open_memory();
  fake_source src(95);
  fake_sink sink;
  sink.fail_seq = 4;  // batches of 10: 1-3 acknowledged, 4 fails
  CHECK_THROWS_WITH_AS(copy_stream(src, sink, nullptr, store, 10, 2, "fake"), "sink down at batch 4", copy_error);
  const auto st = store.load_stream("copy");
  REQUIRE(st);
  CHECK(st->cursor == "000030");  // the last row of batch 3, not of a page the reader had read ahead
  CHECK(st->next_seq == 4);
  CHECK(st->counters.rows == 30);
  CHECK(st->last_error == "sink down at batch 4");
  REQUIRE(store.inflight_batches("copy").size() == 1);  // batch 4 journaled, never committed
  CHECK(store.inflight_batches("copy").front().first_key == "000031");

  sink.fail_seq = 0;
  const auto counts = copy_stream(src, sink, nullptr, store, 10, 2, "fake");
  CHECK(counts.written == 65);
  CHECK(counts.resent == 10);
  CHECK(counts.total == 95);
  CHECK(sink.rows.size() == 95);
  CHECK(store.load_stream("copy")->done);
  CHECK(store.inflight_batches("copy").empty());

  // A re-run starts after the committed end: nothing is read again or written.
  const auto again = copy_stream(src, sink, nullptr, store, 10, 2, "fake");
  CHECK(again.written == 0);
  CHECK(sink.batches == 3 + 7);
}

TEST_CASE("copy_stream: rows a filter drops still advance the cursor, and the transform applies before the sink") {
  auto store = ferry::stores::state_store::open_memory();
  fake_source src(40);
  fake_sink sink;
  const auto tf = transform::parse("rules:\n  - filter: {field: even, op: eq, value: true}\n  - set: {field: tag, value: x}\n", "t");
  const auto counts = copy_stream(src, sink, &tf, store, 7, 1, "fake");
  CHECK(counts.written == 20);
  CHECK(counts.filtered == 20);
  CHECK(sink.rows.size() == 20);
  CHECK(sink.rows.at(2).at("tag") == "x");
  CHECK(store.load_stream("copy")->cursor == "000040");
}

TEST_CASE("copy_stream: a source error stops the copy; what was acknowledged stays committed") {
  class failing_source final : public source {
   public:
    page read_after(const std::string& cursor, std::size_t) override {
      if (!cursor.empty()) throw copy_error("source: row 3 is not JSON");
      return page{{row{"1", "1", json::object{{"id", 1}}}, row{"2", "2", json::object{{"id", 2}}}}, false, ""};
    }
  } src;
  auto store = ferry::stores::state_store::open_memory();
  fake_sink sink;
  CHECK_THROWS_WITH_AS(copy_stream(src, sink, nullptr, store, 2, 1, "fake"), "source: row 3 is not JSON", copy_error);
  CHECK(sink.rows.size() == 2);
  CHECK(store.load_stream("copy")->cursor == "2");
  CHECK(store.load_stream("copy")->last_error == "source: row 3 is not JSON");
}
