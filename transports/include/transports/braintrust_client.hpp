#pragma once
// One Braintrust deployment (the source or the destination of a migration): `side_config` says how to
// reach it, `braintrust_client` owns the HTTP connection pool and the typed API client built from it.
//
// side_config is the ONLY place a deployment's settings become HTTP policy; every pipelines interface
// (resource API, event source/sink, attachments, verify reader, validate probes) is a thin view over the
// one api_client a braintrust_client owns, so all of them share:
//   - URL, API key (Bearer; never on signed URLs; registered with the log redactor), TLS (ca_file,
//     insecure), proxy (HTTPS_PROXY/HTTP_PROXY/NO_PROXY), gzip policy, recording (observer);
//   - request_timeout: ONE meaning, the whole of one HTTP attempt (pool wait, connect, TLS, send,
//     waiting for and reading the response, redirects). A retry gets a new request_timeout. Connect and
//     each single read are additionally bounded by min(10 s, request_timeout) and min(120 s,
//     request_timeout);
//   - retry_attempts: RETRIES after the first try, so a call makes at most retry_attempts + 1 attempts
//     (retry()); backoff from retry_delay with full jitter; a server's Retry-After is obeyed up to
//     retry_after_max (a longer one is cut to it, and a wait of 5 s or more is logged at warn);
//   - the global request semaphore (max_concurrent_requests; api_client::set_concurrency resizes it, e.g.
//     by AIMD): every request to the deployment holds one permit per attempt, stream BTQL pages and
//     /logs3 batches included. Signed-URL transfers (attachment bytes, another origin) do not;
//   - max_requests_per_s / max_bytes_per_s (0 = none): each attempt takes one request and its bytes
//     (request body before sending, response body after);
//   - metrics (optional): every attempt counted by side, method, endpoint template and status, every
//     retry and every 429/503 (transports/metrics_endpoint.hpp: labels never carry ids, URLs or keys).
//
// Threading: as api_client (any number of concurrent calls). Destroy after the io_context stopped
// running its handlers.

#include "transports/api_client.hpp"
#include "transports/http_client.hpp"
#include "transports/http_util.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace ferry::transports {

struct side_config {
  std::string name = "source";  // "source" / "destination": names the side in errors and logs
  std::string url;
  std::string api_key;
  std::string ca_file;
  bool insecure = false;
  gzip_policy accept_gzip = gzip_policy::automatic;
  proxy_config proxy;  // usually proxy_config::from_env()
  std::chrono::milliseconds request_timeout{120'000};  // the whole of one attempt (see the file comment)
  int retry_attempts = 5;                              // retries after the first try
  std::chrono::milliseconds retry_delay{1000};         // backoff base
  std::chrono::milliseconds retry_after_max{60'000};   // longest Retry-After obeyed
  std::size_t max_concurrent_requests = 20;            // the global request semaphore's initial capacity
  std::size_t max_connections = 64;                    // pooled connections per origin
  double max_requests_per_s = 0;                       // 0 = unlimited
  std::uint64_t max_bytes_per_s = 0;                   // 0 = unlimited
  exchange_observer observer;                          // --record (optional)
  const engine::clock* clock = nullptr;                // backoff sleeps, rate limits; null = real clock
  engine::metrics_registry* metrics = nullptr;         // --metrics-addr: requests, retries, throttles (may be null)

  /// attempts = retry_attempts + 1, base delay retry_delay (the policy every retry loop of the side uses).
  engine::retry_config retry() const;
  http_client_config http() const;
  api_client_config api() const;
};

class braintrust_client {
 public:
  /// Throws std::invalid_argument "<name>: <reason>" when the URL, CA file or proxy is unusable.
  braintrust_client(boost::asio::any_io_executor ex, side_config cfg);
  ~braintrust_client();
  braintrust_client(const braintrust_client&) = delete;
  braintrust_client& operator=(const braintrust_client&) = delete;

  api_client& api() { return *api_; }
  http_client& http() { return *http_; }
  const side_config& config() const { return cfg_; }
  /// The base URL, for messages.
  const std::string& describe() const { return cfg_.url; }

 private:
  side_config cfg_;
  std::unique_ptr<http_client> http_;
  std::unique_ptr<api_client> api_;
};

}  // namespace ferry::transports
