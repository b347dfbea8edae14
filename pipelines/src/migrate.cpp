#include "pipelines/migrate.hpp"

#include "engine/files.hpp"

#include "for_each_bounded.hpp"

#include "pipelines/resources/api.hpp"
#include "pipelines/resources/entry.hpp"
#include "pipelines/resources/http_api.hpp"
#include "pipelines/resources/report.hpp"
#include "pipelines/resources/specs.hpp"
#include "pipelines/streams/checkpoint_store.hpp"
#include "pipelines/streams/discovery.hpp"
#include "pipelines/streams/entry.hpp"
#include "pipelines/streams/http_stream_io.hpp"
#include "pipelines/streams/stream_runner.hpp"
#include "pipelines/streams/verify.hpp"

#include "engine/log.hpp"
#include "engine/progress.hpp"
#include "engine/rate_limiter.hpp"
#include "engine/runtime.hpp"
#include "engine/semaphore.hpp"
#include "stores/state_store.hpp"
#include "transports/api_client.hpp"
#include "transports/http_client.hpp"
#include "transports/recorder.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <deque>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <unistd.h>

namespace ferry::pipelines {

namespace asio = boost::asio;
namespace json = boost::json;
using streams::stream_kind;

namespace {

std::string_view id_type(stream_kind k) {
  return k == stream_kind::project_logs ? "project" : k == stream_kind::experiment ? "experiment" : "dataset";
}

std::optional<stream_kind> kind_from_name(std::string_view n) {
  for (auto k : {stream_kind::project_logs, stream_kind::experiment, stream_kind::dataset})
    if (streams::resource_name(k) == n) return k;
  return std::nullopt;
}

// GCC 12 rejects braced initialisers holding string literals inside coroutines ("array used as
// initializer"): coroutine bodies use this.
transports::query_params param(std::string k, std::string v) {
  transports::query_params q;
  q.emplace_back(std::move(k), std::move(v));
  return q;
}

std::string str_field(const json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

// Names in cfg.resources that only select event streams (the resources DAG does not know them, or,
// for "logs", has nothing to migrate for them).
bool is_stream_only_name(std::string_view n) {
  return n == "logs" || n == "project_logs" || n == "experiment_events" || n == "dataset_events";
}

/// The resources DAG runs unless the selection names only stream kinds.
bool resources_selected(const migrate_config& cfg) {
  if (cfg.resources.empty()) return true;
  return std::any_of(cfg.resources.begin(), cfg.resources.end(), [](const std::string& r) { return !is_stream_only_name(r); });
}

/// The config the resources DAG sees: stream-only names it does not know are removed.
migrate_config resources_view(const migrate_config& cfg) {
  migrate_config r = cfg;
  std::erase_if(r.resources, [](const std::string& n) { return is_stream_only_name(n) && n != "logs"; });
  std::erase_if(r.exclude, [](const std::string& n) { return is_stream_only_name(n) && n != "logs"; });
  return r;
}

// An awaitable run shielded from the caller's cancellation: Asio 1.26's co_spawn cancellation handler
// can touch a freed signal when a cancellation races with the end of http_client's exchange coroutine
// (see streams::send_shielded). The call is bounded by the client's timeouts and retry budget.
template <class T>
asio::awaitable<T> shielded(asio::awaitable<T> aw) {
  auto ex = co_await asio::this_coro::executor;
  co_return co_await asio::co_spawn(ex, std::move(aw),
                                    asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable));
}

// Per-side request and byte budgets (max_requests_per_s, max_bytes_per_s; 0 = unlimited), shared by
// every stream and the resources of that side. Each attempt (retries included) takes one request and
// its bytes (request body for writes, response body for reads). Thread-safe (rate_limiter is).
struct side_limits {
  engine::rate_limiter requests;
  engine::rate_limiter bytes;
  explicit side_limits(const migrate_config& c)
      : requests(engine::rate_limit_config{c.max_requests_per_s, 0}),
        bytes(engine::rate_limit_config{static_cast<double>(c.max_bytes_per_s), 0}) {}
  asio::awaitable<void> before(std::size_t request_bytes) {
    if (!requests.unlimited()) co_await requests.acquire(1);
    if (!bytes.unlimited() && request_bytes) co_await bytes.acquire(static_cast<double>(request_bytes));
  }
  asio::awaitable<void> after(std::size_t response_bytes) {
    if (!bytes.unlimited() && response_bytes) co_await bytes.acquire(static_cast<double>(response_bytes));
  }
};

// event_source / event_sink decorators applying a side's limits.
class limited_source final : public streams::event_source {
 public:
  limited_source(streams::event_source& inner, side_limits& lim) : inner_(inner), lim_(lim) {}
  asio::awaitable<streams::call_result> btql(std::string body) override {
    co_await lim_.before(body.size());
    auto r = co_await inner_.btql(std::move(body));
    co_await lim_.after(r.body.size());
    co_return r;
  }
  asio::awaitable<std::string> download_attachment(std::string key, std::string filename, std::string content_type,
                                                   std::uint64_t max_bytes) override {
    co_await lim_.before(0);
    auto bytes = co_await inner_.download_attachment(std::move(key), std::move(filename), std::move(content_type), max_bytes);
    co_await lim_.after(bytes.size());
    co_return bytes;
  }

 private:
  streams::event_source& inner_;
  side_limits& lim_;
};

class limited_sink final : public streams::event_sink {
 public:
  limited_sink(streams::event_sink& inner, side_limits& lim) : inner_(inner), lim_(lim) {}
  asio::awaitable<streams::call_result> logs3(std::string body) override {
    co_await lim_.before(body.size());
    co_return co_await inner_.logs3(std::move(body));
  }
  asio::awaitable<std::optional<std::uint64_t>> payload_max_bytes() override { return inner_.payload_max_bytes(); }
  asio::awaitable<std::string> upload_attachment(std::string filename, std::string content_type, std::string bytes) override {
    co_await lim_.before(bytes.size());
    co_return co_await inner_.upload_attachment(std::move(filename), std::move(content_type), std::move(bytes));
  }

 private:
  streams::event_sink& inner_;
  side_limits& lim_;
};

// resource_api over the transports' api_client (auth, request semaphore and retries are the client's).
class api_resource final : public resources::resource_api {
 public:
  api_resource(transports::api_client& c, std::string url, side_limits& lim) : c_(c), url_(std::move(url)), lim_(lim) {}
  asio::awaitable<resources::api_reply> call(std::string method, std::string target, std::string body) override {
    co_await lim_.before(body.size());
    auto r = co_await shielded(c_.call(boost::beast::http::string_to_verb(method), std::move(target), std::move(body)));
    co_await lim_.after(r.body.size());
    resources::api_reply out;
    out.status = static_cast<int>(r.status);
    out.outcome = r.outcome;
    out.body = std::move(r.body);
    out.error = std::move(r.error);
    co_return out;
  }
  std::string describe() const override { return url_; }

 private:
  transports::api_client& c_;
  std::string url_;
  side_limits& lim_;
};

/// One deployment: HTTP client + typed API client.
struct side {
  std::unique_ptr<side_limits> limits;
  std::unique_ptr<transports::http_client> http;
  std::unique_ptr<transports::api_client> api;
  std::unique_ptr<api_resource> res;
};

/// A failed stream's stderr line: the stream once (the runner's error starts with it too), at most ~200
/// characters, object first and cause last; the full text stays in the report and the state.
std::string failure_line(const std::string& described, const std::string& error) {
  std::string_view e = error.empty() ? std::string_view("did not finish") : std::string_view(error);
  const std::string prefix = "stream " + described;
  if (e.starts_with(prefix)) {
    e.remove_prefix(prefix.size());
    while (!e.empty() && (e.front() == ':' || e.front() == ' ')) e.remove_prefix(1);
  }
  return engine::shorten_middle(prefix + ": " + std::string(e), 200);
}

/// What to check when a probe failed: the failed stage (TLS, proxy, redirect) says more than the URL.
std::string probe_hint(const std::string& error, unsigned status, const std::string& url_var) {
  if (error.find("tls handshake") != std::string::npos || error.find("certificate") != std::string::npos)
    return "TLS failed: check the server's certificate and MIGRATION_CA_FILE / SSL_CERT_FILE (or MIGRATION_INSECURE)";
  if (error.find("proxy") != std::string::npos) return "the proxy failed: check HTTPS_PROXY / HTTP_PROXY / NO_PROXY";
  if ((status >= 300 && status < 400) || error.find("redirect") != std::string::npos)
    return "the API answers with a redirect: set " + url_var + " to the URL it redirects to";
  return "check " + url_var;
}

/// GET /v1/project?limit=1 on one side: a rejected key or an unreachable API becomes one line naming the
/// side, its URL and the variable to fix; empty when the side answers.
asio::awaitable<std::string> probe_side(side& s, std::string what, std::string url_var, std::string key_var) {
  transports::query_params q;
  q.emplace_back("limit", "1");
  auto r = co_await s.api->get_json("/v1/project", q);
  if (r.ok()) co_return std::string();
  if (r.status == 401 || r.status == 403)
    co_return what + " rejected the API key (HTTP " + std::to_string(r.status) + "): check " + key_var;
  if (r.status == 0) co_return what + " cannot be reached (" + r.error + "): " + probe_hint(r.error, 0, url_var);
  co_return what + " does not answer GET /v1/project like a Braintrust API (" + r.error +
      "): " + probe_hint(r.error, r.status, url_var);
}

/// Both sides probed before anything else, so a bad key or URL is not a failure deep inside the run.
asio::awaitable<std::vector<std::string>> probe_sides(side& src, side& dst, const migrate_config& cfg) {
  std::vector<std::string> problems;
  std::string p = co_await probe_side(src, "source " + cfg.source.url, "BT_SOURCE_URL", "BT_SOURCE_API_KEY");
  if (!p.empty()) problems.push_back(std::move(p));
  p = co_await probe_side(dst, "destination " + cfg.dest.url, "BT_DEST_URL", "BT_DEST_API_KEY");
  if (!p.empty()) problems.push_back(std::move(p));
  co_return problems;
}

/// `observer`: the --record hook (may be empty).
side make_side(asio::any_io_executor ex, const endpoint_config& ep, const migrate_config& cfg,
               transports::exchange_observer observer = {}) {
  side s;
  s.limits = std::make_unique<side_limits>(cfg);
  transports::http_client_config hc = resources::client_config_for(cfg, ep);
  hc.observer = std::move(observer);
  hc.read_timeout = cfg.request_timeout;
  hc.request_timeout = cfg.request_timeout * 2;
  hc.max_connections_per_origin =
      static_cast<std::size_t>(std::max(64, cfg.max_concurrent_requests + 8 * cfg.max_concurrent_streams));
  s.http = std::make_unique<transports::http_client>(ex, std::move(hc));
  transports::api_client_config ac;
  ac.api_key = ep.api_key;
  ac.max_concurrent_requests = static_cast<std::size_t>(std::max(cfg.max_concurrent_requests, 1));
  ac.retry.max_attempts = std::max(cfg.retry_attempts, 1);
  ac.retry.base_delay = cfg.retry_delay;
  ac.btql_timeout = cfg.request_timeout;
  s.api = std::make_unique<transports::api_client>(*s.http, std::move(ac));
  s.res = std::make_unique<api_resource>(*s.api, ep.url, *s.limits);
  return s;
}

/// One line naming what to fix when an endpoint is not configured; empty when fine.
std::string check_endpoints(const migrate_config& cfg) {
  if (cfg.source.url.empty()) return "no source URL: set BT_SOURCE_URL";
  if (cfg.dest.url.empty()) return "no destination URL: set BT_DEST_URL";
  if (cfg.source.api_key.empty()) return "no source API key: set BT_SOURCE_API_KEY (environment or .env)";
  if (cfg.dest.api_key.empty()) return "no destination API key: set BT_DEST_API_KEY (environment or .env)";
  return {};
}

std::filesystem::path report_path(const migrate_config& cfg, std::string_view default_name) {
  if (!cfg.report_path.empty()) return cfg.report_path;
  return std::filesystem::path(cfg.state_dir) / std::string(default_name);
}

/// Creates the missing directories of `dir`, each 0700 (reports may name the org's objects).
void create_private_dirs(const std::filesystem::path& dir) {
  std::error_code ec;
  if (dir.empty() || std::filesystem::exists(dir, ec)) return;
  create_private_dirs(dir.parent_path());
  if (std::filesystem::create_directory(dir, ec))
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, std::filesystem::perm_options::replace, ec);
}

/// Writes `v` to `p` (creating the parent, 0700); returns an error line or "".
std::string write_json(const std::filesystem::path& p, const json::value& v) {
  if (p.has_parent_path()) create_private_dirs(p.parent_path());
  return engine::write_file(p, json::serialize(v) + "\n", 0600);  // 0600 whatever the umask
}

std::string mb(std::uint64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", static_cast<double>(bytes) / 1e6);
  return b;
}

/// Where a dry run writes migration_plan.json: the report path if given, else the state dir only if
/// it already exists (a dry run never creates it), else the current directory.
std::filesystem::path plan_path(const migrate_config& cfg) {
  if (!cfg.report_path.empty()) return cfg.report_path;
  std::error_code ec;
  if (!cfg.state_dir.empty() && std::filesystem::is_directory(cfg.state_dir, ec))
    return std::filesystem::path(cfg.state_dir) / "migration_plan.json";
  return std::filesystem::path("migration_plan.json");
}

/// "< 1 s", "45 s", "12 min 5 s", "3 h 20 min", "2 d 4 h".
std::string human_duration(double secs) {
  char b[64];
  if (secs < 1) return "< 1 s";
  if (secs < 60) std::snprintf(b, sizeof b, "%.0f s", secs);
  else if (secs < 3600) std::snprintf(b, sizeof b, "%.0f min %.0f s", std::floor(secs / 60), std::fmod(secs, 60));
  else if (secs < 86400) std::snprintf(b, sizeof b, "%.0f h %.0f min", std::floor(secs / 3600), std::floor(std::fmod(secs, 3600) / 60));
  else std::snprintf(b, sizeof b, "%.0f d %.0f h", std::floor(secs / 86400), std::floor(std::fmod(secs, 86400) / 3600));
  return b;
}

engine::runtime_config runtime_cfg(const run_options& ro) {
  engine::runtime_config rc;
  rc.threads = std::max<std::size_t>(ro.threads, 1);
  rc.shutdown_grace = ro.shutdown_grace;
  rc.handle_signals = ro.handle_signals;
  return rc;
}

json::object stream_json(const streams::stream_result& r, std::string_view status) {
  const auto& s = r.state;
  json::object o;
  o["kind"] = s.kind;
  json::array ids;
  for (const auto& i : s.source_ids) ids.emplace_back(i);
  o["source_ids"] = std::move(ids);
  o["status"] = status;
  streams::add_counters(o, s.counters);
  o["cursor"] = s.cursor;
  o["digest"] = s.digest.hex();
  if (!r.error.empty()) o["error"] = r.error;
  return o;
}

// ---------------------------------------------------------------------------------------------------
// migrate

// Everything one `ferry migrate` shares between its tasks. Lives in run_migrate's frame and outlives
// the runtime's run(). Members touched by several strands are atomics or under `mu`.
struct migration {
  const migrate_config& cfg;
  const run_options& ro;
  std::ostream& out;
  std::ostream& err;
  engine::runtime& rt;
  stores::state_store& st;
  side& src;
  side& dst;
  streams::checkpoint_store cps{st};
  streams::stream_selection sel;
  resources::migration_report report;
  engine::progress_registry progress;
  engine::semaphore slots;
  std::shared_ptr<spdlog::logger> log = engine::logger("pipeline");

  std::optional<std::uint64_t> payload_max;
  std::unique_ptr<streams::http_event_source> http_source;
  std::unique_ptr<streams::http_event_sink> http_sink;
  std::unique_ptr<streams::event_source> source_io;  // http_source under the source's rate limits
  std::unique_ptr<streams::event_sink> sink_io;      // http_sink under the destination's rate limits

  std::mutex mu;
  std::vector<std::string> launched;                       // stream ids, launch order
  std::map<std::string, std::string> described;            // stream id -> describe()
  std::map<std::string, streams::stream_result> results;   // stream id -> result
  std::map<std::string, std::string> task_errors;          // stream id -> exception text
  std::vector<std::string> run_errors;                     // discovery / setup failures
  int resources_rc = 0;

  // Live ETA: rows left per stream, counted on the source with key-only BTQL pages (TTY only).
  struct count_job {
    streams::stream_spec spec;
    std::string cursor;
    bool inclusive = false;
    bool done = false;
  };
  std::deque<count_job> count_jobs;                 // under mu
  std::map<std::string, std::uint64_t> remaining;   // stream id -> rows this run copies; under mu

  // Dry run: one entry per planned stream, in plan order; plan_task(i) fills entry i. The vector is
  // sized before any task starts and never resized; entries are read and written under mu.
  struct plan_entry {
    streams::stream_spec spec;
    std::vector<std::pair<std::string, bool>> dest_exists;  // source id -> a destination object exists
    std::optional<std::uint64_t> rows;                      // nullopt: not counted (failed / interrupted)
    std::uint64_t sample_rows = 0;                          // rows of the sampled full page
    std::uint64_t sample_bytes = 0;                         // their serialized JSON bytes
    std::string error;
  };
  std::vector<plan_entry> plan;
  std::size_t plan_left_out = 0;  // objects with a stream that the resources plan does not create/adopt

  std::atomic<std::size_t> outstanding{0};
  std::atomic<bool> launching_done{false};
  std::atomic<bool> ticker_stop{false};
  engine::runtime::strand_type ticker_strand;
  asio::steady_timer* ticker_timer = nullptr;  // only touched on ticker_strand
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  migration(const migrate_config& c, const run_options& r, std::ostream& o, std::ostream& e, engine::runtime& rt_,
            stores::state_store& s, side& a, side& b)
      : cfg(c),
        ro(r),
        out(o),
        err(e),
        rt(rt_),
        st(s),
        src(a),
        dst(b),
        sel(streams::selection_from(c)),
        slots(static_cast<std::size_t>(std::max(c.max_concurrent_streams, 1))),
        ticker_strand(rt_.strand()) {}

  bool live() const { return ro.live_progress ? *ro.live_progress : ::isatty(STDERR_FILENO) == 1; }

  void wake_ticker() {
    asio::post(ticker_strand, [this] {
      ticker_stop = true;
      if (ticker_timer) ticker_timer->cancel();
    });
  }
  void maybe_finished() {
    if (launching_done && outstanding.load() == 0) wake_ticker();
  }

  void launch(streams::stream_spec spec) {
    {
      std::lock_guard lk(mu);
      if (described.count(spec.stream_id)) return;  // a logs stream started by the resources hook
      described[spec.stream_id] = streams::describe(spec);
      launched.push_back(spec.stream_id);
    }
    if (live() && !cfg.dry_run) {
      count_job job;
      job.spec = spec;
      if (auto s = cps.load(spec.stream_id)) {
        job.cursor = s->cursor;
        job.inclusive = s->cursor_inclusive;
        job.done = s->done;
      }
      std::lock_guard lk(mu);
      count_jobs.push_back(std::move(job));
    }
    ++outstanding;
    auto id = spec.stream_id;
    rt.spawn(rt.strand(), stream_task(std::move(spec)), [this, id](std::exception_ptr e) {
      if (e) {
        std::lock_guard lk(mu);
        task_errors[id] = engine::is_cancellation(e) ? std::string("not started: shutdown") : engine::what_of(e);
      }
      --outstanding;
      maybe_finished();
    });
  }

  asio::awaitable<void> stream_task(streams::stream_spec spec) {
    auto permit = co_await slots.acquire();
    const auto id = spec.stream_id;
    const auto kind = spec.kind;
    log->info("stream start stream={} ({})", id, streams::describe(spec));
    auto r = co_await streams::run_stream(std::move(spec), streams::options_from_config(cfg, kind, payload_max), *source_io,
                                          *sink_io, cps, engine::real_clock::instance(), &progress.stream(id));
    log->info("stream end stream={} done={} rows={}", id, r.done, r.state.counters.rows);
    if (!r.error.empty()) log->debug("stream end stream={} error={}", id, r.error);
    std::lock_guard lk(mu);
    results[id] = std::move(r);
  }

  // One BTQL page of the source for counting or sampling: through the api_client (its request
  // semaphore, retries honouring Retry-After) and the source's rate limits, shielded from cancellation
  // (see shielded()); a 500/504 halves q.limit (down to 1) and asks again, as the stream reader does.
  asio::awaitable<transports::btql_page> source_page(streams::page_query& q, bool keys_only) {
    for (;;) {
      auto body = streams::build_btql_body(keys_only ? streams::build_key_query(q) : streams::build_page_query(q));
      co_await src.limits->before(body.size());
      auto page = co_await shielded(src.api->btql_raw(std::move(body)));
      co_await src.limits->after(page.body.size());
      if (!page.ok() && (page.status == 500 || page.status == 504) && q.limit > 1) {
        q.limit = std::max<std::size_t>(q.limit / 2, 1);
        continue;
      }
      co_return page;
    }
  }

  // Rows of q's objects after q.after_key (inclusive when q.inclusive), counted with key-only pages of
  // q.limit keys, one page at a time. nullopt when `stop()` or a cancellation ended it first, or when a
  // page failed (then `error` says why).
  asio::awaitable<std::optional<std::uint64_t>> count_keys(streams::page_query q, const std::function<bool()>& stop,
                                                           std::string& error) {
    std::uint64_t n = 0;
    for (;;) {
      auto cs = co_await asio::this_coro::cancellation_state;
      if (stop() || cs.cancelled() != asio::cancellation_type::none) co_return std::nullopt;
      auto page = co_await source_page(q, true);
      if (!page.ok()) {
        error = "BTQL count page failed: " + page.error;
        co_return std::nullopt;
      }
      if (page.rows.empty()) co_return n;
      n += page.rows.size();
      const auto& last = page.rows.back();
      auto key = last.is_object() ? str_field(last.as_object(), "_pagination_key") : std::string();
      if (key.empty() || (q.after_key && key <= *q.after_key)) {
        error = "BTQL count page: keys missing or not increasing after " + q.after_key.value_or("the start");
        co_return std::nullopt;
      }
      q.after_key = key;
      q.inclusive = false;
    }
  }

  // Dry run: counts planned stream i (one task per stream, at most max_concurrent_streams at once via
  // `slots`): one full page at the stream's fetch limit for the average row size, then key-only pages
  // after that page's last key. Stops at the next page boundary on shutdown (entry left uncounted).
  asio::awaitable<void> plan_task(std::size_t i) {
    auto permit = co_await slots.acquire();
    streams::page_query q;
    {
      std::lock_guard lk(mu);
      q.kind = plan[i].spec.kind;
      q.object_ids = plan[i].spec.source_ids;
    }
    q.created_after = cfg.created_after;
    q.created_before = cfg.created_before;
    q.limit = static_cast<std::size_t>(std::max(q.kind == stream_kind::project_logs ? cfg.logs_fetch_limit
                                                : q.kind == stream_kind::experiment ? cfg.experiment_fetch_limit
                                                                                     : cfg.dataset_fetch_limit,
                                                1));
    std::string error;
    std::optional<std::uint64_t> rows;
    std::uint64_t sample_rows = 0, sample_bytes = 0;
    auto sample = co_await source_page(q, false);
    if (!sample.ok()) {
      error = "BTQL sample page failed: " + sample.error;
    } else {
      std::string last;
      for (const auto& v : sample.rows) {
        sample_bytes += json::serialize(v).size();
        ++sample_rows;
        if (v.is_object()) last = str_field(v.as_object(), "_pagination_key");
      }
      if (sample_rows == 0) {
        rows = 0;
      } else if (last.empty()) {
        error = "BTQL sample page row without _pagination_key: cannot count further";
      } else {
        q.after_key = last;
        q.limit = std::max<std::size_t>(ro.dry_run_count_page, 1);
        auto more = co_await count_keys(q, [] { return false; }, error);
        if (more) rows = sample_rows + *more;
      }
    }
    if (!rows && error.empty()) error = "not counted: interrupted";
    std::lock_guard lk(mu);
    plan[i].rows = rows;
    plan[i].sample_rows = sample_rows;
    plan[i].sample_bytes = sample_bytes;
    plan[i].error = std::move(error);
  }

  // Counts the rows each launched stream still has to copy (keys after its committed cursor, 10k keys
  // per page, one stream at a time so the source is not loaded much), for the live line's ETA. Stops
  // when the migration ends or shuts down; a failed count just leaves that stream's total unknown.
  asio::awaitable<void> counter() {
    asio::steady_timer t(co_await asio::this_coro::executor);
    auto cancelled = [](asio::cancellation_state cs) { return cs.cancelled() != asio::cancellation_type::none; };
    while (!ticker_stop) {
      std::optional<count_job> job;
      {
        std::lock_guard lk(mu);
        if (!count_jobs.empty()) {
          job = std::move(count_jobs.front());
          count_jobs.pop_front();
        }
      }
      if (!job) {
        t.expires_after(std::chrono::milliseconds(200));
        auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
        (void)ec;
        if (cancelled(co_await asio::this_coro::cancellation_state)) break;
        continue;
      }
      std::optional<std::uint64_t> n = 0;
      if (!job->done) {
        streams::page_query q;
        q.kind = job->spec.kind;
        q.object_ids = job->spec.source_ids;
        q.created_after = cfg.created_after;
        q.created_before = cfg.created_before;
        if (!job->cursor.empty()) q.after_key = job->cursor;
        q.inclusive = job->inclusive;
        q.limit = 10'000;
        std::string error;
        n = co_await count_keys(std::move(q), [this] { return ticker_stop.load(); }, error);
        if (!error.empty()) log->debug("remaining-rows count stream={}: {}", job->spec.stream_id, error);
      }
      if (n && !ticker_stop) {
        std::lock_guard lk(mu);
        remaining[job->spec.stream_id] = *n;
      }
    }
  }

  void add_run_error(std::string e) {
    std::lock_guard lk(mu);
    run_errors.push_back(std::move(e));
  }

  /// A side's org id (attachment calls need it): GET /v1/organization, else a project's org_id.
  asio::awaitable<std::string> org_id_of(side& s) {
    try {
      auto orgs = co_await s.api->list_objects("/v1/organization", {});
      for (const auto& o : orgs)
        if (auto id = str_field(o, "id"); !id.empty()) co_return id;
    } catch (const std::exception& e) {
      log->debug("organization listing failed url={}: {}", s.res->describe(), e.what());
    }
    auto r = co_await s.api->get_json("/v1/project", param("limit", "1"));
    if (r.ok() && r.json.is_object())
      if (auto* objs = r.json.as_object().if_contains("objects"); objs && objs->is_array())
        for (const auto& p : objs->as_array())
          if (p.is_object()) co_return str_field(p.as_object(), "org_id");
    co_return std::string();
  }

  asio::awaitable<void> run() {
    auto problems = co_await probe_sides(src, dst, cfg);
    for (auto& p : problems) add_run_error(std::move(p));
    if (!problems.empty()) co_return;
    payload_max = co_await dst.api->version();
    log->info("destination logs3_payload_max_bytes={}", payload_max ? std::to_string(*payload_max) : "unknown");
    // (no co_await inside ?: or call arguments: GCC 12 destroys such temporaries too early)
    std::string src_org;
    if (cfg.copy_attachments) src_org = co_await org_id_of(src);
    http_source = std::make_unique<streams::http_event_source>(*src.http, cfg.source.api_key, src_org);
    auto dst_org = co_await org_id_of(dst);
    http_sink = std::make_unique<streams::http_event_sink>(*dst.http, cfg.dest.api_key, dst_org);
    source_io = std::make_unique<limited_source>(*http_source, *src.limits);
    sink_io = std::make_unique<limited_sink>(*http_sink, *dst.limits);
    if (cfg.dry_run) {
      co_await dry_run();
      co_return;
    }
    std::vector<streams::discovered_object> objects;
    if (resources_selected(cfg)) {
      streams::ready_collector collector(sel);
      auto hook = [this, &collector](std::string_view kind, const std::string& sid, const std::string& did) {
        collector.add(kind, sid, did);
        // A project's logs stream needs nothing else: start it while the DAG goes on.
        if (kind == "project" && sel.logs) {
          streams::discovered_object o{stream_kind::project_logs, sid, did, "", sid};
          for (auto& s : streams::build_stream_specs({o}, 1, {})) launch(std::move(s));
        }
      };
      auto rcfg = resources_view(cfg);
      resources_rc = co_await resources::migrate_resources(rcfg, *src.res, *dst.res, &st, report, hook);
      objects = collector.objects();
    } else {
      auto d = co_await streams::discover_objects(*src.api, *dst.api, cfg, &st);
      for (auto& e : d.errors) add_run_error(std::move(e));
      objects = std::move(d.objects);
    }
    auto specs = streams::build_stream_specs(objects, static_cast<std::size_t>(std::max(cfg.fetch_group_size, 1)), cps.all());
    for (auto& s : specs) launch(std::move(s));
  }

  asio::awaitable<void> dry_run() {
    if (resources_selected(cfg)) {
      auto rcfg = resources_view(cfg);
      resources_rc = co_await resources::migrate_resources(rcfg, *src.res, *dst.res, nullptr, report, {});
    }
    auto d = co_await streams::discover_objects(*src.api, *dst.api, cfg, nullptr, streams::discovery_mode::read_only);
    for (auto& e : d.errors) add_run_error(std::move(e));
    if (resources_selected(cfg)) {
      // The real run streams only the objects the DAG makes ready (created or adopted): not those it
      // skips (e.g. experiments/datasets outside the created window), fails, or was not asked for.
      std::set<std::pair<std::string, std::string>> planned;
      for (const auto& e : report.entries())
        if (e.status != resources::object_status::skipped && e.status != resources::object_status::failed)
          planned.emplace(e.type, e.source_id);
      std::erase_if(d.objects, [&](const streams::discovered_object& o) {
        if (planned.count({std::string(id_type(o.kind)), o.source_id})) return false;
        std::lock_guard lk(mu);
        ++plan_left_out;
        return true;
      });
    }
    // Objects without a destination yet get a placeholder so the grouping shows as it will run.
    std::set<std::string> is_new;
    for (auto& o : d.objects)
      if (o.dest_id.empty()) {
        o.dest_id = "(new)";
        is_new.insert(o.source_id);
      }
    auto specs = streams::build_stream_specs(d.objects, static_cast<std::size_t>(std::max(cfg.fetch_group_size, 1)), {});
    {
      std::lock_guard lk(mu);
      plan.resize(specs.size());
      for (std::size_t i = 0; i < specs.size(); ++i) {
        for (const auto& id : specs[i].source_ids) plan[i].dest_exists.emplace_back(id, !is_new.count(id));
        plan[i].spec = std::move(specs[i]);
      }
    }
    // Counted and printed by finish_plan() once every task is done (or shutdown stopped them).
    for (std::size_t i = 0; i < specs.size(); ++i)
      rt.spawn(rt.strand(), plan_task(i), [this, i](std::exception_ptr e) {
        if (!e) return;
        std::lock_guard lk(mu);
        plan[i].error = engine::is_cancellation(e) ? std::string("not counted: interrupted") : engine::what_of(e);
      });
  }

  /// Dry run: the streams plan (counts, estimates, totals), the resources plan and migration_plan.json.
  int finish_plan(bool interrupted) {
    std::lock_guard lk(mu);
    std::vector<std::string> failures = run_errors;
    const double rps = ro.plan_rows_per_s > 0 ? ro.plan_rows_per_s : 28'000;
    const double bps = ro.plan_bytes_per_s > 0 ? ro.plan_bytes_per_s : 38e6;
    auto seconds_for = [&](std::uint64_t rows, std::uint64_t bytes) {
      return std::max(static_cast<double>(rows) / rps, static_cast<double>(bytes) / bps);
    };
    std::uint64_t total_rows = 0, total_bytes = 0;
    std::size_t uncounted = 0;
    std::ostringstream lines;
    for (const auto& e : plan) {
      const auto& s = e.spec;
      json::object o;
      o["kind"] = streams::resource_name(s.kind);
      json::array ids, dest;
      lines << "  would copy " << streams::describe(s) << " ->";
      for (const auto& [sid, exists] : e.dest_exists) {
        ids.emplace_back(sid);
        const auto& did = s.dest_ids.at(sid);
        dest.push_back(json::object{{"source_id", sid},
                                    {"dest_id", exists ? json::value(did) : json::value(nullptr)},
                                    {"status", exists ? "existing" : "new"}});
        lines << ' ' << did;
      }
      o["source_ids"] = std::move(ids);
      o["destination"] = std::move(dest);
      lines << " stream=" << s.stream_id;
      if (cfg.created_after) lines << " created>=" << *cfg.created_after;
      if (cfg.created_before) lines << " created<" << *cfg.created_before;
      o["counted"] = e.rows.has_value();
      if (e.rows) {
        const double avg = e.sample_rows ? static_cast<double>(e.sample_bytes) / static_cast<double>(e.sample_rows) : 0.0;
        const auto bytes = static_cast<std::uint64_t>(std::llround(avg * static_cast<double>(*e.rows)));
        const double secs = seconds_for(*e.rows, bytes);
        total_rows += *e.rows;
        total_bytes += bytes;
        o["rows"] = *e.rows;
        o["bytes"] = bytes;
        o["seconds"] = secs;
        o["sampled_rows"] = e.sample_rows;
        lines << " rows=" << *e.rows << " ~" << mb(bytes) << " MB ~" << human_duration(secs) << '\n';
      } else {
        ++uncounted;
        o["rows"] = nullptr;
        o["bytes"] = nullptr;
        o["seconds"] = nullptr;
        o["error"] = e.error;
        lines << " rows=? (" << e.error << ")\n";
        if (!interrupted) failures.push_back("stream " + s.stream_id + " (" + streams::describe(s) + "): " + e.error);
      }
      report.set_stream(s.stream_id, std::move(o));
    }
    const double total_secs = seconds_for(total_rows, total_bytes);
    char assumption[320];
    std::snprintf(assumption, sizeof assumption,
                  "%.0f rows/s and %.1f MB/s for the whole run, the slower bound wins (measured emulator -> "
                  "emulator on 2 cores, bench/results/summary.md); bytes = rows x average row size of one sampled page",
                  rps, bps / 1e6);
    char total_line[256];
    std::snprintf(total_line, sizeof total_line, "  total: %zu stream(s), %llu rows, %.3f GB, estimated %s%s\n",
                  plan.size(), static_cast<unsigned long long>(total_rows), static_cast<double>(total_bytes) / 1e9,
                  human_duration(total_secs).c_str(), uncounted ? " (incomplete: some streams not counted)" : "");
    for (const auto& e : run_errors) report.add_error(e);
    out << report.summary_text();
    out << "event streams (dry run: nothing is written; rows counted on the source with key-only BTQL pages):\n"
        << lines.str();
    if (plan_left_out)
      out << "  left out: " << plan_left_out
          << " project/experiment/dataset stream object(s) the resources plan skips (created window, selection or "
             "failure; see above)\n";
    out << total_line << "  estimate assumes " << assumption << '\n';
    auto doc = report.to_json();
    doc["streams_plan"] = json::object{{"streams", plan.size()},
                                       {"uncounted", uncounted},
                                       {"objects_left_out", plan_left_out},
                                       {"rows", total_rows},
                                       {"bytes", total_bytes},
                                       {"gb", static_cast<double>(total_bytes) / 1e9},
                                       {"seconds", total_secs},
                                       {"complete", uncounted == 0},
                                       {"assumption", json::object{{"rows_per_s", rps},
                                                                   {"bytes_per_s", bps},
                                                                   {"text", assumption}}}};
    std::error_code ec;
    auto path = std::filesystem::absolute(plan_path(cfg), ec);
    if (ec) path = plan_path(cfg);
    auto werr = write_json(path, doc);
    if (werr.empty()) out << "plan: " << path.string() << '\n';
    for (const auto& f : failures) err << "ferry migrate: " << f << '\n';
    for (const auto& f : report.errors())
      if (std::find(run_errors.begin(), run_errors.end(), f) == run_errors.end()) err << "ferry migrate: " << f << '\n';
    if (!werr.empty()) err << "ferry migrate: " << werr << '\n';
    out.flush();
    if (interrupted) {
      err << "ferry migrate: dry run interrupted; the plan is partial (" << uncounted
          << " stream(s) not counted); nothing was written\n";
      return 130;
    }
    bool ok = failures.empty() && resources_rc == 0 && report.success() && werr.empty();
    return ok ? 0 : 1;
  }

  // Progress: a live line (TTY) or structured log lines per active stream.
  asio::awaitable<void> ticker() {
    asio::steady_timer t(co_await asio::this_coro::executor);
    ticker_timer = &t;
    const bool is_live = live();
    const auto interval = is_live ? std::min(std::chrono::milliseconds(1000), ro.progress_interval) : ro.progress_interval;
    std::map<std::string, engine::progress_counts> last;
    auto last_time = std::chrono::steady_clock::now();
    while (!ticker_stop) {
      t.expires_after(interval);
      auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      (void)ec;  // cancelled by wake_ticker or shutdown: the flags below decide
      if (ticker_stop || (co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none) break;
      auto now = std::chrono::steady_clock::now();
      double dt = std::max(std::chrono::duration<double>(now - last_time).count(), 1e-3);
      auto snap = progress.snapshot();
      if (is_live) {
        auto total = progress.total();
        double secs = std::max(std::chrono::duration<double>(now - started).count(), 1e-3);
        std::lock_guard lk(mu);
        // ETA once every launched stream's remaining rows are counted.
        std::optional<std::uint64_t> todo = std::uint64_t{0};
        for (const auto& id : launched) {
          auto it = remaining.find(id);
          if (it == remaining.end()) {
            todo.reset();
            break;
          }
          *todo += it->second;
        }
        if (launched.empty()) todo.reset();
        auto rate = engine::estimate(total.rows, todo, std::chrono::duration_cast<std::chrono::nanoseconds>(now - started));
        char line[256];
        std::snprintf(line, sizeof line, "\r\033[Kferry migrate: %llu rows, %s, %.2f MB/s, %zu stream(s) running",
                      static_cast<unsigned long long>(total.rows), engine::format_rate_eta(rate, "rows").c_str(),
                      static_cast<double>(total.bytes) / 1e6 / secs, outstanding.load());
        err << line << std::flush;
      } else {
        for (const auto& [name, c] : snap) {
          auto& prev = last[name];
          if (c == prev) continue;
          log->info("progress stream={} rows={} rows_per_s={:.0f} mb_per_s={:.2f} retries={}", name, c.rows,
                    static_cast<double>(c.rows - prev.rows) / dt, static_cast<double>(c.bytes - prev.bytes) / 1e6 / dt,
                    c.retries);
          prev = c;
        }
      }
      last_time = now;
    }
    ticker_timer = nullptr;
    if (is_live) {
      std::lock_guard lk(mu);
      err << "\r\033[K" << std::flush;
    }
  }

  int finish(bool interrupted) {
    if (cfg.dry_run) return finish_plan(interrupted);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::size_t done = 0, failed = 0, pending = 0;
    std::uint64_t rows = 0, bytes = 0, resent = 0;
    std::vector<std::string> failures = run_errors;
    std::lock_guard lk(mu);
    for (const auto& id : launched) {
      streams::stream_result r;
      if (auto it = results.find(id); it != results.end()) {
        r = it->second;
      } else {
        if (auto s = cps.load(id)) r.state = *s;
        r.state.stream_id = id;
        if (auto e = task_errors.find(id); e != task_errors.end()) r.error = e->second;
      }
      std::string status = r.done ? "done" : interrupted ? "interrupted" : "failed";
      if (r.done) ++done;
      else if (interrupted) ++pending;
      else {
        ++failed;
        failures.push_back(failure_line(described[id], r.error));
      }
      rows += r.state.counters.rows;
      bytes += r.state.counters.bytes;
      resent += r.state.counters.resent_rows;
      report.set_stream(id, stream_json(r, status));
      if (!cfg.dry_run && !interrupted)
        out << "stream " << id << ' ' << status << " rows=" << r.state.counters.rows << " bytes=" << r.state.counters.bytes
            << " resent=" << r.state.counters.resent_rows << '\n';
    }
    for (const auto& e : run_errors) report.add_error(e);
    if (interrupted) {  // one line: the report (written below) has the details
      if (auto werr = write_json(report_path(cfg, "migration_report.json"), report.to_json()); !werr.empty())
        err << "ferry migrate: " << werr << '\n';
      out.flush();
      err << "ferry migrate: interrupted, state saved, resume with: " << ro.resume_command << '\n';
      return 130;
    }
    out << report.summary_text();
    if (!cfg.dry_run) {
      char line[256];
      std::snprintf(line, sizeof line,
                    "streams: %zu done, %zu failed, %zu interrupted; %llu rows (%s MB, %llu re-sent) in %.1f s\n", done, failed,
                    pending, static_cast<unsigned long long>(rows), mb(bytes).c_str(),
                    static_cast<unsigned long long>(resent), secs);
      out << line;
    }
    auto path = report_path(cfg, cfg.dry_run ? "migration_plan.json" : "migration_report.json");
    auto werr = write_json(path, report.to_json());
    if (werr.empty()) out << "report: " << path.string() << '\n';
    for (const auto& f : failures) err << "ferry migrate: " << f << '\n';
    for (const auto& f : report.errors())
      if (std::find(run_errors.begin(), run_errors.end(), f) == run_errors.end()) err << "ferry migrate: " << f << '\n';
    if (!werr.empty()) err << "ferry migrate: " << werr << '\n';
    out.flush();
    bool ok = failures.empty() && resources_rc == 0 && report.success() && werr.empty();
    return ok ? 0 : 1;
  }
};

// ---------------------------------------------------------------------------------------------------
// verify

/// Reads every row of a stream with BTQL keyset paging; halves the page on 500/504 (down to 1) and
/// retries other retryable failures (429, 503, dropped or truncated responses) with capped
/// exponential backoff honouring Retry-After, up to 4 x retry_attempts consecutive failures.
asio::awaitable<std::uint64_t> read_all(transports::api_client& api, stream_kind kind, std::vector<std::string> ids,
                                        const migrate_config& cfg, const std::function<void(const json::object&)>& fn) {
  streams::page_query q;
  q.kind = kind;
  q.object_ids = std::move(ids);
  q.created_after = cfg.created_after;
  q.created_before = cfg.created_before;
  q.limit = static_cast<std::size_t>(std::max(kind == stream_kind::project_logs ? cfg.logs_fetch_limit
                                              : kind == stream_kind::experiment ? cfg.experiment_fetch_limit
                                                                                 : cfg.dataset_fetch_limit,
                                              1));
  std::uint64_t n = 0;
  int failures = 0;
  const int max_failures = std::max(4 * cfg.retry_attempts, 4);
  transports::call_options once;
  once.retry = false;  // this loop retries: it must see 500/504 to shrink the page
  for (;;) {
    auto page = co_await api.btql_raw(streams::build_btql_body(streams::build_page_query(q)), once);
    if (!page.ok()) {
      if ((page.status == 500 || page.status == 504) && q.limit > 1) {
        q.limit = std::max<std::size_t>(q.limit / 2, 1);
        continue;
      }
      if (!engine::is_retryable(page.outcome) || ++failures > max_failures)
        throw std::runtime_error("BTQL read failed: " + page.error +
                                 (failures > max_failures ? " (after " + std::to_string(failures) + " attempts)" : ""));
      auto delay = std::min<std::chrono::milliseconds>(cfg.retry_delay * (1 << std::min(failures - 1, 6)),
                                                       std::chrono::milliseconds(10'000));
      if (page.retry_after)
        delay = std::max(delay, std::chrono::duration_cast<std::chrono::milliseconds>(*page.retry_after));
      asio::steady_timer t(co_await asio::this_coro::executor, delay);
      co_await t.async_wait(asio::use_awaitable);
      continue;
    }
    failures = 0;
    if (page.rows.empty()) co_return n;
    std::string last;
    for (const auto& v : page.rows) {
      if (!v.is_object()) continue;
      fn(v.as_object());
      ++n;
      last = str_field(v.as_object(), "_pagination_key");
    }
    if (last.empty()) throw std::runtime_error("BTQL page row without _pagination_key: cannot page further");
    if (q.after_key && last <= *q.after_key) throw std::runtime_error("BTQL page keys did not advance past " + last);
    q.after_key = last;
  }
}

struct verification {
  const migrate_config& cfg;
  std::ostream& out;
  std::ostream& err;
  stores::state_store* st;
  side& src;
  side& dst;
  std::vector<streams::verify_report> reports;
  std::vector<std::string> failures;  // one line each
  json::array resource_checks;
  std::mutex mu;  // reports, failures and `out`: streams are verified concurrently

  asio::awaitable<std::vector<streams::stream_spec>> specs() {
    std::vector<streams::stream_spec> out_specs;
    if (st) {
      streams::checkpoint_store cps(*st);
      for (const auto& s : cps.all()) {
        auto kind = kind_from_name(s.kind);
        if (!kind || s.source_ids.empty()) continue;
        streams::stream_spec spec;
        spec.kind = *kind;
        spec.stream_id = s.stream_id;
        spec.source_ids = s.source_ids;
        bool complete = true;
        for (const auto& sid : s.source_ids) {
          auto did = st->get_id(id_type(*kind), sid);
          if (!did) {
            failures.push_back("stream " + s.stream_id + ": no destination id recorded for " + std::string(id_type(*kind)) +
                               " " + sid);
            complete = false;
            break;
          }
          spec.dest_ids[sid] = *did;
        }
        if (complete) out_specs.push_back(std::move(spec));
      }
      if (!out_specs.empty()) co_return out_specs;
    }
    auto d = co_await streams::discover_objects(*src.api, *dst.api, cfg, st, streams::discovery_mode::read_only);
    for (auto& e : d.errors) failures.push_back(std::move(e));
    for (const auto& o : d.objects)
      if (o.dest_id.empty())
        failures.push_back(std::string(id_type(o.kind)) + " '" + o.name + "' (" + o.source_id +
                           "): no destination object with that name");
    co_return streams::build_stream_specs(d.objects, static_cast<std::size_t>(std::max(cfg.fetch_group_size, 1)), {});
  }

  asio::awaitable<void> verify_stream(const streams::stream_spec& spec) {
    streams::verify_tally tally(spec.stream_id, spec.kind);
    std::vector<std::string> dest_ids;
    for (const auto& sid : spec.source_ids) dest_ids.push_back(spec.dest_ids.at(sid));
    try {
      co_await read_all(*src.api, spec.kind, spec.source_ids, cfg, [&](const json::object& r) { tally.add_source(r); });
      co_await read_all(*dst.api, spec.kind, dest_ids, cfg, [&](const json::object& r) { tally.add_dest(r); });
    } catch (const std::exception& e) {
      std::lock_guard lk(mu);
      failures.push_back("stream " + spec.stream_id + " (" + streams::describe(spec) + "): " + e.what());
      out << "FAIL " << spec.stream_id << ": " << e.what() << '\n';
      co_return;
    }
    auto rep = tally.finish();
    std::lock_guard lk(mu);
    out << (rep.ok() ? "ok   " : "DIFF ") << rep.summary() << '\n';
    reports.push_back(std::move(rep));
  }

  /// The resources DAG copies only the experiments and datasets created inside the window (discovery
  /// copies them all); the count check follows the path the migration took.
  bool in_window(const json::object& o) const {
    if (!resources_selected(cfg)) return true;
    auto created = resources::comparable_time(str_field(o, "created"));
    if (created.empty()) return true;
    if (cfg.created_after && created < resources::comparable_time(*cfg.created_after)) return false;
    if (cfg.created_before && created >= resources::comparable_time(*cfg.created_before)) return false;
    return true;
  }

  /// Projects, experiments and datasets by name: source (selected projects) vs destination.
  asio::awaitable<void> check_resources() {
    auto sel = streams::selection_from(cfg);
    std::map<std::string, std::string> dest_projects;
    // (co_await results are named first: GCC 12 mishandles temporaries around co_await)
    auto dest_listing = co_await dst.api->list_objects("/v1/project", {});
    for (const auto& p : dest_listing) dest_projects[str_field(p, "name")] = str_field(p, "id");
    std::map<std::string, std::array<std::uint64_t, 3>> counts;  // type -> source, dest, missing
    std::vector<std::string> missing_names;
    auto src_listing = co_await src.api->list_objects("/v1/project", {});
    for (const auto& p : src_listing) {
      auto name = str_field(p, "name");
      if (!cfg.projects.empty() && std::find(cfg.projects.begin(), cfg.projects.end(), name) == cfg.projects.end()) continue;
      if (std::find(sel.exclude_projects.begin(), sel.exclude_projects.end(), name) != sel.exclude_projects.end()) continue;
      auto& pc = counts["project"];
      ++pc[0];
      auto dit = dest_projects.find(name);
      if (dit == dest_projects.end()) {
        ++pc[2];
        missing_names.push_back("project " + name);
        continue;
      }
      ++pc[1];
      for (std::string_view type : {"experiment", "dataset"}) {
        std::string path = "/v1/" + std::string(type);
        std::set<std::string> dnames;
        auto dst_objs = co_await dst.api->list_objects(path, param("project_id", dit->second));
        for (const auto& o : dst_objs) dnames.insert(str_field(o, "name"));
        auto& c = counts[std::string(type)];
        auto src_objs = co_await src.api->list_objects(path, param("project_id", str_field(p, "id")));
        for (const auto& o : src_objs) {
          if (!in_window(o)) continue;
          ++c[0];
          if (dnames.count(str_field(o, "name"))) {
            ++c[1];
          } else {
            ++c[2];
            if (missing_names.size() < 10) missing_names.push_back(std::string(type) + " " + name + "/" + str_field(o, "name"));
          }
        }
      }
    }
    for (const auto& [type, c] : counts) {
      out << (c[2] ? "DIFF " : "ok   ") << "resources type=" << type << " source=" << c[0] << " dest_by_name=" << c[1]
          << " missing=" << c[2] << '\n';
      json::object rc;
      rc["type"] = type;
      rc["source"] = c[0];
      rc["dest_by_name"] = c[1];
      rc["missing"] = c[2];
      resource_checks.push_back(std::move(rc));
      if (c[2]) failures.push_back(std::to_string(c[2]) + " " + type + "(s) missing in the destination");
    }
    for (const auto& m : missing_names) out << "     missing " << m << '\n';
  }

  asio::awaitable<void> run() {
    auto problems = co_await probe_sides(src, dst, cfg);
    for (auto& p : problems) failures.push_back(std::move(p));
    if (!problems.empty()) co_return;
    auto list = co_await specs();
    // Streams are read side by side, as many at once as a migration runs (lines print as streams end;
    // the report lists them sorted).
    co_await for_each_bounded(co_await asio::this_coro::executor, list.size(),
                              static_cast<std::size_t>(std::max(cfg.max_concurrent_streams, 1)),
                              [&](std::size_t i) { return verify_stream(list[i]); });
    std::sort(reports.begin(), reports.end(), [](const auto& a, const auto& b) { return a.stream < b.stream; });
    try {
      co_await check_resources();
    } catch (const std::exception& e) {
      failures.push_back(std::string("resource count check failed: ") + e.what());
    }
  }
};

}  // namespace

int run_migrate(const migrate_config& cfg) { return run_migrate(cfg, run_options{}); }

int run_migrate(const migrate_config& cfg, const run_options& ro) {
  std::ostream& out = ro.out ? *ro.out : std::cout;
  std::ostream& err = ro.err ? *ro.err : std::cerr;
  if (auto e = check_endpoints(cfg); !e.empty()) {
    err << "ferry migrate: " << e << '\n';
    return 2;
  }
  engine::register_secret(cfg.source.api_key);
  engine::register_secret(cfg.dest.api_key);
  // The state: one directory per migration, opened once; a dry run keeps it in memory and untouched.
  std::optional<stores::state_store> st;
  try {
    if (cfg.dry_run) {
      st.emplace(stores::state_store::open_memory());
    } else {
      stores::state_store_options so;
      so.kv.min_free_bytes = cfg.state_min_free_bytes;
      st.emplace(stores::state_store::open(cfg.state_dir, so));
    }
  } catch (const std::exception& e) {
    err << "ferry migrate: " << e.what() << '\n';
    return 2;
  }
  if (!cfg.dry_run) {
    try {
      st->check_and_record_meta({{"source_url", cfg.source.url},
                                 {"dest_url", cfg.dest.url},
                                 {"created_after", cfg.created_after.value_or("")},
                                 {"created_before", cfg.created_before.value_or("")}});
    } catch (const std::exception& e) {
      err << "ferry migrate: " << e.what() << " (keep the original settings to resume, or use another state dir)\n";
      return 2;
    }
  }
  // --record: every exchange of both sides, redacted (must outlive the clients: declared before them).
  std::optional<transports::recorder> rec;
  if (!cfg.record_dir.empty()) {
    try {
      rec.emplace(cfg.record_dir);
    } catch (const std::exception& e) {
      err << "ferry migrate: " << e.what() << '\n';
      return 2;
    }
  }
  engine::runtime rt(runtime_cfg(ro));
  std::optional<side> src, dst;
  try {
    src.emplace(make_side(rt.executor(), cfg.source, cfg, rec ? rec->observer("source") : transports::exchange_observer{}));
    dst.emplace(make_side(rt.executor(), cfg.dest, cfg, rec ? rec->observer("dest") : transports::exchange_observer{}));
  } catch (const std::exception& e) {
    err << "ferry migrate: " << e.what() << '\n';
    return 2;
  }
  migration m(cfg, ro, out, err, rt, *st, *src, *dst);
  m.report.set_dry_run(cfg.dry_run);
  if (ro.on_runtime) ro.on_runtime(rt);
  if (!cfg.dry_run) rt.spawn(m.ticker_strand, m.ticker());
  if (!cfg.dry_run && m.live()) rt.spawn(rt.strand(), m.counter());
  rt.spawn(rt.executor(), m.run(), [&m](std::exception_ptr e) {
    if (e && !engine::is_cancellation(e)) m.add_run_error("migration aborted: " + engine::what_of(e));
    m.launching_done = true;
    m.maybe_finished();
  });
  rt.run();
  const bool interrupted = rt.phase() != engine::shutdown_phase::running;
  return m.finish(interrupted);
}

int run_verify(const migrate_config& cfg) { return run_verify(cfg, run_options{}); }

int run_verify(const migrate_config& cfg, const run_options& ro) {
  std::ostream& out = ro.out ? *ro.out : std::cout;
  std::ostream& err = ro.err ? *ro.err : std::cerr;
  if (auto e = check_endpoints(cfg); !e.empty()) {
    err << "ferry verify: " << e << '\n';
    return 2;
  }
  engine::register_secret(cfg.source.api_key);
  engine::register_secret(cfg.dest.api_key);
  std::optional<stores::state_store> st;
  try {
    if (std::filesystem::exists(std::filesystem::path(cfg.state_dir) / "CURRENT"))
      st.emplace(stores::state_store::open_read_only(cfg.state_dir));  // reads only: no free space needed
  } catch (const std::exception& e) {
    err << "ferry verify: " << e.what() << '\n';
    return 2;
  }
  engine::runtime rt(runtime_cfg(ro));
  std::optional<side> src, dst;
  try {
    src.emplace(make_side(rt.executor(), cfg.source, cfg));
    dst.emplace(make_side(rt.executor(), cfg.dest, cfg));
  } catch (const std::exception& e) {
    err << "ferry verify: " << e.what() << '\n';
    return 2;
  }
  verification v{cfg, out, err, st ? &*st : nullptr, *src, *dst, {}, {}, {}, {}};
  if (ro.on_runtime) ro.on_runtime(rt);
  rt.spawn(rt.executor(), v.run(), [&v](std::exception_ptr e) {
    if (e) v.failures.push_back(engine::is_cancellation(e) ? std::string("interrupted") : "verify aborted: " + engine::what_of(e));
  });
  rt.run();

  json::array streams_json;
  std::size_t diffs = 0;
  for (const auto& r : v.reports) {
    if (!r.ok()) ++diffs;
    auto ids = [](const std::vector<std::string>& l) {
      json::array a;
      for (const auto& i : l) a.emplace_back(i);
      return a;
    };
    streams_json.push_back(json::object{{"stream", r.stream},
                                        {"ok", r.ok()},
                                        {"source_rows", r.source_rows},
                                        {"dest_rows", r.dest_rows},
                                        {"missing", r.missing},
                                        {"extra", r.extra},
                                        {"mismatched", r.mismatched},
                                        {"source_digest", r.source_digest.hex()},
                                        {"dest_digest", r.dest_digest.hex()},
                                        {"missing_ids", ids(r.missing_ids)},
                                        {"extra_ids", ids(r.extra_ids)},
                                        {"mismatched_ids", ids(r.mismatched_ids)}});
  }
  json::array failures_json;
  for (const auto& f : v.failures) failures_json.emplace_back(f);
  bool ok = diffs == 0 && v.failures.empty();
  json::object doc{{"ok", ok},
                   {"streams", std::move(streams_json)},
                   {"resources", std::move(v.resource_checks)},
                   {"failures", std::move(failures_json)}};
  auto path = report_path(cfg, "migration_report.json").parent_path() / "verify_report.json";
  auto werr = write_json(path, doc);
  out << "verify: " << v.reports.size() << " stream(s), " << diffs << " with differences, " << v.failures.size()
      << " failure(s)" << (werr.empty() ? "; report: " + path.string() : std::string()) << '\n';
  out.flush();
  for (const auto& f : v.failures) err << "ferry verify: " << f << '\n';
  if (!werr.empty()) err << "ferry verify: " << werr << '\n';
  return ok && werr.empty() ? 0 : 1;
}

}  // namespace ferry::pipelines
