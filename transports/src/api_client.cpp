#include "transports/api_client.hpp"
#include "transports/http_util.hpp"

#include "engine/json_parse.hpp"
#include "engine/log.hpp"
#include "engine/rate_limiter.hpp"
#include "transports/http_client.hpp"
#include "transports/metrics_endpoint.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <atomic>
#include <cctype>
#include <mutex>
#include <set>

namespace ferry::transports {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using engine::io_outcome;

std::string with_query(std::string_view path, const query_params& q) {
  std::string out(path);
  char sep = path.find('?') == std::string_view::npos ? '?' : '&';
  for (const auto& [k, v] : q) {
    out.push_back(sep);
    sep = '&';
    out += percent_encode(k);
    out.push_back('=');
    out += percent_encode(v);
  }
  return out;
}

namespace {

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

std::string path_of(std::string_view target) { return std::string(target.substr(0, target.find('?'))); }

/// A request to a signed URL (object storage): the absolute URL authorizes itself, so no API headers; each
/// attempt is bounded by `opts`' timeout.
http_request_spec signed_url_spec(http::verb verb, std::string url, const call_options& opts) {
  http_request_spec spec;
  spec.verb = verb;
  spec.target = std::move(url);
  spec.timeout = opts.timeout;
  return spec;
}

}  // namespace

boost::asio::awaitable<http_result> shielded_send(http_client& client, const http_request_spec& spec) {
  auto ex = co_await asio::this_coro::executor;
  co_return co_await asio::co_spawn(ex, client.send(spec),
                                    asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable));
}

// The clock the client's backoff and Retry-After waits run on: the configured one, except that once
// abort() was called every wait, current or later, ends with operation_aborted. A shutdown aborts the
// waits this way because cancellation cannot reach every caller (a coroutine whose filter drops total
// cancellation, or one behind a parallel group that does not forward it).
class abortable_clock final : public engine::clock {
 public:
  explicit abortable_clock(const engine::clock& base) : base_(base) {}
  engine::steady_time now() const override { return base_.now(); }
  engine::system_time system_now() const override { return base_.system_now(); }

  asio::awaitable<void> sleep_for(engine::steady_duration d) const override {
    throw_if_aborted();
    if (&base_ != &engine::real_clock::instance()) {  // a test clock: its sleeps take no real time
      co_await base_.sleep_for(d);
      throw_if_aborted();
      co_return;
    }
    if (d <= engine::steady_duration::zero()) co_return;
    auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor, d);
    {
      std::lock_guard lk(mu_);
      throw_if_aborted();
      timers_.insert(timer);
    }
    auto [ec] = co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
    {
      std::lock_guard lk(mu_);
      timers_.erase(timer);
    }
    throw_if_aborted();
    if (ec) throw boost::system::system_error(ec, "backoff wait");
  }

  void abort() {
    std::lock_guard lk(mu_);
    aborted_ = true;
    for (const auto& t : timers_) asio::post(t->get_executor(), [t] { t->cancel(); });
  }

 private:
  void throw_if_aborted() const {
    if (aborted_) throw boost::system::system_error(asio::error::operation_aborted, "shutdown: wait ended");
  }

  const engine::clock& base_;
  mutable std::mutex mu_;
  mutable std::atomic<bool> aborted_{false};
  mutable std::set<std::shared_ptr<asio::steady_timer>> timers_;
};

struct api_client::impl {
  impl(http_client& h, api_client_config c)
      : http(h),
        cfg(std::move(c)),
        sem(std::max<std::size_t>(1, cfg.max_concurrent_requests)),
        clk(cfg.clock ? cfg.clock : &engine::real_clock::instance()),
        waits(*clk),
        request_rate(engine::rate_limit_config{cfg.max_requests_per_s, 0}, *clk),
        byte_rate(engine::rate_limit_config{static_cast<double>(cfg.max_bytes_per_s), 0}, *clk) {
    if (cfg.metrics) metrics.emplace(*cfg.metrics, cfg.side);
    cfg.api_key = trim(cfg.api_key);
    if (!cfg.api_key.empty()) {
      engine::register_secret(cfg.api_key);
      auth = "Bearer " + cfg.api_key;
    }
  }

  http_client& http;
  api_client_config cfg;
  engine::semaphore sem;
  std::string auth;
  const engine::clock* clk;
  abortable_clock waits;  // backoff and Retry-After waits
  engine::rate_limiter request_rate;
  engine::rate_limiter byte_rate;
  std::shared_ptr<spdlog::logger> log = engine::logger("http");
  std::optional<request_metrics> metrics;  // with cfg.metrics

  // The side's rate limits around one attempt (both unlimited by default: then no coroutine at all).
  bool limited() const { return !request_rate.unlimited() || !byte_rate.unlimited(); }
  asio::awaitable<void> before_send(std::size_t request_bytes) {
    if (!request_rate.unlimited()) co_await request_rate.acquire(1);
    if (!byte_rate.unlimited() && request_bytes) co_await byte_rate.acquire(static_cast<double>(request_bytes));
  }
  asio::awaitable<void> after_receive(std::size_t response_bytes) {
    if (!byte_rate.unlimited() && response_bytes) co_await byte_rate.acquire(static_cast<double>(response_bytes));
  }

  // A server's Retry-After is obeyed up to retry_after_max; a long wait is never silent.
  void cap_retry_after(http_result& r, const std::string& what) {
    if (!r.retry_after) return;
    const auto asked = *r.retry_after;
    const bool capped = asked > cfg.retry_after_max;
    if (capped) r.retry_after = std::chrono::duration_cast<engine::steady_duration>(cfg.retry_after_max);
    if (capped || *r.retry_after >= std::chrono::seconds(5))
      log->warn("retry-after side={} call={} status={} wait={}{}", cfg.side, what, r.status,
                engine::format_duration(*r.retry_after),
                capped ? " (the server asked for " + engine::format_duration(asked) + "; capped by retry_after_max)"
                       : std::string());
  }

  // One attempt: rate limits, one semaphore permit for the exchange only, the capped Retry-After.
  asio::awaitable<http_result> attempt(const http_request_spec& spec, const call_options& opts, const std::string& what) {
    if (limited()) co_await before_send(spec.body.size());
    engine::semaphore::permit permit;
    if (opts.use_semaphore) permit = co_await sem.acquire();
    auto r = co_await shielded_send(http, spec);
    permit.release();
    if (metrics) metrics->on_attempt(http::to_string(spec.verb), spec.target, r.status, engine::to_string(r.outcome));
    if (limited()) co_await after_receive(r.body.size());
    cap_retry_after(r, what);
    co_return r;
  }

  // One logical call: retries per policy; the semaphore is held for each attempt only.
  asio::awaitable<api_result> run(const http_request_spec& spec, const call_options& opts) {
    api_result out;
    engine::retry_config rc = cfg.retry;
    if (!opts.retry) rc.max_attempts = 1;
    engine::retry_policy policy(rc);
    const std::string what = std::string(http::to_string(spec.verb)) + " " + path_of(spec.target);
    // (the hooks are named first: GCC 12 destroys temporaries of a co_await expression twice)
    engine::retry_hooks hooks{what, [&](int attempt, const engine::attempt_result& a, const engine::retry_decision& d) {
                                log->debug("retry call={} attempt={} outcome={} {}", what, attempt,
                                           engine::to_string(a.outcome), d.reason);
                                if (metrics) metrics->on_retry(http::to_string(spec.verb), spec.target);
                              }};
    auto res = co_await engine::with_retry(
        policy, waits,
        [&](int) -> asio::awaitable<engine::attempt_result> {
          auto r = co_await attempt(spec, opts, what);
          out.outcome = r.outcome;
          out.status = r.status;
          out.body = std::move(r.body);
          out.error = std::move(r.error);
          out.retry_after = r.retry_after;
          engine::attempt_result a;
          a.outcome = r.outcome;
          a.retry_after = r.retry_after;
          a.detail = r.status ? "HTTP " + std::to_string(r.status) : std::string(engine::to_string(r.outcome));
          co_return a;
        },
        std::move(hooks));
    out.attempts = res.attempts;
    if (!out.ok() && res.attempts > 1 && !out.error.empty())
      out.error += " (after " + std::to_string(res.attempts) + " attempts)";
    co_return out;
  }

  http_request_spec make_spec(http::verb verb, std::string target, std::string body, const call_options& opts,
                              bool with_auth = true) {
    http_request_spec spec;
    spec.verb = verb;
    spec.target = std::move(target);
    spec.headers.reserve(3);
    if (with_auth && !auth.empty()) spec.headers.emplace_back("Authorization", auth);
    spec.headers.emplace_back("Accept", "application/json");
    if (!body.empty()) spec.headers.emplace_back("Content-Type", "application/json");
    spec.body = std::move(body);
    spec.timeout = opts.timeout;
    // Braintrust creates are idempotent by uniqueness key, /logs3 replaces rows by id, /btql reads:
    // a request that died on a stale keep-alive connection may be re-sent.
    spec.idempotent = true;
    return spec;
  }

  static json_result to_json(api_result r) {
    json_result j;
    static_cast<api_result&>(j) = std::move(r);
    if (!j.ok() || j.body.empty()) return j;
    boost::system::error_code ec;
    j.json = ferry::engine::parse_json(j.body, ec);
    if (ec) {
      j.outcome = io_outcome::fatal;
      j.error = "response is not JSON: " + ec.message();
      j.json = nullptr;
    }
    return j;
  }

  asio::awaitable<json_result> json_call(http::verb verb, std::string target, std::string body, call_options opts) {
    auto spec = make_spec(verb, std::move(target), std::move(body), opts);
    co_return to_json(co_await run(spec, opts));
  }
};

api_client::api_client(http_client& http, api_client_config cfg) : impl_(std::make_unique<impl>(http, std::move(cfg))) {}
api_client::~api_client() = default;

asio::awaitable<api_result> api_client::call(http::verb verb, std::string target, std::string body, call_options opts) {
  auto spec = impl_->make_spec(verb, std::move(target), std::move(body), opts);
  co_return co_await impl_->run(spec, opts);
}

asio::awaitable<json_result> api_client::get_json(std::string_view path, const query_params& q, call_options opts) {
  return impl_->json_call(http::verb::get, with_query(path, q), {}, opts);
}
asio::awaitable<json_result> api_client::post_json(std::string_view path, const json::value& body, call_options opts) {
  return impl_->json_call(http::verb::post, std::string(path), json::serialize(body), opts);
}
asio::awaitable<json_result> api_client::put_json(std::string_view path, const json::value& body, call_options opts) {
  return impl_->json_call(http::verb::put, std::string(path), json::serialize(body), opts);
}
asio::awaitable<json_result> api_client::patch_json(std::string_view path, const json::value& body, call_options opts) {
  return impl_->json_call(http::verb::patch, std::string(path), json::serialize(body), opts);
}
asio::awaitable<json_result> api_client::del(std::string_view path, call_options opts) {
  return impl_->json_call(http::verb::delete_, std::string(path), {}, opts);
}

asio::awaitable<std::vector<json::object>> api_client::list_objects(std::string_view path, query_params filters,
                                                                     std::size_t page_size) {
  std::vector<json::object> all;
  std::string after;
  const std::string p(path);
  for (int page = 1;; ++page) {
    query_params q = filters;
    q.emplace_back("limit", std::to_string(page_size));
    if (!after.empty()) q.emplace_back("starting_after", after);
    auto r = co_await get_json(p, q);
    if (!r.ok())
      throw api_error(r.status, r.outcome, "listing " + p + " page " + std::to_string(page) + ": " + r.error);
    json::array* items = nullptr;
    if (r.json.is_array()) {
      items = &r.json.get_array();
    } else if (r.json.is_object()) {
      if (auto* o = r.json.get_object().if_contains("objects"); o && o->is_array()) items = &o->get_array();
    }
    if (!items)
      throw api_error(r.status, io_outcome::fatal,
                      "listing " + p + " page " + std::to_string(page) + ": response has no \"objects\" array");
    const std::size_t n = items->size();
    std::string last;
    for (auto& v : *items) {
      if (!v.is_object()) continue;
      if (auto* id = v.get_object().if_contains("id"); id && id->is_string()) last = std::string(id->get_string());
      all.push_back(std::move(v.get_object()));
    }
    // A bare array (acl/list_org) or a short page is the end; so is a page whose last id does not move.
    if (r.json.is_array() || n < page_size || n == 0 || last.empty() || last == after) break;
    after = std::move(last);
  }
  co_return all;
}

asio::awaitable<btql_page> api_client::btql(std::string_view query_text, call_options opts) {
  json::object body;
  body["query"] = query_text;
  body["fmt"] = "json";
  body["api_version"] = 1;
  body["use_brainstore"] = true;
  body["client_version"] = impl_->cfg.client_version;
  body["query_timeout_seconds"] = impl_->cfg.btql_query_timeout_seconds;
  return btql_raw(json::serialize(body), opts);
}

asio::awaitable<btql_page> api_client::btql_raw(std::string body, call_options opts) {
  if (!opts.timeout) opts.timeout = impl_->cfg.btql_timeout;
  auto spec = impl_->make_spec(http::verb::post, "/btql", std::move(body), opts);
  auto r = co_await impl_->run(spec, opts);
  btql_page page;
  static_cast<api_result&>(page) = std::move(r);
  if (!page.ok()) co_return page;
  // A page is parsed once and its rows moved out: a monotonic resource (owned through the storage
  // pointer, so it lives as long as the rows) makes the many small allocations nearly free.
  boost::system::error_code ec;
  json::value v = ferry::engine::parse_json(page.body, ec, json::make_shared_resource<json::monotonic_resource>());
  if (ec || !v.is_object()) {
    page.outcome = io_outcome::fatal;
    page.error = "POST /btql: response is not a JSON object" + (ec ? ": " + ec.message() : std::string());
    co_return page;
  }
  if (auto* d = v.get_object().if_contains("data"); d && d->is_array()) page.rows = std::move(d->get_array());
  if (auto* c = v.get_object().if_contains("cursor"); c && c->is_string()) page.cursor = std::string(c->get_string());
  page.body.clear();
  page.body.shrink_to_fit();
  co_return page;
}

asio::awaitable<api_result> api_client::logs3(std::string body, call_options opts) {
  auto spec = impl_->make_spec(http::verb::post, "/logs3", std::move(body), opts);
  co_return co_await impl_->run(spec, opts);
}

asio::awaitable<std::optional<std::uint64_t>> api_client::version() {
  auto r = co_await get_json("/version");
  if (!r.ok() || !r.json.is_object()) {
    impl_->log->debug("version call failed: {}", r.error);
    co_return std::nullopt;
  }
  auto* v = r.json.get_object().if_contains("logs3_payload_max_bytes");
  if (!v) co_return std::nullopt;
  if (v->is_uint64()) co_return v->get_uint64();
  if (v->is_int64() && v->get_int64() > 0) co_return static_cast<std::uint64_t>(v->get_int64());
  if (v->is_double() && v->get_double() > 0) co_return static_cast<std::uint64_t>(v->get_double());
  co_return std::nullopt;
}

asio::awaitable<json_result> api_client::attachment_info(std::string_view key, std::string_view filename,
                                                         std::string_view content_type, std::string_view org_id) {
  return get_json("/attachment", {{"key", std::string(key)},
                                  {"filename", std::string(filename)},
                                  {"content_type", std::string(content_type)},
                                  {"org_id", std::string(org_id)}},
                  call_options{.retry = true, .timeout = impl_->cfg.btql_timeout, .use_semaphore = true});
}

asio::awaitable<json_result> api_client::attachment_upload_url(std::string_view key, std::string_view filename,
                                                               std::string_view content_type, std::string_view org_id) {
  json::object b;
  b["key"] = key;
  b["filename"] = filename;
  b["content_type"] = content_type;
  b["org_id"] = org_id;
  return post_json("/attachment", b, call_options{.retry = true, .timeout = impl_->cfg.btql_timeout, .use_semaphore = true});
}

asio::awaitable<json_result> api_client::attachment_status(std::string_view key, std::string_view org_id,
                                                           std::string_view upload_status) {
  json::object b;
  b["key"] = key;
  b["org_id"] = org_id;
  b["status"] = json::object{{"upload_status", upload_status}};
  return post_json("/attachment/status", b);
}

asio::awaitable<api_result> api_client::signed_put(std::string url, std::string bytes,
                                                   std::vector<std::pair<std::string, std::string>> headers) {
  const call_options opts{.retry = true, .timeout = impl_->cfg.btql_timeout, .use_semaphore = false};
  auto spec = signed_url_spec(http::verb::put, std::move(url), opts);
  spec.idempotent = true;
  bool has_blob_type = false;
  for (auto& [k, v] : headers)
    if (k.size() == 14 && boost::beast::iequals(k, "x-ms-blob-type")) has_blob_type = true;
  if (!has_blob_type && spec.target.find("blob.core.windows.net") != std::string::npos)
    headers.emplace_back("x-ms-blob-type", "BlockBlob");
  spec.headers = std::move(headers);
  spec.body = std::move(bytes);
  co_return co_await impl_->run(spec, opts);
}

asio::awaitable<api_result> api_client::signed_get(std::string url) {
  const call_options opts{.retry = true, .timeout = impl_->cfg.btql_timeout, .use_semaphore = false};
  auto spec = signed_url_spec(http::verb::get, std::move(url), opts);
  spec.sniff_gzip = false;
  co_return co_await impl_->run(spec, opts);
}

void api_client::abort_waits() { impl_->waits.abort(); }
const engine::clock& api_client::wait_clock() const { return impl_->waits; }

void api_client::set_concurrency(std::size_t n) { impl_->sem.set_capacity(n); }
engine::semaphore& api_client::request_semaphore() { return impl_->sem; }
http_client& api_client::http() { return impl_->http; }

}  // namespace ferry::transports
