#include "pipelines/streams/stream_runner.hpp"

#include "pipelines/streams/row_rewriter.hpp"

#include "engine/log.hpp"

#include "fakes.hpp"
#include "stream_harness.hpp"
#include "test_support.hpp"

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <functional>
#include <string>

// Bad input (issue 6): each case fails the stream with one line naming the stream and what to fix, and
// the committed state stays at the last acknowledged batch, so a later run resumes there and converges.
// Non-UTF-8 bytes are the exception: they are repaired (U+FFFD) and the row is copied.

using namespace ferry::pipelines::streams;
using ferry::engine::io_outcome;
using ferry::test::fake_sink;
using ferry::test::fake_source;
using ferry::test::make_rows;
namespace asio = boost::asio;

namespace {

// The fake source, with a hook that rewrites the body of call N (the bad page).
class mangling_source : public fake_source {
 public:
  std::function<void(int call, std::string& body)> mangle;
  asio::awaitable<call_result> btql(std::string body) override {
    auto r = co_await fake_source::btql(std::move(body));
    if (mangle) mangle(calls, r.body);
    co_return r;
  }
};

struct harness : ferry::test::stream_harness<mangling_source> {
  harness() { src.rows = make_rows(30); }

  // The stream failed with a one-line error containing `needle`, and its committed state is exactly
  // `rows` rows up to `cursor`, every one of them in the destination.
  void check_stopped(const stream_result& res, const std::string& cursor, std::uint64_t rows, const std::string& needle) {
    INFO("error: " << res.error);
    CHECK_FALSE(res.done);
    CHECK(res.error.find("stream logs project=sp") != std::string::npos);
    CHECK(res.error.find(needle) != std::string::npos);
    CHECK(res.error.find('\n') == std::string::npos);
    auto s = store.load("logs:sp");
    REQUIRE(s);
    CHECK_FALSE(s->done);
    CHECK(s->cursor == cursor);
    CHECK(s->counters.rows == rows);
    CHECK(s->last_error == res.error);
    for (std::uint64_t i = 0; i < rows; ++i) CHECK(dst.rows.count(src.rows[i].id) == 1);
  }

  // A later run with good input resumes at the committed key and completes the copy.
  void check_resumes() {
    src.mangle = nullptr;
    dst.fault = nullptr;
    src.fault = nullptr;
    auto res = run();
    CHECK(res.error == "");
    CHECK(res.done);
    CHECK(dst.rows.size() == src.rows.size());
    auto s = store.load("logs:sp");
    REQUIRE(s);
    CHECK(s->cursor == src.rows.back().key);
    CHECK(s->counters.rows >= src.rows.size());
  }
};

void replace_once(std::string& s, const std::string& from, const std::string& to) {
  auto p = s.find(from);
  REQUIRE_MESSAGE(p != std::string::npos, "no '" << from << "' in the page");
  s.replace(p, from.size(), to);
}

call_result reply(int status, io_outcome o, std::string body, std::string error = {}) {
  call_result r;
  r.status = status;
  r.outcome = o;
  r.body = std::move(body);
  r.error = std::move(error);
  return r;
}

}  // namespace

TEST_CASE("bad input: every truncation of a page is refused by the rewriter, none is a short page") {
  harness h;
  std::string page;
  h.src.mangle = [&](int call, std::string& body) { if (call == 1) page = body; };
  auto full = h.run();  // to capture a real first page
  REQUIRE(full.done);
  REQUIRE(page.size() > 100);
  rewrite_config rc;
  rc.stream_name = "logs project=sp";
  rc.source_object_id = "sp";
  rc.dest_ids = {{"sp", "dp"}};
  row_rewriter rw(rc);
  std::string copy = page;
  CHECK(rw.rewrite(copy, "").rows.size() == 10);
  for (std::size_t n = 0; n < page.size(); ++n) {
    std::string cut = page.substr(0, n);
    CAPTURE(cut);
    CHECK_THROWS_AS(rw.rewrite(cut, ""), stream_error);
  }
}

TEST_CASE("bad input: a malformed source page fails the stream at the last good batch, then resumes") {
  harness h;
  std::string needle;
  SUBCASE("truncated in the middle (200 with a cut body)") {
    h.src.mangle = [](int call, std::string& b) { if (call == 2) b.resize(b.size() / 2); };
    needle = "never closed: a truncated response";
  }
  SUBCASE("cut right after a complete row") {
    h.src.mangle = [](int call, std::string& b) { if (call == 2) b.resize(b.find("},{") + 1); };
    needle = "the body is cut short (2 bracket(s) never closed";
  }
  SUBCASE("cut right after the opening of data") {
    h.src.mangle = [](int call, std::string& b) { if (call == 2) b = "{\"data\":["; };
    needle = "the body is cut short (2 bracket(s) never closed";
  }
  SUBCASE("not JSON at all (an HTML page)") {
    h.src.mangle = [](int call, std::string& b) { if (call == 2) b = "<html><body>502 Bad Gateway</body></html>"; };
    needle = "starts '<html><body>502 Bad Gateway";
  }
  SUBCASE("not an object") {
    h.src.mangle = [](int call, std::string& b) { if (call == 2) b = "[{\"id\":\"x\"}]"; };
    needle = "not a JSON object";
  }
  SUBCASE("no data") {
    h.src.mangle = [](int call, std::string& b) { if (call == 2) b = "{\"rows\":[]}"; };
    needle = "no \"data\" array";
  }
  SUBCASE("data is null") {
    h.src.mangle = [](int call, std::string& b) { if (call == 2) b = "{\"data\":null}"; };
    needle = "no \"data\" array";
  }
  SUBCASE("an error object with status 200") {
    h.src.mangle = [](int call, std::string& b) { if (call == 2) b = "{\"error\":\"query timed out\"}"; };
    needle = "query timed out";
  }
  auto res = h.run();
  // Page 1 (rows 0-9) was read whole: written and committed; nothing of page 2 was.
  h.check_stopped(res, "p00000009", 10, needle);
  CHECK(res.error.find("POST /btql page after key 'p00000009'") != std::string::npos);
  CHECK(h.dst.rows.count("r10") == 0);
  h.check_resumes();
}

TEST_CASE("bad input: rows without id or _pagination_key fail the stream naming the row") {
  harness h;
  std::string needle;
  SUBCASE("no id") {
    h.src.mangle = [](int call, std::string& b) { if (call == 2) replace_once(b, "\"id\":\"r12\",", ""); };
    needle = "row #2: row has no `id`";
  }
  SUBCASE("empty id") {
    h.src.mangle = [](int call, std::string& b) { if (call == 2) replace_once(b, "\"id\":\"r12\"", "\"id\":\"\""); };
    needle = "row has no `id`";
  }
  SUBCASE("id is not a string") {
    h.src.mangle = [](int call, std::string& b) { if (call == 2) replace_once(b, "\"id\":\"r12\"", "\"id\":12"); };
    needle = "`id` is not a string";
  }
  SUBCASE("no _pagination_key") {
    h.src.mangle = [](int call, std::string& b) { if (call == 2) replace_once(b, "\"_pagination_key\":\"p00000012\",", ""); };
    needle = "row id=r12: row has no `_pagination_key`";
  }
  SUBCASE("null _pagination_key") {
    h.src.mangle = [](int call, std::string& b) {
      if (call == 2) replace_once(b, "\"_pagination_key\":\"p00000012\"", "\"_pagination_key\":null");
    };
    needle = "row id=r12: row has no `_pagination_key`";
  }
  auto res = h.run();
  h.check_stopped(res, "p00000009", 10, needle);
  CHECK(h.dst.rows.count("r10") == 0);  // the good rows of a bad page are not written either
  h.check_resumes();
}

TEST_CASE("bad input: keys that go backwards or repeat the previous page fail instead of looping or skipping") {
  harness h;
  std::string needle = "is not after";
  SUBCASE("the source repeats the previous page (ignores the cursor)") {
    std::string first;
    h.src.mangle = [&](int call, std::string& b) {
      if (call == 1) first = b;
      if (call == 2) b = first;
    };
  }
  SUBCASE("the next page starts before the previous page's last key") {
    h.src.mangle = [](int call, std::string& b) {
      if (call == 2) replace_once(b, "\"_pagination_key\":\"p00000010\"", "\"_pagination_key\":\"p00000005\"");
    };
  }
  SUBCASE("keys go backwards inside a page") {
    h.src.mangle = [](int call, std::string& b) {
      if (call == 2) replace_once(b, "\"_pagination_key\":\"p00000014\"", "\"_pagination_key\":\"p00000011\"");
    };
  }
  SUBCASE("a key repeats inside a page") {
    h.src.mangle = [](int call, std::string& b) {
      if (call == 2) replace_once(b, "\"_pagination_key\":\"p00000014\"", "\"_pagination_key\":\"p00000013\"");
    };
  }
  auto res = h.run();
  h.check_stopped(res, "p00000009", 10, needle);
  CHECK(h.src.calls == 2);  // no loop: the stream stopped at the first bad page
  h.check_resumes();
}

TEST_CASE("bad input: invalid UTF-8 sequences are replaced by U+FFFD (maximal subparts)") {
  struct tc {
    std::string in, out;
    std::size_t n;
  };
  const std::string r = "\xEF\xBF\xBD";
  for (const auto& c : {tc{"plain ascii", "plain ascii", 0},
                        tc{"caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x82\xAC", "caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x82\xAC", 0},
                        tc{"caf\xE9!", "caf" + r + "!", 1},                    // Latin-1 byte
                        tc{"a\xC0\xAF" "b", "a" + r + r + "b", 2},            // overlong lead, lone continuation
                        tc{"x\xE2\x82", "x" + r, 1},                          // cut 3-byte sequence at the end
                        tc{"\xE2\x82x", r + "x", 1},                          // cut 3-byte sequence
                        tc{"\xED\xA0\x80", r + r + r, 3},                     // UTF-16 surrogate
                        tc{"\xF4\x90\x80\x80", r + r + r + r, 4},             // above U+10FFFF
                        tc{"\xF0\x9F\x98", r, 1},                             // cut 4-byte sequence
                        tc{"\xFF\xFE", r + r, 2}}) {
    std::string s = c.in;
    CAPTURE(c.in);
    CHECK(replace_invalid_utf8(s) == c.n);
    CHECK(s == c.out);
  }
}

TEST_CASE("bad input: a row with non-UTF-8 bytes is copied with U+FFFD and the destination accepts it") {
  harness h;
  h.src.rows[12].extra = "\"input\":\"caf\xE9 \xFF\",\"metadata\":{\"k\xFE\":1}";
  auto res = h.run();  // fake_sink parses every /logs3 body strictly (Boost.JSON validates UTF-8)
  CHECK(res.error == "");
  CHECK(res.done);
  REQUIRE(h.dst.rows.count("r12") == 1);
  auto row = boost::json::parse(h.dst.rows["r12"]).as_object();
  CHECK(row.at("input").as_string() == "caf\xEF\xBF\xBD \xEF\xBF\xBD");
  CHECK(row.at("metadata").as_object().contains("k\xEF\xBF\xBD"));
  CHECK(h.dst.rows.size() == 30);
}

TEST_CASE("bad input: logs3_ack_problem accepts JSON acknowledgements only") {
  CHECK(logs3_ack_problem("{}") == "");
  CHECK(logs3_ack_problem("{\"ids\":[\"a\",\"b\"]}") == "");
  CHECK(logs3_ack_problem("{\"error\":null,\"ids\":[]}") == "");
  CHECK(logs3_ack_problem("").find("empty") != std::string::npos);
  CHECK(logs3_ack_problem(" \r\n").find("empty") != std::string::npos);
  CHECK(logs3_ack_problem("<html>login</html>").find("not JSON") != std::string::npos);
  CHECK(logs3_ack_problem("{\"ids\":[").find("not JSON") != std::string::npos);
  CHECK(logs3_ack_problem("{\"error\":\"org is read-only\"}").find("error object: org is read-only") != std::string::npos);
  CHECK(logs3_ack_problem("{\"error\":{\"code\":7}}").find("error object: {\"code\":7}") != std::string::npos);
}

TEST_CASE("bad input: a /logs3 answer that is not an acknowledgement never commits its batch") {
  harness h;
  h.opts.max_inflight_batches = 1;  // batch N is sent after N-1 was acknowledged
  std::string body, needle;
  SUBCASE("200 with an HTML body") {
    body = "<html>Sign in</html>";
    needle = "answered HTTP 200 but the body is not JSON";
  }
  SUBCASE("200 with an empty body") {
    needle = "answered HTTP 200 but the body is empty";
  }
  SUBCASE("200 with a JSON error object") {
    body = "{\"error\":\"destination org is read-only\"}";
    needle = "error object: destination org is read-only";
  }
  h.dst.fault = [&](int call, const std::string&) -> std::optional<call_result> {
    if (call == 3) return reply(200, io_outcome::ok, body);
    return std::nullopt;
  };
  auto res = h.run();
  // Batches 1 and 2 (rows 0-7) were acknowledged; batch 3 (rows 8-11) was not.
  h.check_stopped(res, "p00000007", 8, needle);
  CHECK(res.error.find("batch=3 keys p00000008..p00000011") != std::string::npos);
  CHECK(h.store.inflight("logs:sp").size() >= 1);  // the unacknowledged batch is recorded for the resume
  h.check_resumes();
}

TEST_CASE("bad input: a key revoked mid-run stops the stream at the last acknowledged batch without printing it") {
  const std::string key = "sk-revoked-8f3a9c1d2e";
  ferry::engine::register_secret(key);
  harness h;
  h.opts.max_inflight_batches = 1;
  std::string cursor, hint;
  std::uint64_t rows = 0;
  SUBCASE("destination 401 on /logs3") {
    h.dst.fault = [&](int call, const std::string&) -> std::optional<call_result> {
      if (call >= 3)
        return reply(401, io_outcome::fatal, "", "POST http://dest/logs3: 401 Unauthorized: invalid api key " + key + "\nretry later");
      return std::nullopt;
    };
    cursor = "p00000007";
    rows = 8;
    hint = "destination API key was rejected (check BT_DEST_API_KEY";
  }
  SUBCASE("source 403 on /btql") {
    h.src.fault = [&](int call, std::size_t) -> std::optional<call_result> {
      if (call >= 3) return reply(403, io_outcome::fatal, "", "POST http://src/btql: 403 Forbidden: key " + key + " revoked");
      return std::nullopt;
    };
    cursor = "p00000019";  // pages 1 and 2 were read, so written and committed
    rows = 20;
    hint = "source API key was rejected (check BT_SOURCE_API_KEY";
  }
  auto res = h.run();
  h.check_stopped(res, cursor, rows, hint);
  CHECK(res.error.find(key) == std::string::npos);
  CHECK(res.error.find("[REDACTED]") != std::string::npos);
  CHECK(h.store.load("logs:sp")->last_error.find(key) == std::string::npos);
  h.check_resumes();
}

TEST_CASE("bad input: a page before the resume key (source ignores an inclusive cursor) fails the stream") {
  harness h;
  h.opts.created_after = "2026-01-05";  // logs preflight: the first key in the window, read inclusively
  h.src.mangle = [](int call, std::string& b) {
    if (call == 2) replace_once(b, "\"_pagination_key\":\"p00000004\"", "\"_pagination_key\":\"p00000003\"");
  };
  auto res = h.run();
  INFO("error: " << res.error);
  CHECK_FALSE(res.done);
  CHECK(res.error.find("row id=r4: `_pagination_key` p00000003 is before the resume key p00000004") != std::string::npos);
  auto s = h.store.load("logs:sp");
  REQUIRE(s);
  CHECK(s->cursor == "p00000004");  // the preflight's key, still inclusive: nothing was committed
  CHECK(s->cursor_inclusive);
  CHECK(s->counters.rows == 0);
  CHECK(h.dst.rows.empty());
  h.src.mangle = nullptr;
  auto again = h.run();
  CHECK(again.error == "");
  CHECK(again.done);
  CHECK(h.dst.rows.count("r4") == 1);
  CHECK(h.dst.rows.count("r3") == 0);  // created 2026-01-04: outside the window
}

TEST_CASE("bad input: an error body quoting a key shows no part of it, even where the excerpt is cut") {
  const std::string key = "sk-echoed-1f2e3d4c5b6a";
  ferry::engine::register_secret(key);
  // The excerpt keeps 200 characters of the message: put the key across that boundary.
  std::string msg = std::string(190, 'x') + " " + key + " tail";
  auto why = logs3_ack_problem("{\"error\":\"" + msg + "\"}");
  CHECK(why.find("sk-echoed") == std::string::npos);
  CHECK(why.find("sk-") == std::string::npos);
  CHECK(why.find("error object: xxx") != std::string::npos);
}
