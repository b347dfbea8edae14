#pragma once
// resource_api over transports::http_client for real runs, and the helpers that build both sides of a
// migration from the config.
//
// http_resource_api: Authorization: Bearer <key> on every call (http_client drops it on cross-origin
// redirects), a per-side request semaphore (max_concurrent_requests), and retries of
// throttled/transient/timed_out outcomes with exponential backoff + full jitter honouring Retry-After
// (engine::with_retry). Creates are retried too: every Braintrust create is idempotent by
// name/slug/content (POST returns the existing object).
//
// make_http_sides(cfg, ex): one http_client + http_resource_api per side with the config's TLS (ca_file,
// insecure), proxy (HTTPS_PROXY/HTTP_PROXY/NO_PROXY from the environment), request timeout, retry and
// concurrency settings; both API keys are registered with the log redactor first. Throws
// std::invalid_argument with one line naming the side and what to fix (missing key or URL, unreadable CA
// file, bad proxy URL).
//
// run_validate(cfg, out): blocking `ferry validate` — builds the sides on its own io_context, runs
// validate() (entry.hpp) and prints one line per check; 0 when nothing FAILed, 1 otherwise (also for a
// config that cannot build the sides, printed as one FAIL line).
//
// Threading: call() may run concurrently from any strand. The http_sides own their clients; destroy them
// after the io_context stopped running their handlers (no call may be outstanding). The API key never
// appears in errors or logs.

#include "pipelines/migrate_config.hpp"
#include "pipelines/resources/api.hpp"

#include "engine/retry.hpp"
#include "engine/semaphore.hpp"
#include "transports/http_client.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <memory>
#include <ostream>
#include <string>

namespace ferry::pipelines::resources {

class http_resource_api final : public resource_api {
 public:
  http_resource_api(transports::http_client& client, std::string base_url, std::string api_key,
                    std::size_t max_concurrent_requests, engine::retry_config retry);
  boost::asio::awaitable<api_reply> call(std::string method, std::string target, std::string body) override;
  std::string describe() const override { return base_url_; }

 private:
  transports::http_client& client_;
  std::string base_url_;
  std::string auth_;
  engine::semaphore sem_;
  engine::retry_config retry_;
};

/// Both sides of a migration over HTTP. Movable; owns the clients the apis point into.
struct http_sides {
  http_sides();
  http_sides(http_sides&&) noexcept;
  http_sides& operator=(http_sides&&) noexcept;
  ~http_sides();

  std::unique_ptr<transports::http_client> source_client;
  std::unique_ptr<transports::http_client> dest_client;
  std::unique_ptr<http_resource_api> source;
  std::unique_ptr<http_resource_api> dest;
};

/// The HTTP client settings every client of one side shares, from the config: base URL, TLS (ca_file,
/// insecure), gzip (MIGRATION_ACCEPT_GZIP) and the proxy variables. Callers add timeouts and limits.
transports::http_client_config client_config_for(const migrate_config& cfg, const endpoint_config& ep);

/// The retry settings of the config (retry_attempts retries after the first try, retry_delay base).
engine::retry_config retry_from(const migrate_config& cfg);

/// Builds both sides from the config (see the file comment). The observers (optional) see every exchange
/// of their side, e.g. a transports::recorder's observer("source") / observer("dest") for --record; what
/// they capture must outlive the sides. Throws std::invalid_argument.
http_sides make_http_sides(const migrate_config& cfg, boost::asio::any_io_executor ex,
                           transports::exchange_observer source_observer = {},
                           transports::exchange_observer dest_observer = {});

/// Blocking `ferry validate` over HTTP (see the file comment).
int run_validate(const migrate_config& cfg, std::ostream& out);

}  // namespace ferry::pipelines::resources
