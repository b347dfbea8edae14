#include "pipelines/streams/http_stream_io.hpp"

#include "pipelines/streams/overflow.hpp"
#include "pipelines/streams/row_rewriter.hpp"

#include "engine/log.hpp"
#include "transports/api_client.hpp"

#include <boost/beast/http/verb.hpp>
#include <boost/json.hpp>

#include <openssl/evp.h>

#include <cstdio>
#include <memory>

namespace ferry::pipelines::streams {

namespace http = boost::beast::http;

namespace {

call_result to_call(transports::api_result&& r) {
  call_result c;
  c.status = static_cast<int>(r.status);
  c.outcome = r.outcome;
  c.body = std::move(r.body);
  c.retry_after = r.retry_after;
  c.error = std::move(r.error);
  return c;
}

// The key of an uploaded attachment: a UUID-shaped SHA-256 of the destination org, file name, content
// type and bytes. The same attachment always gets the same key, so a batch re-sent after a crash
// (SIGKILL between the upload and the commit) overwrites its earlier upload instead of orphaning it.
std::string content_key(std::string_view org, std::string_view filename, std::string_view content_type,
                        std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    throw stream_error("attachment upload: SHA-256 is not available");
  for (std::string_view part : {org, filename, content_type, bytes}) {
    const std::uint64_t n = part.size();  // length-prefixed: no two splits of the same bytes collide
    EVP_DigestUpdate(ctx.get(), &n, sizeof n);
    EVP_DigestUpdate(ctx.get(), part.data(), part.size());
  }
  EVP_DigestFinal_ex(ctx.get(), md, &md_len);
  md[6] = static_cast<unsigned char>((md[6] & 0x0F) | 0x80);  // UUID version 8 (custom), RFC 9562
  md[8] = static_cast<unsigned char>((md[8] & 0x3F) | 0x80);  // RFC 4122 variant
  char buf[40];
  int at = 0;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) buf[at++] = '-';
    at += std::snprintf(buf + at, sizeof buf - static_cast<std::size_t>(at), "%02x", md[i]);
  }
  return std::string(buf, static_cast<std::size_t>(at));
}

// One attempt per call: the stream pipeline retries (it must see 500/504 and 413 itself).
constexpr transports::call_options once{.retry = false, .timeout = std::nullopt, .use_semaphore = true};

}  // namespace

http_event_source::http_event_source(transports::api_client& client, std::string org_id)
    : client_(client), org_id_(std::move(org_id)) {}

http_event_sink::http_event_sink(transports::api_client& client, std::string org_id)
    : client_(client), org_id_(std::move(org_id)) {}

boost::asio::awaitable<call_result> http_event_source::btql(std::string body) {
  co_return to_call(co_await client_.call(http::verb::post, "/btql", std::move(body), once));
}

boost::asio::awaitable<std::string> event_source::download_attachment(std::string key, std::string, std::string,
                                                                      std::uint64_t) {
  throw stream_error("attachment " + key + ": this source cannot copy attachments");
  co_return std::string();
}

boost::asio::awaitable<std::string> http_event_source::download_attachment(std::string key, std::string filename,
                                                                           std::string content_type, std::uint64_t max_bytes) {
  auto r = co_await client_.attachment_info(key, filename, content_type, org_id_);
  if (!r.ok()) throw stream_error("attachment " + key + ": GET /attachment failed: " + r.error);
  const boost::json::object* o = r.json.if_object();
  const auto* url = o ? o->if_contains("downloadUrl") : nullptr;
  if (!url || !url->is_string()) throw stream_error("attachment " + key + ": GET /attachment returned no downloadUrl");
  if (const auto* st = o->if_contains("status"); st && st->is_object())
    if (const auto* us = st->as_object().if_contains("upload_status"); us && us->is_string() && us->as_string() != "done")
      throw stream_error("attachment " + key + ": not ready in the source (upload_status " +
                         std::string(us->as_string()) + ")");
  // Signed URL: no Authorization, byte-exact (the attachment may itself be a .gz file).
  auto d = co_await client_.signed_get(std::string(url->as_string()));
  if (!d.ok()) throw stream_error("attachment " + key + ": download failed: " + d.error);
  if (d.body.size() > max_bytes)
    throw stream_error("attachment " + key + ": " + std::to_string(d.body.size()) + " bytes exceed MIGRATION_ATTACHMENT_MAX_BYTES (" +
                       std::to_string(max_bytes) + ")");
  co_return std::move(d.body);
}

boost::asio::awaitable<call_result> http_event_sink::logs3(std::string body) {
  co_return to_call(co_await client_.logs3(std::move(body), once));
}

boost::asio::awaitable<call_result> event_sink::logs3_overflow(std::string, std::string) {
  call_result c;
  c.outcome = engine::io_outcome::fatal;
  c.error = "this destination takes no /logs3/overflow uploads";
  co_return c;
}

boost::asio::awaitable<call_result> http_event_sink::logs3_overflow(std::string payload, std::string request) {
  auto grant_r = co_await client_.call(http::verb::post, "/logs3/overflow", std::move(request), once);
  if (grant_r.outcome != engine::io_outcome::ok) {
    grant_r.error = "POST /logs3/overflow: " + grant_r.error;
    co_return to_call(std::move(grant_r));
  }
  overflow_grant grant;
  try {
    grant = parse_overflow_grant(grant_r.body);
  } catch (const stream_error& e) {
    call_result c;
    c.status = static_cast<int>(grant_r.status);
    c.outcome = engine::io_outcome::fatal;
    c.error = e.what();
    co_return c;
  }
  const std::size_t size = payload.size();
  // No Authorization to a signed URL; exactly the returned headers.
  auto put = co_await client_.signed_put(std::move(grant.url), std::move(payload), std::move(grant.headers));
  if (put.outcome != engine::io_outcome::ok) {
    put.error = "PUT of the overflow payload to its signed URL: " + put.error;
    co_return to_call(std::move(put));
  }
  auto ingest = co_await client_.logs3(overflow_reference_body(grant.key, size), once);
  co_return to_call(std::move(ingest));
}

boost::asio::awaitable<std::optional<std::uint64_t>> http_event_sink::payload_max_bytes() {
  co_return co_await client_.version();
}

boost::asio::awaitable<std::string> http_event_sink::upload_attachment(std::string filename, std::string content_type,
                                                                       std::string bytes) {
  const std::string key = content_key(org_id_, filename, content_type, bytes);
  auto r = co_await client_.attachment_upload_url(key, filename, content_type, org_id_);
  if (!r.ok()) throw stream_error("attachment upload: POST /attachment failed: " + r.error);
  const boost::json::object* o = r.json.if_object();
  const auto* url = o ? o->if_contains("signedUrl") : nullptr;
  if (!url || !url->is_string()) throw stream_error("attachment upload: POST /attachment returned no signedUrl");
  std::vector<std::pair<std::string, std::string>> headers;
  if (const auto* h = o->if_contains("headers"); h && h->is_object())
    for (const auto& [k, hv] : h->as_object())
      if (hv.is_string()) headers.emplace_back(std::string(k), std::string(hv.as_string()));
  // No Authorization to a signed URL; the client adds x-ms-blob-type for Azure.
  auto pr = co_await client_.signed_put(std::string(url->as_string()), std::move(bytes), std::move(headers));
  if (!pr.ok()) throw stream_error("attachment upload: PUT to the signed URL failed: " + pr.error);
  auto dr = co_await client_.attachment_status(key, org_id_);
  if (!dr.ok()) throw stream_error("attachment upload: POST /attachment/status failed: " + dr.error);
  boost::json::object ref{{"type", "braintrust_attachment"}, {"key", key}, {"filename", filename}, {"content_type", content_type}};
  co_return boost::json::serialize(ref);
}

}  // namespace ferry::pipelines::streams
