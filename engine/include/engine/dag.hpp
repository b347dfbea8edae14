#pragma once
// DAG scheduler for an organisation run: each node starts as soon as all its prerequisites succeeded,
// with at most `max_parallel` nodes running (0 = unbounded).
//
// - A node whose coroutine throws is `failed` (message kept); its transitive dependents become
//   `skipped` with "dependency <name> failed: <msg>" (or "... was skipped/cancelled").
// - Cancellation: cancel(), or cancelling the coroutine awaiting run(), stops scheduling; running
//   nodes receive the same cancellation type (total stays total, so they can finish a batch) and
//   see operation_aborted in their waits; nodes that never started become `cancelled`. A running
//   node that ends with operation_aborted after cancellation is `cancelled`, not failed.
// - run() rejects unknown dependencies and cycles with dag_error naming the node, before starting any.
//   Otherwise it returns normally, also after cancellation and failures: read results().
// - add_node() may be called while run() is in progress (from any thread, e.g. by a node that just
//   created an object whose event stream is a new node); such a node may only depend on existing nodes.
//
// Threading: nodes run on their own strand made from run()'s executor, so await run() from a
// coroutine on the io_context executor (not a strand) for real parallelism. All members are thread-safe.
// run() may be awaited once. Lifetime: the dag must outlive run(); run() returns only after every
// started node has finished.

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ferry::engine {

class dag_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class node_state { pending, running, succeeded, failed, skipped, cancelled };
std::string_view to_string(node_state s);

struct node_result {
  std::string name;
  node_state state = node_state::pending;
  std::string message;   // failure message, or why skipped/cancelled
  int start_order = -1;  // 0-based order of starts across the run; -1 if never started
  int end_order = -1;    // 0-based order of completions; -1 if never finished
};

class dag {
 public:
  using node_fn = std::function<boost::asio::awaitable<void>()>;

  explicit dag(std::size_t max_parallel = 0);
  ~dag();
  dag(const dag&) = delete;
  dag& operator=(const dag&) = delete;

  /// Throws dag_error for a duplicate name, an empty function, or (while running) an unknown dependency.
  void add_node(std::string name, std::vector<std::string> deps, node_fn fn);

  /// Runs the graph to completion (see the class comment). Throws dag_error on an invalid graph.
  boost::asio::awaitable<void> run();
  /// Stops scheduling and cancels running nodes (terminal). Thread-safe; works before or during run().
  void cancel();

  /// Per node, in insertion order.
  std::vector<node_result> results() const;
  std::optional<node_result> result(const std::string& name) const;
  /// True when every node succeeded.
  bool all_succeeded() const;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace ferry::engine
