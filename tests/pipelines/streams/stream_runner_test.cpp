#include "pipelines/streams/stream_runner.hpp"

#include "fakes.hpp"
#include "format1_state.hpp"
#include "stream_harness.hpp"
#include "test_support.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <doctest/doctest.h>

using namespace ferry::pipelines::streams;
using ferry::test::fake_sink;
using ferry::test::fake_source;
using ferry::test::http_status;
using ferry::test::make_rows;
using ferry::engine::io_outcome;
namespace asio = boost::asio;

namespace {

struct harness : ferry::test::stream_harness<> {

  // Every source row arrived, with the destination project id, exactly as rewritten.
  void check_complete() {
    CHECK(dst.rows.size() == src.rows.size());
    for (auto& r : src.rows) {
      auto it = dst.rows.find(r.id);
      REQUIRE_MESSAGE(it != dst.rows.end(), "missing row " << r.id);
      auto o = boost::json::parse(it->second).as_object();
      CHECK(o.at("project_id").as_string() == "dp");
    }
  }
  int max_inserts() const {
    int m = 0;
    for (auto& [id, n] : dst.inserts) m = std::max(m, n);
    return m;
  }
};

}  // namespace

TEST_CASE("stream: copies every row once, commits the last key and counters, ends done") {
  harness h;
  h.src.rows = make_rows(23);
  auto res = h.run();
  CHECK(res.error == "");
  CHECK(res.done);
  h.check_complete();
  CHECK(h.max_inserts() == 1);
  auto st = h.store.load("logs:sp");
  REQUIRE(st);
  CHECK(st->done);
  CHECK(st->cursor == h.src.rows.back().key);
  CHECK(st->counters.rows == 23);
  CHECK(st->counters.batches == 6);  // ceil(23 / 4)
  CHECK(st->next_seq == 7);
  CHECK(h.store.inflight("logs:sp").empty());
  // The digest is the sum of the hashes of exactly what the destination received.
  digest256 d;
  for (auto& [id, json] : h.dst.rows) (void)id;
  CHECK_FALSE(st->digest.empty());
  SUBCASE("a second run of a done stream reads on from its cursor and copies nothing new") {
    int calls = h.src.calls;
    int writes = h.dst.calls;
    auto again = h.run();
    CHECK(again.done);
    CHECK(h.src.calls == calls + 2);  // the confirmed end at the committed cursor
    CHECK(h.dst.calls == writes);
    CHECK(h.store.load("logs:sp")->counters.caught_up_rows == 0);
  }
}

TEST_CASE("stream: empty stream and page size 1 edge cases") {
  harness h;
  SUBCASE("empty") {
    auto res = h.run();
    CHECK(res.done);
    CHECK(h.dst.calls == 0);
    CHECK(h.src.calls == 2);  // the empty page, read twice to confirm the end
  }
  SUBCASE("exactly one page") {
    h.src.rows = make_rows(10);
    auto res = h.run();
    CHECK(res.done);
    h.check_complete();
    CHECK(h.src.calls == 3);  // the page, then the empty page twice (a confirmed end)
  }
  SUBCASE("page size 1") {
    h.opts.fetch_limit = 1;
    h.opts.min_fetch_limit = 1;
    h.src.rows = make_rows(5);
    auto res = h.run();
    CHECK(res.done);
    h.check_complete();
    CHECK(h.src.calls == 7);
  }
}

TEST_CASE("stream: 500 on big pages shrinks the page, then it grows back; all rows copied") {
  harness h;
  h.src.rows = make_rows(60);
  h.src.fault = [](int, std::size_t limit) -> std::optional<call_result> {
    if (limit > 5) return http_status(500, io_outcome::transient);
    return std::nullopt;
  };
  int served_big = 0;
  SUBCASE("persistent") {
    auto res = h.run();
    CHECK(res.done);
    h.check_complete();
    CHECK(std::find(h.src.limits_seen.begin(), h.src.limits_seen.end(), 5) != h.src.limits_seen.end());
  }
  SUBCASE("transient burst: the size grows back to the configured limit") {
    h.src.fault = [&](int call, std::size_t limit) -> std::optional<call_result> {
      if (call <= 2 && limit > 5) return http_status(504, io_outcome::transient);
      if (limit == 10) ++served_big;
      return std::nullopt;
    };
    auto res = h.run();
    CHECK(res.done);
    h.check_complete();
    CHECK(served_big > 0);
  }
}

TEST_CASE("stream: 500 at the minimum page size fails the stream with a clear error, cursor intact") {
  harness h;
  h.src.rows = make_rows(30);
  h.src.fault = [](int call, std::size_t) -> std::optional<call_result> {
    if (call > 2) return http_status(500, io_outcome::transient);
    return std::nullopt;
  };
  auto res = h.run();
  CHECK_FALSE(res.done);
  CHECK(res.error.find("minimum page size 2") != std::string::npos);
  auto st = h.store.load("logs:sp");
  REQUIRE(st);
  CHECK(st->last_error == res.error);
  // Everything up to the committed cursor is in the destination; nothing beyond it was committed.
  for (auto& r : h.src.rows)
    if (r.key <= st->cursor) CHECK(h.dst.rows.count(r.id) == 1);
  CHECK(st->counters.rows == 20);
}

TEST_CASE("stream: 413 splits batches in halves; nothing duplicated") {
  harness h;
  h.src.rows = make_rows(16, 200);
  h.opts.batch.max_rows = 8;
  h.dst.max_body = 700;  // about two rows per request
  auto res = h.run();
  CHECK(res.error == "");
  CHECK(res.done);
  h.check_complete();
  CHECK(h.max_inserts() == 1);
  CHECK(h.dst.calls > 4);
}

// Issue 14 item 5. Before: a row above the request cap was answered 413 and reshaped into attachments
// (uploads == 3 here), where the SDKs keep it whole through /logs3/overflow.
TEST_CASE("stream: a row above the destination's request cap goes whole through /logs3/overflow") {
  harness h;
  h.src.rows = make_rows(3, 70'000);
  h.dst.max_body = 60'000;  // the direct path refuses anything larger
  h.opts.overflow_above = 60'000;
  h.opts.batch.max_bytes = 45'000;
  auto res = h.run();
  CHECK(res.error == "");
  CHECK(res.done);
  h.check_complete();
  CHECK(h.dst.uploads == 0);
  CHECK(h.dst.overflows == 3);
  CHECK(h.dst.overflow_rows == std::vector<std::size_t>{1, 1, 1});
  auto o = boost::json::parse(h.dst.rows.at("r0")).as_object();
  CHECK(o.at("input").as_string().size() == 70'000);
  CHECK(h.store.load("logs:sp")->counters.spilled_fields == 0);
  CHECK(res.unwritable.empty());
}

TEST_CASE("stream: a lone row refused below the stated cap (a proxy's limit) goes whole through overflow") {
  harness h;
  h.src.rows = make_rows(4, 70'000);
  h.dst.max_body = 60'000;         // the real limit...
  h.opts.overflow_above = 200'000;  // ...below the one the destination states
  h.opts.batch.max_bytes = 150'000;  // two rows per batch: split by 413, then each row alone
  auto res = h.run();
  CHECK(res.error == "");
  CHECK(res.done);
  h.check_complete();
  CHECK(res.unwritable.empty());
  CHECK(h.dst.uploads == 0);
  CHECK(h.dst.overflows == 4);
}

TEST_CASE("stream: only a row above the per-row limit has fields spilled to attachments") {
  harness h;
  h.src.rows = make_rows(3, 10);
  h.src.rows[1].extra = "\"input\":\"" + std::string(90'000, 'y') + "\",\"output\":\"" + std::string(70'000, 'z') + "\"";
  h.opts.per_row_max_bytes = 100'000;
  h.opts.overflow_above = 60'000;
  auto res = h.run();
  CHECK(res.error == "");
  CHECK(res.done);
  h.check_complete();
  CHECK(h.dst.uploads == 1);  // the largest field was enough
  auto o = boost::json::parse(h.dst.rows.at("r1")).as_object();
  CHECK(o.at("input").as_object().at("type") == "braintrust_attachment");
  CHECK(o.at("input").as_object().at("filename") == "input.json");
  CHECK(o.at("output").as_string().size() == 70'000);  // under the limit now: sent whole (through overflow)
  CHECK(h.dst.overflows == 1);
  CHECK(h.store.load("logs:sp")->counters.spilled_fields == 1);
}

// Before: a lone row the destination refused stopped its stream.
TEST_CASE("stream: a row the destination refuses even alone is one line with its id and size; the stream goes on") {
  harness h;
  h.src.rows = make_rows(6, 10);
  h.src.rows[2].extra = "\"scores\":{\"s\":\"" + std::string(5'000, 's') + "\"}";
  h.dst.max_row = 2'000;
  SUBCASE("with overflow") { h.opts.overflow_above = 1'000; }
  SUBCASE("without overflow") {}
  auto res = h.run();
  CHECK(res.error == "");
  CHECK(res.done);
  REQUIRE(res.unwritable.size() == 1);
  CHECK(res.unwritable[0].find("row id=r2") != std::string::npos);
  CHECK(res.unwritable[0].find("bytes") != std::string::npos);
  CHECK(h.dst.rows.count("r2") == 0);
  for (const char* id : {"r0", "r1", "r3", "r4", "r5"}) CHECK(h.dst.rows.count(id) == 1);
  auto st = h.store.load("logs:sp");
  CHECK(st->counters.unwritable_rows == 1);
  CHECK(st->counters.rows == 5);
  CHECK(st->cursor == h.src.rows.back().key);
}

TEST_CASE("stream: 429 and transient errors are retried; no loss, no duplicate") {
  harness h;
  h.src.rows = make_rows(20);
  h.dst.fault = [](int call, const std::string&) -> std::optional<call_result> {
    if (call % 3 == 1) {
      auto r = http_status(429, io_outcome::throttled);
      r.retry_after = std::chrono::milliseconds(5);
      return r;
    }
    return std::nullopt;
  };
  h.src.fault = [](int call, std::size_t) -> std::optional<call_result> {
    if (call % 4 == 2) return http_status(0, io_outcome::transient);
    return std::nullopt;
  };
  auto res = h.run();
  CHECK(res.error == "");
  CHECK(res.done);
  h.check_complete();
  CHECK(h.max_inserts() == 1);
}

TEST_CASE("stream: a retried /logs3 request sends the same body again (built anew from the batch's rows)") {
  harness h;
  h.src.rows = make_rows(6);
  h.opts.batch.max_rows = 10;
  std::vector<std::string> bodies;
  h.dst.fault = [&](int call, const std::string& body) -> std::optional<call_result> {
    bodies.push_back(body);
    if (call == 1) return http_status(0, io_outcome::transient);
    return std::nullopt;
  };
  auto res = h.run();
  CHECK(res.error == "");
  CHECK(res.done);
  h.check_complete();
  REQUIRE(bodies.size() == 2);
  CHECK(bodies[0].find("\"rows\":[") != std::string::npos);
  CHECK(bodies[1] == bodies[0]);
  CHECK(h.store.load("logs:sp")->counters.bytes == bodies[0].size());
}

namespace {

// A destination that answers each /logs3 request after a few turns of the event loop, so several
// batches are in flight at once (fake_sink answers at once: each batch is applied before the next).
struct yielding_sink : fake_sink {
  boost::asio::awaitable<call_result> logs3(std::string body) override {
    for (int i = 0; i < 3; ++i) co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    co_return co_await fake_sink::logs3(std::move(body));
  }
};

}  // namespace

TEST_CASE("stream: acknowledged batches share a synced commit while others are unapplied; the end of a run commits them") {
  // The manual clock never advances: within the interval, a commit waits until no batch is unapplied.
  harness h;
  yielding_sink dst;
  h.src.rows = make_rows(40);  // 10 batches of 4
  h.opts.max_inflight_batches = 4;
  h.opts.commit_interval = std::chrono::hours(1);
  int fail_at = 0;
  std::vector<std::uint64_t> acked;                 // batches acknowledged so far (by their first row)
  std::vector<std::uint64_t> committed_at_answer;  // next_seq of the committed state as each answer is given
  dst.fault = [&](int call, const std::string&) -> std::optional<call_result> {
    auto st = h.store.load("logs:sp");
    committed_at_answer.push_back(st ? st->next_seq : 1);
    if (fail_at && call >= fail_at) return http_status(400, io_outcome::fatal);
    return std::nullopt;
  };
  auto run = [&] { return ferry::test::run_coro(h.ctx, run_stream(h.spec, h.opts, h.src, dst, h.store, h.clk)); };
  auto complete = [&] {
    CHECK(dst.rows.size() == h.src.rows.size());
    for (auto& r : h.src.rows) CHECK_MESSAGE(dst.rows.count(r.id) == 1, "missing row " << r.id);
  };
  SUBCASE("a whole run") {
    auto res = run();
    CHECK(res.error == "");
    CHECK(res.done);
    complete();
    REQUIRE(committed_at_answer.size() == 10);
    // Answer k+1 is given after k answers: the committed state never records more than them, and at
    // least once it had not yet recorded all the batches already acknowledged (a shared commit follows).
    int lagging = 0;
    for (std::size_t k = 0; k < committed_at_answer.size(); ++k) {
      CHECK(committed_at_answer[k] <= k + 1);
      if (committed_at_answer[k] < k + 1) ++lagging;
    }
    CHECK(lagging > 0);
    auto st = h.store.load("logs:sp");
    CHECK(st->cursor == h.src.rows.back().key);
    CHECK(st->counters.rows == 40);
    CHECK(st->counters.batches == 10);
    CHECK(st->next_seq == 11);
    CHECK(h.store.inflight("logs:sp").empty());
  }
  SUBCASE("a failed run commits what was acknowledged before the failure") {
    h.opts.max_inflight_batches = 1;  // answers in batch order: batches 1..6 acknowledged, 7 refused
    fail_at = 7;
    auto res = run();
    CHECK_FALSE(res.done);
    CHECK(res.error.find("HTTP 400") != std::string::npos);
    auto st = h.store.load("logs:sp");
    REQUIRE(st);
    CHECK(st->next_seq == 7);
    CHECK(st->cursor == h.src.rows[23].key);
    CHECK(st->counters.rows == 24);
    dst.fault = nullptr;
    auto again = run();
    CHECK(again.done);
    complete();
    CHECK(h.store.load("logs:sp")->counters.rows == 40);
  }
}

TEST_CASE("stream: a failed run resumes from the committed cursor and re-sends at most the unacknowledged batches") {
  for (int fail_at : {1, 2, 3, 5, 8}) {
    CAPTURE(fail_at);
    harness h;
    h.src.rows = make_rows(37);
    h.opts.max_inflight_batches = 2;
    h.dst.fault = [&](int call, const std::string&) -> std::optional<call_result> {
      if (call >= fail_at) return http_status(400, io_outcome::fatal);
      return std::nullopt;
    };
    auto first = h.run();
    CHECK_FALSE(first.done);
    CHECK_MESSAGE(first.error.find("POST /logs3 failed: HTTP 400") != std::string::npos, first.error);
    auto committed = h.store.load("logs:sp")->counters.rows;
    h.dst.fault = nullptr;
    auto second = h.run();
    CHECK(second.error == "");
    CHECK(second.done);
    h.check_complete();
    auto st = h.store.load("logs:sp");
    CHECK(st->counters.rows == 37);  // each row committed once across both runs
    std::size_t total_inserts = 0;
    for (auto& [id, n] : h.dst.inserts) total_inserts += n;
    // Rows written but never committed by the first run are re-sent once, and counted as such;
    // they are bounded by the batches in flight (2 writers x 4 rows).
    CHECK(total_inserts - 37 <= st->counters.resent_rows);
    CHECK(st->counters.resent_rows <= 2 * 4);
    CHECK(committed <= 37);
  }
}

TEST_CASE("stream: a state dir written by an older ferry (format-1 stream record) resumes at its cursor") {
  ferry::test::temp_dir dir("ferry-state");
  harness h;
  h.src.rows = make_rows(23);
  {
    // Committed through row 9 in three batches by the older ferry (its JSON `extra` carried next_seq).
    ferry::test::format1_stream r;
    r.stream_id = "logs:sp";
    r.source_object = "sp";
    r.last_key = h.src.rows[9].key;
    r.counters = {10, 10, 1000, 3, 0, 0, 0};
    r.extra = R"({"cursor_inclusive":false,"preflight_done":false,"next_seq":4,"deletes":0,"merges":0,)"
              R"("spilled_fields":0,"attachments_copied":0,"source_ids":["sp"]})";
    auto kv = ferry::stores::kv_store::open_rocksdb(dir.str(), ferry::stores::state_store::column_families());
    kv->put("cursors", r.stream_id, ferry::test::format1_record(r), true);
  }
  h.st = ferry::stores::state_store::open(dir.str());
  auto res = h.run();
  CHECK(res.error == "");
  CHECK(res.done);
  CHECK(h.dst.rows.size() == 13);  // rows 10..22 only: nothing committed before is sent again
  for (int i = 0; i < 10; ++i) CHECK(h.dst.rows.count(h.src.rows[static_cast<std::size_t>(i)].id) == 0);
  auto st = h.store.load("logs:sp");
  REQUIRE(st);
  CHECK(st->done);
  CHECK(st->cursor == h.src.rows.back().key);
  CHECK(st->counters.rows == 23);
  CHECK(st->counters.batches == 3 + 4);  // ceil(13 / 4) more
  CHECK(st->next_seq == 8);
  CHECK(st->source_ids == std::vector<std::string>{"sp"});
}

TEST_CASE("stream: graceful (total) cancellation finishes in-flight batches, commits, and resumes exactly") {
  harness h;
  h.src.rows = make_rows(100);
  asio::cancellation_signal sig;
  h.dst.fault = [&](int call, const std::string&) -> std::optional<call_result> {
    if (call == 3) asio::post(h.ctx, [&] { sig.emit(asio::cancellation_type::total); });
    return std::nullopt;
  };
  std::optional<stream_result> out;
  std::exception_ptr err;
  auto task = [&]() -> asio::awaitable<stream_result> {
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    co_return co_await run_stream(h.spec, h.opts, h.src, h.dst, h.store, h.clk);
  };
  asio::co_spawn(h.ctx, task(), asio::bind_cancellation_slot(sig.slot(), [&](std::exception_ptr e, stream_result r) {
                   err = e;
                   out = std::move(r);
                 }));
  h.ctx.run_for(std::chrono::seconds(10));
  REQUIRE(out);
  CHECK_FALSE(err);
  CHECK_FALSE(out->done);
  auto st = h.store.load("logs:sp");
  REQUIRE(st);
  CHECK(st->counters.rows > 0);
  CHECK(st->counters.rows < 100);
  // Everything read was written and committed: no in-flight batch left behind.
  CHECK(h.store.inflight("logs:sp").empty());
  CHECK(st->counters.rows == h.dst.rows.size());
  h.dst.fault = nullptr;
  auto again = h.run();
  CHECK(again.done);
  h.check_complete();
  CHECK(h.max_inserts() == 1);
}

TEST_CASE("stream: logs created_after uses the preflight key inclusively; before is exclusive") {
  harness h;
  h.src.rows = make_rows(56);  // created cycles through 2026-01-01..28
  h.opts.created_after = "2026-01-20T00:00:00Z";
  h.opts.created_before = "2026-01-25T00:00:00Z";
  auto res = h.run();
  CHECK(res.done);
  std::size_t expected = 0;
  for (auto& r : h.src.rows)
    if (r.created >= *h.opts.created_after && r.created < *h.opts.created_before) {
      ++expected;
      CHECK(h.dst.rows.count(r.id) == 1);
    }
  CHECK(h.dst.rows.size() == expected);
  SUBCASE("nothing in the window ends after the preflight and a confirmed empty read") {
    harness h2;
    h2.src.rows = make_rows(5);
    h2.opts.created_after = "2027-01-01T00:00:00Z";
    auto r2 = h2.run();
    CHECK(r2.done);
    CHECK(h2.src.calls == 3);
    CHECK(h2.dst.calls == 0);
  }
}

TEST_CASE("stream: grouped dataset stream writes each row to its own destination dataset") {
  harness h;
  h.spec.kind = stream_kind::dataset;
  h.spec.source_ids = {"d1", "d2"};
  h.spec.dest_ids = {{"d1", "D1"}, {"d2", "D2"}};
  h.spec.stream_id = "dataset_events:g";
  h.src.object_field = "dataset_id";
  h.src.rows = make_rows(6);
  h.src.object_id = "d2";
  auto res = h.run();
  CHECK(res.done);
  CHECK(boost::json::parse(h.dst.rows.at("r3")).as_object().at("dataset_id").as_string() == "D2");
}
