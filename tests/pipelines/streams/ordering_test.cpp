// Per-id order (issue 14 item 3): whatever the write concurrency, 413 splits, retries and resumes, the
// destination ends with the newest version of every row id. The destination here answers each request
// after a random delay, so parallel writers finish out of order; the source holds ids updated soon
// after they were inserted (several versions of one id within a few batches).

#include "pipelines/streams/batcher.hpp"
#include "pipelines/streams/stream_runner.hpp"

#include "fakes.hpp"
#include "stream_harness.hpp"
#include "test_support.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <map>
#include <random>

using namespace ferry::pipelines::streams;
using ferry::engine::io_outcome;
using ferry::test::fake_row;
using ferry::test::http_status;
namespace asio = boost::asio;

namespace {

// A destination whose every /logs3 answer (and the write it stands for) comes after 0-3 ms.
struct slow_sink : ferry::test::fake_sink {
  std::mt19937 rng;
  explicit slow_sink(unsigned seed = 1) : rng(seed) {}
  asio::awaitable<call_result> logs3(std::string body) override {
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(rng)));
    co_await t.async_wait(asio::use_awaitable);
    co_return co_await fake_sink::logs3(std::move(body));
  }
};

// `n` rows; most are updates of one of the last 6 ids (the version is the row's key, in `output`).
std::vector<fake_row> versioned_rows(int n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<fake_row> out;
  std::vector<std::string> recent;
  int next_id = 0;
  for (int i = 0; i < n; ++i) {
    char key[32];
    std::snprintf(key, sizeof key, "p%08d", i);
    std::string id;
    if (recent.empty() || std::uniform_int_distribution<int>(0, 9)(rng) < 4) {
      id = "r" + std::to_string(next_id++);
      recent.push_back(id);
      if (recent.size() > 6) recent.erase(recent.begin());
    } else {
      id = recent[std::uniform_int_distribution<std::size_t>(0, recent.size() - 1)(rng)];
    }
    out.push_back({id, key, "2026-01-01T00:00:00Z", "\"output\":\"" + std::string(key) + "\""});
  }
  return out;
}

struct ordering_harness : ferry::test::stream_harness<ferry::test::fake_source> {
  slow_sink slow;
  explicit ordering_harness(unsigned seed) : slow(seed) {
    opts.max_inflight_batches = 8;
    opts.batch_channel_capacity = 8;
    opts.page_channel_capacity = 4;
  }
  stream_result run_slow() { return ferry::test::run_coro(ctx, run_stream(spec, opts, src, slow, store, clk)); }

  // Every id holds its newest version (the last row of that id in source order).
  int stale_ids() const {
    std::map<std::string, std::string> newest;
    for (const auto& r : src.rows) newest[r.id] = r.key;
    int stale = 0;
    for (const auto& [id, key] : newest) {
      auto it = slow.rows.find(id);
      REQUIRE_MESSAGE(it != slow.rows.end(), "missing row " << id);
      auto o = boost::json::parse(it->second).as_object();
      if (o.at("output").as_string() != key) ++stale;
    }
    return stale;
  }
};

}  // namespace

TEST_CASE("batcher: a batch never holds two versions of one row id; its id hashes are sorted") {
  batcher b({.max_rows = 100, .max_bytes = 1 << 20}, 1);
  std::vector<batch> out;
  for (const char* id : {"a", "b", "c", "b", "d", "a", "a"}) {
    event_row r;
    r.id = id;
    r.json = std::string("{\"id\":\"") + id + "\"}";
    b.add(std::move(r), out);
  }
  if (auto t = b.flush()) out.push_back(std::move(*t));
  REQUIRE(out.size() == 3);  // a b c | b d a | a
  CHECK(out[0].rows.size() == 3);
  CHECK(out[1].rows.size() == 3);
  CHECK(out[2].rows.size() == 1);
  for (const auto& x : out) {
    CHECK(x.id_hashes.size() == x.rows.size());
    CHECK(std::is_sorted(x.id_hashes.begin(), x.id_hashes.end()));
  }
  CHECK(share_ids(out[0].id_hashes, out[1].id_hashes));
  CHECK(share_ids(out[1].id_hashes, out[2].id_hashes));
  CHECK_FALSE(share_ids({1, 3, 5}, {2, 4, 6}));
}

TEST_CASE("batcher: the id set grows past its first size and empties per batch") {
  batcher b({.max_rows = 1000, .max_bytes = 1 << 24}, 1);
  std::vector<batch> out;
  for (int i = 0; i < 700; ++i) {
    event_row r;
    r.id = "id" + std::to_string(i % 350);  // each id twice, 350 apart
    r.json = "{}";
    b.add(std::move(r), out);
  }
  if (auto t = b.flush()) out.push_back(std::move(*t));
  REQUIRE(out.size() == 2);
  CHECK(out[0].rows.size() == 350);
  CHECK(out[1].rows.size() == 350);
}

TEST_CASE("stream: every id ends on its newest version under random write latency, 413 splits, retries, resumes") {
  for (unsigned seed = 1; seed <= 6; ++seed) {
    CAPTURE(seed);
    ordering_harness h(seed);
    h.src.rows = versioned_rows(600, seed);
    SUBCASE("eight writers") {
      auto res = h.run_slow();
      CHECK(res.error == "");
      CHECK(res.done);
      CHECK(h.stale_ids() == 0);
    }
    SUBCASE("413 halves batches") {
      h.slow.max_body = 300;  // a row is ~210 bytes: every batch of 2+ rows is split down to single rows
      auto res = h.run_slow();
      CHECK(res.error == "");
      CHECK(h.stale_ids() == 0);
    }
    SUBCASE("throttled and transient answers are retried") {
      std::mt19937 faults(seed);
      h.slow.fault = [&](int, const std::string&) -> std::optional<call_result> {
        int x = std::uniform_int_distribution<int>(0, 9)(faults);
        if (x == 0) return http_status(503, io_outcome::transient);
        if (x == 1) return http_status(0, io_outcome::timed_out);
        return std::nullopt;
      };
      auto res = h.run_slow();
      CHECK(res.error == "");
      CHECK(h.stale_ids() == 0);
    }
    SUBCASE("a failed run resumed") {
      h.slow.fault = [&](int call, const std::string&) -> std::optional<call_result> {
        if (call == 40 + static_cast<int>(seed) * 7) return http_status(400, io_outcome::fatal);
        return std::nullopt;
      };
      auto first = h.run_slow();
      CHECK_FALSE(first.done);
      h.slow.fault = nullptr;
      auto second = h.run_slow();
      CHECK(second.error == "");
      CHECK(second.done);
      CHECK(h.stale_ids() == 0);
    }
  }
}
