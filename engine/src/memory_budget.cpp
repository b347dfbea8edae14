#include "engine/memory_budget.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <atomic>
#include <list>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace ferry::engine {
namespace asio = boost::asio;
using boost::system::error_code;
using budget_handler = asio::any_completion_handler<void(error_code, memory_budget::grant)>;

namespace detail {

// The same waiter machinery as semaphore.cpp, with a byte count per waiter.
struct memory_budget_state : std::enable_shared_from_this<memory_budget_state> {
  struct waiter {
    std::uint64_t id;
    std::uint64_t bytes;
    budget_handler handler;
    asio::any_completion_executor work;  // keeps the waiter's io_context alive while it is queued
  };

  std::mutex mu;
  std::uint64_t capacity = 0;
  std::uint64_t held = 0;
  std::uint64_t high_water = 0;
  std::uint64_t next_id = 0;
  std::uint64_t waits = 0;  // acquires that queued
  std::list<waiter> waiters;

  memory_budget::grant make_grant(std::uint64_t n) { return memory_budget::grant(shared_from_this(), n); }

  bool fits_locked(std::uint64_t n) const { return held == 0 || held + n <= capacity; }

  void add_locked(std::uint64_t n) {
    held += n;
    high_water = std::max(high_water, held);
  }

  // The grant travels inside the posted function: a handler destroyed unrun still gives the bytes back.
  static void deliver(budget_handler h, error_code ec, memory_budget::grant g) {
    auto ex = asio::prefer(asio::get_associated_executor(h), asio::execution::blocking.never,
                           asio::execution::relationship.fork);
    ex.execute([h = std::move(h), ec, g = std::move(g)]() mutable { std::move(h)(ec, std::move(g)); });
  }

  // Moves out the waiters that fit now, in order (requires mu); their bytes are counted as held.
  std::vector<std::pair<budget_handler, std::uint64_t>> admit_locked() {
    std::vector<std::pair<budget_handler, std::uint64_t>> ready;
    while (!waiters.empty() && fits_locked(waiters.front().bytes)) {
      add_locked(waiters.front().bytes);
      ready.emplace_back(std::move(waiters.front().handler), waiters.front().bytes);
      waiters.pop_front();
    }
    return ready;
  }

  void deliver_all(std::vector<std::pair<budget_handler, std::uint64_t>> ready) {
    for (auto& [h, n] : ready) deliver(std::move(h), {}, make_grant(n));
  }

  void give_back(std::uint64_t n) {
    std::vector<std::pair<budget_handler, std::uint64_t>> ready;
    {
      std::lock_guard lock(mu);
      held -= std::min(held, n);
      ready = admit_locked();
    }
    deliver_all(std::move(ready));
  }

  void take(std::uint64_t n) {
    std::lock_guard lock(mu);
    add_locked(n);
  }

  void cancel_waiter(std::uint64_t id) {
    std::optional<budget_handler> h;  // move-constructed only (see semaphore.cpp: Asio 1.81)
    {
      std::lock_guard lock(mu);
      for (auto it = waiters.begin(); it != waiters.end(); ++it) {
        if (it->id == id) {
          h.emplace(std::move(it->handler));
          waiters.erase(it);
          break;
        }
      }
    }
    if (h) deliver(std::move(*h), asio::error::operation_aborted, memory_budget::grant());
    // A waiter that leaves may have been what kept the ones behind it waiting.
    give_back(0);
  }
};

}  // namespace detail

memory_budget::grant& memory_budget::grant::operator=(grant&& o) noexcept {
  if (this != &o) {
    release();
    state_ = std::move(o.state_);
    bytes_ = o.bytes_;
    o.bytes_ = 0;
  }
  return *this;
}

void memory_budget::grant::release() {
  if (auto s = std::move(state_)) s->give_back(std::exchange(bytes_, 0));
  bytes_ = 0;
}

memory_budget::grant memory_budget::grant::split(std::uint64_t n) {
  n = std::min(n, bytes_);
  bytes_ -= n;
  return grant(state_, n);
}

void memory_budget::grant::absorb(grant&& other) {
  if (!state_) state_ = other.state_;
  if (other.state_ != state_) return;  // another budget's bytes stay there (and go back with `other`)
  bytes_ += std::exchange(other.bytes_, 0);
  other.state_.reset();
}

void memory_budget::grant::resize(std::uint64_t n) {
  if (!state_) return;
  if (n > bytes_) state_->take(n - bytes_);
  else if (n < bytes_) state_->give_back(bytes_ - n);
  bytes_ = n;
}

memory_budget::memory_budget(std::uint64_t capacity) : state_(std::make_shared<detail::memory_budget_state>()) {
  state_->capacity = capacity;
}

memory_budget::~memory_budget() = default;

namespace {

struct acquire_initiation {
  std::shared_ptr<detail::memory_budget_state> state;
  std::uint64_t bytes;

  template <typename Handler>
  void operator()(Handler&& handler) const {
    budget_handler h(std::forward<Handler>(handler));
    {
      std::lock_guard lock(state->mu);
      if (!state->waiters.empty() || !state->fits_locked(bytes)) {
        const std::uint64_t id = ++state->next_id;
        ++state->waits;
        auto slot = h.get_cancellation_slot();
        if (slot.is_connected()) {
          std::weak_ptr<detail::memory_budget_state> weak = state;
          slot.assign([weak, id](asio::cancellation_type) {
            if (auto s = weak.lock()) s->cancel_waiter(id);
          });
        }
        auto work = asio::prefer(asio::get_associated_executor(h), asio::execution::outstanding_work.tracked);
        state->waiters.push_back({id, bytes, std::move(h), std::move(work)});
        return;
      }
      state->add_locked(bytes);
    }
    detail::memory_budget_state::deliver(std::move(h), {}, state->make_grant(bytes));
  }
};

}  // namespace

asio::awaitable<memory_budget::grant> memory_budget::acquire(std::uint64_t n) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(error_code, grant)>(acquire_initiation{state_, n},
                                                                                       asio::use_awaitable);
}

memory_budget::grant memory_budget::charge(std::uint64_t n) {
  state_->take(n);
  return grant(state_, n);
}

std::uint64_t memory_budget::capacity() const {
  std::lock_guard lock(state_->mu);
  return state_->capacity;
}

std::uint64_t memory_budget::held() const {
  std::lock_guard lock(state_->mu);
  return state_->held;
}

std::uint64_t memory_budget::high_water() const {
  std::lock_guard lock(state_->mu);
  return state_->high_water;
}

std::size_t memory_budget::waiting() const {
  std::lock_guard lock(state_->mu);
  return state_->waiters.size();
}

std::uint64_t memory_budget::waits() const {
  std::lock_guard lock(state_->mu);
  return state_->waits;
}

void return_free_memory(std::chrono::milliseconds min_interval) {
#if defined(__GLIBC__)
  static std::atomic<std::int64_t> last{0};
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                       .count();
  auto prev = last.load();
  if (now - prev < min_interval.count() || !last.compare_exchange_strong(prev, now)) return;
  malloc_trim(0);
#else
  (void)min_interval;
#endif
}

}  // namespace ferry::engine
