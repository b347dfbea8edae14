#include "engine/runtime.hpp"

#include "engine/log.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/channel_error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace ferry::engine {
namespace asio = boost::asio;

std::string_view to_string(shutdown_phase p) {
  switch (p) {
    case shutdown_phase::running: return "running";
    case shutdown_phase::graceful: return "graceful";
    case shutdown_phase::terminal: return "terminal";
  }
  return "unknown";
}

struct runtime::impl {
  struct task_entry {
    asio::any_io_executor ex;
    std::shared_ptr<asio::cancellation_signal> signal;
  };

  explicit impl(runtime_config c)
      : cfg(c), control(asio::make_strand(ctx)), signals(control), grace_timer(control), terminal_timer(control) {
    if (cfg.threads == 0) cfg.threads = 1;
  }

  runtime_config cfg;
  asio::io_context ctx;
  strand_type control;  // owns signals, timers and callbacks
  asio::signal_set signals;
  asio::steady_timer grace_timer;
  asio::steady_timer terminal_timer;

  mutable std::mutex mu;  // tasks, next_id, callbacks
  std::map<std::uint64_t, task_entry> tasks;
  std::uint64_t next_id = 0;
  std::vector<shutdown_callback> callbacks;
  std::atomic<shutdown_phase> phase{shutdown_phase::running};
  bool signals_armed = false;  // control strand only
  bool signals_added = false;  // control strand only

  static void emit(const task_entry& t, asio::cancellation_type type) {
    // A cancellation signal is not thread-safe: emit it on the task's own executor.
    asio::post(t.ex, [sig = t.signal, type] { sig->emit(type); });
  }

  // control strand
  void arm_signals() {
    if (!cfg.handle_signals || signals_armed) return;
    if (!signals_added) {
      boost::system::error_code ec;
      signals.add(SIGINT, ec);
      signals.add(SIGTERM, ec);
      signals_added = true;
    }
    signals_armed = true;
    signals.async_wait([self = this](boost::system::error_code ec, int signo) {
      self->signals_armed = false;
      if (ec) return;
      self->request(signo == SIGINT ? "signal SIGINT" : "signal SIGTERM");
      std::lock_guard lock(self->mu);
      if (!self->tasks.empty()) self->arm_signals();  // the second signal makes it terminal
    });
  }

  // control strand: nothing left to wait for, let the io_context run out of work.
  void quiesce() {
    if (signals_armed) {
      boost::system::error_code ec;
      signals.cancel(ec);
    }
    grace_timer.cancel();
    terminal_timer.cancel();
  }

  void request(const std::string& reason) {
    shutdown_phase cur = phase.load();
    shutdown_phase next;
    do {
      if (cur == shutdown_phase::terminal) return;
      next = cur == shutdown_phase::running ? shutdown_phase::graceful : shutdown_phase::terminal;
    } while (!phase.compare_exchange_weak(cur, next));

    std::vector<task_entry> targets;
    std::vector<shutdown_callback> cbs;
    {
      std::lock_guard lock(mu);
      for (auto& [id, t] : tasks) targets.push_back(t);
      cbs = callbacks;
    }
    const auto type = next == shutdown_phase::graceful ? asio::cancellation_type::total
                                                       : asio::cancellation_type::terminal;
    logger("engine")->info("shutdown phase={} reason={} tasks={}", to_string(next), reason, targets.size());
    for (auto& t : targets) emit(t, type);
    asio::dispatch(control, [self = this, next, reason, cbs = std::move(cbs),
                             empty = targets.empty()] {
      for (auto& cb : cbs) cb(next, reason);
      if (empty) return;  // nothing to wait for
      if (next == shutdown_phase::graceful) {
        self->grace_timer.expires_after(self->cfg.shutdown_grace);
        self->grace_timer.async_wait([self](boost::system::error_code ec) {
          if (!ec) self->request("shutdown grace period elapsed");
        });
      } else {
        self->grace_timer.cancel();
        self->terminal_timer.expires_after(self->cfg.terminal_grace);
        self->terminal_timer.async_wait([self](boost::system::error_code ec) {
          if (ec) return;
          logger("engine")->warn("shutdown terminal grace elapsed, stopping with tasks still running");
          self->ctx.stop();
        });
      }
    });
  }

  void task_finished(std::uint64_t id) {
    bool now_empty = false;
    {
      std::lock_guard lock(mu);
      now_empty = tasks.erase(id) > 0 && tasks.empty();
    }
    if (now_empty) {
      asio::dispatch(control, [self = this] {
        std::lock_guard lock(self->mu);
        if (self->tasks.empty()) self->quiesce();
      });
    }
  }

  // Widens the task's filter to accept total cancellation, then runs it. A phase change that was
  // emitted before the filter was widened would have been filtered out (total) or lost (no state
  // yet), so it is emitted again: emitting twice is harmless.
  static asio::awaitable<void> guarded(impl* self, task_entry entry, asio::awaitable<void> task) {
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    const shutdown_phase p = self->phase.load();
    if (p != shutdown_phase::running)
      emit(entry, p == shutdown_phase::graceful ? asio::cancellation_type::total : asio::cancellation_type::terminal);
    co_await std::move(task);
  }
};

runtime::runtime(runtime_config cfg) : impl_(std::make_unique<impl>(cfg)) {}

// Handlers still queued (and the coroutine frames they own) are destroyed, not run, with the
// io_context; they hold only raw pointers to impl, so nothing keeps it alive or touches it then.
runtime::~runtime() = default;

asio::io_context& runtime::context() { return impl_->ctx; }
asio::any_io_executor runtime::executor() { return impl_->ctx.get_executor(); }
runtime::strand_type runtime::strand() { return asio::make_strand(impl_->ctx); }

void runtime::spawn(asio::any_io_executor ex, asio::awaitable<void> task, done_callback on_done) {
  auto sig = std::make_shared<asio::cancellation_signal>();
  std::uint64_t id = 0;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->phase.load() != shutdown_phase::running) {
      // Shutdown began: new work is refused (a task registered earlier still gets its signal).
      auto err = std::make_exception_ptr(
          boost::system::system_error(asio::error::operation_aborted, "spawned during shutdown"));
      asio::post(ex, [err, task = std::move(task), on_done = std::move(on_done)]() mutable {
        if (on_done) on_done(err);
      });
      return;
    }
    id = ++impl_->next_id;
    impl_->tasks.emplace(id, impl::task_entry{ex, sig});
  }
  asio::dispatch(impl_->control, [self = impl_.get()] {
    if (self->phase.load() == shutdown_phase::running) self->arm_signals();
  });
  impl* self = impl_.get();
  asio::co_spawn(ex, impl::guarded(self, impl::task_entry{ex, sig}, std::move(task)),
                 asio::bind_cancellation_slot(sig->slot(), [self, id, sig, on_done = std::move(on_done)](
                                                                std::exception_ptr e) {
                   if (on_done) {
                     on_done(e);
                   } else if (e) {
                     try {
                       std::rethrow_exception(e);
                     } catch (const boost::system::system_error& se) {
                       if (se.code() == asio::error::operation_aborted)
                         logger("engine")->debug("task cancelled: {}", se.what());
                       else
                         logger("engine")->error("task failed: {}", se.what());
                     } catch (const std::exception& ex) {
                       logger("engine")->error("task failed: {}", ex.what());
                     } catch (...) {
                       logger("engine")->error("task failed with a non-standard exception");
                     }
                   }
                   self->task_finished(id);
                 }));
}

void runtime::spawn(asio::awaitable<void> task, done_callback on_done) {
  spawn(strand(), std::move(task), std::move(on_done));
}

namespace {
template <typename RunOne>
void run_threads(std::size_t n, RunOne run_one) {
  std::vector<std::thread> workers;
  workers.reserve(n - 1);
  for (std::size_t i = 1; i < n; ++i) workers.emplace_back(run_one);
  run_one();
  for (auto& w : workers) w.join();
}
}  // namespace

void runtime::run() {
  impl_->ctx.restart();
  run_threads(impl_->cfg.threads, [this] { impl_->ctx.run(); });
}

bool runtime::run_for(std::chrono::steady_clock::duration limit) {
  impl_->ctx.restart();
  const auto deadline = std::chrono::steady_clock::now() + limit;
  run_threads(impl_->cfg.threads, [this, deadline] { impl_->ctx.run_until(deadline); });
  const bool finished = impl_->ctx.stopped();
  if (!finished) impl_->ctx.stop();
  return finished;
}

void runtime::request_shutdown(const std::string& reason) { impl_->request(reason); }

shutdown_phase runtime::phase() const { return impl_->phase.load(); }

void runtime::on_shutdown(shutdown_callback cb) {
  std::lock_guard lock(impl_->mu);
  impl_->callbacks.push_back(std::move(cb));
}

std::size_t runtime::active_tasks() const {
  std::lock_guard lock(impl_->mu);
  return impl_->tasks.size();
}

bool is_cancellation(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const boost::system::system_error& se) {
    return se.code() == asio::error::operation_aborted || se.code() == asio::experimental::error::channel_cancelled;
  } catch (...) {
    return false;
  }
}

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown error";
  }
}

}  // namespace ferry::engine
