#include "pipelines/streams/http_stream_io.hpp"

#include "pipelines/streams/stream_runner.hpp"

#include "transports/http_client.hpp"
#include "transports/http_server.hpp"

#include "../streams/fakes.hpp"
#include "test_support.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/beast/http/field.hpp>
#include <doctest/doctest.h>

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>

// Bad input over the wire (issue 6): a purpose-built upstream on 127.0.0.1:0 serves the source's /btql
// (from fake_source's rows) and the destination's /logs3 (into fake_sink, which parses strictly), and
// misbehaves on cue. The real http_event_source / http_event_sink + run_stream copy one stream into a
// RocksDB state dir; each test reopens the state dir and checks what was committed and the error line.

using namespace ferry;
using namespace ferry::pipelines::streams;
namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {

transports::http_reply make_reply(unsigned status, std::string body,
                                  transports::reply_action action = transports::reply_action::send) {
  transports::http_reply r;
  r.response.result(status);
  r.response.set(http::field::content_type, "application/json");
  r.response.body() = std::move(body);
  r.response.prepare_payload();
  r.action = action;
  return r;
}

struct wire {
  asio::io_context ctx;
  engine::manual_clock clk;  // retry backoff takes no real time
  test::fake_source src;
  test::fake_sink dst;
  std::string src_key = "sk-wire-src-9d41c7be02aa";  // accepted until `src_revoked`
  std::string dst_key = "sk-wire-dst-77f0e3a19b5c";  // accepted until `dst_revoked`
  bool src_revoked = false, dst_revoked = false;
  int btql_calls = 0, logs3_calls = 0;
  /// Called with the page the source would send; returns a reply to send instead (or changes `body`).
  std::function<std::optional<transports::http_reply>(int call, std::string& body)> on_btql;
  std::function<std::optional<transports::http_reply>(int call)> on_logs3;
  transports::http_server srv{ctx.get_executor(), {}, [this](transports::http_request& req) -> asio::awaitable<transports::http_reply> {
                                co_return co_await handle(req);
                              }};
  std::unique_ptr<transports::http_client> client;
  std::unique_ptr<transports::api_client> src_api, dst_api;  // one per key, over the one client
  test::temp_dir dir{"ferry-bad-input"};
  stream_spec spec;
  stream_options opts;

  wire() {
    srv.start();
    transports::http_client_config hc;
    hc.base_url = "http://127.0.0.1:" + std::to_string(srv.port());
    hc.connect_timeout = std::chrono::milliseconds(2000);
    hc.read_timeout = std::chrono::milliseconds(2000);
    hc.request_timeout = std::chrono::milliseconds(5000);
    client = std::make_unique<transports::http_client>(ctx.get_executor(), hc);
    transports::api_client_config ac;
    ac.clock = &clk;
    ac.api_key = src_key;
    src_api = std::make_unique<transports::api_client>(*client, ac);
    ac.api_key = dst_key;
    dst_api = std::make_unique<transports::api_client>(*client, ac);
    src.rows = test::make_rows(30);
    spec.kind = stream_kind::project_logs;
    spec.source_ids = {"sp"};
    spec.dest_ids = {{"sp", "dp"}};
    spec.stream_id = "logs:sp";
    opts.fetch_limit = 10;
    opts.min_fetch_limit = 2;
    opts.batch.max_rows = 4;
    opts.max_inflight_batches = 1;  // batch N goes out after N-1 was acknowledged: a deterministic cut
    opts.retry.max_attempts = 3;
    opts.retry.base_delay = std::chrono::milliseconds(10);
  }

  asio::awaitable<transports::http_reply> handle(transports::http_request& req) {
    const std::string target(req.target());
    const std::string auth(req[http::field::authorization]);
    // A refused key is echoed back in the error, as some servers do: it must never reach our output.
    auto refuse = [&] { return make_reply(401, "{\"error\":\"invalid api key " + auth.substr(auth.find(' ') + 1) + "\"}"); };
    if (target == "/btql") {
      if (src_revoked || auth != "Bearer " + src_key) co_return refuse();
      ++btql_calls;
      auto r = co_await src.btql(req.body());
      if (on_btql)
        if (auto x = on_btql(btql_calls, r.body)) co_return std::move(*x);
      co_return make_reply(200, std::move(r.body));
    }
    if (target == "/logs3") {
      if (dst_revoked || auth != "Bearer " + dst_key) co_return refuse();
      ++logs3_calls;
      if (on_logs3)
        if (auto x = on_logs3(logs3_calls)) co_return std::move(*x);
      auto r = co_await dst.logs3(req.body());  // throws (=> 500) on a body Boost.JSON refuses
      co_return make_reply(static_cast<unsigned>(r.status), std::move(r.body));
    }
    co_return make_reply(404, "{\"error\":\"no route\"}");
  }

  // One run of the stream against the server; the state dir is opened for the run and closed after.
  stream_result run() {
    auto st = stores::state_store::open(dir.path());
    checkpoint_store store(st);
    http_event_source source(*src_api);
    http_event_sink sink(*dst_api, "org");
    // Not test::run_coro: the listening server keeps the io_context busy, so run until the stream is
    // done (bounded: a hang fails the test).
    std::optional<stream_result> res;
    std::exception_ptr error;
    asio::co_spawn(ctx, run_stream(spec, opts, source, sink, store, clk), [&](std::exception_ptr e, stream_result r) {
      error = e;
      if (!e) res.emplace(std::move(r));
    });
    ctx.restart();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!res && !error && std::chrono::steady_clock::now() < deadline) ctx.run_one_for(std::chrono::milliseconds(100));
    client->close_idle();
    if (error) std::rethrow_exception(error);
    if (!res) throw std::runtime_error("run_stream did not finish");
    return std::move(*res);
  }

  std::optional<stream_state> committed() {
    auto st = stores::state_store::open(dir.path());
    checkpoint_store store(st);
    return store.load("logs:sp");
  }

  // The stream failed with one line containing `needle`; the state dir holds exactly `rows` rows up
  // to `cursor`, all in the destination; the key appears nowhere.
  void check_stopped(const stream_result& res, const std::string& cursor, std::uint64_t rows, const std::string& needle) {
    INFO("error: " << res.error);
    CHECK_FALSE(res.done);
    CHECK(res.error.find("stream logs project=sp") != std::string::npos);
    CHECK(res.error.find(needle) != std::string::npos);
    CHECK(res.error.find('\n') == std::string::npos);
    CHECK(res.error.find(src_key) == std::string::npos);
    CHECK(res.error.find(dst_key) == std::string::npos);
    auto s = committed();
    REQUIRE(s);
    CHECK_FALSE(s->done);
    CHECK(s->cursor == cursor);
    CHECK(s->counters.rows == rows);
    CHECK(s->last_error == res.error);
    for (std::uint64_t i = 0; i < rows; ++i) CHECK(dst.rows.count(src.rows[i].id) == 1);
  }

  void check_resumes() {
    on_btql = nullptr;
    on_logs3 = nullptr;
    src_revoked = dst_revoked = false;
    auto res = run();
    CHECK(res.error == "");
    CHECK(res.done);
    CHECK(dst.rows.size() == src.rows.size());
    auto s = committed();
    REQUIRE(s);
    CHECK(s->done);
    CHECK(s->cursor == src.rows.back().key);
  }
};

void replace_once(std::string& s, const std::string& from, const std::string& to) {
  auto p = s.find(from);
  REQUIRE_MESSAGE(p != std::string::npos, "no '" << from << "' in the page");
  s.replace(p, from.size(), to);
}

using btql_hook = std::function<std::optional<transports::http_reply>(int call, std::string& body)>;

// Page 1 (rows 0-9) is good, page 2 is bad: page 1 is written and committed, nothing of page 2 is, and
// a re-run with a good source resumes after p00000009 and completes.
void bad_source_page(btql_hook hook, const std::string& needle) {
  wire w;
  w.on_btql = std::move(hook);
  auto res = w.run();
  w.check_stopped(res, "p00000009", 10, needle);
  CHECK(w.dst.rows.count("r10") == 0);
  w.check_resumes();
}

std::optional<transports::http_reply> pass() { return std::nullopt; }

}  // namespace

TEST_CASE("bad input over the wire: a 200 page with a cut JSON body stops the stream at the last good batch") {
  bad_source_page([](int call, std::string& b) {
    if (call == 2) b.resize(b.size() / 2);
    return pass();
  }, "never closed: a truncated response");
}

TEST_CASE("bad input over the wire: a transfer cut short on every attempt stops the stream at the last good batch") {
  bad_source_page([](int call, std::string& b) -> std::optional<transports::http_reply> {
    if (call >= 2) return make_reply(200, b, transports::reply_action::truncate_body);
    return pass();
  }, "POST /btql failed for the page after key 'p00000009'");
}

TEST_CASE("bad input over the wire: a page that is not JSON, not an object or has no data stops the stream") {
  SUBCASE("an HTML page") {
    bad_source_page([](int call, std::string&) -> std::optional<transports::http_reply> {
      if (call == 2) return make_reply(200, "<html><h1>Bad gateway</h1></html>");
      return pass();
    }, "starts '<html><h1>Bad gateway");
  }
  SUBCASE("not an object") {
    bad_source_page([](int call, std::string& b) {
      if (call == 2) b = "[1,2,3]";
      return pass();
    }, "not a JSON object");
  }
  SUBCASE("no data") {
    bad_source_page([](int call, std::string& b) {
      if (call == 2) b = "{\"results\":[]}";
      return pass();
    }, "no \"data\" array");
  }
}

TEST_CASE("bad input over the wire: rows without id or _pagination_key stop the stream naming the row") {
  SUBCASE("no id") {
    bad_source_page([](int call, std::string& b) {
      if (call == 2) replace_once(b, "\"id\":\"r13\",", "");
      return pass();
    }, "row #3: row has no `id`");
  }
  SUBCASE("no _pagination_key") {
    bad_source_page([](int call, std::string& b) {
      if (call == 2) replace_once(b, "\"_pagination_key\":\"p00000013\",", "");
      return pass();
    }, "row id=r13: row has no `_pagination_key`");
  }
}

TEST_CASE("bad input over the wire: keys going backwards or a repeated page stop the stream instead of looping") {
  SUBCASE("the source repeats the previous page") {
    std::string first;
    bad_source_page([&first](int call, std::string& b) {
      if (call == 1) first = b;
      if (call == 2) b = first;
      return pass();
    }, "is not after p00000009");
  }
  SUBCASE("keys going backwards inside a page") {
    bad_source_page([](int call, std::string& b) {
      if (call == 2) replace_once(b, "\"_pagination_key\":\"p00000015\"", "\"_pagination_key\":\"p00000001\"");
      return pass();
    }, "keys go backwards");
  }
}

TEST_CASE("bad input over the wire: non-UTF-8 bytes in a row are replaced and the destination accepts the batch") {
  wire w;
  w.src.rows[12].extra = "\"input\":\"na\xEFve \xC3(\"";
  auto res = w.run();
  CHECK(res.error == "");
  CHECK(res.done);
  REQUIRE(w.dst.rows.count("r12") == 1);
  CHECK(boost::json::parse(w.dst.rows["r12"]).as_object().at("input").as_string() == "na\xEF\xBF\xBDve \xEF\xBF\xBD(");
  CHECK(w.dst.rows.size() == 30);
  CHECK(w.committed()->done);
}

TEST_CASE("bad input over the wire: a destination answer that is not an acknowledgement is never committed") {
  wire w;
  std::string needle;
  SUBCASE("200 with a non-JSON body") {
    w.on_logs3 = [](int call) -> std::optional<transports::http_reply> {
      if (call == 3) return make_reply(200, "<!doctype html><title>Sign in</title>");
      return std::nullopt;
    };
    needle = "POST /logs3 answered HTTP 200 but the body is not JSON";
  }
  SUBCASE("200 with a JSON error object") {
    w.on_logs3 = [](int call) -> std::optional<transports::http_reply> {
      if (call == 3) return make_reply(200, "{\"error\":\"quota exceeded for org\"}");
      return std::nullopt;
    };
    needle = "the body is an error object: quota exceeded for org";
  }
  auto res = w.run();
  w.check_stopped(res, "p00000007", 8, needle);
  CHECK(res.error.find("batch=3 keys p00000008..p00000011") != std::string::npos);
  w.check_resumes();
}

TEST_CASE("bad input over the wire: a key revoked mid-run stops the stream, commits what was acknowledged, never shows the key") {
  wire w;
  std::string cursor, needle;
  std::uint64_t rows = 0;
  SUBCASE("the destination refuses its key after two batches") {
    w.on_logs3 = [&w](int call) -> std::optional<transports::http_reply> {
      if (call == 2) w.dst_revoked = true;  // batch 2 is acknowledged; every later request gets 401
      return std::nullopt;
    };
    cursor = "p00000007";
    rows = 8;
    needle = "POST /logs3 failed: HTTP 401";
    SUBCASE("hint") { needle = "destination API key was rejected (check BT_DEST_API_KEY"; }
  }
  SUBCASE("the source refuses its key after two pages") {
    w.on_btql = [&w](int call, std::string&) -> std::optional<transports::http_reply> {
      if (call == 2) w.src_revoked = true;  // page 2 is served; every later request gets 401
      return std::nullopt;
    };
    cursor = "p00000019";  // both pages read were written and committed
    rows = 20;
    needle = "POST /btql failed";
    SUBCASE("hint") { needle = "source API key was rejected (check BT_SOURCE_API_KEY"; }
  }
  auto res = w.run();
  w.check_stopped(res, cursor, rows, needle);
  CHECK(res.error.find("[REDACTED]") != std::string::npos);  // the server echoed the key; it was redacted
  w.check_resumes();
}
