#pragma once
// Over-the-wire fixture: a whole emulator (auth, faults, REST, events) behind the real socket server on
// 127.0.0.1:0, served by its own io_context on a background thread, and spoken to with the production
// transports::http_client + api_client on the test's io_context. Backoff sleeps use a manual clock, so
// retries (429 + Retry-After, dropped connections) take no real time and can be asserted.
//
// Lifecycle: the constructor starts the emulator; `run(body)` runs one client coroutine to completion
// (bounded by run_coro) and closes the client's idle connections afterwards, so the test's io_context
// runs out of work; the destructor stops the server thread.
#include "emulator/emulator.hpp"
#include "emulator/faults.hpp"
#include "engine/clock.hpp"
#include "test_support.hpp"
#include "transports/api_client.hpp"
#include "transports/http_client.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>

namespace ferry::test {

/// An emulator served by one background thread for the lifetime of the object.
struct served_emulator {
  boost::asio::io_context ctx;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{ctx.get_executor()};
  emulator::emulator emu;
  std::thread thread;

  explicit served_emulator(emulator::emulator_config cfg) : emu(ctx.get_executor(), std::move(cfg)) {
    emu.start();
    thread = std::thread([this] { ctx.run(); });
  }
  ~served_emulator() {
    boost::asio::post(ctx, [this] { emu.stop(); });
    work.reset();
    ctx.stop();
    thread.join();
  }
  served_emulator(const served_emulator&) = delete;
  served_emulator& operator=(const served_emulator&) = delete;
};

inline const char* const wire_key = "wire-key-0123456789";

inline emulator::emulator_config wire_config(std::vector<emulator::fault_spec> faults = {}) {
  emulator::emulator_config c;
  c.api_keys = {{wire_key, "wire-org", ""}};
  c.faults = std::move(faults);
  c.logs3_payload_max_bytes = 64 * 1024;
  return c;
}

struct wire {
  served_emulator server;
  boost::asio::io_context ctx;
  engine::manual_clock clock;
  std::unique_ptr<transports::http_client> http;
  std::unique_ptr<transports::api_client> api;

  explicit wire(emulator::emulator_config cfg = wire_config()) : server(std::move(cfg)) {
    transports::http_client_config hc;
    hc.base_url = server.emu.base_url();
    hc.clock = &clock;
    http = std::make_unique<transports::http_client>(ctx.get_executor(), hc);
    transports::api_client_config ac;
    ac.api_key = wire_key;
    ac.clock = &clock;
    ac.retry.base_delay = std::chrono::milliseconds(100);
    api = std::make_unique<transports::api_client>(*http, ac);
  }

  void run(boost::asio::awaitable<void> body) {
    run_coro(ctx, [](wire& w, boost::asio::awaitable<void> b) -> boost::asio::awaitable<void> {
      struct closer {
        wire& w;
        ~closer() { w.http->close_idle(); }
      } c{w};
      co_await std::move(b);
    }(*this, std::move(body)));
  }

  std::string base_url() const { return server.emu.base_url(); }
};

// g++ 12 rejects braced initializer lists holding string literals inside coroutines ("array used as
// initializer"), so the tests build JSON objects, arrays and query parameters with these flat helpers:
//   jo("name", "x", "limit", 3)  ja("a", "b")  qp("limit", "1", "starting_after", id)
template <typename V>
boost::json::value to_json(const V& v) {
  if constexpr (std::is_convertible_v<const V&, std::string_view>)
    return boost::json::value(boost::json::string(std::string_view(v)));
  else
    return boost::json::value(v);
}
inline void fill(boost::json::object&) {}
template <typename V, typename... Rest>
void fill(boost::json::object& o, std::string_view k, const V& v, const Rest&... rest) {
  o[k] = to_json(v);
  fill(o, rest...);
}
template <typename... Kv>
boost::json::object jo(const Kv&... kv) {
  static_assert(sizeof...(Kv) % 2 == 0, "jo takes key, value pairs");
  boost::json::object o;
  fill(o, kv...);
  return o;
}
template <typename... V>
boost::json::array ja(const V&... v) {
  boost::json::array a;
  (a.push_back(to_json(v)), ...);
  return a;
}
inline void fill_q(transports::query_params&) {}
template <typename... Rest>
void fill_q(transports::query_params& q, std::string_view k, std::string_view v, const Rest&... rest) {
  q.emplace_back(std::string(k), std::string(v));
  fill_q(q, rest...);
}
template <typename... Kv>
transports::query_params qp(const Kv&... kv) {
  static_assert(sizeof...(Kv) % 2 == 0, "qp takes key, value pairs");
  transports::query_params q;
  fill_q(q, kv...);
  return q;
}

/// Call options for one attempt (no retries), optionally with a per-attempt timeout.
inline transports::call_options no_retry(std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
  transports::call_options o;
  o.retry = false;
  o.timeout = timeout;
  return o;
}

/// The string value of a JSON field (the test fails when it is not a string).
inline std::string str(const boost::json::value& v) {
  REQUIRE(v.is_string());
  return std::string(v.get_string());
}

/// A project named `name` with one experiment ("e") and one dataset ("d"), created over the wire.
struct wire_objects {
  std::string project, experiment, dataset;
};
inline boost::asio::awaitable<wire_objects> make_objects(transports::api_client& api, std::string name) {
  wire_objects o;
  auto p = co_await api.post_json("/v1/project", jo("name", name));
  REQUIRE_MESSAGE(p.ok(), p.error);
  o.project = str(p.json.at("id"));
  auto e = co_await api.post_json("/v1/experiment", jo("project_id", o.project, "name", "e"));
  auto d = co_await api.post_json("/v1/dataset", jo("project_id", o.project, "name", "d"));
  REQUIRE((e.ok() && d.ok()));
  o.experiment = str(e.json.at("id"));
  o.dataset = str(d.json.at("id"));
  co_return o;
}

/// The names every wire_*_test.cpp speaks in, brought in with `using namespace ferry::test::wire_names;`
/// so the tests do not each repeat the same list of aliases and using-declarations.
namespace wire_names {
namespace asio = boost::asio;
namespace json = boost::json;
namespace http = boost::beast::http;
using emulator::parse_fault_spec;
using engine::io_outcome;
using test::ja;
using test::make_objects;
using test::jo;
using test::no_retry;
using test::qp;
using test::str;
using test::wire;
using test::wire_config;
using transports::query_params;
}  // namespace wire_names

}  // namespace ferry::test
