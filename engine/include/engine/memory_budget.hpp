#pragma once
// A byte budget shared by everything of one process that holds rows (MIGRATION_MEMORY_BUDGET: the event
// streams and their slices, all together): bytes are held as `grant`s and given back when the rows are gone.
//
// `co_await budget.acquire(n)` suspends until held() + n <= capacity(), FIFO, or until nothing is held at
// all (a request above the capacity still goes, alone: a huge row must not stall a stream for ever). The
// grant it returns (movable RAII) gives its bytes back on destruction. charge(n) grants without waiting:
// for holders that must not wait (what is already in memory, a request body being sent), so that only
// the code bringing new rows in waits, and it waits for holders that never wait themselves: no deadlock.
// A grant moves along with its rows: split(n) takes n of its bytes into a new grant, absorb(g) merges g
// into it, resize(n) corrects it to what is really held (growing charges, shrinking gives back).
// high_water() is the most ever held at once (tests, the ferry_memory_held_peak_bytes metric); waits()
// counts the acquires that had to queue: a holder sampling it (a sliced stream's pacer) learns that the
// budget bound in between, i.e. that more readers would only wait.
//
// Threading: every member is thread-safe (one mutex, never held while a handler runs); a waiter's
// completion is posted to its own executor. Cancelling a waiting acquire throws operation_aborted; a
// grant never delivered (its handler destroyed) gives its bytes back. Grants share the budget's state,
// so they may outlive the object.

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace ferry::engine {

namespace detail {
struct memory_budget_state;
}

class memory_budget {
 public:
  class grant {
   public:
    grant() = default;
    grant(grant&& o) noexcept : state_(std::move(o.state_)), bytes_(o.bytes_) { o.bytes_ = 0; }
    grant& operator=(grant&& o) noexcept;
    grant(const grant&) = delete;
    grant& operator=(const grant&) = delete;
    ~grant() { release(); }
    /// Gives every byte back now; idempotent.
    void release();
    std::uint64_t bytes() const { return bytes_; }
    /// Moves min(n, bytes()) of this grant's bytes into a new grant of the same budget.
    grant split(std::uint64_t n);
    /// Takes `other`'s bytes into this grant (an empty grant adopts other's budget).
    void absorb(grant&& other);
    /// Holds exactly n bytes from now on: more are charged without waiting, fewer are given back.
    void resize(std::uint64_t n);

   private:
    friend class memory_budget;
    friend struct detail::memory_budget_state;
    grant(std::shared_ptr<detail::memory_budget_state> s, std::uint64_t n) : state_(std::move(s)), bytes_(n) {}
    std::shared_ptr<detail::memory_budget_state> state_;
    std::uint64_t bytes_ = 0;
  };

  explicit memory_budget(std::uint64_t capacity);
  ~memory_budget();
  memory_budget(const memory_budget&) = delete;
  memory_budget& operator=(const memory_budget&) = delete;

  /// Suspends until n bytes fit (see above). Throws system_error(operation_aborted) when cancelled.
  boost::asio::awaitable<grant> acquire(std::uint64_t n);
  /// n bytes at once, whatever is held (it may go above the capacity; later acquires wait for it).
  grant charge(std::uint64_t n);

  std::uint64_t capacity() const;
  std::uint64_t held() const;
  std::uint64_t high_water() const;
  std::size_t waiting() const;
  /// Acquires that had to queue (did not fit at once), since the budget was made.
  std::uint64_t waits() const;

 private:
  std::shared_ptr<detail::memory_budget_state> state_;
};

/// Gives the allocator's free memory back to the system (glibc: malloc_trim), at most once per
/// `min_interval` across the process (other calls return at once). Rows of 100 KB-2 MB come from the
/// heap and are freed in another order than allocated: the holes they leave stay in the process's RSS
/// until trimmed, so without this RSS follows the worst moment rather than what the budget holds.
void return_free_memory(std::chrono::milliseconds min_interval);

}  // namespace ferry::engine
