#pragma once
// event_source / event_sink as thin views over a side's transports::api_client (built from the side's
// transports::side_config, braintrust_client.hpp): POST /btql on the source, POST /logs3 (and its
// overflow upload, overflow.hpp), GET /version and the attachment upload protocol (POST /attachment -> PUT signedUrl -> POST /attachment/status,
// reference-tool.md §1.9) on the destination. So every page and batch holds a permit of the side's
// global request semaphore and takes its request / byte rate limits, like every other call of the side.
// BTQL and /logs3 make one attempt per call (the stream pipeline retries with the side's policy: it must
// see 500/504 and 413 itself); their call_result carries the Retry-After the client capped. The API key
// goes only into the Authorization header of requests to the configured base URL, never to signed URLs,
// and never into logs or errors.
// Threading: as thread-safe as api_client (any number of concurrent calls). The client must outlive
// this object.

#include "pipelines/streams/stream_io.hpp"

#include "transports/api_client.hpp"

#include <string>

namespace ferry::pipelines::streams {

class http_event_source final : public event_source {
 public:
  /// `org_id`: the source organization (attachment downloads need it).
  explicit http_event_source(transports::api_client& client, std::string org_id = {});
  boost::asio::awaitable<call_result> btql(std::string body) override;
  boost::asio::awaitable<std::string> download_attachment(std::string key, std::string filename, std::string content_type,
                                                          std::uint64_t max_bytes) override;

 private:
  transports::api_client& client_;
  std::string org_id_;
};

class http_event_sink final : public event_sink {
 public:
  /// `org_id`: the destination organization (attachment calls need it).
  http_event_sink(transports::api_client& client, std::string org_id);
  boost::asio::awaitable<call_result> logs3(std::string body) override;
  boost::asio::awaitable<call_result> logs3_overflow(std::string payload, std::string request) override;
  boost::asio::awaitable<std::optional<std::uint64_t>> payload_max_bytes() override;
  boost::asio::awaitable<std::string> upload_attachment(std::string filename, std::string content_type,
                                                        std::string bytes) override;

 private:
  transports::api_client& client_;
  std::string org_id_;
};

}  // namespace ferry::pipelines::streams
