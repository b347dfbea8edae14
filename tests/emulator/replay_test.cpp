// Replay: matching and ordering (sans-I/O), then loopback: record an emulator session through
// http_client's observer, replay it over a real socket, faults on top.
#include "emulator/replay.hpp"

#include "emulator/emulator.hpp"
#include "engine/log.hpp"
#include "test_support.hpp"
#include "transports/codec.hpp"
#include "transports/http_client.hpp"
#include "transports/recorder.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

using namespace ferry::emulator;
using ferry::test::run_coro;
namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace fs = std::filesystem;
namespace tr = ferry::transports;

namespace {

struct guard {
  std::function<void()> f;
  ~guard() { f(); }
};

/// Runs `body` with an http_client for `srv` on `ctx`; afterwards the server stops and the client closes its
/// idle connections, so `ctx` runs out of work.
template <typename Body>
void with_client(asio::io_context& ctx, replay_server& srv, Body body) {
  tr::http_client_config cc;
  cc.base_url = srv.base_url();
  tr::http_client client(ctx.get_executor(), cc);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] {
      srv.stop();
      client.close_idle();
    }};
    co_await body(client);
  }());
}

tr::exchange_record rec(std::string method, std::string target, std::string body, unsigned status,
                        std::string response, std::string side = "source") {
  tr::exchange_record r;
  r.side = std::move(side);
  r.method = std::move(method);
  r.target = std::move(target);
  r.request_body = std::move(body);
  r.status = status;
  r.response_headers = {{"content-type", "application/json"}};
  r.response_body = std::move(response);
  r.duration_ms = 2;
  return r;
}

tr::http_request_spec spec(http::verb verb, std::string target, std::string body = "") {
  tr::http_request_spec s;
  s.verb = verb;
  s.target = std::move(target);
  s.body = std::move(body);
  if (!s.body.empty()) s.headers.emplace_back("Content-Type", "application/json");
  return s;
}

std::string recording_text(const fs::path& dir) {
  std::string text;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::ifstream in(e.path(), std::ios::binary);
    std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (tr::has_gzip_magic(raw)) {
      std::string err;
      auto plain = tr::decompress(raw, true, 1u << 30, err);
      REQUIRE_MESSAGE(plain.has_value(), err);
      text += *plain;
    }
    text += raw;
  }
  return text;
}

}  // namespace

TEST_CASE("replay: the key ignores JSON key order, query order and BTQL whitespace, nothing else") {
  CHECK(replay_key("post", "/btql", "{\"query\":\"select: *  |\\n from: project_logs('p')\",\"fmt\":\"json\"}") ==
        replay_key("POST", "/btql", "{ \"fmt\": \"json\", \"query\": \"select: * | from: project_logs('p')\" }"));
  CHECK(replay_key("POST", "/btql", "select: *   | limit: 5") == replay_key("POST", "/btql", "select: * | limit: 5"));
  CHECK(replay_key("GET", "/v1/project?b=2&a=1", "") == replay_key("GET", "/v1/project?a=1&b=2", ""));
  CHECK(replay_key("GET", "/v1/project?a=1", "") != replay_key("GET", "/v1/project?a=2", ""));
  CHECK(replay_key("GET", "/v1/project", "") != replay_key("GET", "/v1/dataset", ""));
  CHECK(replay_key("POST", "/v1/x", "{\"a\":1}") != replay_key("PUT", "/v1/x", "{\"a\":1}"));
  // Outside /btql, whitespace inside JSON strings is data.
  CHECK(replay_key("POST", "/v1/x", "{\"a\":\"x  y\"}") != replay_key("POST", "/v1/x", "{\"a\":\"x y\"}"));
  CHECK(replay_key("POST", "/btql", "{\"query\":\"limit: 5\"}") != replay_key("POST", "/btql", "{\"query\":\"limit: 6\"}"));
  // The fallback key of a /btql request leaves its LIMIT out (text or JSON query), nothing else.
  const std::string q1000 = "{\"query\":\"select: * | filter: _pagination_key > 'k' | limit: 1000\"}";
  const std::string q500 = "{\"query\":\"select: *  | filter: _pagination_key > 'k' |\\n limit: 500\"}";
  CHECK(replay_key("POST", "/btql", q1000) != replay_key("POST", "/btql", q500));
  CHECK(replay_key("POST", "/btql", q1000, true) == replay_key("POST", "/btql", q500, true));
  CHECK(replay_key("POST", "/btql", q1000, true) !=
        replay_key("POST", "/btql", "{\"query\":\"select: * | filter: _pagination_key > 'x' | limit: 1000\"}", true));
  CHECK(replay_key("POST", "/btql", "{\"query\":{\"from\":\"x\",\"limit\":10}}", true) ==
        replay_key("POST", "/btql", "{\"query\":{\"limit\":20,\"from\":\"x\"}}", true));
  CHECK(replay_key("POST", "/btql", "select: unlimited: 5", true) == replay_key("POST", "/btql", "select: unlimited: 5"));
  // A request carrying a secret matches its redacted recording.
  CHECK(replay_key("POST", "/v1/ai_secret", "{\"name\":\"K\",\"secret\":\"real-value-123\"}") ==
        replay_key("POST", "/v1/ai_secret", "{\"secret\":\"[REDACTED]\",\"name\":\"K\"}"));
}

TEST_CASE("replay: identical requests are served in recorded order, then the last one repeats or loops") {
  std::vector<tr::exchange_record> recs = {
      rec("GET", "/v1/project", "", 200, "A"), rec("GET", "/v1/project", "", 200, "B"),
      rec("GET", "/v1/project", "", 200, "X", "dest"),  // the other side is not served
      rec("GET", "/v1/project", "", 200, "C"), rec("POST", "/btql", "{\"query\":\"q\"}", 200, "Q")};
  SUBCASE("without loop") {
    replay_index idx(recs, "source", false);
    CHECK(idx.size() == 4);
    CHECK(idx.keys() == 2);
    std::string got;
    for (int i = 0; i < 5; ++i) got += idx.next("GET", "/v1/project", "")->response_body;
    CHECK(got == "ABCCC");
    CHECK(idx.next("POST", "/btql", "{ \"query\": \"q\" }")->response_body == "Q");
    CHECK(idx.next("GET", "/v1/dataset", "") == nullptr);
    const auto st = idx.stats();
    CHECK(st.matched == 6);
    CHECK(st.unmatched == 1);
    CHECK(st.repeated == 2);
    idx.rewind();
    CHECK(idx.next("GET", "/v1/project", "")->response_body == "A");
  }
  SUBCASE("with loop") {
    replay_index idx(recs, "source", true);
    std::string got;
    for (int i = 0; i < 7; ++i) got += idx.next("GET", "/v1/project", "")->response_body;
    CHECK(got == "ABCABCA");
  }
  SUBCASE("every side") {
    replay_index idx(recs, "", false);
    std::string got;
    for (int i = 0; i < 4; ++i) got += idx.next("GET", "/v1/project", "")->response_body;
    CHECK(got == "ABXC");
  }
}

TEST_CASE("replay: a recorded emulator session replays with identical statuses and bodies") {
  const std::string key = "rec-key-7d1e0c5a9b";
  ferry::engine::register_secret(key);
  ferry::test::temp_dir tmp;
  const fs::path dir = tmp.path() / "rec";
  asio::io_context ctx;

  emulator_config ec;
  ec.api_keys = {{key, "rec-org", ""}};
  emulator emu(ctx.get_executor(), ec);
  emu.start();

  struct seen {
    tr::http_request_spec spec;
    unsigned status;
    std::string body;
  };
  std::vector<seen> original;
  {
    tr::recorder recorder(dir);
    tr::http_client_config cc;
    cc.base_url = emu.base_url();
    cc.observer = recorder.observer("source");
    tr::http_client client(ctx.get_executor(), cc);
    run_coro(ctx, [&]() -> asio::awaitable<void> {
      guard g{[&] {
        emu.stop();
        client.close_idle();
      }};
      auto call = [&](tr::http_request_spec s) -> asio::awaitable<tr::http_result> {
        s.headers.emplace_back("Authorization", "Bearer " + key);
        auto r = co_await client.send(s);
        original.push_back({s, r.status, r.body});
        co_return r;
      };
      auto p1 = co_await call(spec(http::verb::post, "/v1/project", "{\"name\":\"p1\"}"));
      REQUIRE(p1.status == 200);
      const std::string pid(boost::json::parse(p1.body).at("id").as_string());
      co_await call(spec(http::verb::get, "/v1/project?limit=10&org_name=rec-org"));
      co_await call(spec(http::verb::post, "/v1/project", "{\"name\":\"p2\"}"));
      co_await call(spec(http::verb::get, "/v1/project?limit=10&org_name=rec-org"));  // same request, new answer
      co_await call(spec(http::verb::post, "/btql",
                         "{\"query\":\"select: * | from: project_logs('" + pid + "') | limit: 5\",\"fmt\":\"json\"}"));
      co_await call(spec(http::verb::get, "/v1/project/00000000-0000-0000-0000-000000000000"));  // a 404 too
    }());
    CHECK(recorder.stats().exchanges == 6);
  }
  REQUIRE(original.size() == 6);
  CHECK(original[1].body != original[3].body);
  CHECK(original[5].status == 404);

  // Security: the API key was in every request's Authorization header; the recording never has it.
  const std::string text = recording_text(dir);
  CHECK(text.find(key) == std::string::npos);
  CHECK(text.find("\"side\":\"source\"") != std::string::npos);

  replay_options ro;
  ro.dir = dir.string();
  replay_server srv(ctx.get_executor(), ro);
  srv.start();
  CHECK(srv.index().size() == 6);
  with_client(ctx, srv, [&](tr::http_client& client) -> asio::awaitable<void> {
    for (std::size_t i = 0; i < original.size(); ++i) {
      CAPTURE(i);
      auto s = original[i].spec;
      s.headers.clear();  // another key, or none: replay does not check auth
      if (i == 4) {       // the same BTQL query, keys reordered and spaced differently
        auto v = boost::json::parse(s.body).as_object();
        std::string q(v.at("query").as_string());
        s.body = "{ \"fmt\" : \"json\",\n \"query\": \"" + q.replace(q.find(" | "), 3, "\\n  |  ") + "\" }";
      }
      auto r = co_await client.send(s);
      CHECK(r.status == original[i].status);
      CHECK(r.body == original[i].body);
    }
    // Past its recorded occurrences, a request gets the last answer again.
    auto again = co_await client.send(spec(http::verb::get, "/v1/project?org_name=rec-org&limit=10"));
    CHECK(again.body == original[3].body);
    auto miss = co_await client.send(spec(http::verb::get, "/v1/project?limit=11"));
    CHECK(miss.status == 404);
    CHECK(miss.body.find("no recorded exchange for GET /v1/project?limit=11") != std::string::npos);
    auto stats = co_await client.send(spec(http::verb::get, "/_replay/stats"));
    auto st = boost::json::parse(stats.body).as_object();
    CHECK(st.at("matched").to_number<int>() == 7);
    CHECK(st.at("unmatched").to_number<int>() == 1);
    CHECK(st.at("repeated").to_number<int>() == 1);
  });
}

TEST_CASE("replay: faults, recorded failures and --speed apply on top of the recording") {
  ferry::test::temp_dir tmp;
  {
    tr::recorder r(tmp.path());
    r.record(rec("GET", "/v1/project", "", 200, "{\"objects\":[]}"));
    r.record(rec("GET", "/v1/role", "", 200, "{\"objects\":[\"r\"]}"));
    r.record(rec("GET", "/v1/group", "", 0, ""));  // the recorded call got no response
    r.record(rec("POST", "/btql", "{\"query\":\"q\"}", 503, "{\"error\":\"busy\"}"));
    r.record(rec("POST", "/btql", "{\"query\":\"from: x\\nlimit: 1000\"}", 200, "{\"data\":[1,2,3]}"));
  }
  asio::io_context ctx;
  replay_options ro;
  ro.dir = tmp.str();
  ro.speed = 1000;  // 2 ms recorded => 2 us added
  ro.fault_specs = {"path=/v1/project,kind=status,status=429,retry_after=1,count=1", "path=/v1/role,kind=drop",
                    "path=/btql,kind=btql_limit,limit_above=500,status=504"};
  replay_server srv(ctx.get_executor(), ro);
  srv.start();
  with_client(ctx, srv, [&](tr::http_client& client) -> asio::awaitable<void> {
    auto first = co_await client.send(spec(http::verb::get, "/v1/project"));
    CHECK(first.status == 429);
    CHECK(first.retry_after_header == "1");
    CHECK(first.outcome == ferry::engine::io_outcome::throttled);
    auto second = co_await client.send(spec(http::verb::get, "/v1/project"));
    CHECK(second.status == 200);
    CHECK(second.body == "{\"objects\":[]}");
    auto dropped = co_await client.send(spec(http::verb::get, "/v1/role"));
    CHECK(dropped.status == 0);
    CHECK_FALSE(dropped.ok());
    auto failed = co_await client.send(spec(http::verb::get, "/v1/group"));
    CHECK(failed.status == 0);
    CHECK_FALSE(failed.ok());
    auto busy = co_await client.send(spec(http::verb::post, "/btql", "{\"query\":\"q\"}"));
    CHECK(busy.status == 503);
    CHECK(busy.body == "{\"error\":\"busy\"}");
    // The client shrinks its page after the injected 504; the recorded 1000-row page still answers.
    auto big = co_await client.send(spec(http::verb::post, "/btql", "{\"query\":\"from: x\\nlimit: 1000\"}"));
    CHECK(big.status == 504);
    auto small = co_await client.send(spec(http::verb::post, "/btql", "{\"query\":\"from: x\\nlimit: 500\"}"));
    CHECK(small.status == 200);
    CHECK(small.body == "{\"data\":[1,2,3]}");
  });
  CHECK(srv.index().stats().loose == 1);
  const auto fs = srv.faults().stats();
  CHECK(fs.faults_by_kind.at("status") == 1);
  CHECK(fs.faults_by_kind.at("drop") >= 1);  // http_client retries a GET dropped on a reused connection once
}

TEST_CASE("replay: configuration errors name what to fix") {
  ferry::test::temp_dir tmp;
  asio::io_context ctx;
  replay_options ro;
  ro.dir = (tmp.path() / "missing").string();
  CHECK_THROWS_WITH_AS(replay_server(ctx.get_executor(), ro), doctest::Contains("missing: not a directory"),
                       std::runtime_error);
  CHECK(run_replay(ro) == 2);
  {
    tr::recorder r(tmp.path());
    r.record(rec("GET", "/v1/project", "", 200, "{}", "dest"));
  }
  ro.dir = tmp.str();
  CHECK_THROWS_WITH_AS(replay_server(ctx.get_executor(), ro),
                       doctest::Contains("holds no 'source' exchanges (sides present: dest)"), std::invalid_argument);
  ro.side = "dest";
  ro.speed = -1;
  CHECK_THROWS_WITH_AS(replay_server(ctx.get_executor(), ro), doctest::Contains("--speed"), std::invalid_argument);
  ro.speed = 0;
  ro.fault_specs = {"kind=nonsense"};
  CHECK_THROWS_AS(replay_server(ctx.get_executor(), ro), fault_config_error);
}
