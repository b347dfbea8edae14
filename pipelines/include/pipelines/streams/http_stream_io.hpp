#pragma once
// event_source / event_sink over transports::http_client: POST /btql on the source, POST /logs3,
// GET /version and the attachment upload protocol (POST /attachment -> PUT signedUrl -> POST
// /attachment/status, reference-tool.md §1.9) on the destination. One attempt per call (the stream
// pipeline retries). The API key goes only into the Authorization header of requests to the
// configured base URL, never to signed URLs, and never into logs or errors.
// Threading: as thread-safe as http_client (any number of concurrent calls). The clients must
// outlive this object.

#include "pipelines/streams/stream_io.hpp"

#include "transports/http_client.hpp"

#include <string>

namespace ferry::pipelines::streams {

/// `client.send(spec)` shielded from the awaiting coroutine's cancellation (works around an Asio 1.26
/// co_spawn cancellation use-after-free; see http_stream_io.cpp). Completes when the request does
/// (bounded by the client's timeouts). `spec` must outlive the call.
boost::asio::awaitable<transports::http_result> send_shielded(transports::http_client& client,
                                                              const transports::http_request_spec& spec);

class http_event_source final : public event_source {
 public:
  /// `org_id`: the source organization (attachment downloads need it).
  /// The key is registered with engine::register_secret, so no log line or error text can show it.
  http_event_source(transports::http_client& client, std::string api_key, std::string org_id = {});
  boost::asio::awaitable<call_result> btql(std::string body) override;
  boost::asio::awaitable<std::string> download_attachment(std::string key, std::string filename, std::string content_type,
                                                          std::uint64_t max_bytes) override;

 private:
  transports::http_client& client_;
  std::string auth_;
  std::string org_id_;
};

class http_event_sink final : public event_sink {
 public:
  /// `org_id`: the destination organization (attachment calls need it).
  /// The key is registered with engine::register_secret, so no log line or error text can show it.
  http_event_sink(transports::http_client& client, std::string api_key, std::string org_id);
  boost::asio::awaitable<call_result> logs3(std::string body) override;
  boost::asio::awaitable<std::optional<std::uint64_t>> payload_max_bytes() override;
  boost::asio::awaitable<std::string> upload_attachment(std::string filename, std::string content_type,
                                                        std::string bytes) override;

 private:
  transports::http_client& client_;
  std::string auth_;
  std::string org_id_;
};

}  // namespace ferry::pipelines::streams
