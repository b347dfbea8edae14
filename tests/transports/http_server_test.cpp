#include "transports/http_server.hpp"

#include "test_support.hpp"
#include "transports/codec.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <doctest/doctest.h>

#include <stdexcept>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace ferry::transports;
using ferry::test::run_coro;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct exchange_result {
  boost::system::error_code ec;
  http::response<http::string_body> res;
};

asio::awaitable<void> connect(beast::tcp_stream& s, std::uint16_t port) {
  co_await s.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), asio::use_awaitable);
}

asio::awaitable<exchange_result> exchange(beast::tcp_stream& s, http_request req) {
  exchange_result r;
  req.prepare_payload();
  auto [wec, wn] = co_await http::async_write(s, req, use_tuple);
  (void)wn;
  if (wec) {
    r.ec = wec;
    co_return r;
  }
  beast::flat_buffer buf;
  http::response_parser<http::string_body> p;
  p.body_limit(1u << 30);
  auto [rec, rn] = co_await http::async_read(s, buf, p, use_tuple);
  (void)rn;
  r.ec = rec;
  r.res = p.release();
  co_return r;
}

// run_coro runs the context until it runs out of work: stop the server when the test body ends
// (also on a failed REQUIRE) so its accept loop and sessions finish.
struct stop_guard {
  http_server& srv;
  ~stop_guard() { srv.stop(); }
};

/// Runs `body` with one connection to `srv` on `ctx`; the server stops when the body ends.
template <typename Body>
void with_connection(asio::io_context& ctx, http_server& srv, Body body) {
  const auto port = srv.port();
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    stop_guard guard{srv};
    beast::tcp_stream s(ctx);
    co_await connect(s, port);
    co_await body(s);
  }());
}

http_request make_req(http::verb v, std::string target, std::string body = {}) {
  http_request req{v, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.body() = std::move(body);
  return req;
}

http_handler echo_handler() {
  return [](http_request& req) -> asio::awaitable<http_reply> {
    std::string target(req.target());
    if (target == "/throw") throw std::runtime_error("boom \"quoted\"");
    http_reply r;
    r.response.result(http::status::ok);
    r.response.set(http::field::content_type, "text/plain");
    if (target == "/big") r.response.body() = std::string(300'000, 'x');
    else r.response.body() = std::string(req.method_string()) + " " + target + " " + std::to_string(req.body().size());
    if (target == "/drop") r.action = reply_action::drop;
    if (target == "/truncate") {
      r.response.body() = std::string(10'000, 'y');
      r.action = reply_action::truncate_body;
    }
    co_return r;
  };
}

}  // namespace

TEST_CASE("http_server: serves keep-alive requests on one connection") {
  asio::io_context ctx;
  http_server srv(ctx.get_executor(), {}, echo_handler());
  srv.start();
  REQUIRE(srv.port() != 0);
  with_connection(ctx, srv, [&](beast::tcp_stream& s) -> asio::awaitable<void> {
    for (int i = 0; i < 3; ++i) {
      auto r = co_await exchange(s, make_req(http::verb::post, "/v1/x", std::string(100 + i, 'a')));
      REQUIRE_FALSE(r.ec);
      CHECK(r.res.result_int() == 200);
      CHECK(r.res.body() == "POST /v1/x " + std::to_string(100 + i));
      CHECK(r.res.keep_alive());
    }
  });
  CHECK(srv.connections_accepted() == 1);
  CHECK(srv.requests_served() == 3);
  srv.stop();
}

TEST_CASE("http_server: handler exception becomes a 500 JSON error") {
  asio::io_context ctx;
  http_server srv(ctx.get_executor(), {}, echo_handler());
  srv.start();
  with_connection(ctx, srv, [&](beast::tcp_stream& s) -> asio::awaitable<void> {
    auto r = co_await exchange(s, make_req(http::verb::get, "/throw"));
    REQUIRE_FALSE(r.ec);
    CHECK(r.res.result_int() == 500);
    CHECK(r.res.body() == R"({"error":"boom \"quoted\""})");
    // the connection stays usable
    auto r2 = co_await exchange(s, make_req(http::verb::get, "/ok"));
    CHECK(r2.res.result_int() == 200);
  });
  srv.stop();
}

TEST_CASE("http_server: body over the limit gets 413 and the connection closes") {
  asio::io_context ctx;
  http_server_config cfg;
  cfg.body_limit = 1000;
  http_server srv(ctx.get_executor(), cfg, echo_handler());
  srv.start();
  with_connection(ctx, srv, [&](beast::tcp_stream& s) -> asio::awaitable<void> {
    auto r = co_await exchange(s, make_req(http::verb::post, "/logs3", std::string(200'000, 'z')));
    REQUIRE_FALSE(r.ec);
    CHECK(r.res.result_int() == 413);
    CHECK(r.res.body().find("exceeds the server limit of 1000 bytes") != std::string::npos);
    CHECK_FALSE(r.res.keep_alive());
  });
  CHECK(srv.requests_served() == 0);
  srv.stop();
}

TEST_CASE("http_server: drop closes without a reply, truncate sends half the body") {
  asio::io_context ctx;
  http_server srv(ctx.get_executor(), {}, echo_handler());
  srv.start();
  run_coro(ctx, [&]() -> asio::awaitable<void> {
    stop_guard guard{srv};
    {
      beast::tcp_stream s(ctx);
      co_await connect(s, srv.port());
      auto r = co_await exchange(s, make_req(http::verb::get, "/drop"));
      CHECK(r.ec == http::error::end_of_stream);
    }
    {
      beast::tcp_stream s(ctx);
      co_await connect(s, srv.port());
      auto r = co_await exchange(s, make_req(http::verb::get, "/truncate"));
      CHECK(r.ec == http::error::partial_message);
    }
  }());
  srv.stop();
}

TEST_CASE("http_server: gzips large bodies only when the client accepts gzip") {
  asio::io_context ctx;
  http_server srv(ctx.get_executor(), {}, echo_handler());
  srv.start();
  with_connection(ctx, srv, [&](beast::tcp_stream& s) -> asio::awaitable<void> {
    auto plain = co_await exchange(s, make_req(http::verb::get, "/big"));
    CHECK(plain.res.body().size() == 300'000);
    CHECK(plain.res.find(http::field::content_encoding) == plain.res.end());

    auto req = make_req(http::verb::get, "/big");
    req.set(http::field::accept_encoding, "deflate, gzip");
    auto gz = co_await exchange(s, std::move(req));
    CHECK(gz.res[http::field::content_encoding] == "gzip");
    std::string err;
    auto decoded = decompress(gz.res.body(), true, 1u << 20, err);
    REQUIRE(decoded);
    CHECK(*decoded == std::string(300'000, 'x'));

    auto small = make_req(http::verb::get, "/small");
    small.set(http::field::accept_encoding, "gzip");
    auto sm = co_await exchange(s, std::move(small));
    CHECK(sm.res.find(http::field::content_encoding) == sm.res.end());
  });
  srv.stop();
}

TEST_CASE("http_server: stop closes idle keep-alive connections and the acceptor") {
  asio::io_context ctx;
  http_server srv(ctx.get_executor(), {}, echo_handler());
  srv.start();
  const auto port = srv.port();
  with_connection(ctx, srv, [&](beast::tcp_stream& s) -> asio::awaitable<void> {
    auto r = co_await exchange(s, make_req(http::verb::get, "/a"));
    CHECK(r.res.result_int() == 200);
    CHECK(srv.open_connections() == 1);
    srv.stop();
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    auto [ec, n] = co_await http::async_read(s, buf, res, use_tuple);
    (void)n;
    CHECK(ec);  // closed by the server, not by a timeout of ours
    beast::tcp_stream s2(ctx);
    auto [cec] = co_await s2.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), use_tuple);
    CHECK(cec);
  });
}

TEST_CASE("http_server: start names the address when it cannot listen") {
  asio::io_context ctx;
  http_server a(ctx.get_executor(), {}, echo_handler());
  a.start();
  http_server_config cfg;
  cfg.port = a.port();
  http_server b(ctx.get_executor(), cfg, echo_handler());
  CHECK_THROWS_WITH_AS(b.start(), doctest::Contains(("127.0.0.1:" + std::to_string(a.port())).c_str()),
                       std::runtime_error);
}
