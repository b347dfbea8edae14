#include "transports/http_client.hpp"

#include "test_support.hpp"
#include "engine/log.hpp"
#include "transports/codec.hpp"
#include "transports/http_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <doctest/doctest.h>
#include <spdlog/sinks/ringbuffer_sink.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <memory>
#include <mutex>
#include <random>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace ferry::transports;
using ferry::engine::io_outcome;
using ferry::test::run_coro;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// A scripted loopback upstream: http_server + recorded requests. Stopped when the test body ends
// (run_coro runs the context until it has no work left).
struct upstream {
  asio::io_context& ctx;
  std::function<asio::awaitable<http_reply>(http_request&)> route;
  std::vector<http_request> seen;
  std::mutex mu;
  http_server srv;
  upstream(asio::io_context& c, std::function<asio::awaitable<http_reply>(http_request&)> r, http_server_config cfg = {})
      : ctx(c), route(std::move(r)), srv(c.get_executor(), cfg, [this](http_request& req) -> asio::awaitable<http_reply> {
          {
            std::lock_guard lk(mu);
            seen.push_back(req);
          }
          co_return co_await route(req);
        }) {
    srv.start();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(srv.port()); }
};

http_reply text(unsigned status, std::string body, std::string content_type = "application/json") {
  http_reply r;
  r.response.result(static_cast<http::status>(status));
  r.response.set(http::field::content_type, content_type);
  r.response.body() = std::move(body);
  return r;
}

/// A server that holds every request until release() (when the test ends): the client never gets an answer.
struct hanging_upstream {
  asio::steady_timer gate;
  upstream up;
  explicit hanging_upstream(asio::io_context& ctx)
      : gate(ctx, asio::steady_timer::time_point::max()), up(ctx, [this](http_request&) -> asio::awaitable<http_reply> {
          co_await gate.async_wait(use_tuple);
          co_return text(200, "late");
        }) {}
  void release() {
    gate.cancel();
    up.srv.stop();
  }
};

struct guard {
  std::function<void()> f;
  ~guard() { f(); }
};

http_request_spec get(std::string target) {
  http_request_spec s;
  s.target = std::move(target);
  return s;
}

}  // namespace

TEST_CASE("http_client: keep-alive connections are reused and a base URL path prefix is kept") {
  asio::io_context ctx;
  upstream up(ctx, [](http_request& req) -> asio::awaitable<http_reply> {
    co_return text(200, std::string(req.target()));
  });
  http_client_config cfg;
  cfg.base_url = up.url() + "/api/";
  http_client client(ctx.get_executor(), cfg);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { up.srv.stop(); client.close_idle(); }};
    for (int i = 0; i < 5; ++i) {
      auto r = co_await client.send(get("/v1/project?limit=" + std::to_string(i)));
      REQUIRE(r.ok());
      CHECK(r.status == 200);
      CHECK(r.body == "/api/v1/project?limit=" + std::to_string(i));
      CHECK(r.content_type == "application/json");
    }
    auto r = co_await client.send(get("v1/x"));
    CHECK(r.body == "/api/v1/x");
  }());
  CHECK(up.srv.connections_accepted() == 1);
  CHECK(client.stats().connections_opened == 1);
  CHECK(client.stats().connections_reused == 5);
  REQUIRE(up.seen.size() == 6);
  CHECK(up.seen[0][http::field::host] == "127.0.0.1:" + std::to_string(up.srv.port()));
  CHECK(up.seen[0][http::field::accept_encoding] == "gzip, deflate");
}

TEST_CASE("http_client: Accept-Encoding is sent only when accept_gzip is set; auto leaves it out on loopback") {
  asio::io_context ctx;
  upstream up(ctx, [](http_request& req) -> asio::awaitable<http_reply> {
    // answers gzip only when asked, as the emulator and the Braintrust API do
    auto r = text(200, std::string(1000, 'x'));
    if (req[http::field::accept_encoding].find("gzip") != std::string_view::npos) {
      r.response.body() = gzip_compress(r.response.body(), 1);
      r.response.set(http::field::content_encoding, "gzip");
    }
    co_return r;
  });
  // the setting as migrate builds its clients: auto towards http://127.0.0.1 means no gzip
  REQUIRE_FALSE(accept_gzip_for(gzip_policy::automatic, up.url()));
  http_client_config plain;
  plain.base_url = up.url();
  plain.accept_gzip = accept_gzip_for(gzip_policy::automatic, up.url());
  http_client_config gz = plain;
  gz.accept_gzip = accept_gzip_for(gzip_policy::on, up.url());
  http_client c_plain(ctx.get_executor(), plain);
  http_client c_gz(ctx.get_executor(), gz);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { up.srv.stop(); c_plain.close_idle(); c_gz.close_idle(); }};
    auto a = co_await c_plain.send(get("/plain"));
    auto b = co_await c_gz.send(get("/gz"));
    CHECK(a.ok());
    CHECK(b.ok());
    CHECK(a.body == std::string(1000, 'x'));
    CHECK(b.body == std::string(1000, 'x'));  // decoded
  }());
  REQUIRE(up.seen.size() == 2);
  CHECK(up.seen[0].find(http::field::accept_encoding) == up.seen[0].end());
  CHECK(up.seen[1][http::field::accept_encoding] == "gzip, deflate");
}

TEST_CASE("http_client: gzip_skip_local_peers leaves gzip out by the address connected to, not the name") {
  // A LAN host known only by name: accept_gzip_for says gzip (the name is not local), and the client
  // drops the header once it sees the peer's address is private/loopback. Simulated with the loopback
  // literal and accept_gzip forced on (what auto yields for a name).
  asio::io_context ctx;
  upstream up(ctx, [](http_request&) -> asio::awaitable<http_reply> { co_return text(200, "ok"); });
  CHECK(accept_gzip_for(gzip_policy::automatic, "http://emulator.internal:8000"));
  http_client_config by_peer;
  by_peer.base_url = up.url();
  by_peer.accept_gzip = true;
  by_peer.gzip_skip_local_peers = true;
  http_client_config by_name = by_peer;
  by_name.gzip_skip_local_peers = false;  // gzip_policy::on
  http_client c_peer(ctx.get_executor(), by_peer);
  http_client c_name(ctx.get_executor(), by_name);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { up.srv.stop(); c_peer.close_idle(); c_name.close_idle(); }};
    CHECK((co_await c_peer.send(get("/a"))).ok());
    CHECK((co_await c_peer.send(get("/b"))).ok());  // a reused connection keeps the decision
    CHECK((co_await c_name.send(get("/c"))).ok());
  }());
  REQUIRE(up.seen.size() == 3);
  CHECK(up.seen[0].find(http::field::accept_encoding) == up.seen[0].end());
  CHECK(up.seen[1].find(http::field::accept_encoding) == up.seen[1].end());
  CHECK(up.seen[2][http::field::accept_encoding] == "gzip, deflate");
}

TEST_CASE("http_client: concurrent requests are capped per origin") {
  asio::io_context ctx;
  std::atomic<int> active{0}, peak{0};
  upstream up(ctx, [&](http_request&) -> asio::awaitable<http_reply> {
    int now = ++active;
    int p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(std::chrono::milliseconds(2));
    co_await t.async_wait(use_tuple);
    --active;
    co_return text(200, "ok");
  });
  http_client_config cfg;
  cfg.base_url = up.url();
  cfg.max_connections_per_origin = 3;
  http_client client(ctx.get_executor(), cfg);
  int ok = 0;
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { up.srv.stop(); client.close_idle(); }};
    auto one = [&]() -> asio::awaitable<void> {
      auto r = co_await client.send(get("/x"));
      if (r.ok()) ++ok;
    };
    co_await (one() && one() && one() && one() && one() && one() && one() && one());
  }());
  CHECK(ok == 8);
  CHECK(peak.load() <= 3);
  CHECK(up.srv.connections_accepted() <= 3);
}

TEST_CASE("http_client: bodies larger than 8 MiB go both ways") {
  asio::io_context ctx;
  upstream up(ctx, [](http_request& req) -> asio::awaitable<http_reply> {
    std::string body(12u << 20, 'r');
    body.replace(0, std::to_string(req.body().size()).size(), std::to_string(req.body().size()));
    co_return text(200, std::move(body), "text/plain");
  });
  http_client_config cfg;
  cfg.base_url = up.url();
  cfg.accept_gzip = false;
  http_client client(ctx.get_executor(), cfg);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { up.srv.stop(); client.close_idle(); }};
    http_request_spec s;
    s.verb = http::verb::post;
    s.target = "/logs3";
    s.body = std::string(10u << 20, 'q');
    auto r = co_await client.send(s);
    REQUIRE(r.ok());
    CHECK(r.body.size() == (12u << 20));
    CHECK(r.body.starts_with(std::to_string(10u << 20)));
  }());
}

TEST_CASE("http_client: a body read with a Content-Length has the parser's slack past its end (no copy to pad it)") {
  asio::io_context ctx;
  upstream up(ctx, [](http_request& req) -> asio::awaitable<http_reply> {
    co_return text(200, std::string(std::stoul(std::string(req.target().substr(3))), 'b'), "text/plain");
  });
  http_client_config cfg;
  cfg.base_url = up.url();
  cfg.accept_gzip = false;
  http_client client(ctx.get_executor(), cfg);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { up.srv.stop(); client.close_idle(); }};
    // (a body whose capacity is exactly its size must be copied before simdjson can parse it in place)
    for (std::size_t n : {std::size_t{1}, std::size_t{4096}, std::size_t{1} << 20, (std::size_t{3} << 20) + 7}) {
      auto r = co_await client.send(get("/n/" + std::to_string(n)));
      REQUIRE(r.ok());
      CHECK(r.body.size() == n);
      CHECK(r.body.capacity() >= n + http_body_slack);
    }
  }());
}

TEST_CASE("http_client: gzip responses and gzip-magic bodies are decoded") {
  asio::io_context ctx;
  const std::string payload = [] {
    std::string s;
    for (int i = 0; i < 2000; ++i) s += R"({"id":")" + std::to_string(i) + R"(","v":1},)";
    return s;
  }();
  upstream up(ctx, [&](http_request& req) -> asio::awaitable<http_reply> {
    if (req.target() == "/signed.json.gz") {
      // a stored .json.gz object served as is (identity stops our server from gzipping it again)
      auto r = text(200, gzip_compress(payload), "application/octet-stream");
      r.response.set(http::field::content_encoding, "identity");
      co_return r;
    }
    co_return text(200, payload);  // the server gzips it (client sent Accept-Encoding)
  });
  http_client_config cfg;
  cfg.base_url = up.url();
  http_client client(ctx.get_executor(), cfg);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { up.srv.stop(); client.close_idle(); }};
    auto a = co_await client.send(get("/btql"));
    REQUIRE(a.ok());
    CHECK(a.body == payload);
    auto b = co_await client.send(get("/signed.json.gz"));
    CHECK(b.body == payload);
    auto raw = get("/signed.json.gz");
    raw.sniff_gzip = false;
    auto c = co_await client.send(raw);
    CHECK(c.body == gzip_compress(payload));
  }());
}

TEST_CASE("http_client: statuses are classified with the server's message") {
  asio::io_context ctx;
  upstream up(ctx, [](http_request& req) -> asio::awaitable<http_reply> {
    const std::string t(req.target());
    if (t == "/429") {
      auto r = text(429, R"({"error":"slow down"})");
      r.response.set(http::field::retry_after, "2");
      co_return r;
    }
    if (t == "/503") co_return text(503, "upstream unavailable", "text/plain");
    if (t == "/401") co_return text(401, R"({"error":"Invalid API key"})");
    if (t == "/404") co_return text(404, R"({"message":"no such project"})");
    co_return text(200, "{}");
  });
  http_client_config cfg;
  cfg.base_url = up.url();
  http_client client(ctx.get_executor(), cfg);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { up.srv.stop(); client.close_idle(); }};
    http_request_spec s;
    s.verb = http::verb::post;
    s.target = "/429";
    s.headers = {{"Authorization", "Bearer sk-secret-value-123"}};
    auto r = co_await client.send(s);
    CHECK(r.outcome == io_outcome::throttled);
    CHECK(r.status == 429);
    REQUIRE(r.retry_after);
    CHECK(*r.retry_after == std::chrono::seconds(2));
    CHECK(r.error == "POST " + up.url() + "/429: 429 Too Many Requests: slow down");
    auto u = co_await client.send(get("/503"));
    CHECK(u.outcome == io_outcome::transient);
    CHECK(u.error.ends_with("503 Service Unavailable: upstream unavailable"));
    auto f = co_await client.send(get("/401"));
    CHECK(f.outcome == io_outcome::fatal);
    CHECK(f.error.ends_with("401 Unauthorized: Invalid API key"));
    auto n = co_await client.send(get("/404"));
    CHECK(n.outcome == io_outcome::not_found);
  }());
}

TEST_CASE("http_client: 413 from the server body limit is fatal") {
  asio::io_context ctx;
  http_server_config scfg;
  scfg.body_limit = 4096;
  upstream up(ctx, [](http_request&) -> asio::awaitable<http_reply> { co_return text(200, "{}"); }, scfg);
  http_client_config cfg;
  cfg.base_url = up.url();
  http_client client(ctx.get_executor(), cfg);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { up.srv.stop(); client.close_idle(); }};
    http_request_spec s;
    s.verb = http::verb::post;
    s.target = "/logs3";
    s.body = std::string(100'000, 'x');
    auto r = co_await client.send(s);
    CHECK(r.outcome == io_outcome::fatal);
    CHECK(r.status == 413);
    CHECK(r.error.find("exceeds the server limit of 4096 bytes") != std::string::npos);
  }());
}

TEST_CASE("http_client: dropped, truncated and refused connections are transient") {
  asio::io_context ctx;
  upstream up(ctx, [](http_request& req) -> asio::awaitable<http_reply> {
    auto r = text(200, std::string(50'000, 'z'));
    if (req.target() == "/drop") r.action = reply_action::drop;
    if (req.target() == "/truncate") r.action = reply_action::truncate_body;
    co_return r;
  });
  http_client_config cfg;
  cfg.base_url = up.url();
  cfg.accept_gzip = false;
  http_client client(ctx.get_executor(), cfg);
  // a port nobody listens on: bind, read the port, close
  std::uint16_t dead_port = 0;
  {
    tcp::acceptor a(ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    dead_port = a.local_endpoint().port();
  }
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { up.srv.stop(); client.close_idle(); }};
    auto d = co_await client.send(get("/drop"));
    CHECK(d.outcome == io_outcome::transient);
    CHECK(d.status == 0);
    CHECK(d.error.find("read failed") != std::string::npos);
    auto t = co_await client.send(get("/truncate"));
    CHECK(t.outcome == io_outcome::transient);
    auto ok = co_await client.send(get("/fine"));
    CHECK(ok.ok());
    auto refused = co_await client.send(get("http://127.0.0.1:" + std::to_string(dead_port) + "/x"));
    CHECK(refused.outcome == io_outcome::transient);
    CHECK(refused.error.find("connect failed") != std::string::npos);
    auto bad = co_await client.send(get("ftp://127.0.0.1/x"));
    CHECK(bad.outcome == io_outcome::fatal);
  }());
}

TEST_CASE("http_client: a slow server hits the read timeout") {
  asio::io_context ctx;
  hanging_upstream hang(ctx);
  http_client_config cfg;
  cfg.base_url = hang.up.url();
  cfg.read_timeout = std::chrono::milliseconds(50);
  http_client client(ctx.get_executor(), cfg);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] {
      hang.release();
      client.close_idle();
    }};
    auto r = co_await client.send(get("/slow"));
    CHECK(r.outcome == io_outcome::timed_out);
    CHECK(r.error.find("timeout") != std::string::npos);
    // the total timeout override applies too
    http_request_spec s = get("/slow");
    s.timeout = std::chrono::milliseconds(30);
    auto r2 = co_await client.send(s);
    CHECK(r2.outcome == io_outcome::timed_out);
  }());
}

TEST_CASE("http_client: redirects; Authorization is dropped when the origin changes; 303 becomes GET") {
  asio::io_context ctx;
  upstream other(ctx, [](http_request& req) -> asio::awaitable<http_reply> {
    co_return text(200, std::string(req.method_string()) + " " + std::string(req.target()));
  });
  std::string other_url = other.url();
  upstream up(ctx, [&](http_request& req) -> asio::awaitable<http_reply> {
    const std::string t(req.target());
    http_reply r = text(200, std::string(req.method_string()) + " " + t);
    if (t == "/to-other") {
      r = text(307, "");
      r.response.set(http::field::location, other_url + "/signed?X-Amz-Signature=abc");
    } else if (t == "/same") {
      r = text(302, "");
      r.response.set(http::field::location, "/final");
    } else if (t == "/see-other") {
      r = text(303, "");
      r.response.set(http::field::location, "/result");
    } else if (t == "/loop") {
      r = text(302, "");
      r.response.set(http::field::location, "/loop");
    }
    co_return r;
  });
  http_client_config cfg;
  cfg.base_url = up.url();
  http_client client(ctx.get_executor(), cfg);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { up.srv.stop(); other.srv.stop(); client.close_idle(); }};
    auto with_auth = [](http::verb v, std::string t) {
      http_request_spec s;
      s.verb = v;
      s.target = std::move(t);
      s.headers = {{"Authorization", "Bearer k-123456"}};
      return s;
    };
    auto a = co_await client.send(with_auth(http::verb::get, "/to-other"));
    REQUIRE(a.ok());
    CHECK(a.body == "GET /signed?X-Amz-Signature=abc");
    CHECK(a.url == other_url + "/signed");  // signed query stripped from what we show
    auto b = co_await client.send(with_auth(http::verb::get, "/same"));
    CHECK(b.body == "GET /final");
    auto s = with_auth(http::verb::post, "/see-other");
    s.body = "{\"x\":1}";
    auto c = co_await client.send(s);
    CHECK(c.body == "GET /result");
    auto d = co_await client.send(get("/loop"));
    CHECK(d.outcome == io_outcome::fatal);
    CHECK(d.error.find("too many redirects") != std::string::npos);
  }());
  REQUIRE(other.seen.size() == 1);
  CHECK(other.seen[0].find(http::field::authorization) == other.seen[0].end());
  bool final_had_auth = false, result_had_body = true;
  for (auto& r : up.seen) {
    if (r.target() == "/final") final_had_auth = r.find(http::field::authorization) != r.end();
    if (r.target() == "/result") result_had_body = !r.body().empty();
  }
  CHECK(final_had_auth);
  CHECK_FALSE(result_had_body);
}

TEST_CASE("http_client: a keep-alive connection closed by the server is replaced transparently") {
  asio::io_context ctx;
  // A raw server: answers one request per connection with keep-alive headers, then closes.
  tcp::acceptor acc(ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto port = acc.local_endpoint().port();
  int accepted = 0;
  asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
    for (;;) {
      auto [ec, sock] = co_await acc.async_accept(use_tuple);
      if (ec) co_return;
      ++accepted;
      beast::flat_buffer buf;
      http::request<http::string_body> req;
      auto [rec, rn] = co_await http::async_read(sock, buf, req, use_tuple);
      (void)rn;
      if (rec) continue;
      http::response<http::string_body> res{http::status::ok, 11};
      res.body() = "n" + std::to_string(accepted);
      res.keep_alive(true);
      res.prepare_payload();
      co_await http::async_write(sock, res, use_tuple);
      sock.close();
    }
  }, asio::detached);
  http_client_config cfg;
  cfg.base_url = "http://127.0.0.1:" + std::to_string(port);
  http_client client(ctx.get_executor(), cfg);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { acc.close(); client.close_idle(); }};
    auto a = co_await client.send(get("/a"));
    CHECK(a.body == "n1");
    http_request_spec post;
    post.verb = http::verb::post;
    post.target = "/b";
    post.body = "{}";
    post.idempotent = true;
    auto b = co_await client.send(post);
    CHECK(b.ok());
    CHECK(b.body == "n2");
  }());
  CHECK(accepted == 2);
}

TEST_CASE("http_client: http proxy gets absolute-form requests, NO_PROXY bypasses it") {
  asio::io_context ctx;
  upstream target(ctx, [](http_request&) -> asio::awaitable<http_reply> { co_return text(200, "direct"); });
  upstream proxy(ctx, [](http_request& req) -> asio::awaitable<http_reply> {
    co_return text(200, "via proxy " + std::string(req.target()));
  });
  http_client_config cfg;
  cfg.base_url = target.url();
  cfg.proxy.http_proxy = "http://u:p@127.0.0.1:" + std::to_string(proxy.srv.port());
  auto client = std::make_unique<http_client>(ctx.get_executor(), cfg);
  cfg.proxy.no_proxy = "localhost,127.0.0.1";
  auto bypass = std::make_unique<http_client>(ctx.get_executor(), cfg);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { target.srv.stop(); proxy.srv.stop(); client->close_idle(); bypass->close_idle(); }};
    auto a = co_await client->send(get("/v1/x?a=1"));
    CHECK(a.body == "via proxy " + target.url() + "/v1/x?a=1");
    auto b = co_await bypass->send(get("/v1/x"));
    CHECK(b.body == "direct");
  }());
  REQUIRE(proxy.seen.size() == 1);
  CHECK(proxy.seen[0][http::field::proxy_authorization] == "Basic dTpw");
  CHECK(proxy.seen[0][http::field::host] == "127.0.0.1:" + std::to_string(target.srv.port()));
}

// ---- TLS ------------------------------------------------------------------------------------------

namespace {

struct test_cert {
  std::string cert_pem;
  std::string key_pem;
};

// A self-signed certificate for 127.0.0.1 / localhost, made with OpenSSL 3 APIs.
test_cert make_self_signed() {
  EVP_PKEY* pkey = EVP_EC_gen("P-256");
  REQUIRE(pkey);
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24);
  X509_set_pubkey(x, pkey);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost"},
                            std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
    REQUIRE(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  REQUIRE(X509_sign(x, pkey, EVP_sha256()) > 0);
  auto to_string = [](BIO* b) {
    char* data = nullptr;
    long n = BIO_get_mem_data(b, &data);
    std::string s(data, static_cast<std::size_t>(n));
    BIO_free(b);
    return s;
  };
  BIO* cb = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(cb, x);
  BIO* kb = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(kb, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  test_cert c{to_string(cb), to_string(kb)};
  X509_free(x);
  EVP_PKEY_free(pkey);
  return c;
}

// A TLS server that answers every request on a connection with 200 "secure <target>".
struct tls_server {
  asio::ssl::context ctx{asio::ssl::context::tls_server};
  tcp::acceptor acc;
  int handshakes_ok = 0;
  tls_server(asio::io_context& io, const test_cert& c) : acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    ctx.use_certificate_chain(asio::buffer(c.cert_pem));
    ctx.use_private_key(asio::buffer(c.key_pem), asio::ssl::context::pem);
    asio::co_spawn(io, run(), asio::detached);
  }
  std::uint16_t port() const { return acc.local_endpoint().port(); }
  asio::awaitable<void> run() {
    for (;;) {
      auto [ec, sock] = co_await acc.async_accept(use_tuple);
      if (ec) co_return;
      asio::co_spawn(acc.get_executor(), serve(std::move(sock)), asio::detached);
    }
  }
  asio::awaitable<void> serve(tcp::socket sock) {
    asio::ssl::stream<tcp::socket> s(std::move(sock), ctx);
    auto [hec] = co_await s.async_handshake(asio::ssl::stream_base::server, use_tuple);
    if (hec) co_return;
    ++handshakes_ok;
    beast::flat_buffer buf;
    for (;;) {
      http::request<http::string_body> req;
      auto [rec, rn] = co_await http::async_read(s, buf, req, use_tuple);
      (void)rn;
      if (rec) co_return;
      http::response<http::string_body> res{http::status::ok, 11};
      res.body() = "secure " + std::string(req.target());
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(s, res, use_tuple);
      (void)wn;
      if (wec) co_return;
    }
  }
};

// A CONNECT-only forward proxy: replies 200 and pipes bytes both ways.
struct connect_proxy {
  tcp::acceptor acc;
  std::vector<std::string> connects;
  explicit connect_proxy(asio::io_context& io) : acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    asio::co_spawn(io, run(), asio::detached);
  }
  std::uint16_t port() const { return acc.local_endpoint().port(); }
  static asio::awaitable<void> pipe(tcp::socket& from, tcp::socket& to) {
    std::array<char, 16384> b;
    for (;;) {
      auto [ec, n] = co_await from.async_read_some(asio::buffer(b), use_tuple);
      if (ec) break;
      auto [wec, wn] = co_await asio::async_write(to, asio::buffer(b.data(), n), use_tuple);
      (void)wn;
      if (wec) break;
    }
    boost::system::error_code ignored;
    to.shutdown(tcp::socket::shutdown_send, ignored);
  }
  asio::awaitable<void> run() {
    for (;;) {
      auto [ec, sock] = co_await acc.async_accept(use_tuple);
      if (ec) co_return;
      asio::co_spawn(acc.get_executor(), tunnel(std::move(sock)), asio::detached);
    }
  }
  asio::awaitable<void> tunnel(tcp::socket client) {
    beast::flat_buffer buf;
    http::request<http::empty_body> req;
    auto [rec, rn] = co_await http::async_read(client, buf, req, use_tuple);
    (void)rn;
    if (rec || req.method() != http::verb::connect) co_return;
    const std::string target(req.target());
    connects.push_back(target);
    const auto colon = target.rfind(':');
    tcp::socket upstream_sock(client.get_executor());
    auto [cec] = co_await upstream_sock.async_connect(
        tcp::endpoint(asio::ip::make_address(target.substr(0, colon)),
                      static_cast<std::uint16_t>(std::stoi(target.substr(colon + 1)))),
        use_tuple);
    if (cec) co_return;
    static const std::string ok = "HTTP/1.1 200 Connection established\r\n\r\n";
    co_await asio::async_write(client, asio::buffer(ok), use_tuple);
    co_await (pipe(client, upstream_sock) && pipe(upstream_sock, client));
  }
};

}  // namespace

TEST_CASE("http_client: TLS verification fails by default, passes with a CA file or insecure") {
  asio::io_context ctx;
  const auto cert = make_self_signed();
  ferry::test::temp_dir dir("ferry-tls");
  const auto ca_path = dir.str() + "/ca.pem";
  std::ofstream(ca_path) << cert.cert_pem;
  tls_server srv(ctx, cert);
  const std::string base = "https://127.0.0.1:" + std::to_string(srv.port());

  http_client_config cfg;
  cfg.base_url = base;
  http_client strict(ctx.get_executor(), cfg);
  cfg.ca_file = ca_path;
  http_client trusted(ctx.get_executor(), cfg);
  cfg.ca_file.clear();
  cfg.insecure = true;
  http_client insecure(ctx.get_executor(), cfg);
  cfg.insecure = false;
  cfg.ca_file = dir.str() + "/missing.pem";
  CHECK_THROWS_WITH_AS(http_client(ctx.get_executor(), cfg), doctest::Contains("missing.pem"), std::invalid_argument);
  // Readable but not PEM: CAs are parsed at the first handshake, which then fails naming the file.
  cfg.ca_file = dir.str() + "/garbage.pem";
  std::ofstream(cfg.ca_file) << "not a certificate\n";
  http_client garbage(ctx.get_executor(), cfg);

  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { srv.acc.close(); strict.close_idle(); trusted.close_idle(); insecure.close_idle(); }};
    auto a = co_await strict.send(get("/v1/x"));
    CHECK(a.outcome == io_outcome::fatal);
    CHECK(a.error.find("tls handshake failed") != std::string::npos);
    auto b = co_await trusted.send(get("/v1/x"));
    CHECK(b.ok());
    CHECK(b.body == "secure /v1/x");
    auto b2 = co_await trusted.send(get("/v1/y"));
    CHECK(b2.body == "secure /v1/y");
    auto c = co_await insecure.send(get("/v1/z"));
    CHECK(c.ok());
    auto d = co_await garbage.send(get("/v1/z"));
    CHECK(d.outcome == io_outcome::fatal);
    CHECK(d.error.find("garbage.pem': cannot load") != std::string::npos);
    garbage.close_idle();
  }());
  CHECK(trusted.stats().connections_opened == 1);
  CHECK(srv.handshakes_ok == 2);
}

TEST_CASE("http_client: insecure warns once per client, not per request; verified clients do not warn") {
  asio::io_context ctx;
  const auto cert = make_self_signed();
  tls_server srv(ctx, cert);
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  auto log = ferry::engine::logger("http");
  log->sinks().push_back(sink);
  guard detach{[&] { log->sinks().pop_back(); }};
  auto warnings = [&] {
    std::size_t n = 0;
    for (const auto& line : sink->last_formatted())
      if (line.find("tls certificate verification is disabled") != std::string::npos) ++n;
    return n;
  };

  http_client_config cfg;
  cfg.base_url = "https://127.0.0.1:" + std::to_string(srv.port());
  http_client verified(ctx.get_executor(), cfg);
  CHECK(warnings() == 0);
  cfg.insecure = true;
  http_client insecure(ctx.get_executor(), cfg);
  CHECK(warnings() == 1);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { srv.acc.close(); insecure.close_idle(); verified.close_idle(); }};
    for (int i = 0; i < 3; ++i) {
      auto r = co_await insecure.send(get("/v1/x" + std::to_string(i)));
      CHECK(r.ok());
      insecure.close_idle();  // a new connection (and handshake) per request
    }
  }());
  CHECK(srv.handshakes_ok == 3);
  CHECK(warnings() == 1);
}

namespace {

// Accepts TCP connections and never says a word (a stalled TLS peer or a proxy that never answers CONNECT).
struct silent_server {
  tcp::acceptor acc;
  std::vector<tcp::socket> held;
  explicit silent_server(asio::io_context& io) : acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    asio::co_spawn(io, run(), asio::detached);
  }
  std::uint16_t port() const { return acc.local_endpoint().port(); }
  asio::awaitable<void> run() {
    for (;;) {
      auto [ec, sock] = co_await acc.async_accept(use_tuple);
      if (ec) co_return;
      held.push_back(std::move(sock));
    }
  }
  void close() {
    boost::system::error_code ignored;
    acc.close(ignored);
    for (auto& s : held) s.close(ignored);
  }
};

}  // namespace

TEST_CASE("http_client: a TLS handshake or a proxy CONNECT that never answers hits the connect timeout") {
  asio::io_context ctx;
  silent_server stalled(ctx);
  http_client_config cfg;
  cfg.base_url = "https://127.0.0.1:" + std::to_string(stalled.port());
  cfg.connect_timeout = std::chrono::milliseconds(50);
  cfg.insecure = true;
  http_client direct(ctx.get_executor(), cfg);
  cfg.base_url = "https://127.0.0.1:9";  // never reached: the proxy does not answer
  cfg.proxy.https_proxy = "127.0.0.1:" + std::to_string(stalled.port());
  http_client proxied(ctx.get_executor(), cfg);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { stalled.close(); direct.close_idle(); proxied.close_idle(); }};
    auto a = co_await direct.send(get("/v1/x"));
    CHECK(a.outcome == io_outcome::timed_out);
    CHECK(a.status == 0);
    CHECK(a.error.find("timeout") != std::string::npos);
    auto b = co_await proxied.send(get("/v1/x"));
    CHECK(b.outcome == io_outcome::timed_out);
    CHECK(b.status == 0);
  }());
  CHECK(stalled.held.size() == 2);
}

TEST_CASE("http_client: https through a CONNECT proxy") {
  asio::io_context ctx;
  const auto cert = make_self_signed();
  ferry::test::temp_dir dir("ferry-tls");
  const auto ca_path = dir.str() + "/ca.pem";
  std::ofstream(ca_path) << cert.cert_pem;
  tls_server srv(ctx, cert);
  connect_proxy proxy(ctx);
  const auto srv_port = srv.port();
  http_client_config cfg;
  cfg.base_url = "https://127.0.0.1:" + std::to_string(srv.port());
  cfg.ca_file = ca_path;
  cfg.proxy.https_proxy = "127.0.0.1:" + std::to_string(proxy.port());
  http_client client(ctx.get_executor(), cfg);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { srv.acc.close(); proxy.acc.close(); client.close_idle(); }};
    auto a = co_await client.send(get("/tunnelled"));
    CHECK(a.ok());
    CHECK(a.body == "secure /tunnelled");
    auto b = co_await client.send(get("/again"));
    CHECK(b.body == "secure /again");
  }());
  REQUIRE(proxy.connects.size() == 1);
  CHECK(proxy.connects[0] == "127.0.0.1:" + std::to_string(srv_port));
}

// Each request runs as its own co_spawn with a cancellation slot, as pipelines run their tasks; a
// second coroutine emits a terminal cancellation after a random number of executor hops (so it lands
// in every phase: before the start, pool, connect, write, read, and just as the reply completes), and
// the signal dies in the request's completion handler, as a finished task's does. Asio 1.26's
// co_spawn cancellation handler used to post the cancellation to the connection's strand with a
// pointer into that signal: a cancellation racing the end of the exchange read freed memory (ASan).
TEST_CASE("http_client: requests cancelled at random moments end cleanly, as operation_aborted") {
  asio::io_context ctx;
  std::mt19937 server_rng(7);
  upstream up(ctx, [&](http_request& req) -> asio::awaitable<http_reply> {
    const int hops = static_cast<int>(server_rng() % 4);
    for (int i = 0; i < hops; ++i) co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    co_return text(200, std::string(req.target()));
  });
  http_client_config cfg;
  cfg.base_url = up.url();
  cfg.accept_gzip = false;
  http_client client(ctx.get_executor(), cfg);
  int ok = 0, aborted = 0;
  std::vector<std::string> errors;
  std::mt19937 rng(12345);
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] { up.srv.stop(); client.close_idle(); }};
    auto ex = co_await asio::this_coro::executor;
    constexpr int rounds = 60, n = 8;
    for (int round = 0; round < rounds; ++round) {
      std::vector<http_request_spec> specs(n);
      std::vector<std::unique_ptr<asio::cancellation_signal>> sigs(n);
      int pending = n;
      asio::steady_timer all_done(ex, asio::steady_timer::time_point::max());
      for (int i = 0; i < n; ++i) {
        specs[static_cast<std::size_t>(i)] = get("/r" + std::to_string(round) + "-" + std::to_string(i));
        auto& sig = sigs[static_cast<std::size_t>(i)];
        sig = std::make_unique<asio::cancellation_signal>();
        asio::co_spawn(ex, client.send(specs[static_cast<std::size_t>(i)]),
                       asio::bind_cancellation_slot(sig->slot(), [&, i](std::exception_ptr e, http_result r) {
                         if (e) {
                           try {
                             std::rethrow_exception(e);
                           } catch (const boost::system::system_error& se) {
                             if (se.code() == asio::error::operation_aborted) ++aborted;
                             else errors.push_back(se.what());
                           } catch (const std::exception& x) {
                             errors.push_back(x.what());
                           }
                         } else if (r.ok()) {
                           ++ok;
                         } else {
                           errors.push_back(r.error);
                         }
                         sigs[static_cast<std::size_t>(i)].reset();  // the task is gone, and its signal with it
                         if (--pending == 0) all_done.cancel();
                       }));
        const int hops = static_cast<int>(rng() % 24);
        asio::co_spawn(
            ex,
            [&sigs, i, hops]() -> asio::awaitable<void> {
              for (int k = 0; k < hops; ++k) co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
              if (auto& s = sigs[static_cast<std::size_t>(i)]) s->emit(asio::cancellation_type::terminal);
            },
            asio::detached);
      }
      co_await all_done.async_wait(use_tuple);
      // let the emitters of this round finish before their vectors go away
      for (int k = 0; k < 32; ++k) co_await asio::post(ex, asio::use_awaitable);
    }
    // The client is still usable afterwards.
    auto r = co_await client.send(get("/after"));
    CHECK(r.ok());
    CHECK(r.body == "/after");
  }());
  INFO("first error: " << (errors.empty() ? std::string() : errors.front()));
  CHECK(errors.empty());  // a cancellation is operation_aborted, never a transient/fatal result
  CHECK(ok + aborted == 60 * 8);
  CHECK(ok > 0);
  CHECK(aborted > 0);
}

TEST_CASE("http_client: cancellation ends a request waiting on a server that never answers") {
  asio::io_context ctx;
  hanging_upstream hang(ctx);
  http_client_config cfg;
  cfg.base_url = hang.up.url();
  cfg.read_timeout = std::chrono::milliseconds(60'000);  // only the cancellation can end it
  http_client client(ctx.get_executor(), cfg);
  asio::cancellation_signal sig;
  bool aborted = false;
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    guard g{[&] {
      hang.release();
      client.close_idle();
    }};
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer done(ex, asio::steady_timer::time_point::max());
    http_request_spec s = get("/hang");
    asio::co_spawn(ex, client.send(s), asio::bind_cancellation_slot(sig.slot(), [&](std::exception_ptr e, http_result) {
                     if (e) {
                       try {
                         std::rethrow_exception(e);
                       } catch (const boost::system::system_error& se) {
                         aborted = se.code() == asio::error::operation_aborted;
                       } catch (...) {
                       }
                     }
                     done.cancel();
                   }));
    // cancel once the server holds the request
    while (hang.up.seen.empty()) co_await asio::post(ex, asio::use_awaitable);
    sig.emit(asio::cancellation_type::terminal);
    co_await done.async_wait(use_tuple);
  }(), std::chrono::seconds(5));
  CHECK(aborted);
}
