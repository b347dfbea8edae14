#pragma once
// Internal to pipelines/archive: the progress lines of `ferry export` and `ferry import`, as migrate's
// without a TTY: every `interval` one log line
//   progress <command> rows=N rows_per_s=R streams=DONE/TOTAL [attachments=A] [of_rows=T]
// (rows and attachments of this run; of_rows: the archive's rows, on import). The numbers come from
// `read`, called on the ticker's strand (it must be thread-safe). The ticker polls a stop flag every
// 100 ms, so stop() from any thread ends it promptly, and a runtime shutdown (cancellation) ends it too.

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace ferry::pipelines::archive {

struct progress_counts {
  std::uint64_t rows = 0;
  std::size_t streams_done = 0;
  std::size_t streams_total = 0;
  std::uint64_t attachments = 0;
  std::optional<std::uint64_t> archive_rows;
};

class progress_ticker {
 public:
  progress_ticker(std::string command, std::function<progress_counts()> read, std::chrono::milliseconds interval)
      : command_(std::move(command)), read_(std::move(read)), interval_(interval) {}
  boost::asio::awaitable<void> run();
  void stop() { stop_ = true; }
  /// The line for `c` after `seconds` with `rows_per_s` (pure; tested).
  static std::string line(const std::string& command, const progress_counts& c, double rows_per_s);

 private:
  std::string command_;
  std::function<progress_counts()> read_;
  std::chrono::milliseconds interval_;
  std::atomic<bool> stop_{false};
};

}  // namespace ferry::pipelines::archive
