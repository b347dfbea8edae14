#include "pipelines/streams/launcher.hpp"

#include "pipelines/streams/slice_split.hpp"

#include "engine/log.hpp"
#include "engine/runtime.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <optional>

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

// A slice hands its pages over without a queue (the reader waits until the batcher takes the page: the
// K slices are the read-ahead) and keeps 1 batch waiting besides the stream's batches in flight.
stream_options slice_pipeline(stream_options o) {
  o.batch_channel_capacity = 1;
  o.page_channel_capacity = 0;
  return o;
}

// Whether the memory budget binds for one more slice: a reader waited for bytes since the last look
// (`waits0`), or what is held leaves no room for another reader's average share.
bool memory_full(const engine::memory_budget* budget, std::uint64_t waits0, std::size_t readers) {
  if (!budget) return false;
  if (budget->waits() > waits0) return true;
  const auto held = budget->held();
  return held + held / std::max<std::size_t>(readers, 1) > budget->capacity();
}

// One pacer tick's observations of a sliced stream (every slice's requests, the process's budget).
struct tick_observation {
  double bytes_per_s = 0;
  bool throttled = false;
  double page_ms = 0;  // mean source page latency; 0 = no page ended
  bool memory_full = false;
};

class tick_sampler {
 public:
  tick_sampler(const io_stats& st, const engine::memory_budget* budget) : st_(st), budget_(budget) { reset(); }
  /// The observations since the last tick, once a tick has passed (nullopt before).
  std::optional<tick_observation> take(std::chrono::milliseconds tick, std::size_t readers) {
    const auto now = std::chrono::steady_clock::now();
    const double secs = std::chrono::duration<double>(now - last_).count();
    if (secs * 1000 < static_cast<double>(tick.count())) return std::nullopt;
    tick_observation t;
    const auto bytes = st_.acked_bytes.load(), pages = st_.pages.load(), page_us = st_.page_us.load();
    t.bytes_per_s = static_cast<double>(bytes - bytes0_) / secs;
    t.throttled = st_.throttled.load() > throttled0_;
    if (pages > pages0_) t.page_ms = static_cast<double>(page_us - page_us0_) / 1000.0 / static_cast<double>(pages - pages0_);
    t.memory_full = memory_full(budget_, waits0_, readers);
    reset();
    return t;
  }

 private:
  void reset() {
    last_ = std::chrono::steady_clock::now();
    bytes0_ = st_.acked_bytes.load(), throttled0_ = st_.throttled.load();
    pages0_ = st_.pages.load(), page_us0_ = st_.page_us.load();
    waits0_ = budget_ ? budget_->waits() : 0;
  }
  const io_stats& st_;
  const engine::memory_budget* budget_;
  std::chrono::steady_clock::time_point last_;
  std::uint64_t bytes0_ = 0, throttled0_ = 0, pages0_ = 0, page_us0_ = 0, waits0_ = 0;
};

}  // namespace

std::size_t slice_cap(const slice_config& sc) {
  return std::max<std::size_t>(1, std::min(sc.max_slices, sc.max_concurrent));
}

stream_options slice_options(const stream_options& stream, std::size_t cap, std::size_t streams) {
  stream_options o = slice_pipeline(stream);
  const std::size_t k = std::max<std::size_t>(cap, 1);
  std::size_t per_slice = 0;
  if (stream.budget) {
    // Paced by the budget itself; bounded so that the partial batches of every slice of every stream
    // stay within a third of it (a reader waits for at most half: stream_runner's reserve_page).
    per_slice = static_cast<std::size_t>(stream.budget->capacity() / (3 * std::max<std::size_t>(streams, 1) * k));
  } else {
    const std::size_t share = stream.batch.max_bytes * held_batches(stream);
    per_slice = share / (k * held_batches(o));
  }
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
  if (co_await slice_layout(spec, opts) > 0) {
    r = co_await run_slices(std::move(spec), std::move(opts), progress);
  } else {
    ++readers_;
    struct uncount {
      std::atomic<std::size_t>& n;
      ~uncount() { --n; }
    } reading{readers_};
    r = co_await run_stream(std::move(spec), std::move(opts), source_, sink_, store_, clk_, progress);
  }
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
  sc.max_slices = slice_cap(sc);
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
  const std::size_t n = store_.load(spec.stream_id)->slices.size();
  // K's cap is not the layout's count: a split adds slices while running (into the slots K left idle).
  const std::size_t cap = slice_cap(cfg_.slicing);
  opts = slice_options(opts, cap, cfg_.max_concurrent);
  engine::logger("pipeline")->info("slices stream={} count={} cap={} batch_bytes={} inflight_batches={}", spec.stream_id,
                                   n, cap, opts.batch.max_bytes, opts.max_inflight_batches);
  io_stats stats;
  observed_source src(source_, stats);
  observed_sink snk(sink_, stats);
  slice_pacer pacer(cap);
  asio::steady_timer wake(ex);
  // A slice found large while slots are idle is split (slice_split.hpp): the layout grows, the slices
  // keep their indices; `results` and the windows are the splitter's.
  slice_splitter split(ex, spec, opts, store_, cfg_.slicing, n);
  std::size_t next = 0, running = 0, k = pacer.k(), splits = 0;
  auto gauge = [&] {
    if (progress) progress->set_slices(split.count());  // the ferry_slices metric
    if (progress && split.splits() > splits) progress->add_slice_splits(split.splits() - splits);
    splits = split.splits();
    if (cfg_.on_slices) cfg_.on_slices(spec.stream_id, split.count(), running);
  };
  auto start = [&](std::size_t i) {
    stream_spec s = spec;
    s.stream_id = stores::slice_stream_id(spec.stream_id, i);
    stream_options o = opts;
    const auto window = split.window(i);
    o.id_from = window.id_from;
    o.id_to = window.id_to;
    ++running;
    ++readers_;
    gauge();
    auto task = [](stream_spec s, stream_options o, event_source& src, event_sink& snk, checkpoint_store& store,
                   const engine::clock& clk, engine::stream_progress* p, stream_result& out,
                   std::shared_ptr<asio::cancellation_signal> stop) -> asio::awaitable<void> {
      out = co_await run_slice(std::move(s), std::move(o), src, snk, store, clk, p, std::move(stop));
    };
    auto strand = rt_.strand();
    auto stop = split.started(i, strand);
    rt_.spawn(strand, task(std::move(s), std::move(o), src, snk, store_, clk_, progress, split.result(i), std::move(stop)),
              [&, i, ex](std::exception_ptr e) {
                asio::post(ex, [&, i, e] {
                  auto& result = split.result(i);
                  if (e && result.error.empty())
                    result.error = engine::is_cancellation(e) ? "not started: shutdown" : engine::what_of(e);
                  split.ended(i);
                  --running;
                  --readers_;
                  gauge();
                  wake.cancel();
                });
              });
  };
  tick_sampler sample(stats, opts.budget.get());
  auto may_start = [&] { return rt_.phase() == engine::shutdown_phase::running; };
  while (running > 0 || split.pending() || (next < split.count() && may_start())) {
    for (auto i : split.take_restarts(may_start())) start(i);
    while (running < k && next < split.count() && may_start()) start(next++);
    if (split.splits() != splits) gauge();  // a split committed by take_restarts
    if (running == 0 && !split.pending() && !(next < split.count() && may_start())) break;
    split.consider(source_, clk_, k, running, next, may_start(), [&] { wake.cancel(); });
    wake.expires_after(cfg_.slicing.tick);
    co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
    const auto t = sample.take(cfg_.slicing.tick, readers_.load());
    if (!t) continue;  // a slice ended or a look finished: start the next, look again
    const auto before = k;
    k = pacer.on_tick(t->bytes_per_s, t->throttled, t->page_ms, t->memory_full);
    if (k != before) engine::logger("pipeline")->debug("slices stream={} k={}->{}", spec.stream_id, before, k);
  }
  co_return finish_slices(spec, split, next);
}

stream_result stream_launcher::finish_slices(const stream_spec& spec, slice_splitter& split, std::size_t started) {
  stream_result r;
  r.done = started == split.count();
  for (std::size_t i = 0; i < split.count(); ++i) {
    r.done = r.done && split.result(i).done;
    if (r.error.empty() && !split.result(i).error.empty())
      r.error = "slice " + std::to_string(i + 1) + "/" + std::to_string(split.count()) + ": " + split.result(i).error;
  }
  r.state = *store_.load(spec.stream_id);
  // A shutdown's aborts are not the stream's error (as for an unsliced stream): the state keeps its own.
  if (rt_.phase() == engine::shutdown_phase::running && (r.done || !r.error.empty())) {
    r.state.last_error = r.error;
    store_.save(r.state);
  }
  return r;
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
