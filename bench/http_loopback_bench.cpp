// bench_http: loopback HTTP throughput of Ferry's own transports (transports::http_server +
// transports::http_client, keep-alive, no gzip) with 1 MB bodies on 127.0.0.1:0.
//   download  GET, the server answers 1 MB (like a BTQL page read)
//   upload    POST 1 MB, the server answers a few bytes (like a /logs3 write)
// Client and server share one io_context run by ONE thread, so "MB/s per core" is payload bytes
// divided by the process CPU time (user+sys) of that run, and wall MB/s is reported too.
// Output: one line on stdout and --json FILE. Median of --runs runs of about --seconds each.
#include "bench_common.hpp"

#include "transports/http_client.hpp"
#include "transports/http_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <cstdio>
#include <exception>
#include <string>

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace fb = ferry::bench;
namespace tr = ferry::transports;

namespace {

struct run_result {
  double wall_mb_s = 0;
  double mb_per_cpu_s = 0;
  std::uint64_t failures = 0;
};

run_result run_once(bool upload, std::size_t body_bytes, int conns, double seconds) {
  asio::io_context ctx(1);
  const std::string big(body_bytes, 'x');
  tr::http_server_config scfg;
  scfg.body_limit = body_bytes * 2;
  scfg.gzip_responses = false;
  tr::http_server server(ctx.get_executor(), scfg, [&](tr::http_request& req) -> asio::awaitable<tr::http_reply> {
    tr::http_reply r;
    r.response.result(http::status::ok);
    r.response.version(11);
    r.response.set(http::field::content_type, "application/json");
    r.response.body() = req.method() == http::verb::post ? std::string(R"({"ok":true})") : big;
    r.response.prepare_payload();
    co_return r;
  });
  server.start();
  tr::http_client_config ccfg;
  ccfg.base_url = "http://127.0.0.1:" + std::to_string(server.port());
  ccfg.accept_gzip = false;
  ccfg.body_limit = body_bytes * 2;
  tr::http_client client(ctx.get_executor(), ccfg);

  std::uint64_t bytes = 0, failures = 0;
  int running = conns;
  double deadline = 0, t0 = 0, c0 = 0, t1 = 0, c1 = 0;
  auto worker = [&]() -> asio::awaitable<void> {
    while (fb::wall_s() < deadline) {
      tr::http_request_spec spec;
      spec.verb = upload ? http::verb::post : http::verb::get;
      spec.target = "/bench";
      if (upload) {
        spec.body = big;  // the copy is part of what a writer does with a batch it keeps for retries
        spec.headers = {{"Content-Type", "application/json"}};
      }
      auto r = co_await client.send(spec);
      if (r.ok()) bytes += body_bytes;
      else ++failures;
    }
    if (--running == 0) {
      t1 = fb::wall_s();
      c1 = fb::cpu_s();
      server.stop();
      client.close_idle();
    }
  };
  deadline = 0;
  t0 = fb::wall_s();
  c0 = fb::cpu_s();
  deadline = t0 + seconds;
  for (int i = 0; i < conns; ++i) asio::co_spawn(ctx, worker(), asio::detached);
  ctx.run();
  run_result out;
  out.failures = failures;
  out.wall_mb_s = static_cast<double>(bytes) / 1e6 / (t1 - t0);
  out.mb_per_cpu_s = static_cast<double>(bytes) / 1e6 / (c1 - c0);
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  fb::flags f(argc, argv);
  const auto runs = static_cast<int>(f.num("runs", 3));
  const double seconds = f.num("seconds", 1.0);
  const auto body = static_cast<std::size_t>(f.num("body-bytes", 1 << 20));
  const auto conns = static_cast<int>(f.num("conns", 4));
  boost::json::object out{{"bench", "http_loopback"}, {"body_bytes", body}, {"connections", conns}, {"runs", runs},
                          {"threads", 1}};
  std::string line = "http loopback (" + std::to_string(body >> 10) + " KB bodies, " + std::to_string(conns) +
                     " conns, 1 thread):";
  std::uint64_t failures = 0;
  for (bool upload : {false, true}) {
    std::vector<double> wall, per_core;
    for (int r = 0; r < runs; ++r) {
      auto res = run_once(upload, body, conns, seconds);
      wall.push_back(res.wall_mb_s);
      per_core.push_back(res.mb_per_cpu_s);
      failures += res.failures;
    }
    const std::string name = upload ? "upload" : "download";
    out[name + "_mb_s"] = fb::median(wall);
    out[name + "_mb_per_cpu_s"] = fb::median(per_core);
    line += " " + name + "=" + fb::fmt(fb::median(wall), 0) + "MB/s (" + fb::fmt(fb::median(per_core), 0) +
            " MB/s per core)";
  }
  out["failures"] = failures;
  if (failures) line += " FAILURES=" + std::to_string(failures);
  fb::emit(f, std::move(out), line);
  return failures ? 1 : 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_http: error: %s\n", e.what());
  return 1;
}
