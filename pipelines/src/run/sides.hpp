#pragma once
// Internal to pipelines: how a run reaches one deployment (a "side"): its transports::braintrust_client
// (built from side_config_for, the one mapping of the config to HTTP policy: timeouts, retries, the
// Retry-After cap, the request semaphore and rate limits that bound every request of the side), the
// resource_api view the resources DAG uses, the page policy of reads outside streams (verify, counts),
// and the event_source / event_sink views the streams use. All of them are thin views over the client.

#include "pipelines/migrate_config.hpp"
#include "pipelines/resources/api.hpp"
#include "pipelines/streams/page_reader.hpp"
#include "pipelines/streams/stream_io.hpp"

#include "transports/api_client.hpp"
#include "transports/braintrust_client.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ferry::pipelines {

/// One deployment: the client, its typed API (client->api()), the resource_api view and the page policy.
struct side {
  std::unique_ptr<transports::braintrust_client> client;
  transports::api_client* api = nullptr;  // &client->api()
  std::unique_ptr<resources::resource_api> res;
  streams::page_reader_options reads;     // min_fetch_limit floor, the side's retry policy
};

/// `observer`: the --record hook (may be empty); `metrics`: the run's registry, which counts the side's
/// requests (may be null). Throws std::invalid_argument for a bad TLS/proxy setup.
side make_side(boost::asio::any_io_executor ex, side_role which, const migrate_config& cfg,
               transports::exchange_observer observer = {}, engine::metrics_registry* metrics = nullptr);

/// Both sides probed (GET /v1/project?limit=1) before anything else, so a bad key or URL is not a
/// failure deep inside the run: one line per side that does not answer, naming the variable to fix.
boost::asio::awaitable<std::vector<std::string>> probe_sides(side& src, side& dst, const migrate_config& cfg);

/// The organization id a side's API key belongs to: GET /v1/organization, else a project's org_id; ""
/// when neither tells.
boost::asio::awaitable<std::string> organization_id(side& s);

/// What the streams of a run read from and write to, connected once both sides answered: the
/// destination's /version payload cap, and the event source/sink views over each side's client.
struct stream_endpoints {
  std::optional<std::uint64_t> payload_max;
  std::unique_ptr<streams::event_source> source;
  std::unique_ptr<streams::event_sink> sink;
};

/// Reads the destination's GET /version and both organization ids (the source's only with
/// copy_attachments) and builds the event source and sink.
boost::asio::awaitable<stream_endpoints> connect_streams(side& src, side& dst, const migrate_config& cfg);

}  // namespace ferry::pipelines
