#pragma once
// A coroutine HTTP/1.1 client on Beast + OpenSSL, one per process side (source / destination).
//
// `send(spec)` performs one logical request: pooled keep-alive connection (per origin, capped),
// HTTP or HTTPS (system CAs, optional CA file, SNI, host-name verification), proxies
// (HTTPS_PROXY via CONNECT, HTTP_PROXY via absolute-form, NO_PROXY as curl), connect / per-read /
// total timeouts, up to `max_redirects` redirects (Authorization dropped when the origin changes),
// gzip/deflate response decoding, and a classified result (never throws for I/O failures). It does
// NOT retry (beyond one silent retry of a request that failed on a stale reused keep-alive
// connection before any response byte arrived, when the request is idempotent or was not fully
// sent): retries, backoff and the global concurrency limit live in api_client.
//
// Lifecycle and threading: construct with an executor of a (possibly multi-threaded) io_context;
// `send` may be called concurrently from any coroutine on any strand. Each connection has its own
// strand on which all of its I/O runs; a connection is used by one request at a time. The client
// must outlive every `send` in flight; destroying it closes idle pooled connections.
// Cancellation: a terminal cancellation of the coroutine awaiting `send` (its cancellation slot) aborts
// the in-flight exchange, which then throws system_error(operation_aborted); a response that completed
// before the cancellation reached it is returned. Safe at any moment (see run_on_strand in the .cpp).
// Secrets: request headers are never logged; error strings pass through engine::redact.

#include "engine/clock.hpp"
#include "engine/outcome.hpp"
#include "transports/http_util.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ferry::transports {

struct http_request_spec;
struct http_result;

/// Called once per `send`, after it completed (whatever the outcome), with the request, the final
/// result and the time the whole call took (pool wait, redirects). Runs on the sending coroutine's
/// thread, possibly concurrently for concurrent sends: it must be thread-safe, quick and must not
/// throw (an exception is logged and swallowed). Used by transports::recorder (`ferry migrate --record`).
using exchange_observer =
    std::function<void(const http_request_spec&, const http_result&, std::chrono::steady_clock::duration)>;

struct http_client_config {
  std::string base_url;  // "https://api.braintrust.dev" or "http://127.0.0.1:8000/prefix"; may be empty
  std::size_t max_connections_per_origin = 64;
  std::chrono::milliseconds connect_timeout{10'000};   // TCP connect + TLS handshake + proxy CONNECT
  std::chrono::milliseconds read_timeout{120'000};     // each read / write may take at most this long
  std::chrono::milliseconds request_timeout{600'000};  // the whole request incl. redirects and pool wait
  std::chrono::milliseconds idle_keepalive{50'000};    // pooled idle connections older than this are closed
  std::size_t body_limit = 256u << 20;                 // response body, after decoding too
  int max_redirects = 5;
  bool accept_gzip = true;  // send Accept-Encoding: gzip, deflate (see accept_gzip_for: off on loopback/LAN)
  // With accept_gzip: not on a plain-http connection (no proxy) whose peer address, as connected to, is
  // loopback or private: a LAN host known only by name is treated like its address (gzip_policy auto).
  bool gzip_skip_local_peers = false;
  std::string ca_file;                                 // extra trust anchors (PEM), e.g. a private CA
  bool insecure = false;                               // skip certificate verification (logs one warning)
  proxy_config proxy;                                  // use proxy_config::from_env() for the env vars
  std::string user_agent = "ferry/0.1";
  const engine::clock* clock = nullptr;                // for Retry-After dates; null = real clock
  exchange_observer observer;                          // optional: sees every exchange (recording)
};

struct http_request_spec {
  boost::beast::http::verb verb = boost::beast::http::verb::get;
  std::string target;  // absolute URL, or a path (+ query) relative to the base URL
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::optional<std::chrono::milliseconds> timeout;  // overrides request_timeout
  std::optional<bool> idempotent;                    // default: GET/HEAD/PUT/DELETE/OPTIONS
  bool sniff_gzip = true;  // decode a body starting with gzip magic even without Content-Encoding;
                           // false for byte-exact downloads (attachments that are .gz files)
};

/// Spare capacity after a response body (simdjson::SIMDJSON_PADDING is 64).
constexpr std::size_t http_body_slack = 64;

struct http_result {
  engine::io_outcome outcome = engine::io_outcome::fatal;
  unsigned status = 0;  // 0 when no response arrived
  std::string content_type;
  std::string location;
  std::string retry_after_header;
  std::optional<engine::steady_duration> retry_after;
  /// Decoded. A body read with a Content-Length has at least http_body_slack bytes of capacity past
  /// its end, so a parser that reads past the end (simdjson's padding) uses it in place, without a copy.
  std::string body;
  std::string error;  // empty when ok; one line: "POST http://h:p/btql: 429 Too Many Requests: <message>"
  std::string url;    // the final URL (after redirects), query stripped when it looks signed
  bool ok() const { return outcome == engine::io_outcome::ok; }
};

struct http_client_stats {
  std::uint64_t requests = 0;
  std::uint64_t connections_opened = 0;
  std::uint64_t connections_reused = 0;
  std::uint64_t stale_retries = 0;
};

class http_client {
 public:
  /// Throws std::invalid_argument with a one-line reason when the base URL, CA file or proxy
  /// settings are unusable.
  http_client(boost::asio::any_io_executor ex, http_client_config cfg);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  /// One request (see the file comment). The spec is only read; it must stay alive until the
  /// awaitable completes (a temporary in the co_await expression does).
  boost::asio::awaitable<http_result> send(const http_request_spec& spec);

  /// The absolute URL `target` resolves to (base URL + path prefix + target).
  std::string resolve(std::string_view target) const;
  const http_client_config& config() const;
  http_client_stats stats() const;
  /// Closes idle pooled connections (connections in use close when returned if `stop` follows).
  void close_idle();

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace ferry::transports
