#pragma once
// The typed Braintrust API client used by pipelines: one per side (source / destination), over an
// http_client; production builds both from a transports::side_config (braintrust_client.hpp, where
// every setting's meaning is written down). Adds `Authorization: Bearer <key>` (never to signed URLs;
// http_client drops it on cross-origin redirects), a global request semaphore (capacity adjustable at
// run time, e.g. by AIMD), the side's request and byte rate limits, and retries of throttled /
// timed_out / transient outcomes with exponential backoff + full jitter, honouring Retry-After up to
// retry_after_max (longer ones are cut to it; waits of 5 s or more are logged at warn), capped by the
// retry config's overall deadline (engine::with_retry).
//
// Results are classified values (api_result); only `list_objects` throws (api_error), because a
// partial listing cannot be used. The semaphore and the rate limits are taken per attempt, never while
// backing off. Calls that must see every failure themselves (BTQL page shrinking on 5xx, /logs3 413
// splits) pass call_options{.retry = false}; their api_result carries the capped retry_after.
// Cancellation: each HTTP exchange runs shielded from the caller's cancellation (an Asio 1.26 co_spawn
// bug, see shielded_send) and is bounded by the timeouts; waits for a permit, a rate-limit token or a
// backoff are cancellable, so a shutdown cuts a long Retry-After short (operation_aborted); and
// abort_waits() ends the backoff waits of callers that cancellation does not reach.
//
// Threading: every member may be called concurrently from any coroutine on any strand. The
// http_client (and the clock, if given) must outlive the api_client; the api_client must outlive
// every call in flight. The API key is registered with engine::register_secret and never logged.

#include "engine/clock.hpp"
#include "engine/metrics.hpp"
#include "engine/outcome.hpp"
#include "engine/retry.hpp"
#include "engine/semaphore.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::transports {

class http_client;
struct http_request_spec;
struct http_result;

struct api_client_config {
  std::string side = "api";                  // names the side in log lines
  std::string api_key;                       // trimmed; empty = no Authorization header
  std::size_t max_concurrent_requests = 20;  // the global request semaphore's initial capacity
  engine::retry_config retry{};              // attempts, base/max delay, overall deadline per call
  std::chrono::milliseconds retry_after_max{60'000};  // a server's Retry-After is cut to this
  double max_requests_per_s = 0;             // each attempt takes one; 0 = unlimited
  std::uint64_t max_bytes_per_s = 0;         // request body before, response body after; 0 = unlimited
  std::chrono::milliseconds btql_timeout{120'000};
  int btql_query_timeout_seconds = 120;
  std::string client_version = "ferry-0.1";
  const engine::clock* clock = nullptr;      // backoff sleeps; null = real clock
  engine::metrics_registry* metrics = nullptr;  // request/retry/throttle counters (metrics_endpoint.hpp); may be null
};

struct call_options {
  bool retry = true;
  std::optional<std::chrono::milliseconds> timeout;  // per attempt; default: the http client's
  bool use_semaphore = true;
};

struct api_result {
  engine::io_outcome outcome = engine::io_outcome::fatal;
  unsigned status = 0;  // 0 when no response arrived
  std::string body;     // raw (decoded) response body
  std::string error;    // one line, no secrets; empty when ok
  std::optional<engine::steady_duration> retry_after;
  int attempts = 0;
  bool ok() const { return outcome == engine::io_outcome::ok; }
};

struct json_result : api_result {
  boost::json::value json;  // parsed body when ok (null for an empty body)
};

struct btql_page : api_result {
  boost::json::array rows;  // the page's "data", moved out of the parsed response
  /// The response's "cursor" (the JSON-AST form's opaque next-page token); nullopt when absent or null,
  /// which is the end of the JSON-AST form's paging. The text form pages by `_pagination_key` instead.
  std::optional<std::string> cursor;
};

using query_params = std::vector<std::pair<std::string, std::string>>;

/// A call that could not be completed; the message names method, path, status and the server's words.
class api_error : public std::runtime_error {
 public:
  api_error(unsigned status, engine::io_outcome outcome, const std::string& message)
      : std::runtime_error(message), status_(status), outcome_(outcome) {}
  unsigned status() const { return status_; }
  engine::io_outcome outcome() const { return outcome_; }

 private:
  unsigned status_;
  engine::io_outcome outcome_;
};

/// `client.send(spec)` shielded from the awaiting coroutine's cancellation: Asio 1.26's co_spawn
/// cancellation handler can touch a freed signal when a cancellation races with the end of
/// http_client's exchange coroutine. Completes when the request does (bounded by the client's timeouts).
/// `spec` must outlive the call.
boost::asio::awaitable<http_result> shielded_send(http_client& client, const http_request_spec& spec);

/// "path?k=v&k2=v2", values and keys percent-encoded (RFC 3986 unreserved characters kept).
std::string with_query(std::string_view path, const query_params& q);

class api_client {
 public:
  api_client(http_client& http, api_client_config cfg);
  ~api_client();
  api_client(const api_client&) = delete;
  api_client& operator=(const api_client&) = delete;

  /// Raw call with auth, semaphore and retries. `target` is relative to the base URL (or absolute).
  boost::asio::awaitable<api_result> call(boost::beast::http::verb verb, std::string target, std::string body,
                                          call_options opts = {});

  boost::asio::awaitable<json_result> get_json(std::string_view path, const query_params& q = {},
                                               call_options opts = {});
  boost::asio::awaitable<json_result> post_json(std::string_view path, const boost::json::value& body,
                                                call_options opts = {});
  boost::asio::awaitable<json_result> put_json(std::string_view path, const boost::json::value& body,
                                               call_options opts = {});
  boost::asio::awaitable<json_result> patch_json(std::string_view path, const boost::json::value& body,
                                                 call_options opts = {});
  boost::asio::awaitable<json_result> del(std::string_view path, call_options opts = {});

  /// Every object of a list endpoint ("/v1/project", "/v1/acl/list_org"...), paging with `limit` and
  /// `starting_after` = last id; accepts {"objects": [...]} and bare arrays. Throws api_error.
  boost::asio::awaitable<std::vector<boost::json::object>> list_objects(std::string_view path, query_params filters,
                                                                        std::size_t page_size = 1000);

  /// POST /btql {query, fmt:"json", api_version:1, use_brainstore:true, client_version,
  /// query_timeout_seconds}; rows parsed into a shared monotonic resource and moved out.
  boost::asio::awaitable<btql_page> btql(std::string_view query_text, call_options opts = {});
  /// The same with a caller-built request body (the pipeline's exact BTQL request).
  boost::asio::awaitable<btql_page> btql_raw(std::string body, call_options opts = {});

  /// POST /logs3 with a prebuilt body (the writer serializes once). Idempotent: rows replace by id.
  boost::asio::awaitable<api_result> logs3(std::string body, call_options opts = {});

  /// GET /version's logs3_payload_max_bytes; nullopt when absent or the call failed.
  boost::asio::awaitable<std::optional<std::uint64_t>> version();

  /// GET /attachment?key&filename&content_type&org_id -> {downloadUrl, status}.
  boost::asio::awaitable<json_result> attachment_info(std::string_view key, std::string_view filename,
                                                      std::string_view content_type, std::string_view org_id);
  /// POST /attachment {key, filename, content_type, org_id} -> {signedUrl, headers}.
  boost::asio::awaitable<json_result> attachment_upload_url(std::string_view key, std::string_view filename,
                                                            std::string_view content_type, std::string_view org_id);
  /// POST /attachment/status {key, org_id, status:{upload_status}}.
  boost::asio::awaitable<json_result> attachment_status(std::string_view key, std::string_view org_id,
                                                        std::string_view upload_status = "done");
  /// PUT bytes to a signed URL with exactly `headers` (plus x-ms-blob-type for Azure), no auth.
  boost::asio::awaitable<api_result> signed_put(std::string url, std::string bytes,
                                                std::vector<std::pair<std::string, std::string>> headers);
  /// GET a signed URL, no auth, byte-exact body (no gzip sniffing).
  boost::asio::awaitable<api_result> signed_get(std::string url);

  /// Ends every backoff / Retry-After wait of this client now, and every later one at once: the call
  /// throws system_error(operation_aborted), like a cancelled one. A run calls it when its shutdown
  /// begins, so no caller keeps waiting out a Retry-After whatever its cancellation filter. One way.
  void abort_waits();
  /// The clock the client's waits run on (the configured clock, ended by abort_waits): reads that
  /// retry on their own (streams::page_reader) wait on it too.
  const engine::clock& wait_clock() const;

  /// The global request semaphore (AIMD adjusts its capacity with set_concurrency).
  void set_concurrency(std::size_t n);
  engine::semaphore& request_semaphore();
  http_client& http();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace ferry::transports
