#pragma once
// Async counting semaphore with a run-time capacity (AIMD-sized concurrency limits).
//
// `co_await sem.acquire()` returns a `permit` (movable RAII; releases on destruction or release()).
// Waiters are served strictly FIFO; try_acquire() never overtakes a queued waiter. set_capacity(n)
// applies at once: growing admits waiters; shrinking lets in-flight permits finish and admits no one
// until in_use() < capacity(). A capacity of 0 pauses admission.
//
// Threading: every member is thread-safe (one mutex, never held while a handler runs). A waiter's
// completion is posted to its own executor (its strand), never run inline by release(). Cancelling a
// waiting acquire (any cancellation type on the coroutine's slot) removes it from the queue and
// throws operation_aborted; a permit granted but never delivered (its handler destroyed, e.g. on
// shutdown) is released, so permits cannot leak.
// Lifetime: permits and queued waiters share the semaphore's state, so they may outlive the object.

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <memory>
#include <optional>

namespace ferry::engine {

namespace detail {
struct semaphore_state;
}

class semaphore {
 public:
  class permit {
   public:
    permit() = default;
    permit(permit&& o) noexcept : state_(std::move(o.state_)) {}
    permit& operator=(permit&& o) noexcept;
    permit(const permit&) = delete;
    permit& operator=(const permit&) = delete;
    ~permit() { release(); }
    /// Gives the slot back early; idempotent.
    void release();
    bool valid() const { return state_ != nullptr; }
    explicit operator bool() const { return valid(); }

   private:
    friend struct detail::semaphore_state;
    explicit permit(std::shared_ptr<detail::semaphore_state> s) : state_(std::move(s)) {}
    std::shared_ptr<detail::semaphore_state> state_;
  };

  explicit semaphore(std::size_t capacity);
  ~semaphore();
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  /// Suspends until a slot is free (FIFO). Throws system_error(operation_aborted) when cancelled.
  boost::asio::awaitable<permit> acquire();
  /// A permit if a slot is free and nobody is queued.
  std::optional<permit> try_acquire();

  void set_capacity(std::size_t n);
  std::size_t capacity() const;
  std::size_t in_use() const;
  std::size_t waiting() const;

 private:
  std::shared_ptr<detail::semaphore_state> state_;
};

}  // namespace ferry::engine
