// The end of a stream is confirmed (issue 14): one empty BTQL page while rows remain (a hiccup of a
// loaded source) must not end the stream; only a second empty read of the same cursor does.

#include "pipelines/streams/stream_runner.hpp"

#include "fakes.hpp"
#include "stream_harness.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

using namespace ferry::pipelines::streams;
using ferry::test::make_rows;

namespace {

call_result empty_page() {
  call_result r;
  r.status = 200;
  r.body = R"({"data":[]})";
  return r;
}

}  // namespace

TEST_CASE("stream: one spurious empty page mid-stream does not end it; all rows copied") {
  for (int hiccup_at : {1, 2, 3}) {  // the first page, a middle page, the last page with rows
    CAPTURE(hiccup_at);
    ferry::test::stream_harness<> h;
    h.src.rows = make_rows(30);  // 3 pages of 10
    h.src.fault = [&](int call, std::size_t) -> std::optional<call_result> {
      if (call == hiccup_at) return empty_page();
      return std::nullopt;
    };
    auto res = h.run();
    CHECK(res.error == "");
    CHECK(res.done);
    CHECK(h.dst.rows.size() == 30);
    auto st = h.store.load("logs:sp");
    REQUIRE(st);
    CHECK(st->counters.rows == 30);
    CHECK(st->cursor == h.src.rows.back().key);
  }
}

TEST_CASE("stream: the end is two empty reads of the same cursor") {
  ferry::test::stream_harness<> h;
  h.src.rows = make_rows(20);
  auto res = h.run();
  CHECK(res.done);
  CHECK(h.dst.rows.size() == 20);
  CHECK(h.src.calls == 4);  // two pages of rows, then the end read twice
}
