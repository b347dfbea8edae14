// Loopback tests (two in-process emulators, driven through emulator::handle()) of what a FIRST run must
// get right whatever the order: every list read to its end behind a server that caps its pages, references
// between objects of one type and across projects resolved by create-then-patch, and destination objects
// deleted between two runs detected and re-created.
#include "pipelines/resources/entry.hpp"

#include "pipelines/resources/specs.hpp"

#include "emulator/emulator.hpp"
#include "stores/state_store.hpp"
#include "test_support.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <doctest/doctest.h>

#include <map>
#include <regex>
#include <set>

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using namespace ferry;
using namespace ferry::pipelines::resources;

namespace {

/// resource_api over an emulator's handler, behind a "proxy" that caps every list page at `page_cap`
/// objects (it rewrites limit=N to min(N, cap), as a server choosing its own page size does). Keeps the
/// GET targets it saw.
class capped_api final : public resource_api {
 public:
  capped_api(emulator::emulator& emu, std::string key, std::size_t page_cap)
      : emu_(emu), key_(std::move(key)), cap_(page_cap) {}
  asio::awaitable<api_reply> call(std::string method, std::string target, std::string body) override {
    static const std::regex limit_re("([?&]limit=)([0-9]+)");
    std::smatch m;
    if (method == "GET" && std::regex_search(target, m, limit_re) && std::stoull(m[2].str()) > cap_)
      target = m.prefix().str() + m[1].str() + std::to_string(cap_) + m.suffix().str();
    if (method == "GET") gets.push_back(target);
    transports::http_request req{http::string_to_verb(method), target, 11};
    req.set(http::field::authorization, "Bearer " + key_);
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
    auto r = co_await emu_.handle(req);
    api_reply out;
    out.status = static_cast<int>(r.response.result_int());
    out.body = r.response.body();
    out.outcome = out.status < 300 ? engine::io_outcome::ok
                  : out.status == 404 ? engine::io_outcome::not_found
                                      : engine::io_outcome::fatal;
    co_return out;
  }
  std::string describe() const override { return "emulator"; }
  std::vector<std::string> gets;

 private:
  emulator::emulator& emu_;
  std::string key_;
  std::size_t cap_;
};

emulator::emulator_config emu_config(std::string key, std::string org) {
  emulator::emulator_config c;
  c.api_keys.push_back({std::move(key), std::move(org), {}});
  return c;
}

json::object obj(std::string_view text) { return json::parse(text).as_object(); }
std::string sid(const json::object& o) { return std::string(o.at("id").as_string()); }
[[maybe_unused]] std::string str(const json::value& v) { return v.is_string() ? std::string(v.as_string()) : json::serialize(v); }

struct loopback {
  asio::io_context ctx;
  emulator::emulator src{ctx.get_executor(), emu_config("src-key", "source-org")};
  emulator::emulator dst{ctx.get_executor(), emu_config("dst-key", "dest-org")};
  capped_api src_api;
  capped_api dst_api;
  stores::state_store state = stores::state_store::open_memory();
  pipelines::migrate_config cfg;

  explicit loopback(std::size_t cap = 1000) : src_api(src, "src-key", cap), dst_api(dst, "dst-key", cap) {
    cfg.max_concurrent_projects = 2;
    cfg.max_concurrent_resources = 3;
  }
  resource_client source() { return resource_client(src_api); }
  resource_client dest() { return resource_client(dst_api); }
  std::string post(const std::string& path, const json::object& body) {
    return sid(test::run_coro(ctx, source().post(path, body)));
  }
  int migrate(migration_report& report) {
    return test::run_coro(ctx, migrate_resources(cfg, src_api, dst_api, &state, report), std::chrono::seconds(60));
  }
  std::vector<json::object> dest_list(const std::string& path, pipelines::resources::query_params q = {}) {
    return test::run_coro(ctx, dest().list(path, std::move(q)));
  }
  json::object dest_get(const std::string& type, const std::string& id) {
    return test::run_coro(ctx, dest().get(spec_of(type).path + "/" + id)).as_object();
  }
  std::optional<std::string> mapped(const std::string& type, const std::string& source_id) {
    return state.get_id(type, source_id);
  }
};

std::string statuses(const migration_report& r) {
  std::string out;
  for (const auto& e : r.entries())
    out += e.type + " '" + e.name + "' " + std::string(to_string(e.status)) + " " + e.reason + "\n";
  for (const auto& e : r.errors()) out += "error: " + e + "\n";
  return out;
}

[[maybe_unused]] std::string dropped(const migration_report& r) {
  std::string out;
  for (const auto& e : r.entries())
    for (const auto& [field, reason] : e.dropped) out += e.type + " '" + e.name + "' " + field + ": " + reason + "\n";
  return out;
}

}  // namespace

TEST_CASE("listing: a server capping pages at 100 still gives every one of 1005 datasets") {
  loopback t(100);
  std::string p = t.post("/v1/project", obj(R"({"name":"big"})"));
  for (int i = 0; i < 1005; ++i)
    t.post("/v1/dataset", json::object{{"name", "ds-" + std::to_string(i)}, {"project_id", p}});
  // Env vars have no cursor in the spec (the emulator answers 400 to starting_after): one unpaged request.
  t.post("/v1/env_var", json::object{{"object_type", "project"}, {"object_id", p}, {"name", "TOKEN"}, {"value", "v"}});
  migration_report report;
  int rc = t.migrate(report);
  INFO(statuses(report).substr(0, 2000));
  CHECK(rc == 0);
  CHECK(report.count("dataset", object_status::created) == 1005);
  CHECK(report.count("env_var", object_status::created) == 1);
  auto dp = t.mapped("project", p);
  REQUIRE(dp);
  CHECK(t.dest_list("/v1/dataset", {{"project_id", *dp}}).size() == 1005);
  auto gets = t.src_api.gets;
  gets.insert(gets.end(), t.dst_api.gets.begin(), t.dst_api.gets.end());
  for (const auto& g : gets)
    if (g.starts_with("/v1/env_var")) {
      CAPTURE(g);
      CHECK(g.find("starting_after") == std::string::npos);
    }
}
