#include "pipelines/streams/http_stream_io.hpp"

#include "pipelines/streams/row_rewriter.hpp"

#include "engine/log.hpp"
#include "transports/api_client.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <openssl/evp.h>

#include <cstdio>
#include <memory>

namespace ferry::pipelines::streams {

namespace http = boost::beast::http;

namespace {

call_result to_call(transports::http_result&& r) {
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

}  // namespace

// Asio 1.26's co_spawn cancellation handler dispatches a cancellation to the spawned coroutine's
// executor with a pointer to a signal that dies when that coroutine completes, so a cancellation racing
// with the end of http_client's per-connection exchange is a use-after-free (it crashed the loopback
// crash-resume test under terminal shutdown). HTTP calls therefore run shielded from cancellation: each
// is bounded by the client's timeouts, and the pipeline stops at its next stage boundary instead.
boost::asio::awaitable<transports::http_result> send_shielded(transports::http_client& client,
                                                              const transports::http_request_spec& spec) {
  auto ex = co_await boost::asio::this_coro::executor;
  co_return co_await boost::asio::co_spawn(
      ex, client.send(spec), boost::asio::bind_cancellation_slot(boost::asio::cancellation_slot(), boost::asio::use_awaitable));
}

http_event_source::http_event_source(transports::http_client& client, std::string api_key, std::string org_id)
    : client_(client), org_id_(std::move(org_id)) {
  engine::register_secret(api_key);
  auth_ = "Bearer " + std::move(api_key);
}

http_event_sink::http_event_sink(transports::http_client& client, std::string api_key, std::string org_id)
    : client_(client), org_id_(std::move(org_id)) {
  engine::register_secret(api_key);
  auth_ = "Bearer " + std::move(api_key);
}

boost::asio::awaitable<call_result> http_event_source::btql(std::string body) {
  transports::http_request_spec spec;
  spec.verb = http::verb::post;
  spec.target = "/btql";
  spec.headers = {{"Authorization", auth_}, {"Content-Type", "application/json"}};
  spec.body = std::move(body);
  spec.idempotent = true;  // a read
  auto r = co_await send_shielded(client_, spec);
  co_return to_call(std::move(r));
}

boost::asio::awaitable<std::string> event_source::download_attachment(std::string key, std::string, std::string,
                                                                      std::uint64_t) {
  throw stream_error("attachment " + key + ": this source cannot copy attachments");
  co_return std::string();
}

boost::asio::awaitable<std::string> http_event_source::download_attachment(std::string key, std::string filename,
                                                                           std::string content_type, std::uint64_t max_bytes) {
  transports::query_params q;  // (no braced list of literals: GCC 12 rejects it inside coroutines)
  q.emplace_back("key", key);
  q.emplace_back("filename", filename);
  q.emplace_back("content_type", content_type);
  q.emplace_back("org_id", org_id_);
  transports::http_request_spec spec;
  spec.target = transports::with_query("/attachment", q);
  spec.headers = {{"Authorization", auth_}};
  auto r = co_await send_shielded(client_, spec);
  if (!r.ok()) throw stream_error("attachment " + key + ": GET /attachment failed: " + r.error);
  boost::system::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  const boost::json::object* o = (!ec && v.is_object()) ? &v.as_object() : nullptr;
  const auto* url = o ? o->if_contains("downloadUrl") : nullptr;
  if (!url || !url->is_string()) throw stream_error("attachment " + key + ": GET /attachment returned no downloadUrl");
  if (const auto* st = o->if_contains("status"); st && st->is_object())
    if (const auto* us = st->as_object().if_contains("upload_status"); us && us->is_string() && us->as_string() != "done")
      throw stream_error("attachment " + key + ": not ready in the source (upload_status " +
                         std::string(us->as_string()) + ")");
  transports::http_request_spec get;
  get.target = std::string(url->as_string());  // signed URL: no Authorization
  get.sniff_gzip = false;                       // byte-exact (the attachment may itself be a .gz file)
  auto d = co_await send_shielded(client_, get);
  if (!d.ok()) throw stream_error("attachment " + key + ": download failed: " + d.error);
  if (d.body.size() > max_bytes)
    throw stream_error("attachment " + key + ": " + std::to_string(d.body.size()) + " bytes exceed MIGRATION_ATTACHMENT_MAX_BYTES (" +
                       std::to_string(max_bytes) + ")");
  co_return std::move(d.body);
}

boost::asio::awaitable<call_result> http_event_sink::logs3(std::string body) {
  transports::http_request_spec spec;
  spec.verb = http::verb::post;
  spec.target = "/logs3";
  spec.headers = {{"Authorization", auth_}, {"Content-Type", "application/json"}};
  spec.body = std::move(body);
  spec.idempotent = true;  // rows replace by id: a re-sent request converges
  auto r = co_await send_shielded(client_, spec);
  co_return to_call(std::move(r));
}

boost::asio::awaitable<std::optional<std::uint64_t>> http_event_sink::payload_max_bytes() {
  transports::http_request_spec spec;
  spec.target = "/version";
  spec.headers = {{"Authorization", auth_}};
  auto r = co_await send_shielded(client_, spec);
  if (!r.ok()) co_return std::nullopt;
  boost::system::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  if (ec || !v.is_object()) co_return std::nullopt;
  auto* m = v.as_object().if_contains("logs3_payload_max_bytes");
  if (!m || !m->is_number()) co_return std::nullopt;
  auto n = m->to_number<double>();
  if (n <= 0) co_return std::nullopt;
  co_return static_cast<std::uint64_t>(n);
}

boost::asio::awaitable<std::string> http_event_sink::upload_attachment(std::string filename, std::string content_type,
                                                                       std::string bytes) {
  const std::string key = content_key(org_id_, filename, content_type, bytes);
  boost::json::object req{{"key", key}, {"filename", filename}, {"content_type", content_type}, {"org_id", org_id_}};
  transports::http_request_spec spec;
  spec.verb = http::verb::post;
  spec.target = "/attachment";
  spec.headers = {{"Authorization", auth_}, {"Content-Type", "application/json"}};
  spec.body = boost::json::serialize(req);
  auto r = co_await send_shielded(client_, spec);
  if (!r.ok()) throw stream_error("attachment upload: POST /attachment failed: " + r.error);
  boost::system::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  const boost::json::object* o = (!ec && v.is_object()) ? &v.as_object() : nullptr;
  const auto* url = o ? o->if_contains("signedUrl") : nullptr;
  if (!url || !url->is_string()) throw stream_error("attachment upload: POST /attachment returned no signedUrl");
  transports::http_request_spec put;
  put.verb = http::verb::put;
  put.target = std::string(url->as_string());
  if (const auto* h = o->if_contains("headers"); h && h->is_object())
    for (const auto& [k, hv] : h->as_object())
      if (hv.is_string()) put.headers.emplace_back(std::string(k), std::string(hv.as_string()));
  if (put.target.find("blob.core.windows.net") != std::string::npos) put.headers.emplace_back("x-ms-blob-type", "BlockBlob");
  put.body = std::move(bytes);
  auto pr = co_await send_shielded(client_, put);  // no Authorization: signed URL
  if (!pr.ok()) throw stream_error("attachment upload: PUT to the signed URL failed: " + pr.error);
  boost::json::object st{{"key", key}, {"org_id", org_id_}, {"status", boost::json::object{{"upload_status", "done"}}}};
  transports::http_request_spec done;
  done.verb = http::verb::post;
  done.target = "/attachment/status";
  done.headers = {{"Authorization", auth_}, {"Content-Type", "application/json"}};
  done.body = boost::json::serialize(st);
  auto dr = co_await send_shielded(client_, done);
  if (!dr.ok()) throw stream_error("attachment upload: POST /attachment/status failed: " + dr.error);
  boost::json::object ref{{"type", "braintrust_attachment"}, {"key", key}, {"filename", filename}, {"content_type", content_type}};
  co_return boost::json::serialize(ref);
}

}  // namespace ferry::pipelines::streams
