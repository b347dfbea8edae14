#pragma once
// `ferry status --watch [--interval S]`: the committed state of a running (or finished) migration,
// read again every interval from a read-only open of its state dir (as `ferry status`: no lock, nothing
// written). On a TTY the view is redrawn in place (engine::status_area); otherwise one summary line
// and one line per stream not done are printed every interval. Ends on SIGINT/SIGTERM (exit 0), or
// after `rounds` views when that is set (tests).
//
// View: "ferry status: N stream(s), D done, R rows, X rows/s" (rates from the rows committed since
// the previous read), then per stream "<id> pending|done rows=... rows_per_s=... batches=...
// [error=...]", streams not done first.

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ferry::pipelines {

struct status_watch_options {
  std::chrono::milliseconds interval{2000};
  std::optional<bool> tty;  // default: `out` is std::cout and stdout is a TTY
  int rounds = 0;           // 0 = until a signal
};

/// One stream as the watch shows it (a committed state read from the store).
struct watched_stream {
  std::string id;
  bool done = false;
  std::uint64_t rows = 0;
  std::uint64_t batches = 0;
  std::string last_error;
};

/// The view's lines for `now` given the previous read (`before`: rows per stream, `dt` seconds apart;
/// dt 0 the first time: no rates yet): header first, streams not done before done ones, each sorted by id.
std::vector<std::string> status_watch_lines(const std::vector<watched_stream>& now,
                                            const std::map<std::string, std::uint64_t>& before, double dt);

/// Exit: 0 (stopped by a signal, or `rounds` done), 1 when the state dir cannot be read the first time.
int run_status_watch(const std::string& state_dir, const status_watch_options& opts, std::ostream& out,
                     std::ostream& err);

}  // namespace ferry::pipelines
