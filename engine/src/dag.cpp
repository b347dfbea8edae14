#include "engine/dag.hpp"

#include "engine/log.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>

namespace ferry::engine {
namespace asio = boost::asio;
using boost::system::error_code;

std::string_view to_string(node_state s) {
  switch (s) {
    case node_state::pending: return "pending";
    case node_state::running: return "running";
    case node_state::succeeded: return "succeeded";
    case node_state::failed: return "failed";
    case node_state::skipped: return "skipped";
    case node_state::cancelled: return "cancelled";
  }
  return "unknown";
}

struct dag::impl : std::enable_shared_from_this<dag::impl> {
  struct node {
    node_result result;
    std::vector<std::string> deps;
    node_fn fn;
    std::size_t unmet = 0;                // prerequisites not yet succeeded
    std::vector<std::size_t> dependents;  // indices
    std::shared_ptr<asio::cancellation_signal> signal;
    std::optional<asio::any_io_executor> ex;
  };
  struct completion {
    std::size_t index;
    std::exception_ptr error;
  };
  using doorbell_type = asio::experimental::concurrent_channel<void(error_code)>;

  explicit impl(std::size_t mp) : max_parallel(mp) {}

  std::size_t max_parallel;
  mutable std::mutex mu;
  std::vector<node> nodes;
  std::map<std::string, std::size_t, std::less<>> by_name;
  std::deque<std::size_t> ready;  // runnable, in insertion order
  std::deque<completion> done;    // reported by finished nodes
  std::size_t running = 0;
  int starts = 0;
  int ends = 0;
  bool started = false;  // run() was called and validated
  bool cancelled = false;
  asio::cancellation_type cancel_type = asio::cancellation_type::none;
  std::unique_ptr<doorbell_type> doorbell;  // wakes the scheduler; lossy by design (capacity 1)

  void ring() {
    if (doorbell) doorbell->try_send(error_code{});
  }

  // requires mu: marks every transitive dependent of `i` skipped/cancelled with `why`.
  void resolve_dependents(std::size_t i, node_state as, const std::string& why) {
    std::vector<std::size_t> stack = nodes[i].dependents;
    while (!stack.empty()) {
      const std::size_t d = stack.back();
      stack.pop_back();
      auto& n = nodes[d];
      if (n.result.state != node_state::pending) continue;
      n.result.state = as;
      n.result.message = why;
      ready.erase(std::remove(ready.begin(), ready.end(), d), ready.end());
      stack.insert(stack.end(), n.dependents.begin(), n.dependents.end());
    }
  }

  // requires mu
  void link(std::size_t i) {
    auto& n = nodes[i];
    n.unmet = 0;
    for (const auto& dep : n.deps) {
      const std::size_t d = by_name.find(dep)->second;
      nodes[d].dependents.push_back(i);
      if (nodes[d].result.state != node_state::succeeded) ++n.unmet;
    }
  }

  // requires mu: after linking a node added while running, settle it against finished prerequisites.
  void settle_new(std::size_t i) {
    auto& n = nodes[i];
    if (cancelled) {
      n.result.state = node_state::cancelled;
      n.result.message = "dag cancelled";
      return;
    }
    for (const auto& dep : n.deps) {
      const auto& p = nodes[by_name.find(dep)->second].result;
      if (p.state == node_state::failed || p.state == node_state::skipped || p.state == node_state::cancelled) {
        n.result.state = p.state == node_state::cancelled ? node_state::cancelled : node_state::skipped;
        n.result.message = "dependency " + p.name + (p.state == node_state::failed ? " failed: " + p.message
                                                                                   : " was " + std::string(to_string(p.state)));
        return;
      }
    }
    if (n.unmet == 0) ready.push_back(i);
  }

  // requires mu: the names of a cycle through the graph, if any (for the error message).
  std::optional<std::string> find_cycle() const {
    enum class color { white, grey, black };
    std::vector<color> c(nodes.size(), color::white);
    std::vector<std::size_t> path;
    std::function<std::optional<std::string>(std::size_t)> visit = [&](std::size_t i) -> std::optional<std::string> {
      c[i] = color::grey;
      path.push_back(i);
      for (const auto& dep : nodes[i].deps) {
        const std::size_t d = by_name.find(dep)->second;
        if (c[d] == color::grey) {
          std::string msg = "'" + nodes[d].result.name + "'";
          auto it = std::find(path.begin(), path.end(), d);
          for (++it; it != path.end(); ++it) msg += " <- '" + nodes[*it].result.name + "'";
          return msg + " <- '" + nodes[d].result.name + "'";
        }
        if (c[d] == color::white)
          if (auto r = visit(d)) return r;
      }
      path.pop_back();
      c[i] = color::black;
      return std::nullopt;
    };
    for (std::size_t i = 0; i < nodes.size(); ++i)
      if (c[i] == color::white)
        if (auto r = visit(i)) return r;
    return std::nullopt;
  }

  static asio::awaitable<void> run_node(node_fn fn) {
    // Accept total cancellation too, so a graceful shutdown reaches the node as such.
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    co_await fn();
  }

  struct launch {
    std::size_t index;
    node_fn fn;
    asio::any_io_executor ex;
    std::shared_ptr<asio::cancellation_signal> signal;
  };

  // requires mu: marks ready nodes running within the parallelism bound; the caller spawns them
  // after unlocking (co_spawn may start a node inline, and a node may call add_node).
  std::vector<launch> take_ready(const asio::any_io_executor& ex) {
    std::vector<launch> out;
    while (!cancelled && !ready.empty() && (max_parallel == 0 || running < max_parallel)) {
      const std::size_t i = ready.front();
      ready.pop_front();
      auto& n = nodes[i];
      n.result.state = node_state::running;
      n.result.start_order = starts++;
      n.signal = std::make_shared<asio::cancellation_signal>();
      n.ex = asio::make_strand(ex);
      ++running;
      out.push_back({i, n.fn, *n.ex, n.signal});
    }
    return out;
  }

  void spawn(launch l) {
    asio::co_spawn(l.ex, run_node(std::move(l.fn)),
                   asio::bind_cancellation_slot(l.signal->slot(), [self = shared_from_this(), i = l.index,
                                                                   sig = l.signal](std::exception_ptr e) {
                     std::lock_guard lock(self->mu);
                     self->done.push_back({i, e});
                     self->ring();
                   }));
  }

  // requires mu
  void finish(const completion& c) {
    auto& n = nodes[c.index];
    --running;
    n.result.end_order = ends++;
    n.signal.reset();
    if (!c.error) {
      n.result.state = node_state::succeeded;
      for (std::size_t d : n.dependents) {
        auto& dn = nodes[d];
        if (dn.result.state == node_state::pending && dn.unmet > 0 && --dn.unmet == 0) ready.push_back(d);
      }
      return;
    }
    std::string msg;
    bool aborted = false;
    try {
      std::rethrow_exception(c.error);
    } catch (const boost::system::system_error& e) {
      aborted = e.code() == asio::error::operation_aborted;
      msg = e.what();
    } catch (const std::exception& e) {
      msg = e.what();
    } catch (...) {
      msg = "unknown exception";
    }
    if (aborted && cancelled) {
      n.result.state = node_state::cancelled;
      n.result.message = "cancelled while running";
      resolve_dependents(c.index, node_state::cancelled, "dependency " + n.result.name + " was cancelled");
      return;
    }
    n.result.state = node_state::failed;
    n.result.message = msg;
    logger("engine")->warn("dag node failed node={} error={}", n.result.name, msg);
    resolve_dependents(c.index, node_state::skipped, "dependency " + n.result.name + " failed: " + msg);
  }

  // requires mu
  void propagate_cancel(asio::cancellation_type type) {
    cancelled = true;
    for (auto& n : nodes) {
      if (n.result.state == node_state::running && n.signal) {
        asio::post(*n.ex, [sig = n.signal, type] { sig->emit(type); });
      }
    }
  }
};

dag::dag(std::size_t max_parallel) : impl_(std::make_shared<impl>(max_parallel)) {}
dag::~dag() = default;

void dag::add_node(std::string name, std::vector<std::string> deps, node_fn fn) {
  if (!fn) throw dag_error("dag: node '" + name + "' has no function");
  std::lock_guard lock(impl_->mu);
  if (impl_->by_name.count(name)) throw dag_error("dag: duplicate node '" + name + "'");
  if (impl_->started) {
    for (const auto& d : deps)
      if (!impl_->by_name.count(d))
        throw dag_error("dag: node '" + name + "' depends on unknown node '" + d + "'");
  }
  const std::size_t i = impl_->nodes.size();
  impl::node n;
  n.result.name = name;
  n.deps = std::move(deps);
  n.fn = std::move(fn);
  impl_->nodes.push_back(std::move(n));
  impl_->by_name.emplace(std::move(name), i);
  if (impl_->started) {
    impl_->link(i);
    impl_->settle_new(i);
    impl_->ring();
  }
}

void dag::cancel() {
  std::lock_guard lock(impl_->mu);
  if (impl_->cancelled) return;
  impl_->cancelled = true;
  impl_->cancel_type = asio::cancellation_type::terminal;
  impl_->ring();
}

asio::awaitable<void> dag::run() {
  auto self = impl_;
  auto ex = co_await asio::this_coro::executor;
  {
    std::lock_guard lock(self->mu);
    if (self->started) throw dag_error("dag: run() may be awaited only once");
    for (const auto& n : self->nodes)
      for (const auto& d : n.deps)
        if (!self->by_name.count(d))
          throw dag_error("dag: node '" + n.result.name + "' depends on unknown node '" + d + "'");
    if (auto cycle = self->find_cycle()) throw dag_error("dag: dependency cycle " + *cycle);
    for (std::size_t i = 0; i < self->nodes.size(); ++i) self->link(i);
    for (std::size_t i = 0; i < self->nodes.size(); ++i)
      if (self->nodes[i].unmet == 0) self->ready.push_back(i);
    self->doorbell = std::make_unique<impl::doorbell_type>(ex, 1);
    self->started = true;
  }
  // Observe every cancellation type the parent may emit, and keep awaiting after one (we must wait
  // for running nodes before returning).
  co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
  co_await asio::this_coro::throw_if_cancelled(false);

  asio::cancellation_type forwarded = asio::cancellation_type::none;
  for (;;) {
    std::vector<impl::launch> launches;
    {
      std::lock_guard lock(self->mu);
      while (!self->done.empty()) {
        self->finish(self->done.front());
        self->done.pop_front();
      }
      if (self->cancelled && (self->cancel_type & ~forwarded) != asio::cancellation_type::none) {
        self->propagate_cancel(self->cancel_type);
        forwarded = forwarded | self->cancel_type;
      }
      launches = self->take_ready(ex);
      if (self->running == 0 && (self->cancelled || self->ready.empty())) {
        for (auto& n : self->nodes) {
          if (n.result.state == node_state::pending) {
            n.result.state = node_state::cancelled;
            n.result.message = self->cancelled ? "dag cancelled" : "prerequisites never completed";
          }
        }
        break;
      }
    }
    for (auto& l : launches) self->spawn(std::move(l));
    auto [ec] = co_await self->doorbell->async_receive(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      // The awaiting coroutine was cancelled: forward the same type to the running nodes.
      auto cs = co_await asio::this_coro::cancellation_state;
      const auto type = cs.cancelled();
      co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
      std::lock_guard lock(self->mu);
      self->cancelled = true;
      self->cancel_type = self->cancel_type | (type == asio::cancellation_type::none ? asio::cancellation_type::terminal : type);
    }
  }
}

std::vector<node_result> dag::results() const {
  std::lock_guard lock(impl_->mu);
  std::vector<node_result> out;
  out.reserve(impl_->nodes.size());
  for (const auto& n : impl_->nodes) out.push_back(n.result);
  return out;
}

std::optional<node_result> dag::result(const std::string& name) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->by_name.find(name);
  if (it == impl_->by_name.end()) return std::nullopt;
  return impl_->nodes[it->second].result;
}

bool dag::all_succeeded() const {
  std::lock_guard lock(impl_->mu);
  return std::all_of(impl_->nodes.begin(), impl_->nodes.end(),
                     [](const auto& n) { return n.result.state == node_state::succeeded; });
}

}  // namespace ferry::engine
