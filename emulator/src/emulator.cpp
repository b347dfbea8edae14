// The emulator's request pipeline: faults, public paths, auth, SDK calls, REST, events (see emulator.hpp).
#include "emulator/emulator.hpp"

#include "engine/json_parse.hpp"
#include "engine/log.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json.hpp>

#include <random>
#include <stdexcept>

namespace ferry::emulator {

namespace http = boost::beast::http;
namespace asio = boost::asio;

transports::http_reply json_reply(unsigned status, std::string body, unsigned version, bool keep_alive) {
  transports::http_reply r;
  r.response.version(version);
  r.response.result(status);
  r.response.set(http::field::content_type, "application/json");
  r.response.body() = std::move(body);
  r.response.keep_alive(keep_alive);
  r.response.prepare_payload();
  return r;
}

asio::awaitable<std::optional<transports::http_reply>> injected_reply(const fault_decision& d,
                                                                      const transports::http_request& req) {
  if (d.delay.count() > 0) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(d.delay);
    co_await timer.async_wait(asio::use_awaitable);
  }
  if (d.drop) {
    transports::http_reply r;
    r.action = transports::reply_action::drop;
    co_return r;
  }
  if (!d.status) co_return std::nullopt;
  auto r = json_reply(*d.status, json_error_body("injected fault: " + d.reason), req.version(), req.keep_alive());
  if (d.retry_after) {
    r.response.set(http::field::retry_after, std::to_string(*d.retry_after));
    r.response.prepare_payload();
  }
  co_return r;
}

namespace {

std::vector<std::string> all_column_families() {
  auto cfs = rest_store::column_families();
  for (auto& cf : events_api::column_families()) cfs.push_back(std::move(cf));
  return cfs;
}

std::unique_ptr<stores::kv_store> open_store(const emulator_config& cfg) {
  if (cfg.data_dir.empty()) return stores::kv_store::open_memory(all_column_families());
  stores::kv_options opts;
  opts.dir_label = "data dir";
  events_api::tune_store(opts);
  return stores::kv_store::open_rocksdb(cfg.data_dir, all_column_families(), opts);
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

emulator::emulator(asio::any_io_executor ex, emulator_config cfg)
    : ex_(std::move(ex)), cfg_(std::move(cfg)), store_(open_store(cfg_)), faults_(cfg_.faults, cfg_.fault_seed) {
  if (cfg_.api_keys.empty()) throw std::invalid_argument("emulator: at least one API key is needed (--api-key)");
  rest_ = std::make_unique<rest_store>(*store_, rest_config{cfg_.id_seed, base_url()});
  for (const auto& k : cfg_.api_keys) {
    if (trim(k.api_key).empty()) throw std::invalid_argument("emulator: an API key must not be empty");
    if (k.org_name.empty()) throw std::invalid_argument("emulator: the org name of an API key must not be empty");
    engine::register_secret(k.api_key);
    org_identity org;
    org.org_name = k.org_name;
    org.org_id = rest_->resolve_org_id(k.org_name, k.org_id);
    org.user_id = rest_->resolve_user_id(org.org_id);
    rest_->ensure_org(org);
    keys_.emplace_back(trim(k.api_key), org);
    bool known = false;
    for (const auto& o : orgs_) known = known || o.org_id == org.org_id;
    if (!known) orgs_.push_back(org);
  }
  events_config ecfg;
  ecfg.logs3_payload_max_bytes = cfg_.logs3_payload_max_bytes;
  ecfg.max_span_bytes = cfg_.max_span_bytes;
  if (cfg_.id_seed) {
    // Deterministic mode: rows written without `created` get a fixed time instead of the wall clock.
    ecfg.now_iso = [] { return std::string("2024-01-01T00:00:00.000Z"); };
  }
  ecfg.project_of = [this](std::string_view type, std::string_view id) { return rest_->project_of(type, id); };
  ecfg.metadata_rows = [this](std::string_view type, std::string_view project_id, std::string_view org_id, bool audit_log) {
    return rest_->btql_function_rows(org_id, project_id, type == "project_prompts", audit_log);
  };
  events_ = std::make_unique<events_api>(
      *store_,
      [this](std::string_view type, std::string_view id, std::string_view org_id) {
        return rest_->object_exists(type, id, org_id);
      },
      std::move(ecfg));
}

emulator::~emulator() { server_.reset(); }

std::uint16_t emulator::port() const { return bound_port_ != 0 ? bound_port_ : cfg_.port; }

std::optional<org_identity> emulator::org_for_key(std::string_view api_key) const {
  for (const auto& [key, org] : keys_)
    if (key == api_key) return org;
  return std::nullopt;
}

asio::awaitable<transports::http_reply> emulator::handle(transports::http_request& req) {
  const std::string target(req.target());
  const std::string method(req.method_string());
  fault_decision d;
  if (!target.starts_with("/_emulator/")) d = faults_.decide(method, target, req.body());
  transports::http_reply r;
  // (plain statements around co_await: GCC 12 miscompiles co_await inside a conditional expression)
  if (auto injected = co_await injected_reply(d, req)) {
    if (injected->action == transports::reply_action::drop) co_return std::move(*injected);
    r = std::move(*injected);
  } else {
    r = co_await serve(req);
  }
  if (d.truncate) r.action = transports::reply_action::truncate_body;
  engine::logger("emulator")->debug("request method={} path={} status={}", method, target.substr(0, target.find('?')),
                                    r.response.result_int());
  co_return r;
}

asio::awaitable<transports::http_reply> emulator::serve(transports::http_request& req) {
  const std::string target(req.target());
  const std::string_view path = std::string_view(target).substr(0, target.find('?'));
  const std::string method(req.method_string());
  auto finish = [&](transports::http_reply r) {
    r.response.version(req.version());
    r.response.keep_alive(req.keep_alive());
    r.response.prepare_payload();
    return r;
  };
  auto from_rest = [&](const rest_reply& rr) { return finish(json_reply(rr.status, rr.body, req.version())); };
  try {
    if (req.method() == http::verb::get && (path == "/v1" || path == "/v1/")) {
      transports::http_reply r;
      r.response.result(200);
      r.response.set(http::field::content_type, "text/plain; charset=utf-8");
      r.response.body() = "Hello, World!";
      co_return finish(std::move(r));
    }
    if (path == "/_emulator/stats") co_return finish(json_reply(200, faults_.stats_json()));

    request_context ctx{{}, {}, base_url()};
    if (events_->is_public_path(target)) {
      if (auto r = co_await events_->handle(req, ctx)) co_return finish(std::move(*r));
      co_return finish(json_reply(404, json_error_body("not found: " + std::string(path))));
    }

    const auto auth = trim(req[http::field::authorization]);
    if (auth.empty())
      co_return finish(json_reply(401, json_error_body("missing Authorization header: expected 'Bearer <api key>'")));
    constexpr std::string_view bearer = "Bearer ";
    if (auth.size() <= bearer.size() || !std::equal(bearer.begin(), bearer.end(), auth.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
        }))
      co_return finish(json_reply(401, json_error_body("Authorization header must be 'Bearer <api key>'")));
    const auto org = org_for_key(trim(std::string_view(auth).substr(bearer.size())));
    if (!org) co_return finish(json_reply(401, json_error_body("invalid API key")));
    ctx.org_id = org->org_id;
    ctx.org_name = org->org_name;

    if (path == "/function/code") co_return from_rest(function_code_slot(method, req.body(), ctx));
    if (auto r = rest_->handle_sdk(method, target, req.body(), *org)) co_return from_rest(*r);
    if (auto r = rest_->handle(method, target, req.body(), *org)) co_return from_rest(*r);
    if (auto r = serve_event_extras(*rest_, *events_, method, target, *org, base_url())) co_return from_rest(*r);
    if (auto r = co_await events_->handle(req, ctx)) co_return finish(std::move(*r));
    co_return finish(json_reply(404, json_error_body("no route for " + method + " " + std::string(path))));
  } catch (const std::exception& e) {
    engine::logger("emulator")->warn("request failed method={} path={} error={}", method, path, e.what());
    co_return finish(json_reply(500, json_error_body(std::string("internal error: ") + e.what())));
  }
}

rest_reply emulator::function_code_slot(std::string_view method, std::string_view body, const request_context& ctx) {
  if (method != "POST") return {405, json_error_body("method " + std::string(method) + " is not allowed on /function/code")};
  boost::system::error_code ec;
  auto v = ferry::engine::parse_json(body, ec);
  if (ec || !v.is_object()) return {400, json_error_body("function/code: body must be a JSON object")};
  const auto& o = v.as_object();
  if (const auto* id = o.if_contains("org_id"); id && id->is_string() && id->get_string() != ctx.org_id)
    return {403, json_error_body("org_id " + std::string(id->get_string()) + " is not the organization of this API key")};
  const auto* rc = o.if_contains("runtime_context");
  if (!rc || !rc->is_object()) return {400, json_error_body("missing required field: runtime_context")};
  std::random_device rd;
  const auto bundle_id = derived_uuid((std::uint64_t{rd()} << 32) ^ rd(), "bundle", 0);
  transports::http_request att{http::verb::post, "/attachment", 11};
  att.body() = boost::json::serialize(boost::json::object{
      {"key", "bundle/" + bundle_id}, {"filename", "bundle.js"}, {"content_type", "application/octet-stream"},
      {"org_id", ctx.org_id}});
  auto r = events_->handle_now(att, ctx);
  if (!r || r->response.result_int() != 200) return {500, json_error_body("function/code: no upload URL")};
  auto slot = ferry::engine::parse_json(r->response.body()).as_object();
  return {200, boost::json::serialize(boost::json::object{{"url", slot.at("signedUrl")}, {"bundleId", bundle_id}})};
}

std::string emulator::base_url() const { return "http://" + cfg_.address + ":" + std::to_string(port()); }

}  // namespace ferry::emulator
