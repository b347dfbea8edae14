#include "sides.hpp"

#include "../shielded.hpp"

#include "pipelines/resources/http_api.hpp"

#include "engine/log.hpp"

#include <boost/beast/http/verb.hpp>
#include <boost/json.hpp>

#include <algorithm>

namespace ferry::pipelines {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

// GCC 12 rejects braced initialisers holding string literals inside coroutines ("array used as
// initializer"): coroutine bodies use this.
transports::query_params param(std::string k, std::string v) {
  transports::query_params q;
  q.emplace_back(std::move(k), std::move(v));
  return q;
}

std::string str_field(const json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

// event_source / event_sink decorators applying a side's limits.
class limited_source final : public streams::event_source {
 public:
  limited_source(streams::event_source& inner, side_limits& lim) : inner_(inner), lim_(lim) {}
  asio::awaitable<streams::call_result> btql(std::string body) override {
    co_await lim_.before(body.size());
    auto r = co_await inner_.btql(std::move(body));
    co_await lim_.after(r.body.size());
    co_return r;
  }
  asio::awaitable<std::string> download_attachment(std::string key, std::string filename, std::string content_type,
                                                   std::uint64_t max_bytes) override {
    co_await lim_.before(0);
    auto bytes = co_await inner_.download_attachment(std::move(key), std::move(filename), std::move(content_type), max_bytes);
    co_await lim_.after(bytes.size());
    co_return bytes;
  }

 private:
  streams::event_source& inner_;
  side_limits& lim_;
};

class limited_sink final : public streams::event_sink {
 public:
  limited_sink(streams::event_sink& inner, side_limits& lim) : inner_(inner), lim_(lim) {}
  asio::awaitable<streams::call_result> logs3(std::string body) override {
    co_await lim_.before(body.size());
    co_return co_await inner_.logs3(std::move(body));
  }
  asio::awaitable<std::optional<std::uint64_t>> payload_max_bytes() override { return inner_.payload_max_bytes(); }
  asio::awaitable<std::string> upload_attachment(std::string filename, std::string content_type, std::string bytes) override {
    co_await lim_.before(bytes.size());
    co_return co_await inner_.upload_attachment(std::move(filename), std::move(content_type), std::move(bytes));
  }

 private:
  streams::event_sink& inner_;
  side_limits& lim_;
};

// resource_api over the transports' api_client (auth, request semaphore and retries are the client's).
class api_resource final : public resources::resource_api {
 public:
  api_resource(transports::api_client& c, std::string url, side_limits& lim) : c_(c), url_(std::move(url)), lim_(lim) {}
  asio::awaitable<resources::api_reply> call(std::string method, std::string target, std::string body) override {
    co_await lim_.before(body.size());
    auto r = co_await shielded(c_.call(boost::beast::http::string_to_verb(method), std::move(target), std::move(body)));
    co_await lim_.after(r.body.size());
    resources::api_reply out;
    out.status = static_cast<int>(r.status);
    out.outcome = r.outcome;
    out.body = std::move(r.body);
    out.error = std::move(r.error);
    co_return out;
  }
  std::string describe() const override { return url_; }

 private:
  transports::api_client& c_;
  std::string url_;
  side_limits& lim_;
};

/// GET /v1/project?limit=1 on one side: a rejected key or an unreachable API becomes one line naming the
/// side, its URL and the variable to fix; empty when the side answers.
asio::awaitable<std::string> probe_side(side& s, std::string what, std::string url_var, std::string key_var) {
  transports::query_params q;
  q.emplace_back("limit", "1");
  auto r = co_await s.api->get_json("/v1/project", q);
  if (r.ok()) co_return std::string();
  if (r.status == 401 || r.status == 403)
    co_return what + " rejected the API key (HTTP " + std::to_string(r.status) + "): check " + key_var;
  if (r.status == 0) co_return what + " cannot be reached (" + r.error + "): check " + url_var;
  co_return what + " does not answer GET /v1/project like a Braintrust API (" + r.error + "): check " + url_var;
}

/// A side's org id (attachment calls need it): GET /v1/organization, else a project's org_id.
asio::awaitable<std::string> org_id_of(side& s) {
  try {
    auto orgs = co_await s.api->list_objects("/v1/organization", {});
    for (const auto& o : orgs)
      if (auto id = str_field(o, "id"); !id.empty()) co_return id;
  } catch (const std::exception& e) {
    engine::logger("pipeline")->debug("organization listing failed url={}: {}", s.res->describe(), e.what());
  }
  auto r = co_await s.api->get_json("/v1/project", param("limit", "1"));
  if (r.ok() && r.json.is_object())
    if (auto* objs = r.json.as_object().if_contains("objects"); objs && objs->is_array())
      for (const auto& p : objs->as_array())
        if (p.is_object()) co_return str_field(p.as_object(), "org_id");
  co_return std::string();
}

}  // namespace

side_limits::side_limits(const migrate_config& c)
    : requests(engine::rate_limit_config{c.max_requests_per_s, 0}),
      bytes(engine::rate_limit_config{static_cast<double>(c.max_bytes_per_s), 0}) {}

asio::awaitable<void> side_limits::before(std::size_t request_bytes) {
  if (!requests.unlimited()) co_await requests.acquire(1);
  if (!bytes.unlimited() && request_bytes) co_await bytes.acquire(static_cast<double>(request_bytes));
}

asio::awaitable<void> side_limits::after(std::size_t response_bytes) {
  if (!bytes.unlimited() && response_bytes) co_await bytes.acquire(static_cast<double>(response_bytes));
}

asio::awaitable<std::vector<std::string>> probe_sides(side& src, side& dst, const migrate_config& cfg) {
  std::vector<std::string> problems;
  std::string p = co_await probe_side(src, "source " + cfg.source.url, "BT_SOURCE_URL", "BT_SOURCE_API_KEY");
  if (!p.empty()) problems.push_back(std::move(p));
  p = co_await probe_side(dst, "destination " + cfg.dest.url, "BT_DEST_URL", "BT_DEST_API_KEY");
  if (!p.empty()) problems.push_back(std::move(p));
  co_return problems;
}

side make_side(asio::any_io_executor ex, const endpoint_config& ep, const migrate_config& cfg,
               transports::exchange_observer observer) {
  side s;
  s.limits = std::make_unique<side_limits>(cfg);
  transports::http_client_config hc = resources::client_config_for(cfg, ep);
  hc.observer = std::move(observer);
  hc.read_timeout = cfg.request_timeout;
  hc.request_timeout = cfg.request_timeout * 2;
  hc.max_connections_per_origin =
      static_cast<std::size_t>(std::max(64, cfg.max_concurrent_requests + 8 * cfg.max_concurrent_streams));
  s.http = std::make_unique<transports::http_client>(ex, std::move(hc));
  transports::api_client_config ac;
  ac.api_key = ep.api_key;
  ac.max_concurrent_requests = static_cast<std::size_t>(std::max(cfg.max_concurrent_requests, 1));
  ac.retry.max_attempts = std::max(cfg.retry_attempts, 1);
  ac.retry.base_delay = cfg.retry_delay;
  ac.btql_timeout = cfg.request_timeout;
  s.api = std::make_unique<transports::api_client>(*s.http, std::move(ac));
  s.res = std::make_unique<api_resource>(*s.api, ep.url, *s.limits);
  return s;
}

asio::awaitable<stream_endpoints> connect_streams(side& src, side& dst, const migrate_config& cfg) {
  stream_endpoints e;
  e.payload_max = co_await dst.api->version();
  engine::logger("pipeline")->info("destination logs3_payload_max_bytes={}",
                                   e.payload_max ? std::to_string(*e.payload_max) : "unknown");
  // (no co_await inside ?: or call arguments: GCC 12 destroys such temporaries too early)
  std::string src_org;
  if (cfg.copy_attachments) src_org = co_await org_id_of(src);
  e.http_source = std::make_unique<streams::http_event_source>(*src.http, cfg.source.api_key, src_org);
  auto dst_org = co_await org_id_of(dst);
  e.http_sink = std::make_unique<streams::http_event_sink>(*dst.http, cfg.dest.api_key, dst_org);
  e.source = std::make_unique<limited_source>(*e.http_source, *src.limits);
  e.sink = std::make_unique<limited_sink>(*e.http_sink, *dst.limits);
  co_return e;
}

asio::awaitable<transports::btql_page> btql_page_of(side& s, std::string body) {
  co_await s.limits->before(body.size());
  auto page = co_await shielded(s.api->btql_raw(std::move(body)));
  co_await s.limits->after(page.body.size());
  co_return page;
}

}  // namespace ferry::pipelines
