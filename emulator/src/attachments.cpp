// Attachments and signed URLs. A signed URL is <base>/_signed/<kind>/<hex org>/<hex key>?sig=<hmac>, where
// the HMAC-SHA256 (truncated to 128 bits) over kind, org and key uses a secret persisted in the store, so
// URLs stay valid across restarts with --data and cannot be forged for another org's key. Signed targets
// need no Authorization header (the SDKs send none).

#include "events_impl.hpp"
#include "json_fields.hpp"
#include "engine/json_parse.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/json/monotonic_resource.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <mutex>

namespace ferry::emulator {

namespace {

namespace http = boost::beast::http;
using detail::http_error;

// Serializes read-modify-write of attachment metadata (uploads are rare next to event traffic).
std::mutex attachment_meta_mu;

/// a, b and c with `sep` between them.
std::string joined(char sep, std::string_view a, std::string_view b, std::string_view c) {
  std::string out(a);
  out.push_back(sep);
  out.append(b);
  out.push_back(sep);
  out.append(c);
  return out;
}
std::string scoped_key(std::string_view tag, std::string_view org_id, std::string_view key) {
  return joined('\0', tag, org_id, key);
}
std::string meta_key(std::string_view org_id, std::string_view key) { return scoped_key("att", org_id, key); }

json::value parse_json(std::string_view body, json::storage_ptr sp, std::string_view what) {
  boost::system::error_code ec;
  json::value v = ferry::engine::parse_json(body, ec, std::move(sp));
  if (ec || !v.is_object()) throw http_error(400, std::string(what) + ": body must be a JSON object");
  return v;
}

void check_org(std::string_view given, const request_context& ctx, std::string_view what) {
  if (!given.empty() && !ctx.org_id.empty() && given != ctx.org_id)
    throw http_error(403, std::string(what) + ": org_id " + std::string(given) + " is not the caller's organization");
}

json::object load_meta(stores::kv_store& store, std::string_view org_id, std::string_view key) {
  if (auto v = store.get(detail::cf_attachments, meta_key(org_id, key))) {
    boost::system::error_code ec;
    auto parsed = ferry::engine::parse_json(*v, ec);
    if (!ec && parsed.is_object()) return std::move(parsed.get_object());
  }
  return {};
}

void save_meta(stores::kv_store& store, std::string_view org_id, std::string_view key, const json::object& meta) {
  store.put(detail::cf_attachments, meta_key(org_id, key), json::serialize(meta));
}

std::string hmac_hex(std::string_view secret, std::string_view msg) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(msg.data()),
       msg.size(), out, &len);
  return detail::hex_encode(std::string_view(reinterpret_cast<const char*>(out), std::min(len, 16u)));
}

std::string sign_message(std::string_view kind, std::string_view org, std::string_view key) {
  return joined('\n', kind, org, key);
}

transports::http_reply raw_reply(const transports::http_request& req, http::status status, std::string body,
                                 std::string_view content_type) {
  transports::http_reply reply;
  auto& res = reply.response;
  res.result(status);
  res.version(req.version());
  res.keep_alive(req.keep_alive());
  if (!content_type.empty()) res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  res.prepare_payload();
  return reply;
}

}  // namespace

std::string events_api::impl::signed_url(std::string_view kind, std::string_view org_id, std::string_view key,
                                         const request_context& ctx) const {
  std::string url = ctx.base_url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  url += "/_signed/";
  url += kind;
  url += '/';
  url += detail::hex_encode(org_id);
  url += '/';
  url += detail::hex_encode(key);
  url += "?sig=";
  url += hmac_hex(sign_secret, sign_message(kind, org_id, key));
  return url;
}

bool events_api::impl::check_signature(std::string_view kind, std::string_view org, std::string_view key,
                                       std::string_view sig) const {
  const std::string want = hmac_hex(sign_secret, sign_message(kind, org, key));
  return sig.size() == want.size() && CRYPTO_memcmp(sig.data(), want.data(), want.size()) == 0;
}

transports::http_reply events_api::impl::signed_target(transports::http_request& req, boost::urls::url_view url) {
  std::vector<std::string> segs;
  for (auto s : url.segments()) segs.emplace_back(s);
  std::string sig;
  for (auto p : url.params())
    if (p.key == "sig") sig = std::string(p.value);
  auto org = segs.size() == 4 ? detail::hex_decode(segs[2]) : std::nullopt;
  auto key = segs.size() == 4 ? detail::hex_decode(segs[3]) : std::nullopt;
  if (!org || !key || (segs[1] != "logs3" && segs[1] != "attachment"))
    throw http_error(404, "signed URL: no such target");
  const std::string& kind = segs[1];
  if (!check_signature(kind, *org, *key, sig)) throw http_error(403, "signed URL: bad or missing signature");

  const std::string blob_key = scoped_key(kind == "logs3" ? "ovf" : "att", *org, *key);
  const auto method = req.method();
  if (method == http::verb::put) {
    if (kind == "attachment") {
      std::lock_guard lock(attachment_meta_mu);
      store.put(detail::cf_blobs, blob_key, req.body());
      auto meta = load_meta(store, *org, *key);
      meta["uploaded"] = true;
      meta["size"] = req.body().size();
      if (meta.if_contains("content_type") == nullptr) {
        if (auto ct = req.find(http::field::content_type); ct != req.end())
          meta["content_type"] = std::string_view(ct->value().data(), ct->value().size());
      }
      save_meta(store, *org, *key, meta);
    } else {
      put_overflow_payload(*org, *key, std::move(req.body()));
    }
    return raw_reply(req, http::status::ok, "", "");
  }
  if (method == http::verb::get) {
    auto bytes = store.get(detail::cf_blobs, blob_key);
    if (!bytes) throw http_error(404, "signed URL: nothing uploaded for this key");
    std::string ct = "application/octet-stream";
    if (kind == "attachment") {
      auto meta = load_meta(store, *org, *key);
      if (auto c = string_field(meta, "content_type"); !c.empty()) ct = c;
    } else {
      ct = "application/json";
    }
    return raw_reply(req, http::status::ok, std::move(*bytes), ct);
  }
  throw http_error(405, "signed URL: only PUT and GET are allowed");
}

std::string events_api::impl::attachment_upload_url(std::string_view body, const request_context& ctx) {
  json::monotonic_resource mr;
  json::value v = parse_json(body, &mr, "attachment");
  const auto& o = v.get_object();
  const std::string key = string_field(o, "key");
  if (key.empty()) throw http_error(400, "attachment: missing \"key\"");
  check_org(string_field(o, "org_id"), ctx, "attachment");
  const std::string content_type = string_field(o, "content_type");
  {
    std::lock_guard lock(attachment_meta_mu);
    auto meta = load_meta(store, ctx.org_id, key);
    meta["filename"] = string_field(o, "filename");
    meta["content_type"] = content_type;
    save_meta(store, ctx.org_id, key, meta);
  }
  json::object out;
  out["signedUrl"] = signed_url("attachment", ctx.org_id, key, ctx);
  json::object headers;
  if (!content_type.empty()) headers["Content-Type"] = content_type;
  out["headers"] = std::move(headers);
  return json::serialize(out);
}

std::string events_api::impl::attachment_status(std::string_view body, const request_context& ctx) {
  json::monotonic_resource mr;
  json::value v = parse_json(body, &mr, "attachment/status");
  const auto& o = v.get_object();
  const std::string key = string_field(o, "key");
  if (key.empty()) throw http_error(400, "attachment/status: missing \"key\"");
  check_org(string_field(o, "org_id"), ctx, "attachment/status");
  const auto* status = o.if_contains("status");
  if (!status || !status->is_object() || string_field(status->get_object(), "upload_status").empty())
    throw http_error(400, "attachment/status: missing \"status\": {\"upload_status\": ...}");
  const std::string upload_status = string_field(status->get_object(), "upload_status");
  if (upload_status != "uploading" && upload_status != "done" && upload_status != "error")
    throw http_error(400, "attachment/status: upload_status must be uploading, done or error");
  std::lock_guard lock(attachment_meta_mu);
  auto meta = load_meta(store, ctx.org_id, key);
  json::object st;
  st["upload_status"] = upload_status;
  if (auto msg = string_field(status->get_object(), "error_message"); !msg.empty()) st["error_message"] = msg;
  meta["status"] = std::move(st);
  save_meta(store, ctx.org_id, key, meta);
  return "{}";
}

std::string events_api::impl::attachment_get(boost::urls::url_view url, const request_context& ctx) {
  std::string key, org, external;
  for (auto p : url.params()) {
    if (p.key == "key") key = std::string(p.value);
    else if (p.key == "org_id") org = std::string(p.value);
    else if (p.key == "url") external = std::string(p.value);
  }
  check_org(org, ctx, "attachment");
  json::object out;
  if (key.empty() && !external.empty()) {
    // External attachment: the URL is already downloadable.
    out["downloadUrl"] = external;
    json::object st;
    st["upload_status"] = "done";
    out["status"] = std::move(st);
    return json::serialize(out);
  }
  if (key.empty()) throw http_error(400, "attachment: missing key query parameter");
  const auto meta = load_meta(store, ctx.org_id, key);
  if (meta.empty()) throw http_error(404, "attachment " + key + " not found");
  json::object st;
  if (const auto* s = meta.if_contains("status"); s && s->is_object()) {
    st = s->get_object();
  } else {
    const auto* up = meta.if_contains("uploaded");
    st["upload_status"] = up && up->is_bool() && up->get_bool() ? "done" : "uploading";
  }
  out["downloadUrl"] = signed_url("attachment", ctx.org_id, key, ctx);
  out["status"] = std::move(st);
  return json::serialize(out);
}

}  // namespace ferry::emulator
