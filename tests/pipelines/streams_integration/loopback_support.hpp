#pragma once
// Helpers shared by the migration tests against two emulators (migrate_loopback_test, dry_run_plan_test).

#include "pipelines/migrate.hpp"

#include "emulator/emulator.hpp"
#include "test_support.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <chrono>
#include <sstream>
#include <string>
#include <string_view>

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

}  // namespace ferry::test
