#include "transports/braintrust_client.hpp"

#include "engine/log.hpp"

#include <algorithm>
#include <stdexcept>

namespace ferry::transports {

engine::retry_config side_config::retry() const {
  engine::retry_config r;
  r.max_attempts = std::max(retry_attempts, 0) + 1;
  if (retry_delay.count() > 0) r.base_delay = retry_delay;
  r.max_delay = std::max(r.max_delay, r.base_delay);
  return r;
}

http_client_config side_config::http() const {
  http_client_config c;
  c.base_url = url;
  c.ca_file = ca_file;
  c.insecure = insecure;
  c.accept_gzip = accept_gzip_for(accept_gzip, url);
  c.gzip_skip_local_peers = accept_gzip == gzip_policy::automatic;
  c.proxy = proxy;
  if (request_timeout.count() > 0) {
    c.request_timeout = request_timeout;
    c.read_timeout = std::min(c.read_timeout, request_timeout);
    c.connect_timeout = std::min(c.connect_timeout, request_timeout);
  }
  c.max_connections_per_origin = std::max<std::size_t>(max_connections, 1);
  c.observer = observer;
  c.clock = clock;
  return c;
}

api_client_config side_config::api() const {
  api_client_config a;
  a.side = name;
  a.api_key = api_key;
  a.max_concurrent_requests = std::max<std::size_t>(max_concurrent_requests, 1);
  a.retry = retry();
  a.retry_after_max = retry_after_max;
  if (request_timeout.count() > 0) a.btql_timeout = request_timeout;
  a.max_requests_per_s = max_requests_per_s;
  a.max_bytes_per_s = max_bytes_per_s;
  a.clock = clock;
  a.metrics = metrics;
  return a;
}

braintrust_client::braintrust_client(boost::asio::any_io_executor ex, side_config cfg) : cfg_(std::move(cfg)) {
  // First, so that nothing below (errors included) can print the key.
  if (!cfg_.api_key.empty()) engine::register_secret(cfg_.api_key);
  try {
    http_ = std::make_unique<http_client>(std::move(ex), cfg_.http());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(cfg_.name + ": " + e.what());
  }
  api_ = std::make_unique<api_client>(*http_, cfg_.api());
}

braintrust_client::~braintrust_client() {
  api_.reset();  // points into the http client
  http_.reset();
}

}  // namespace ferry::transports
