#include "engine/semaphore.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace ferry::engine {
namespace asio = boost::asio;
using boost::system::error_code;
using handler_type = asio::any_completion_handler<void(error_code, semaphore::permit)>;

namespace detail {

struct semaphore_state : std::enable_shared_from_this<semaphore_state> {
  struct waiter {
    std::uint64_t id;
    handler_type handler;
    // Keeps the waiter's io_context from running out of work while it is queued, as Asio's own
    // async operations do.
    asio::any_completion_executor work;
  };

  std::mutex mu;
  std::size_t capacity = 0;
  std::size_t in_use = 0;
  std::uint64_t next_id = 0;
  std::list<waiter> waiters;

  semaphore::permit make_permit() { return semaphore::permit(shared_from_this()); }

  // Completes `h` on its own executor. The permit travels inside the posted function, so a handler
  // that is destroyed without being run still releases it.
  static void deliver(handler_type h, error_code ec, semaphore::permit p) {
    auto ex = asio::prefer(asio::get_associated_executor(h), asio::execution::blocking.never,
                           asio::execution::relationship.fork);
    ex.execute([h = std::move(h), ec, p = std::move(p)]() mutable { std::move(h)(ec, std::move(p)); });
  }

  // Moves out the waiters that may now run (requires mu); their slots are counted as in use.
  std::vector<handler_type> admit_locked() {
    std::vector<handler_type> ready;
    while (!waiters.empty() && in_use < capacity) {
      ready.push_back(std::move(waiters.front().handler));
      waiters.pop_front();
      ++in_use;
    }
    return ready;
  }

  void deliver_all(std::vector<handler_type> ready) {
    for (auto& h : ready) deliver(std::move(h), {}, make_permit());
  }

  void release_one() {
    std::vector<handler_type> ready;
    {
      std::lock_guard lock(mu);
      if (in_use > 0) --in_use;  // assert-worthy otherwise, but a release must never underflow
      ready = admit_locked();
    }
    deliver_all(std::move(ready));
  }

  void cancel_waiter(std::uint64_t id) {
    // Asio 1.81's any_completion_handler move-assignment recurses for ever (it copies from an
    // lvalue into its templated constructor), so handlers are only ever move-constructed.
    std::optional<handler_type> h;
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
    // Not found: it was granted (or cancelled) already, and the grant carries a permit.
    if (h) deliver(std::move(*h), asio::error::operation_aborted, semaphore::permit());
  }
};

}  // namespace detail

semaphore::permit& semaphore::permit::operator=(permit&& o) noexcept {
  if (this != &o) {
    release();
    state_ = std::move(o.state_);
  }
  return *this;
}

void semaphore::permit::release() {
  if (auto s = std::move(state_)) s->release_one();
}

semaphore::semaphore(std::size_t capacity) : state_(std::make_shared<detail::semaphore_state>()) {
  state_->capacity = capacity;
}

semaphore::~semaphore() = default;

namespace {

struct acquire_initiation {
  std::shared_ptr<detail::semaphore_state> state;

  template <typename Handler>
  void operator()(Handler&& handler) const {
    // Erase first: any_completion_handler installs its own cancellation state on the handler's slot
    // (accepting every cancellation type), and our handler goes on the slot it exposes.
    handler_type h(std::forward<Handler>(handler));
    {
      std::lock_guard lock(state->mu);
      if (!state->waiters.empty() || state->in_use >= state->capacity) {
        const std::uint64_t id = ++state->next_id;
        auto slot = h.get_cancellation_slot();
        if (slot.is_connected()) {
          // The slot handler holds the state weakly: it may outlive the semaphore and the waiter.
          std::weak_ptr<detail::semaphore_state> weak = state;
          slot.assign([weak, id](asio::cancellation_type) {
            if (auto s = weak.lock()) s->cancel_waiter(id);
          });
        }
        auto work = asio::prefer(asio::get_associated_executor(h), asio::execution::outstanding_work.tracked);
        state->waiters.push_back({id, std::move(h), std::move(work)});
        return;
      }
      ++state->in_use;
    }
    detail::semaphore_state::deliver(std::move(h), {}, state->make_permit());
  }
};

}  // namespace

asio::awaitable<semaphore::permit> semaphore::acquire() {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(error_code, permit)>(acquire_initiation{state_},
                                                                                        asio::use_awaitable);
}

std::optional<semaphore::permit> semaphore::try_acquire() {
  std::lock_guard lock(state_->mu);
  if (!state_->waiters.empty() || state_->in_use >= state_->capacity) return std::nullopt;
  ++state_->in_use;
  return state_->make_permit();
}

void semaphore::set_capacity(std::size_t n) {
  std::vector<handler_type> ready;
  {
    std::lock_guard lock(state_->mu);
    state_->capacity = n;
    ready = state_->admit_locked();
  }
  state_->deliver_all(std::move(ready));
}

std::size_t semaphore::capacity() const {
  std::lock_guard lock(state_->mu);
  return state_->capacity;
}

std::size_t semaphore::in_use() const {
  std::lock_guard lock(state_->mu);
  return state_->in_use;
}

std::size_t semaphore::waiting() const {
  std::lock_guard lock(state_->mu);
  return state_->waiters.size();
}

}  // namespace ferry::engine
