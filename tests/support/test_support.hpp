#pragma once
// Helpers shared by all test binaries.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <exception>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

namespace ferry::test {

/// Runs `aw` on `ctx` until it completes or `limit` of io_context run time has passed; rethrows the
/// coroutine's exception; throws std::runtime_error when it did not finish (a hang is a failure).
/// The limit bounds a hung test; it is not a timing assertion.
template <typename T>
T run_coro(boost::asio::io_context& ctx, boost::asio::awaitable<T> aw,
           std::chrono::steady_clock::duration limit = std::chrono::seconds(10)) {
  std::optional<T> result;
  std::exception_ptr error;
  bool done = false;
  boost::asio::co_spawn(ctx, std::move(aw), [&](std::exception_ptr e, T v) {
    error = e;
    if (!e) result.emplace(std::move(v));
    done = true;
  });
  ctx.restart();
  ctx.run_for(limit);
  if (!done) throw std::runtime_error("run_coro: coroutine did not finish");
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

inline void run_coro(boost::asio::io_context& ctx, boost::asio::awaitable<void> aw,
                     std::chrono::steady_clock::duration limit = std::chrono::seconds(10)) {
  std::exception_ptr error;
  bool done = false;
  boost::asio::co_spawn(ctx, std::move(aw), [&](std::exception_ptr e) {
    error = e;
    done = true;
  });
  ctx.restart();
  ctx.run_for(limit);
  if (!done) throw std::runtime_error("run_coro: coroutine did not finish");
  if (error) std::rethrow_exception(error);
}

/// A fresh directory under the system temp dir, removed with its contents on destruction.
class temp_dir {
 public:
  explicit temp_dir(const std::string& prefix = "ferry-test");
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace ferry::test
