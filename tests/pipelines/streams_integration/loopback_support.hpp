#pragma once
// Helpers shared by the migration tests against two emulators (migrate_loopback_test, verify_loopback_test,
// dry_run_plan_test).

#include "pipelines/migrate.hpp"

#include "emulator/emulator.hpp"
#include "emulator/seed.hpp"
#include "test_support.hpp"
#include "transports/http_server.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace ferry::test {

/// One in-process request to an emulator, up to `attempts` tries (faults may apply) until a 200 that is
/// sent whole with a JSON body; the test fails naming the target otherwise.
inline boost::json::value call(emulator::emulator& emu, const std::string& key, boost::beast::http::verb verb,
                               const std::string& target, const std::string& body = "", int attempts = 50) {
  namespace http = boost::beast::http;
  std::string last;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    boost::asio::io_context local;
    transports::http_request req{verb, target, 11};
    req.set(http::field::authorization, "Bearer " + key);
    req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    auto r = run_coro(local, emu.handle(req), std::chrono::seconds(10));
    last = std::to_string(r.response.result_int()) + " " + r.response.body();
    if (r.response.result_int() != 200 || r.action != transports::reply_action::send) continue;
    boost::system::error_code ec;
    auto v = boost::json::parse(r.response.body(), ec);
    if (!ec) return v;
  }
  FAIL("in-process " << target << " failed " << attempts << " time(s); last: " << last);
  return {};
}

/// A string member, or "" when absent or not a string.
inline std::string str(const boost::json::object& o, std::string_view k) {
  auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

/// Exit code and output of one run of a command in process.
struct run_out {
  int rc = -1;
  std::string out, err;
};

/// Run options for tests: output captured, no signal handling, no live progress, 5 s grace.
inline pipelines::run_options quiet(std::ostringstream& out, std::ostringstream& err) {
  pipelines::run_options o;
  o.out = &out;
  o.err = &err;
  o.handle_signals = false;
  o.live_progress = false;
  o.shutdown_grace = std::chrono::milliseconds(5000);
  return o;
}

/// A command as the CLI calls it (pipelines::run_migrate, pipelines::run_verify).
using command = int (*)(const pipelines::migrate_config&, const pipelines::run_options&);

/// One run of `cmd` with quiet() options, which `adjust` may change first (a runtime hook, dry-run settings).
inline run_out run_command(command cmd, const pipelines::migrate_config& cfg,
                           const std::function<void(pipelines::run_options&)>& adjust = {}) {
  std::ostringstream out, err;
  auto o = quiet(out, err);
  if (adjust) adjust(o);
  run_out r;
  r.rc = cmd(cfg, o);
  r.out = out.str();
  r.err = err.str();
  return r;
}

/// Source and destination emulators on one io_context run by two background threads, one side also behind a
/// real socket server on 127.0.0.1:0 whose handler the test supplies (to observe or count what Ferry sends).
/// A test's fixture derives from it and calls serve() last in its constructor; a fixture whose handler uses
/// its own members calls stop() first in its destructor, so no handler runs once those members are gone.
struct emulator_pair {
  boost::asio::io_context ctx;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{ctx.get_executor()};
  emulator::emulator src;
  emulator::emulator dst;
  std::unique_ptr<transports::http_server> server;  // the observed side as Ferry sees it
  std::vector<std::thread> threads;
  std::mutex mu;  // for the fixture's observations

  emulator_pair(emulator::emulator_config src_config, emulator::emulator_config dst_config)
      : src(ctx.get_executor(), std::move(src_config)), dst(ctx.get_executor(), std::move(dst_config)) {
    src.start();
    dst.start();
  }
  ~emulator_pair() { stop(); }
  emulator_pair(const emulator_pair&) = delete;
  emulator_pair& operator=(const emulator_pair&) = delete;

  /// Puts `h` behind the socket server and starts the two threads.
  void serve(transports::http_handler h) {
    server = std::make_unique<transports::http_server>(ctx.get_executor(), transports::http_server_config{},
                                                       std::move(h));
    server->start();
    for (int i = 0; i < 2; ++i) threads.emplace_back([this] { ctx.run(); });
  }
  /// Stops both emulators and the server and joins the threads; idempotent.
  void stop() {
    if (threads.empty()) return;
    boost::asio::post(ctx, [this] {
      src.stop();
      dst.stop();
      server->stop();
    });
    work.reset();
    for (auto& t : threads) t.join();
    threads.clear();
  }
  std::string server_url() const { return "http://127.0.0.1:" + std::to_string(server->port()); }
  /// Seeds the source in process (its key is "src-key").
  emulator::seed_summary seed(const emulator::seed_options& o) {
    boost::asio::io_context local;
    return run_coro(local, emulator::seed_org(emulator::inprocess_transport(src, "src-key"), o),
                    std::chrono::seconds(60));
  }
};

}  // namespace ferry::test
