#include "pipelines/streams/launcher.hpp"

#include "engine/log.hpp"
#include "engine/runtime.hpp"

#include <algorithm>

namespace ferry::pipelines::streams {

namespace asio = boost::asio;

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
  auto r = co_await run_stream(std::move(spec), std::move(opts), source_, sink_, store_, clk_, progress);
  if (progress) progress->set_finished();  // off the status area
  log->info("stream end stream={} done={} rows={}", id, r.done, r.state.counters.rows);
  if (!r.error.empty()) log->debug("stream end stream={} error={}", id, r.error);
  std::lock_guard lk(mu_);
  results_[id] = std::move(r);
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
