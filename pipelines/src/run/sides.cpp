#include "sides.hpp"

#include "../json_fields.hpp"

#include "pipelines/resources/http_api.hpp"
#include "pipelines/streams/http_stream_io.hpp"

#include "engine/log.hpp"

#include <boost/json.hpp>

#include <algorithm>

namespace ferry::pipelines {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {



/// What to check when a probe failed: the failed stage (TLS, proxy, redirect) says more than the URL.
std::string probe_hint(const std::string& error, unsigned status, const std::string& url_var) {
  if (error.find("tls handshake") != std::string::npos || error.find("certificate") != std::string::npos)
    return "TLS failed: check the server's certificate and MIGRATION_CA_FILE / SSL_CERT_FILE (or MIGRATION_INSECURE)";
  if (error.find("proxy") != std::string::npos) return "the proxy failed: check HTTPS_PROXY / HTTP_PROXY / NO_PROXY";
  if ((status >= 300 && status < 400) || error.find("redirect") != std::string::npos)
    return "the API answers with a redirect: set " + url_var + " to the URL it redirects to";
  return "check " + url_var;
}

/// GET /v1/project?limit=1 on one side: a rejected key or an unreachable API becomes one line naming the
/// side, its URL and the variable to fix; empty when the side answers.
asio::awaitable<std::string> probe_side(side& s, std::string what, std::string url_var, std::string key_var) {
  transports::query_params q;
  q.emplace_back("limit", "1");
  auto r = co_await s.api->get_json("/v1/project", q);
  if (r.ok()) co_return std::string();
  if (r.status == 401 || r.status == 403)
    co_return what + " rejected the API key (HTTP " + std::to_string(r.status) + "): check " + key_var;
  if (r.status == 0) co_return what + " cannot be reached (" + r.error + "): " + probe_hint(r.error, 0, url_var);
  co_return what + " does not answer GET /v1/project like a Braintrust API (" + r.error +
      "): " + probe_hint(r.error, r.status, url_var);
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
  auto r = co_await s.api->get_json("/v1/project", one_param("limit", "1"));
  if (r.ok() && r.json.is_object())
    if (auto* objs = r.json.as_object().if_contains("objects"); objs && objs->is_array())
      for (const auto& p : objs->as_array())
        if (p.is_object()) co_return str_field(p.as_object(), "org_id");
  co_return std::string();
}

}  // namespace

asio::awaitable<std::vector<std::string>> probe_sides(side& src, side& dst, const migrate_config& cfg) {
  std::vector<std::string> problems;
  std::string p = co_await probe_side(src, "source " + cfg.source.url, "BT_SOURCE_URL", "BT_SOURCE_API_KEY");
  if (!p.empty()) problems.push_back(std::move(p));
  p = co_await probe_side(dst, "destination " + cfg.dest.url, "BT_DEST_URL", "BT_DEST_API_KEY");
  if (!p.empty()) problems.push_back(std::move(p));
  co_return problems;
}

side make_side(asio::any_io_executor ex, side_role which, const migrate_config& cfg,
               transports::exchange_observer observer, engine::metrics_registry* metrics) {
  side s;
  auto sc = side_config_for(cfg, which, std::move(observer));
  sc.metrics = metrics;
  s.client = std::make_unique<transports::braintrust_client>(std::move(ex), std::move(sc));
  s.api = &s.client->api();
  s.res = std::make_unique<resources::client_resource_api>(*s.client);
  s.reads.sizes.min_limit = static_cast<std::size_t>(std::max(cfg.min_fetch_limit, 1));
  s.reads.retry = s.client->config().retry();
  return s;
}

asio::awaitable<std::string> organization_id(side& s) { co_return co_await org_id_of(s); }

asio::awaitable<stream_endpoints> connect_streams(side& src, side& dst, const migrate_config& cfg) {
  stream_endpoints e;
  e.payload_max = co_await dst.api->version();
  engine::logger("pipeline")->info("destination logs3_payload_max_bytes={}",
                                   e.payload_max ? std::to_string(*e.payload_max) : "unknown");
  // (no co_await inside ?: or call arguments: GCC 12 destroys such temporaries too early)
  std::string src_org;
  if (cfg.copy_attachments) src_org = co_await org_id_of(src);
  e.source = std::make_unique<streams::http_event_source>(*src.api, src_org);
  auto dst_org = co_await org_id_of(dst);
  e.sink = std::make_unique<streams::http_event_sink>(*dst.api, dst_org);
  co_return e;
}

}  // namespace ferry::pipelines
