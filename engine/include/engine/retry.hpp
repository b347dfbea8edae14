#pragma once
// Retry decisions (a pure state machine) and a coroutine loop that applies them.
//
// `retry_policy::next` never sleeps: it says whether attempt N may be followed by another one and after
// which delay. Only throttled / timed_out / transient outcomes retry. The delay is exponential backoff
// with FULL jitter, uniform in [0, min(max_delay, base_delay * 2^(attempt-1))]; a server's Retry-After
// wins when present (delay = max(jittered, retry_after)). Everything is capped by the overall deadline:
// if now + delay would pass it, the retry is refused and the reason says so.
//
// Threading: a retry_policy holds a deadline (and, when seeded, its own RNG), so one instance serves one
// logical operation (copy the policy per request); it is not thread-safe. Unseeded policies draw their
// jitter from one generator per thread, seeded once from std::random_device on the thread's first
// draw: building a policy per HTTP call then costs no random_device read and no generator setup. `with_retry` runs on the awaiting coroutine's
// executor.

#include "engine/clock.hpp"
#include "engine/outcome.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::engine {

struct retry_config {
  int max_attempts = 6;  // total attempts including the first; 1 means "never retry"
  std::chrono::milliseconds base_delay{250};
  std::chrono::milliseconds max_delay{30'000};
  std::chrono::milliseconds overall_timeout{0};  // measured from start(); 0 = no overall deadline
};

struct retry_decision {
  bool allowed = false;
  steady_duration delay{};
  std::string reason;  // why not, or "retry after <n>ms (<outcome>)"
};

class retry_policy {
 public:
  /// Jitter from the calling thread's generator (see the file comment): the production constructor.
  explicit retry_policy(retry_config cfg);
  /// Jitter from a std::mt19937_64 of its own seeded with `seed`: a reproducible sequence (tests).
  retry_policy(retry_config cfg, std::uint64_t seed);
  /// `uniform01` returns a value in [0, 1].
  retry_policy(retry_config cfg, std::function<double()> uniform01);

  /// Starts the overall deadline (now + overall_timeout) if the config has one.
  void start(steady_time now);
  /// Caps the deadline by a parent's (the earlier one wins), e.g. a whole-stream deadline.
  void cap_deadline(steady_time parent_deadline);
  std::optional<steady_time> deadline() const { return deadline_; }
  const retry_config& config() const { return cfg_; }

  /// Decision after `attempt` (1-based) attempts have been made, the last one ending with `outcome` at
  /// `now`; `retry_after` is the server's hint, if any.
  retry_decision next(int attempt, steady_time now, io_outcome outcome,
                      std::optional<steady_duration> retry_after = std::nullopt);

  /// The backoff cap for `attempt`: min(max_delay, base_delay * 2^(attempt-1)), overflow-safe.
  steady_duration backoff_cap(int attempt) const;

 private:
  retry_config cfg_;
  std::function<double()> uniform01_;
  std::optional<steady_time> deadline_;
};

/// Parses a Retry-After header value: delta-seconds ("120", fractions tolerated) or an HTTP-date in
/// IMF-fixdate form ("Wed, 21 Oct 2015 07:28:00 GMT"). A date in the past gives 0. Malformed => nullopt.
std::optional<steady_duration> parse_retry_after(std::string_view value, system_time now);

/// What one attempt of an operation reported.
struct attempt_result {
  io_outcome outcome = io_outcome::ok;
  std::optional<steady_duration> retry_after;
  std::string detail;  // e.g. "HTTP 503", for logs and the final reason
};

struct retry_result {
  attempt_result last;  // the final attempt's result
  int attempts = 0;
  std::string reason;   // why the loop stopped ("ok", "outcome fatal is not retryable", ...)
  bool ok() const { return last.outcome == io_outcome::ok; }
};

struct retry_hooks {
  std::string_view what = "operation";  // names the operation in logs, e.g. "GET /v1/project"
  /// Called before each wait with the attempt that failed and the decision (metrics, AIMD feedback).
  std::function<void(int attempt, const attempt_result&, const retry_decision&)> on_retry;
};

/// Runs `op(attempt)` until it returns a non-retryable outcome or the policy refuses another attempt,
/// waiting `decision.delay` on `clk` between attempts. Starts the policy's deadline at the first call.
/// The wait is cancellable: cancelling the awaiting coroutine throws operation_aborted out of it.
/// Exceptions thrown by `op` propagate (they are not outcomes).
boost::asio::awaitable<retry_result> with_retry(retry_policy& policy, const clock& clk,
                                                std::function<boost::asio::awaitable<attempt_result>(int attempt)> op,
                                                retry_hooks hooks = {});

/// "1.25s", "250ms", "3m05s": compact durations for log lines and reasons.
std::string format_duration(steady_duration d);

}  // namespace ferry::engine
