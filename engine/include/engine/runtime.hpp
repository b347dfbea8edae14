#pragma once
// The process's io_context, run on N threads, with tracked tasks and two-phase shutdown.
//
// Shutdown (SIGINT/SIGTERM when handle_signals, or request_shutdown()):
//   1. graceful: every tracked task receives cancellation_type::total on its cancellation slot, so a
//      loop that checks `(co_await this_coro::cancellation_state).cancelled()` finishes its in-flight
//      batch and persists its cursor; ops that support total cancellation (timers, channel waits) abort.
//   2. terminal, after `shutdown_grace` or a second signal/request: cancellation_type::terminal, then
//      after `terminal_grace` the io_context is stopped whatever is still running.
// run() returns when every tracked task has finished (or the io_context was stopped).
//
// Tasks: spawn() co_spawns a coroutine on a strand with a cancellation slot the runtime drives. Its
// cancellation filter is widened to accept total cancellation (the Asio default is terminal only);
// a task may narrow it again. A task spawned after shutdown began is not started: on_done receives
// operation_aborted. Exceptions go to on_done, or are logged at error when there is none.
//
// Threading: all members are thread-safe. Callbacks given to on_shutdown run on an internal strand.
// Lifetime: construct, spawn, run() (blocks the calling thread plus threads-1 workers), destroy only
// after run() returned; tasks still pending then are destroyed without running.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <string>

namespace ferry::engine {

enum class shutdown_phase { running = 0, graceful = 1, terminal = 2 };

std::string_view to_string(shutdown_phase p);

/// True when `e` is the cancellation a shutdown delivers to a task: operation_aborted, or a cancelled
/// channel (a task stopped, not failed).
bool is_cancellation(const std::exception_ptr& e);

/// The exception's message ("unknown error" for one not derived from std::exception).
std::string what_of(const std::exception_ptr& e);

struct runtime_config {
  std::size_t threads = 1;
  std::chrono::milliseconds shutdown_grace{30'000};  // graceful -> terminal
  std::chrono::milliseconds terminal_grace{2'000};   // terminal -> io_context stop
  bool handle_signals = true;                        // SIGINT/SIGTERM drive the phases
};

class runtime {
 public:
  using strand_type = boost::asio::strand<boost::asio::io_context::executor_type>;
  using shutdown_callback = std::function<void(shutdown_phase, const std::string& reason)>;
  using done_callback = std::function<void(std::exception_ptr)>;

  explicit runtime(runtime_config cfg = {});
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  boost::asio::io_context& context();
  boost::asio::any_io_executor executor();
  /// A new strand on the io_context: one per stream or DAG node.
  strand_type strand();

  /// Runs `task` on `ex` (should be a strand) under the runtime's shutdown signals.
  void spawn(boost::asio::any_io_executor ex, boost::asio::awaitable<void> task, done_callback on_done = {});
  /// Same, on a new strand.
  void spawn(boost::asio::awaitable<void> task, done_callback on_done = {});

  /// Runs the io_context on cfg.threads threads until every task has finished or it is stopped.
  void run();
  /// As run(), but gives up after `limit` (tests): returns true when it finished, false on timeout
  /// (the io_context is then stopped).
  bool run_for(std::chrono::steady_clock::duration limit);

  /// First call: graceful phase; second: terminal; later calls do nothing. `reason` is logged and
  /// passed to on_shutdown callbacks (e.g. "signal SIGINT", "fatal: disk full").
  void request_shutdown(const std::string& reason);
  shutdown_phase phase() const;
  /// Called on every phase change (graceful, terminal).
  void on_shutdown(shutdown_callback cb);
  std::size_t active_tasks() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace ferry::engine
