#pragma once
// Internal to pipelines: how a run reaches one deployment (a "side"): the HTTP client, the typed API
// client, the side's request/byte budgets, the resource_api view the resources DAG uses, and the
// event_source / event_sink views the streams use. Everything that maps the config to HTTP policy for
// migrate and verify is in sides.cpp (validate still builds its own in resources/http_api.cpp).

#include "pipelines/migrate_config.hpp"
#include "pipelines/resources/api.hpp"
#include "pipelines/streams/http_stream_io.hpp"
#include "pipelines/streams/stream_io.hpp"

#include "engine/rate_limiter.hpp"
#include "transports/api_client.hpp"
#include "transports/http_client.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ferry::pipelines {

// Per-side request and byte budgets (max_requests_per_s, max_bytes_per_s; 0 = unlimited), shared by
// every stream and the resources of that side. Each attempt (retries included) takes one request and
// its bytes (request body for writes, response body for reads). Thread-safe (rate_limiter is).
struct side_limits {
  engine::rate_limiter requests;
  engine::rate_limiter bytes;
  explicit side_limits(const migrate_config& c);
  boost::asio::awaitable<void> before(std::size_t request_bytes);
  boost::asio::awaitable<void> after(std::size_t response_bytes);
};

/// One deployment: HTTP client + typed API client + the resource_api view, under the side's limits.
struct side {
  std::unique_ptr<side_limits> limits;
  std::unique_ptr<transports::http_client> http;
  std::unique_ptr<transports::api_client> api;
  std::unique_ptr<resources::resource_api> res;
};

/// `observer`: the --record hook (may be empty). Throws std::invalid_argument for a bad TLS/proxy setup.
side make_side(boost::asio::any_io_executor ex, const endpoint_config& ep, const migrate_config& cfg,
               transports::exchange_observer observer = {});

/// Both sides probed (GET /v1/project?limit=1) before anything else, so a bad key or URL is not a
/// failure deep inside the run: one line per side that does not answer, naming the variable to fix.
boost::asio::awaitable<std::vector<std::string>> probe_sides(side& src, side& dst, const migrate_config& cfg);

/// What the streams of a run read from and write to, connected once both sides answered: the
/// destination's /version payload cap, and the HTTP event source/sink under each side's limits.
struct stream_endpoints {
  std::optional<std::uint64_t> payload_max;
  std::unique_ptr<streams::http_event_source> http_source;
  std::unique_ptr<streams::http_event_sink> http_sink;
  std::unique_ptr<streams::event_source> source;  // http_source under the source's rate limits
  std::unique_ptr<streams::event_sink> sink;      // http_sink under the destination's rate limits
};

/// Reads the destination's GET /version and both organization ids (the source's only with
/// copy_attachments) and builds the event source and sink.
boost::asio::awaitable<stream_endpoints> connect_streams(side& src, side& dst, const migrate_config& cfg);

/// One BTQL page of the source through the api_client (its request semaphore, retries honouring
/// Retry-After) and the side's rate limits, shielded from cancellation; one page as asked, no paging.
boost::asio::awaitable<transports::btql_page> btql_page_of(side& s, std::string body);

}  // namespace ferry::pipelines
