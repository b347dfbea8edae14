#pragma once
// What a stream needs from the two APIs, as a small interface: the pipeline is written against it so
// that unit tests drive it with in-memory fakes, and http_event_source / http_event_sink
// (http_stream_io.hpp) are thin views over a side's transports::api_client for real runs.
//
// Calls report HTTP outcomes as values; retrying is the pipeline's job (it must see 500/504 on BTQL to
// shrink the page, and 413 on /logs3 to split), so implementations make ONE attempt per call.
// Threading: implementations must allow concurrent calls from several coroutines (any strand).

#include "engine/clock.hpp"
#include "engine/outcome.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace ferry::pipelines::streams {

struct call_result {
  int status = 0;  // HTTP status; 0 when no response (network error, timeout)
  engine::io_outcome outcome = engine::io_outcome::ok;
  std::string body;
  std::optional<engine::steady_duration> retry_after;
  std::string error;  // one line, no secrets
};

class event_source {
 public:
  virtual ~event_source() = default;
  /// POST /btql with `body` (see build_btql_body).
  virtual boost::asio::awaitable<call_result> btql(std::string body) = 0;
  /// The bytes of an attachment (GET /attachment -> downloadUrl -> download, reference-tool.md §1.9).
  /// Throws stream_error on failure, when not ready, or above `max_bytes`. The default says the source
  /// cannot copy attachments.
  virtual boost::asio::awaitable<std::string> download_attachment(std::string key, std::string filename,
                                                                  std::string content_type, std::uint64_t max_bytes);
};

class event_sink {
 public:
  virtual ~event_sink() = default;
  /// POST /logs3 with `body` (see logs3_body).
  virtual boost::asio::awaitable<call_result> logs3(std::string body) = 0;
  /// The SDKs' overflow upload of one /logs3 body (overflow.hpp): POST /logs3/overflow with `request`
  /// (overflow_request), PUT `payload` to the signed URL, then POST /logs3 with the reference. One
  /// attempt of each step; the result is the first failing step's, else the final /logs3's. The
  /// default answers "not supported" (a fatal result with status 0).
  virtual boost::asio::awaitable<call_result> logs3_overflow(std::string payload, std::string request);
  /// GET /version's logs3_payload_max_bytes, when the server states one.
  virtual boost::asio::awaitable<std::optional<std::uint64_t>> payload_max_bytes() = 0;
  /// Uploads `bytes` as a new attachment and returns the reference object's raw JSON
  /// ({"type":"braintrust_attachment","key":..,"filename":..,"content_type":..}). Throws on failure.
  virtual boost::asio::awaitable<std::string> upload_attachment(std::string filename, std::string content_type,
                                                                std::string bytes) = 0;
};

}  // namespace ferry::pipelines::streams
