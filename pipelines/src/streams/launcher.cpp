#include "pipelines/streams/launcher.hpp"

#include "engine/log.hpp"
#include "engine/runtime.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>

namespace ferry::pipelines::streams {

namespace asio = boost::asio;

namespace {

// What a sliced stream's pacer observes, from every slice at once.
struct io_stats {
  std::atomic<std::uint64_t> acked_bytes{0}, throttled{0}, pages{0}, page_us{0};
};

bool throttling(int status) { return status == 429 || status == 503; }

class observed_source : public event_source {
 public:
  observed_source(event_source& inner, io_stats& st) : inner_(inner), st_(st) {}
  asio::awaitable<call_result> btql(std::string body) override {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = co_await inner_.btql(std::move(body));
    if (throttling(r.status)) st_.throttled.fetch_add(1);
    if (r.outcome == engine::io_outcome::ok) {
      st_.pages.fetch_add(1);
      st_.page_us.fetch_add(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count()));
    }
    co_return r;
  }
  asio::awaitable<std::string> download_attachment(std::string key, std::string filename, std::string content_type,
                                                   std::uint64_t max_bytes) override {
    co_return co_await inner_.download_attachment(std::move(key), std::move(filename), std::move(content_type), max_bytes);
  }

 private:
  event_source& inner_;
  io_stats& st_;
};

class observed_sink : public event_sink {
 public:
  observed_sink(event_sink& inner, io_stats& st) : inner_(inner), st_(st) {}
  asio::awaitable<call_result> logs3(std::string body) override {
    const auto n = body.size();
    auto r = co_await inner_.logs3(std::move(body));
    if (throttling(r.status)) st_.throttled.fetch_add(1);
    if (r.outcome == engine::io_outcome::ok) st_.acked_bytes.fetch_add(n);
    co_return r;
  }
  asio::awaitable<std::optional<std::uint64_t>> payload_max_bytes() override { co_return co_await inner_.payload_max_bytes(); }
  asio::awaitable<std::string> upload_attachment(std::string filename, std::string content_type, std::string bytes) override {
    co_return co_await inner_.upload_attachment(std::move(filename), std::move(content_type), std::move(bytes));
  }

 private:
  event_sink& inner_;
  io_stats& st_;
};

// A slice's batches are never cut below this (nor above the stream's own).
constexpr std::size_t min_slice_batch = 256u << 10;

// The batches a pipeline may hold, each counted as often as it exists at once: 4 copies of a batch in the
// channel or in flight (its rows, the /logs3 body, the copy an attempt hands to the sink, the request),
// 2 of a page in the channel or being read (its body, its rows); a page counted as a batch's worth. The
// memory model of options_from_config (entry.cpp), which sized the stream's batch bytes so that this
// many of them fit the stream's share of MIGRATION_MEMORY_BUDGET.
std::size_t held_batches(const stream_options& o) {
  return 4 * (o.batch_channel_capacity + o.max_inflight_batches) + 2 * (o.page_channel_capacity + 1);
}

stream_options slice_pipeline(stream_options o) {
  o.batch_channel_capacity = 1;
  o.page_channel_capacity = 1;
  return o;
}

}  // namespace

std::size_t slice_cap(std::size_t slices, const slice_config& sc, const stream_options& opts) {
  const std::size_t share = opts.batch.max_bytes * held_batches(opts);
  const std::size_t mem_cap = std::max<std::size_t>(1, share / (held_batches(slice_pipeline(opts)) * min_slice_batch));
  return std::max<std::size_t>(1, std::min({slices, sc.max_concurrent, mem_cap}));
}

stream_options slice_options(const stream_options& stream, std::size_t cap) {
  stream_options o = slice_pipeline(stream);
  const std::size_t share = stream.batch.max_bytes * held_batches(stream);
  const std::size_t per_slice = share / (std::max<std::size_t>(cap, 1) * held_batches(o));
  o.batch.max_bytes = std::clamp(per_slice, std::min(min_slice_batch, stream.batch.max_bytes), stream.batch.max_bytes);
  return o;
}

stream_launcher::stream_launcher(engine::runtime& rt, event_source& source, event_sink& sink, checkpoint_store& store,
                                 const engine::clock& clk, launcher_config cfg)
    : rt_(rt),
      source_(source),
      sink_(sink),
      store_(store),
      clk_(clk),
      cfg_(std::move(cfg)),
      slots_(std::max<std::size_t>(cfg_.max_concurrent, 1)) {}

bool stream_launcher::launch(stream_spec spec) {
  {
    std::lock_guard lk(mu_);
    if (described_.count(spec.stream_id)) return false;
    described_[spec.stream_id] = describe(spec);
    launched_.push_back(spec.stream_id);
  }
  if (cfg_.on_launch) cfg_.on_launch(spec);
  ++outstanding_;
  auto id = spec.stream_id;
  rt_.spawn(rt_.strand(), run_one(std::move(spec)), [this, id](std::exception_ptr e) {
    if (e) {
      std::lock_guard lk(mu_);
      task_errors_[id] = engine::is_cancellation(e) ? std::string("not started: shutdown") : engine::what_of(e);
    }
    if (--outstanding_ == 0 && cfg_.on_idle) cfg_.on_idle();
  });
  return true;
}

asio::awaitable<void> stream_launcher::run_one(stream_spec spec) {
  auto permit = co_await slots_.acquire();
  const auto id = spec.stream_id;
  const auto kind = spec.kind;
  auto log = engine::logger("pipeline");
  log->info("stream start stream={} ({})", id, describe(spec));
  // (arguments are named first: GCC 12 destroys temporaries of a co_await expression twice)
  stream_options opts;
  if (cfg_.options) opts = cfg_.options(kind);
  engine::stream_progress* progress = cfg_.progress ? &cfg_.progress->stream(id) : nullptr;
  stream_result r;
  if (co_await slice_layout(spec, opts) > 0) r = co_await run_slices(std::move(spec), std::move(opts), progress);
  else r = co_await run_stream(std::move(spec), std::move(opts), source_, sink_, store_, clk_, progress);
  if (progress) progress->set_finished();  // off the status area
  log->info("stream end stream={} done={} rows={}", id, r.done, r.state.counters.rows);
  if (!r.error.empty()) log->debug("stream end stream={} error={}", id, r.error);
  std::lock_guard lk(mu_);
  results_[id] = std::move(r);
}

asio::awaitable<std::size_t> stream_launcher::slice_layout(const stream_spec& spec, const stream_options& opts) {
  auto rec = store_.load(spec.stream_id);
  if (rec && !rec->slices.empty()) co_return rec->slices.size();
  if (cfg_.slicing.max_slices < 2) co_return 0;
  // Only a fresh stream is sliced: one that committed rows or has batches in flight goes on as it began.
  if (rec && (rec->next_seq != 1 || rec->counters.rows != 0 || !store_.inflight(spec.stream_id).empty())) co_return 0;
  page_query q;
  q.kind = spec.kind;
  q.object_ids = spec.source_ids;
  q.created_after = opts.created_after;
  q.created_before = opts.created_before;
  std::vector<stores::stream_slice> layout;
  std::exception_ptr failed;
  // No more slices than may run at once: equal slices all running end together.
  slice_config sc = cfg_.slicing;
  sc.max_slices = slice_cap(sc.max_slices, sc, opts);
  try {
    layout = co_await plan_slices(source_, q, sc, opts.retry, clk_);
  } catch (...) {
    failed = std::current_exception();
  }
  auto log = engine::logger("pipeline");
  if (failed) {
    if (engine::is_cancellation(failed)) std::rethrow_exception(failed);
    log->info("slices not used stream={}: {} (the stream is copied as one slice)", spec.stream_id, engine::what_of(failed));
    co_return 0;
  }
  if (layout.empty()) co_return 0;
  stream_state st;
  if (rec) st = std::move(*rec);
  st.stream_id = spec.stream_id;
  st.kind = std::string(resource_name(spec.kind));
  st.source_ids = spec.source_ids;
  st.slices = std::move(layout);
  store_.save(st);  // synced before any slice starts: every later run continues these slices
  log->info("slices stream={} count={}", spec.stream_id, st.slices.size());
  co_return st.slices.size();
}

asio::awaitable<stream_result> stream_launcher::run_slices(stream_spec spec, stream_options opts,
                                                           engine::stream_progress* progress) {
  // The driver only starts slices; each slice is a runtime task of its own that a shutdown reaches, and
  // the driver keeps waiting for every started one (their frames use this one's io objects).
  co_await asio::this_coro::reset_cancellation_state(asio::disable_cancellation());
  auto ex = co_await asio::this_coro::executor;
  const auto layout = store_.load(spec.stream_id)->slices;
  const std::size_t n = layout.size();
  const std::size_t cap = slice_cap(n, cfg_.slicing, opts);
  opts = slice_options(opts, cap);
  io_stats stats;
  observed_source src(source_, stats);
  observed_sink snk(sink_, stats);
  slice_pacer pacer(cap, n);
  engine::logger("pipeline")->info("slices stream={} count={} cap={} batch_bytes={} inflight_batches={}", spec.stream_id,
                                   n, cap, opts.batch.max_bytes, opts.max_inflight_batches);
  asio::steady_timer wake(ex);
  std::vector<stream_result> results(n);
  std::size_t next = 0, running = 0, k = pacer.k();
  auto gauge = [&] {
    if (progress) progress->set_slices(n);  // the ferry_slices metric
    if (cfg_.on_slices) cfg_.on_slices(spec.stream_id, n, running);
    // (a line at each slice start and end: bench/run's latency mode reads K over time from them)
    engine::logger("pipeline")->info("slices stream={} running={} k={}", spec.stream_id, running, k);
  };
  auto start = [&](std::size_t i) {
    stream_spec s = spec;
    s.stream_id = stores::slice_stream_id(spec.stream_id, i);
    stream_options o = opts;
    o.id_from = layout[i].id_from;
    o.id_to = layout[i].id_to;
    ++running;
    gauge();
    auto task = [](stream_spec s, stream_options o, event_source& src, event_sink& snk, checkpoint_store& store,
                   const engine::clock& clk, engine::stream_progress* p, stream_result& out) -> asio::awaitable<void> {
      out = co_await run_stream(std::move(s), std::move(o), src, snk, store, clk, p);
    };
    rt_.spawn(rt_.strand(), task(std::move(s), std::move(o), src, snk, store_, clk_, progress, results[i]),
              [&, i, ex](std::exception_ptr e) {
                asio::post(ex, [&, i, e] {
                  if (e && results[i].error.empty())
                    results[i].error = engine::is_cancellation(e) ? "not started: shutdown" : engine::what_of(e);
                  --running;
                  gauge();
                  wake.cancel();
                });
              });
  };
  auto last = std::chrono::steady_clock::now();
  std::uint64_t bytes0 = 0, throttled0 = 0, pages0 = 0, page_us0 = 0;
  while (running > 0 || (next < n && rt_.phase() == engine::shutdown_phase::running)) {
    while (running < k && next < n && rt_.phase() == engine::shutdown_phase::running) start(next++);
    wake.expires_after(cfg_.slicing.tick);
    co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
    const auto now = std::chrono::steady_clock::now();
    const double secs = std::chrono::duration<double>(now - last).count();
    if (secs * 1000 < static_cast<double>(cfg_.slicing.tick.count())) continue;  // a slice ended: start the next
    const auto bytes = stats.acked_bytes.load(), throttled = stats.throttled.load();
    const auto pages = stats.pages.load(), page_us = stats.page_us.load();
    const double page_ms = pages > pages0 ? static_cast<double>(page_us - page_us0) / 1000.0 / static_cast<double>(pages - pages0) : 0;
    const auto before = k;
    k = pacer.on_tick(static_cast<double>(bytes - bytes0) / secs, throttled > throttled0, page_ms);
    if (k != before) engine::logger("pipeline")->debug("slices stream={} k={}->{}", spec.stream_id, before, k);
    last = now;
    bytes0 = bytes, throttled0 = throttled, pages0 = pages, page_us0 = page_us;
  }
  stream_result r;
  r.done = next == n;
  for (std::size_t i = 0; i < n; ++i) {
    r.done = r.done && results[i].done;
    if (r.error.empty() && !results[i].error.empty())
      r.error = "slice " + std::to_string(i + 1) + "/" + std::to_string(n) + ": " + results[i].error;
  }
  r.state = *store_.load(spec.stream_id);
  // A shutdown's aborts are not the stream's error (as for an unsliced stream): the state keeps its own.
  if (rt_.phase() == engine::shutdown_phase::running && (r.done || !r.error.empty())) {
    r.state.last_error = r.error;
    store_.save(r.state);
  }
  co_return r;
}

std::vector<stream_outcome> stream_launcher::outcomes() const {
  std::lock_guard lk(mu_);
  std::vector<stream_outcome> out;
  out.reserve(launched_.size());
  for (const auto& id : launched_) {
    stream_outcome o;
    o.stream_id = id;
    o.described = described_.at(id);
    if (auto it = results_.find(id); it != results_.end()) {
      o.result = it->second;
    } else {
      if (auto s = store_.load(id)) o.result.state = *s;
      o.result.state.stream_id = id;
      if (auto e = task_errors_.find(id); e != task_errors_.end()) o.result.error = e->second;
    }
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace ferry::pipelines::streams
