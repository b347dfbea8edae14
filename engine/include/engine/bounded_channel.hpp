#pragma once
// A bounded multi-producer / multi-consumer channel for coroutines on any strands: the backpressure
// between a stream's reader, rewriter and writer.
//
// - async_send(v) suspends while the buffer is full; it throws channel_closed_error when the channel
//   was closed before the value was accepted.
// - async_receive() returns values in FIFO order; after close() it still returns what was buffered
//   (and what blocked senders had handed over), then std::nullopt for ever: nullopt is the normal end.
// - close() is idempotent and may be called from any thread.
// Order: FIFO per producer; with several receivers, which receiver gets which value (and in which
// order they process them) is unspecified, as with any MPMC queue.
//
// Threading: all members are thread-safe (asio concurrent_channel plus a small mutex used only on the
// close path). Any number of send and receive operations may be outstanding. Cancelling a waiting
// send or receive throws system_error(operation_aborted) from it; a cancelled send drops its value.
// Lifetime: the channel must outlive its outstanding operations. T must be default-constructible and
// movable (Asio builds an empty T for the closed notification).

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/channel_error.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>

namespace ferry::engine {

/// Thrown by async_send on a closed channel.
class channel_closed_error : public std::runtime_error {
 public:
  channel_closed_error() : std::runtime_error("send on a closed channel") {}
};

template <typename T>
class bounded_channel {
  static_assert(std::default_initializable<T> && std::movable<T>,
                "bounded_channel<T>: T must be default-constructible and movable");

 public:
  /// `capacity` values are buffered; 0 makes every send wait for a receiver (rendezvous).
  bounded_channel(boost::asio::any_io_executor ex, std::size_t capacity) : channel_(std::move(ex), capacity), capacity_(capacity) {}
  bounded_channel(const bounded_channel&) = delete;
  bounded_channel& operator=(const bounded_channel&) = delete;

  boost::asio::awaitable<void> async_send(T value) {
    if (closed_.load(std::memory_order_acquire)) throw channel_closed_error();
    auto [ec] = co_await channel_.async_send(boost::system::error_code{}, payload(next_seq_++, std::move(value)),
                                             boost::asio::as_tuple(boost::asio::use_awaitable));
    if (ec == boost::asio::experimental::error::channel_closed) throw channel_closed_error();
    if (ec) throw boost::system::system_error(ec, "bounded_channel send");
  }

  /// Sends without waiting; false when full or closed.
  bool try_send(T value) {
    if (closed_.load(std::memory_order_acquire)) return false;
    return channel_.try_send(boost::system::error_code{}, payload(next_seq_++, std::move(value)));
  }

  boost::asio::awaitable<std::optional<T>> async_receive() {
    auto [ec, p] = co_await channel_.async_receive(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (!ec) {
      if (!closed_.load(std::memory_order_acquire)) co_return std::optional<T>(std::move(p.second));
      // close() may have moved older values aside while this one was taken: hand out the oldest.
      std::lock_guard lock(mu_);
      if (leftover_.empty() || p.first < leftover_.front().first) co_return std::optional<T>(std::move(p.second));
      insert_leftover(std::move(p));
      co_return take_leftover_locked();
    }
    if (ec == boost::asio::experimental::error::channel_closed) {
      std::lock_guard lock(mu_);
      co_return take_leftover_locked();
    }
    throw boost::system::system_error(ec, "bounded_channel receive");
  }

  /// Stops accepting values. Values already accepted (buffered, or held by a sender blocked at this
  /// moment, whose send then succeeds) are still delivered to receivers, in order.
  void close() {
    std::lock_guard lock(mu_);
    if (closed_.exchange(true, std::memory_order_acq_rel)) return;
    // Asio's close() discards the buffer and strands blocked senders, so move everything out first.
    while (channel_.try_receive([this](boost::system::error_code, payload p) { insert_leftover(std::move(p)); })) {
    }
    channel_.close();
  }

  bool is_closed() const { return closed_.load(std::memory_order_acquire); }
  std::size_t capacity() const { return capacity_; }

 private:
  // Values carry their send sequence so that values set aside by close() and values a receiver took
  // concurrently are still handed out oldest first (per producer, sequence order is send order).
  using payload = std::pair<std::uint64_t, T>;

  // requires mu_
  void insert_leftover(payload p) {
    auto it = std::upper_bound(leftover_.begin(), leftover_.end(), p.first,
                               [](std::uint64_t s, const payload& q) { return s < q.first; });
    leftover_.insert(it, std::move(p));
  }
  // requires mu_
  std::optional<T> take_leftover_locked() {
    if (leftover_.empty()) return std::nullopt;
    std::optional<T> v(std::move(leftover_.front().second));
    leftover_.pop_front();
    return v;
  }

  boost::asio::experimental::concurrent_channel<void(boost::system::error_code, payload)> channel_;
  std::size_t capacity_;
  std::atomic<bool> closed_{false};
  std::mutex mu_;
  std::deque<payload> leftover_;  // sorted by sequence
  std::atomic<std::uint64_t> next_seq_{0};
};

}  // namespace ferry::engine
