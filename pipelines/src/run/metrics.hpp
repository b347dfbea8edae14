#pragma once
// Internal to pipelines: `ferry migrate --metrics-addr HOST:PORT`. The run's engine::metrics_registry
// is served by a transports::metrics_server on an io_context and thread of its own: the run's runtime
// returns from run() when its tasks end (an open listener would keep it running), runs once per
// --follow round, and may be saturated; the endpoint must answer across all of that, and for
// metrics_linger after the end, so that a last scrape sees the final values.
//
// Lifecycle: construct (binds; throws std::runtime_error naming the address), then it serves until
// destroyed (stops the server, joins the thread). The registry must outlive it.

#include "engine/metrics.hpp"
#include "transports/metrics_endpoint.hpp"

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <thread>

namespace ferry::pipelines {

class metrics_service {
 public:
  metrics_service(const std::string& address, engine::metrics_registry& registry);
  ~metrics_service();
  metrics_service(const metrics_service&) = delete;
  metrics_service& operator=(const metrics_service&) = delete;

  /// "http://127.0.0.1:PORT/metrics" with the bound port.
  std::string url() const;

 private:
  boost::asio::io_context ctx_;
  std::optional<transports::metrics_server> server_;
  std::thread thread_;
};

}  // namespace ferry::pipelines
