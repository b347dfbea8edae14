#pragma once
// resource_api over transports::http_client for real runs: Authorization: Bearer <key> on every call
// (http_client drops it on cross-origin redirects), a per-side request semaphore
// (max_concurrent_requests), and retries of throttled/transient/timed_out outcomes with exponential
// backoff + full jitter honouring Retry-After (engine::with_retry). Creates are retried too: every
// Braintrust create is idempotent by name/slug/content (POST returns the existing object).
//
// Threading: call() may run concurrently from any strand. The client must outlive this object. The API
// key is registered with the log redactor and never appears in errors.

#include "pipelines/resources/api.hpp"

#include "engine/retry.hpp"
#include "engine/semaphore.hpp"

#include <memory>
#include <string>

namespace ferry::transports {
class http_client;
}

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

}  // namespace ferry::pipelines::resources
