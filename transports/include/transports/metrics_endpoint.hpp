#pragma once
// The Prometheus side of a run: the HTTP endpoint that serves an engine::metrics_registry, and the
// request metrics every api_client of a side feeds (the "light hook" of braintrust_client).
//
// metrics_server: GET /metrics answers the registry rendered in the text exposition format 0.0.4
// (Content-Type "text/plain; version=0.0.4; charset=utf-8"); any other path is 404, any other method
// 405. It runs on the caller's executor (the run's engine::runtime) through transports::http_server,
// so it needs no thread of its own. Lifecycle as http_server: construct, start() (binds; throws
// std::runtime_error naming the address), stop() (idempotent). The registry must outlive the server.
//
// request_metrics: a side's families, looked up once: requests by side, method, endpoint template and
// status; retries; throttles (429/503). The endpoint is the path with ids replaced by ":id" and the
// query dropped, and "signed_url" for an absolute (signed, object storage) URL: a label never holds a
// key, a signature, an id or a header value. Thread-safe; each call takes the family's lock once.

#include "engine/metrics.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace ferry::transports {

/// "HOST:PORT" / "[::1]:PORT" / ":PORT" (all interfaces) -> host and port. Throws std::invalid_argument
/// naming the value when it is not one.
std::pair<std::string, std::uint16_t> parse_host_port(std::string_view s);

/// "POST", "/v1/project_logs/0b6f.../insert?x=1" -> "/v1/project_logs/:id/insert"; absolute URLs ->
/// "signed_url". A segment is an id when it holds a digit and is at least 8 characters long, or is
/// longer than 40 characters.
std::string endpoint_label(std::string_view target);

class request_metrics {
 public:
  request_metrics(engine::metrics_registry& r, std::string side);
  /// One HTTP attempt's end: `status` 0 when no response came (then `outcome` names why).
  void on_attempt(std::string_view method, std::string_view target, unsigned status, std::string_view outcome);
  /// A retry of the call (after a failed attempt, before its wait).
  void on_retry(std::string_view method, std::string_view target);

 private:
  std::string side_;
  engine::metric_family<engine::metric_counter>& requests_;
  engine::metric_family<engine::metric_counter>& retries_;
  engine::metric_family<engine::metric_counter>& throttles_;
};

class metrics_server {
 public:
  /// `address` as parse_host_port accepts; port 0 picks a free port (read it with port()).
  metrics_server(boost::asio::any_io_executor ex, std::string_view address, engine::metrics_registry& registry);
  ~metrics_server();
  metrics_server(const metrics_server&) = delete;
  metrics_server& operator=(const metrics_server&) = delete;

  void start();
  void stop();
  std::uint16_t port() const;
  const std::string& host() const { return host_; }

 private:
  std::string host_;
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace ferry::transports
