#include "pipelines/streams/slice_split.hpp"

#include "engine/log.hpp"
#include "engine/runtime.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>

namespace ferry::pipelines::streams {

namespace asio = boost::asio;

std::size_t split_parts(std::uint64_t rows_left, std::size_t idle, std::size_t slices, const slice_config& cfg) {
  if (idle == 0 || cfg.max_slices < 2 || slices >= max_layout_slices) return 0;
  const std::uint64_t by_rows = rows_left / (split_part_pages * std::max<std::size_t>(cfg.min_slice_rows, 1));
  const auto parts = std::min<std::uint64_t>({idle + 1, max_layout_slices - slices + 1, by_rows});
  return parts < 2 ? 0 : static_cast<std::size_t>(parts);
}

bool apply_split(stores::stream_state& parent, std::size_t index, const std::vector<slice_window>& parts) {
  if (index >= parent.slices.size() || parts.size() < 2) return false;
  const auto& old = parent.slices[index];
  if (parts.front().id_from != old.id_from || parts.back().id_to != old.id_to) return false;
  for (std::size_t j = 0; j + 1 < parts.size(); ++j)
    if (parts[j].id_to != parts[j + 1].id_from || (!parts[j].id_to.empty() && parts[j].id_to <= parts[j].id_from))
      return false;  // a gap, an overlap or an empty window: not a partition of the slice's rows
  for (std::size_t j = 1; j < parts.size(); ++j) {
    stores::stream_slice s;
    s.id_from = parts[j].id_from;
    s.id_to = parts[j].id_to;
    const auto& from = parent.slices[index];  // (re-read: push_back may have moved it)
    s.cursor = from.cursor;
    s.cursor_inclusive = from.cursor_inclusive;
    s.preflight_done = from.preflight_done;
    s.done = from.done;  // a window that reached its end once catches up (caught_up_rows), as its slice did
    parent.slices.push_back(std::move(s));
  }
  parent.slices[index].id_to = parts.front().id_to;
  parent.done = std::all_of(parent.slices.begin(), parent.slices.end(), [](const auto& s) { return s.done; });
  return true;
}

namespace {

asio::awaitable<stream_result> run_total_cancellable(stream_spec spec, stream_options opts, event_source& source,
                                                     event_sink& sink, checkpoint_store& store, const engine::clock& clk,
                                                     engine::stream_progress* progress) {
  // (co_spawn's default filter is terminal only: a stop is a total cancellation, as a graceful shutdown)
  co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
  co_return co_await run_stream(std::move(spec), std::move(opts), source, sink, store, clk, progress);
}

}  // namespace

asio::awaitable<stream_result> run_slice(stream_spec spec, stream_options opts, event_source& source, event_sink& sink,
                                         checkpoint_store& store, const engine::clock& clk,
                                         engine::stream_progress* progress,
                                         std::shared_ptr<asio::cancellation_signal> stop) {
  auto ex = co_await asio::this_coro::executor;
  auto cs = co_await asio::this_coro::cancellation_state;
  if (cs.cancelled() != asio::cancellation_type::none)
    throw boost::system::system_error(asio::error::operation_aborted, "not started: shutdown");
  // The runtime's shutdown signals reach the slice through its own signal (both on this strand).
  cs.slot().assign([stop](asio::cancellation_type t) { stop->emit(t); });
  stream_result r;
  std::exception_ptr failed;
  try {
    // (named first: GCC 12 and temporaries in a co_await expression)
    auto task = run_total_cancellable(std::move(spec), std::move(opts), source, sink, store, clk, progress);
    auto token = asio::bind_cancellation_slot(stop->slot(), asio::use_awaitable);
    r = co_await asio::co_spawn(ex, std::move(task), std::move(token));
  } catch (...) {
    failed = std::current_exception();
  }
  cs.slot().clear();
  if (failed) std::rethrow_exception(failed);
  co_return r;
}

slice_splitter::slice_splitter(asio::any_io_executor ex, const stream_spec& spec, const stream_options& opts,
                               checkpoint_store& store, slice_config cfg, std::size_t slices)
    : executor_(std::move(ex)),
      stream_id_(spec.stream_id), retry_(opts.retry), store_(store), cfg_(cfg), results_(slices), slots_(slices) {
  // A split is optional: a probe that keeps failing skips it soon (the driver waits for its probes, and
  // ignores a shutdown meanwhile).
  retry_.max_attempts = std::min(retry_.max_attempts, 3);
  base_.kind = spec.kind;
  base_.object_ids = spec.source_ids;
  base_.created_after = opts.created_after;
  base_.created_before = opts.created_before;
}

stores::stream_slice slice_splitter::window(std::size_t i) const {
  auto rec = store_.state().load_stream(stream_id_);
  if (!rec || i >= rec->slices.size()) throw std::logic_error("slice " + std::to_string(i) + " of " + stream_id_ + " not in its record");
  return rec->slices[i];
}

std::shared_ptr<asio::cancellation_signal> slice_splitter::started(std::size_t i, asio::any_io_executor strand) {
  auto& s = slots_.at(i);
  s.stop = std::make_shared<asio::cancellation_signal>();
  s.strand = std::move(strand);
  s.running = true;
  s.ended = false;
  return s.stop;
}

void slice_splitter::ended(std::size_t i) {
  slots_.at(i).running = false;
  slots_.at(i).ended = true;
  ended_since_look_ = true;
}

void slice_splitter::consider(event_source& source, const engine::clock& clk, std::size_t k, std::size_t running,
                              std::size_t next, bool may_start, std::function<void()> done) {
  if (looking_ || pending_ || !may_start || next < count() || running == 0 || running >= k ||
      count() >= max_layout_slices)
    return;
  const auto now = std::chrono::steady_clock::now();
  if (!ended_since_look_ && now - last_look_ < std::chrono::seconds(10)) return;
  ended_since_look_ = false;
  last_look_ = now;
  // The probes take round trips: they run beside the driver, which keeps starting slices and pacing K.
  looking_ = true;
  asio::co_spawn(executor_, look(source, clk, k - running), [this, done = std::move(done)](std::exception_ptr e) {
    looking_ = false;
    if (e && !engine::is_cancellation(e))
      engine::logger("pipeline")->info("slice split stream={}: not now ({})", stream_id_, engine::what_of(e));
    done();
  });
}

asio::awaitable<void> slice_splitter::look(event_source& source, const engine::clock& clk, std::size_t idle) {
  // The rows each running slice has left after its committed cursor (one probe each, all at once).
  std::vector<std::size_t> live;
  std::vector<page_query> qs;
  for (std::size_t i = 0; i < count(); ++i) {
    if (!slots_[i].running) continue;
    const auto st = store_.load(stores::slice_stream_id(stream_id_, i));
    const auto w = window(i);
    page_query q = base_;
    q.id_from = w.id_from;
    q.id_to = w.id_to;
    if (st && !st->cursor.empty()) {
      q.after_key = st->cursor;
      q.inclusive = st->cursor_inclusive;
    }
    live.push_back(i);
    qs.push_back(std::move(q));
  }
  auto left = co_await count_left(source, qs, retry_, clk);
  std::size_t best = 0;
  for (std::size_t j = 1; j < left.size(); ++j)
    if (left[j] > left[best]) best = j;
  if (left.empty()) co_return;
  const auto parts = split_parts(left[best], idle, count(), cfg_);
  if (parts < 2) co_return;
  auto cut = co_await plan_split(source, qs[best], parts, cfg_.min_slice_rows, retry_, clk);
  const auto i = live[best];
  if (cut.size() < 2 || !slots_[i].running || pending_) co_return;  // it ended meanwhile
  pending_ = pending_split{i, std::move(cut), left[best]};
  // Stop the slice at a commit boundary (on its strand: the signal is not thread-safe).
  engine::logger("pipeline")->debug("slice split stream={} slice={}: stopping it at a commit boundary", stream_id_, i);
  asio::post(slots_[i].strand, [stop = slots_[i].stop] { stop->emit(asio::cancellation_type::total); });
}

std::vector<std::size_t> slice_splitter::take_restarts(bool may_start) {
  if (!pending_ || !slots_[pending_->slice].ended) return {};
  const auto p = std::move(*pending_);
  pending_.reset();
  const auto& r = results_[p.slice];
  // Done: it reached its end before the stop. Failed (its own error, kept in its state): it stays so.
  // Stopped (no error, or the stop's own abort): split and started again.
  const bool failed = !r.error.empty() && r.state.last_error == r.error;
  if (!may_start || r.done || failed) return {};
  commit_split(p);
  results_[p.slice] = {};
  return {p.slice};
}

void slice_splitter::commit_split(const pending_split& p) {
  auto log = engine::logger("pipeline");
  const auto slice_id = stores::slice_stream_id(stream_id_, p.slice);
  // Nothing of the slice may be in flight: its journal holds no batch past its committed ones (a
  // graceful stop commits everything it read). Otherwise it goes on unsplit.
  const auto st = store_.load(slice_id);
  for (const auto& b : store_.inflight(slice_id))
    if (st && b.seq >= st->next_seq) {
      log->info("slice split stream={} slice={}: not split (batch {} still in its journal)", stream_id_, p.slice, b.seq);
      return;
    }
  const bool saved = store_.change_layout(stream_id_, [&](stores::stream_state& rec) {
    if (rec.slices.size() != count()) return false;
    return apply_split(rec, p.slice, p.parts);
  });
  if (!saved) {
    log->warn("slice split stream={} slice={}: the layout changed meanwhile, not split", stream_id_, p.slice);
    return;
  }
  std::string at;
  for (std::size_t j = 1; j < p.parts.size(); ++j) at += (j > 1 ? "," : "") + p.parts[j].id_from;
  for (std::size_t j = 1; j < p.parts.size(); ++j) {
    results_.emplace_back();
    slots_.emplace_back();
  }
  ++splits_;
  log->info("slice split stream={} slice={} at={} rows_left={} slices={}", stream_id_, p.slice, at, p.rows_left, count());
}

}  // namespace ferry::pipelines::streams
