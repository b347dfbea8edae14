#include "pipelines/resources/http_api.hpp"

#include "pipelines/resources/entry.hpp"

#include "engine/clock.hpp"
#include "engine/log.hpp"
#include "transports/http_client.hpp"
#include "transports/http_util.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http/verb.hpp>

#include <algorithm>
#include <exception>
#include <stdexcept>

namespace ferry::pipelines::resources {

namespace asio = boost::asio;

http_resource_api::http_resource_api(transports::http_client& client, std::string base_url, std::string api_key,
                                     std::size_t max_concurrent_requests, engine::retry_config retry)
    : client_(client),
      base_url_(std::move(base_url)),
      auth_("Bearer " + api_key),
      sem_(std::max<std::size_t>(1, max_concurrent_requests)),
      retry_(retry) {
  engine::register_secret(api_key);
}

asio::awaitable<api_reply> http_resource_api::call(std::string method, std::string target, std::string body) {
  transports::http_request_spec spec;
  spec.verb = boost::beast::http::string_to_verb(method);
  spec.target = std::move(target);
  spec.headers.emplace_back("Authorization", auth_);
  if (!body.empty()) spec.headers.emplace_back("Content-Type", "application/json");
  spec.body = std::move(body);
  spec.idempotent = true;  // creates are idempotent by uniqueness key on the server
  engine::retry_policy policy(retry_);
  api_reply out;
  std::string what = method + " " + spec.target.substr(0, spec.target.find('?'));
  co_await engine::with_retry(
      policy, engine::real_clock::instance(),
      [&](int) -> asio::awaitable<engine::attempt_result> {
        auto permit = co_await sem_.acquire();
        auto r = co_await client_.send(spec);
        out.status = static_cast<int>(r.status);
        out.outcome = r.outcome;
        out.body = std::move(r.body);
        out.error = r.status == 0 ? r.error : std::string();  // with a status, the body names the cause
        engine::attempt_result a;
        a.outcome = r.outcome;
        a.retry_after = r.retry_after;
        a.detail = "HTTP " + std::to_string(r.status);
        co_return a;
      },
      engine::retry_hooks{what, {}});
  co_return out;
}

http_sides::http_sides() = default;
http_sides::http_sides(http_sides&&) noexcept = default;
http_sides& http_sides::operator=(http_sides&&) noexcept = default;
http_sides::~http_sides() {
  // The apis point into the clients: drop them first.
  source.reset();
  dest.reset();
}

engine::retry_config retry_from(const migrate_config& cfg) {
  engine::retry_config r;
  r.max_attempts = std::max(1, cfg.retry_attempts + 1);
  if (cfg.retry_delay.count() > 0) r.base_delay = cfg.retry_delay;
  r.max_delay = std::max(r.max_delay, r.base_delay);
  return r;
}

transports::http_client_config client_config_for(const migrate_config& cfg, const endpoint_config& ep) {
  transports::http_client_config c;
  c.base_url = ep.url;
  c.ca_file = cfg.ca_file;
  c.insecure = cfg.insecure;
  c.accept_gzip = transports::accept_gzip_for(cfg.accept_gzip, ep.url);  // MIGRATION_ACCEPT_GZIP
  c.gzip_skip_local_peers = cfg.accept_gzip == transports::gzip_policy::automatic;
  c.proxy = transports::proxy_config::from_env();
  return c;
}

namespace {

std::unique_ptr<transports::http_client> make_client(const migrate_config& cfg, const endpoint_config& ep,
                                                     const std::string& side, const std::string& var_prefix,
                                                     asio::any_io_executor ex, transports::exchange_observer obs) {
  if (ep.url.empty())
    throw std::invalid_argument(side + ": no API URL: set " + var_prefix + "_URL (e.g. https://api.braintrust.dev)");
  if (ep.api_key.empty())
    throw std::invalid_argument(side + ": no API key: set " + var_prefix + "_API_KEY");
  transports::http_client_config c = client_config_for(cfg, ep);
  if (cfg.request_timeout.count() > 0) {
    c.request_timeout = cfg.request_timeout;
    c.read_timeout = std::min(c.read_timeout, cfg.request_timeout);
    c.connect_timeout = std::min(c.connect_timeout, cfg.request_timeout);
  }
  c.max_connections_per_origin = static_cast<std::size_t>(std::max(1, cfg.max_concurrent_requests));
  c.observer = std::move(obs);
  try {
    return std::make_unique<transports::http_client>(std::move(ex), std::move(c));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(side + ": " + e.what());
  }
}

}  // namespace

http_sides make_http_sides(const migrate_config& cfg, asio::any_io_executor ex,
                           transports::exchange_observer source_observer, transports::exchange_observer dest_observer) {
  // Keys first, so that nothing below (errors included) can print them.
  if (!cfg.source.api_key.empty()) engine::register_secret(cfg.source.api_key);
  if (!cfg.dest.api_key.empty()) engine::register_secret(cfg.dest.api_key);
  http_sides s;
  s.source_client = make_client(cfg, cfg.source, "source", "BT_SOURCE", ex, std::move(source_observer));
  s.dest_client = make_client(cfg, cfg.dest, "destination", "BT_DEST", ex, std::move(dest_observer));
  auto n = static_cast<std::size_t>(std::max(1, cfg.max_concurrent_requests));
  s.source = std::make_unique<http_resource_api>(*s.source_client, cfg.source.url, cfg.source.api_key, n, retry_from(cfg));
  s.dest = std::make_unique<http_resource_api>(*s.dest_client, cfg.dest.url, cfg.dest.api_key, n, retry_from(cfg));
  return s;
}

int run_validate(const migrate_config& cfg, std::ostream& out) {
  asio::io_context ctx;
  http_sides sides;
  try {
    sides = make_http_sides(cfg, ctx.get_executor());
  } catch (const std::exception& e) {
    out << "FAIL config: " << engine::redact(e.what()) << "\n";
    return 1;
  }
  std::vector<check_result> results;
  std::exception_ptr err;
  asio::co_spawn(ctx, validate(cfg, *sides.source, *sides.dest),
                 [&](std::exception_ptr e, std::vector<check_result> r) {
                   err = e;
                   results = std::move(r);
                 });
  ctx.run();
  if (err) {
    try {
      std::rethrow_exception(err);
    } catch (const std::exception& e) {
      out << "FAIL validate: " << engine::redact(e.what()) << "\n";
    }
    return 1;
  }
  return print_checks(results, out);
}

}  // namespace ferry::pipelines::resources
