// bench_sink: a discarding Braintrust destination for end-to-end runs that isolate the migrator's own
// cost. Built on transports::http_server. It answers just enough of the API for `ferry migrate`:
//   GET  /version                 {"logs3_payload_max_bytes": --logs3-max-bytes}
//   POST /logs3                   counts the rows (simdjson, no DOM), stores nothing, {"ids":[]}
//   POST /v1/<type>               find-or-create: an object whose id is derived from (type, name), so a
//                                 restarted migrator maps to the same ids; GET /v1/<type>[/<id>] lists the
//                                 projects created (other types: empty) or echoes {id}
//   POST /api/apikey/login        one org; PATCH/PUT/DELETE anything: {}
//   GET  /_sink/stats             {"rows","bytes","logs3_requests","first_logs3_after_mark_ns","last_logs3_ns"}
//   POST /_sink/mark              resets first_logs3_after_mark_ns (resume timing: restart -> first write)
// Any API key is accepted. Prints "bench_sink: listening on http://127.0.0.1:PORT" and runs until
// SIGINT/SIGTERM. Threading: one io_context thread (--threads N for more); counters are atomics.
#include "bench_common.hpp"

#include "transports/http_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json.hpp>
#include <simdjson.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace fb = ferry::bench;
namespace tr = ferry::transports;

namespace {

constexpr const char* org_id = "5e1f0000-0000-4000-8000-00000000b0b0";

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A stable UUID-shaped id for (type, name).
std::string stable_id(std::string_view type, std::string_view name) {
  std::uint64_t h1 = 1469598103934665603ull, h2 = 1099511628211ull;
  for (char c : type) h1 = (h1 ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  h1 = (h1 ^ '/') * 1099511628211ull;
  for (char c : name) h1 = (h1 ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  h2 ^= h1 * 0x9E3779B97F4A7C15ull;
  h2 = (h2 ^ (h2 >> 29)) * 0xBF58476D1CE4E5B9ull;
  auto a = fb::hex(h1, 16), b = fb::hex(h2, 16);
  return a.substr(0, 8) + "-" + a.substr(8, 4) + "-4" + a.substr(13, 3) + "-8" + b.substr(1, 3) + "-" + b.substr(4, 12);
}

struct sink_state {
  std::atomic<std::uint64_t> rows{0}, bytes{0}, logs3{0}, bad{0};
  std::atomic<std::int64_t> first_after_mark{0}, last_logs3{0};
  std::mutex mu;
  json::array projects;  // created projects (discovery reads the org id from a listing)
};

tr::http_reply reply(unsigned status, std::string body) {
  tr::http_reply r;
  r.response.result(static_cast<http::status>(status));
  r.response.version(11);
  r.response.set(http::field::content_type, "application/json");
  r.response.body() = std::move(body);
  r.response.prepare_payload();
  return r;
}

std::uint64_t count_rows(const std::string& body) {
  thread_local simdjson::ondemand::parser parser;
  simdjson::padded_string padded(body);
  auto doc = parser.iterate(padded);
  auto rows = doc["rows"].get_array();
  if (rows.error()) return 0;
  std::uint64_t n = 0;
  for (auto r : rows.value_unsafe()) {
    (void)r;
    ++n;
  }
  return n;
}

tr::http_reply handle(sink_state& s, tr::http_request& req) {
  const std::string target(req.target());
  const std::string path = target.substr(0, target.find('?'));
  const auto verb = req.method();
  if (path == "/logs3" && verb == http::verb::post) {
    std::uint64_t n = 0;
    try {
      n = count_rows(req.body());
    } catch (const std::exception&) {
      ++s.bad;
      return reply(400, R"({"error":"logs3: body is not {\"rows\": [...]}"})");
    }
    const auto t = now_ns();
    std::int64_t zero = 0;
    s.first_after_mark.compare_exchange_strong(zero, t);
    s.last_logs3 = t;
    s.rows += n;
    s.bytes += req.body().size();
    ++s.logs3;
    return reply(200, R"({"ids":[]})");
  }
  if (path == "/version") return reply(200, R"({"version":"bench-sink","logs3_payload_max_bytes":6291456})");
  if (path == "/_sink/stats") {
    json::object o{{"rows", s.rows.load()},           {"bytes", s.bytes.load()},
                   {"logs3_requests", s.logs3.load()}, {"bad_requests", s.bad.load()},
                   {"first_logs3_after_mark_ns", s.first_after_mark.load()},
                   {"last_logs3_ns", s.last_logs3.load()}, {"now_ns", now_ns()}};
    return reply(200, json::serialize(o));
  }
  if (path == "/_sink/mark") {
    s.first_after_mark = 0;
    return reply(200, json::serialize(json::object{{"mark_ns", now_ns()}}));
  }
  if (path == "/api/apikey/login")
    return reply(200, json::serialize(json::object{
                          {"org_info", json::array{json::object{{"id", org_id}, {"name", "bench-sink-org"}}}}}));
  if (path.rfind("/v1/", 0) == 0) {
    const std::string rest = path.substr(4);
    const auto slash = rest.find('/');
    const std::string type = rest.substr(0, slash);
    if (verb == http::verb::post && slash == std::string::npos) {
      json::object body;
      if (auto v = json::parse(req.body()); v.is_object()) body = v.as_object();
      std::string name = body.contains("name") && body["name"].is_string() ? std::string(body["name"].as_string())
                                                                            : std::string();
      const auto pid = body.contains("project_id") && body["project_id"].is_string()
                           ? std::string(body["project_id"].as_string())
                           : std::string();
      body["id"] = stable_id(type, pid + "/" + name);
      body["org_id"] = org_id;
      body["created"] = "2024-01-01T00:00:00.000Z";
      if (type == "project") {
        std::lock_guard lk(s.mu);
        bool seen = false;
        for (auto& p : s.projects) seen = seen || p.as_object().at("id") == body["id"];
        if (!seen) s.projects.push_back(body);
      }
      return reply(200, json::serialize(body));
    }
    if (verb == http::verb::get && slash == std::string::npos) {
      // One page holds every object: a request carrying a cursor (starting_after) is past the end, so a
      // client that pages until an empty page stops after the second request.
      std::lock_guard lk(s.mu);
      const bool next_page = target.find("starting_after=") != std::string::npos;
      return reply(200, json::serialize(
                            json::object{{"objects", type == "project" && !next_page ? s.projects : json::array{}}}));
    }
    if (verb == http::verb::get)
      return reply(200, json::serialize(json::object{{"id", rest.substr(slash + 1)}, {"org_id", org_id}}));
    return reply(200, "{}");
  }
  return reply(404, R"({"error":"bench_sink: no such route"})");
}

}  // namespace

int main(int argc, char** argv) try {
  fb::flags f(argc, argv);
  const auto threads = static_cast<int>(f.num("threads", 1));
  asio::io_context ctx(threads);
  sink_state state;
  tr::http_server_config cfg;
  cfg.port = static_cast<std::uint16_t>(f.num("port", 0));
  cfg.body_limit = 64u << 20;
  cfg.gzip_responses = false;
  tr::http_server server(ctx.get_executor(), cfg, [&](tr::http_request& req) -> asio::awaitable<tr::http_reply> {
    co_return handle(state, req);
  });
  server.start();
  std::printf("bench_sink: listening on http://127.0.0.1:%u\n", static_cast<unsigned>(server.port()));
  std::fflush(stdout);
  asio::signal_set signals(ctx, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) { server.stop(); ctx.stop(); });
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&] { ctx.run(); });
  ctx.run();
  for (auto& t : pool) t.join();
  std::printf("bench_sink: stopped rows=%llu bytes=%llu\n", static_cast<unsigned long long>(state.rows.load()),
              static_cast<unsigned long long>(state.bytes.load()));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_sink: error: %s\n", e.what());
  return 1;
}
