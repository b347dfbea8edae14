// The memory budget bounds what streams buffer (issue 16: MIGRATION_MEMORY_BUDGET must hold with slicing,
// where K slices each hold pages and batches). Measured as the bytes the source served and the
// destination has not acknowledged yet, the most at any moment, over streams that share one budget the
// way the slices of a stream (and the streams of a run) do. No timing: the sink yields to the other
// coroutines before it answers, so the readers run ahead as far as the streams let them.
#include "pipelines/streams/stream_runner.hpp"

#include "engine/clock.hpp"
#include "engine/memory_budget.hpp"
#include "fakes.hpp"
#include "stores/state_store.hpp"
#include "test_support.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <vector>

using namespace ferry::pipelines::streams;
using ferry::test::fake_sink;
using ferry::test::fake_source;
using ferry::test::make_rows;
namespace asio = boost::asio;

namespace {

// Rows (all of one size) the source served and the destination acknowledged; `peak`: served - acked at
// its most. Counted in rows, not bytes: the rewritten rows the destination gets differ from the source's.
struct flow {
  std::uint64_t served = 0, acked = 0, peak = 0;
  void note() { peak = std::max(peak, served - acked); }
};

std::uint64_t rows_in(const std::string& body) {
  std::uint64_t n = 0;
  for (auto p = body.find("\"input\":\""); p != std::string::npos; p = body.find("\"input\":\"", p + 1)) ++n;
  return n;
}

class counting_source : public event_source {
 public:
  counting_source(fake_source& inner, flow& f) : inner_(inner), f_(f) {}
  asio::awaitable<call_result> btql(std::string body) override {
    auto r = co_await inner_.btql(std::move(body));
    f_.served += rows_in(r.body);
    f_.note();
    co_return r;
  }
  asio::awaitable<std::string> download_attachment(std::string, std::string, std::string, std::uint64_t) override {
    co_return std::string();
  }

 private:
  fake_source& inner_;
  flow& f_;
};

// Answers after yielding 200 times (a slow destination), then counts the rows as acknowledged.
class slow_sink : public event_sink {
 public:
  slow_sink(fake_sink& inner, flow& f) : inner_(inner), f_(f) {}
  asio::awaitable<call_result> logs3(std::string body) override {
    auto ex = co_await asio::this_coro::executor;
    for (int i = 0; i < 200; ++i) co_await asio::post(ex, asio::use_awaitable);
    const auto n = rows_in(body);
    auto r = co_await inner_.logs3(std::move(body));
    f_.acked += n;
    co_return r;
  }
  asio::awaitable<std::optional<std::uint64_t>> payload_max_bytes() override { co_return std::nullopt; }
  asio::awaitable<std::string> upload_attachment(std::string a, std::string b, std::string c) override {
    co_return co_await inner_.upload_attachment(std::move(a), std::move(b), std::move(c));
  }

 private:
  fake_sink& inner_;
  flow& f_;
};

struct one_stream {
  fake_source src;
  fake_sink dst;
  std::unique_ptr<counting_source> csrc;
  std::unique_ptr<slow_sink> csink;
  stream_spec spec;
};

// `streams` streams of 200 rows of ~10 KB (pages of 10 rows: ~100 KB) into a slow destination, all with
// the same options; returns the flow (served - acknowledged at its most) and checks every row arrived.
flow run_streams(int streams, std::shared_ptr<ferry::engine::memory_budget> budget) {
  asio::io_context ctx;
  ferry::engine::manual_clock clk;
  auto st = ferry::stores::state_store::open_memory();
  checkpoint_store store(st);
  flow f;
  std::vector<std::unique_ptr<one_stream>> all;
  std::vector<stream_result> results(static_cast<std::size_t>(streams));
  stream_options opts;
  opts.fetch_limit = 10;
  opts.batch.max_rows = 4;
  opts.budget = budget;
  for (int i = 0; i < streams; ++i) {
    auto s = std::make_unique<one_stream>();
    const std::string sp = "sp" + std::to_string(i);
    s->src.rows = make_rows(200, 10'000);
    s->src.object_id = sp;
    s->csrc = std::make_unique<counting_source>(s->src, f);
    s->csink = std::make_unique<slow_sink>(s->dst, f);
    s->spec.source_ids = {sp};
    s->spec.dest_ids = {{sp, "dp"}};
    s->spec.stream_id = "logs:" + sp;
    asio::co_spawn(ctx, run_stream(s->spec, opts, *s->csrc, *s->csink, store, clk),
                   [&results, i](std::exception_ptr e, stream_result r) {
                     if (e) std::rethrow_exception(e);
                     results[static_cast<std::size_t>(i)] = std::move(r);
                   });
    all.push_back(std::move(s));
  }
  ctx.run();
  for (std::size_t i = 0; i < all.size(); ++i) {
    CHECK(results[i].done);
    CHECK(results[i].error == "");
    CHECK(all[i]->dst.rows.size() == 200);
  }
  if (budget) CHECK(budget->held() == 0);  // every byte went back once the rows were acknowledged
  return f;
}

}  // namespace

TEST_CASE("memory budget: streams sharing one budget buffer at most the budget plus one page per reader") {
  constexpr std::uint64_t row = 10'000;       // bytes of a row (its payload; the rest of it is ~120 bytes)
  constexpr std::uint64_t page = 10;          // rows per page
  constexpr std::uint64_t capacity = 300'000;  // three pages' worth for everything
  for (int streams : {1, 3}) {
    CAPTURE(streams);
    // Without a budget each stream holds its channels' worth (pages + batches + in flight) whatever the
    // bytes: the slow destination lets every stream's reader fill them. This is what the budget must cut.
    const auto unbounded = run_streams(streams, nullptr);
    CHECK(unbounded.peak * row > capacity + static_cast<std::uint64_t>(streams) * page * row);
    auto budget = std::make_shared<ferry::engine::memory_budget>(capacity);
    const auto bounded = run_streams(streams, budget);
    // A reader asks before each page for what its previous page took, so it can exceed its ask by
    // what one page grew: at most one page per reader above the capacity.
    CHECK(bounded.peak * row <= capacity + static_cast<std::uint64_t>(streams) * page * row);
    // The accounting itself: the rows, a page body while it is rewritten, the request bodies being sent.
    CHECK(budget->high_water() <= capacity + static_cast<std::uint64_t>(streams) * 2 * page * (row + 200));
    CHECK(budget->high_water() > 0);
  }
}

TEST_CASE("memory budget: a page larger than half the budget is read while partial batches hold bytes") {
  // Pages of 10 rows of ~10 KB ask ~200 KB (body + rows) of a 150 KB budget; batches of 4 rows leave a
  // partial batch (2 rows) held after the first page. A reader waiting for its whole ask would wait for
  // the budget to empty while the partial batch waits for the next page: no progress, for ever.
  for (int streams : {1, 2}) {
    CAPTURE(streams);
    auto budget = std::make_shared<ferry::engine::memory_budget>(150'000);
    run_streams(streams, budget);  // (checks every stream finished, every row arrived, no byte still held)
  }
}
