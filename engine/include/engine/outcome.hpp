#pragma once
// The classification every I/O result carries, read by the retry policy and by AIMD controllers.

#include <string_view>

namespace ferry::engine {

enum class io_outcome {
  ok,         // success
  not_found,  // 404: the thing does not exist (fatal for a retry, often meaningful to the caller)
  throttled,  // 429 / 503 with Retry-After: slow down, then retry
  timed_out,  // connect/read/total timeout, 408: retry
  transient,  // 5xx, 409, 425, reset/refused connection, truncated body: retry
  fatal,      // 400/401/403/413/other 4xx, bad TLS, malformed URL: do not retry
};

constexpr std::string_view to_string(io_outcome o) {
  switch (o) {
    case io_outcome::ok: return "ok";
    case io_outcome::not_found: return "not_found";
    case io_outcome::throttled: return "throttled";
    case io_outcome::timed_out: return "timed_out";
    case io_outcome::transient: return "transient";
    case io_outcome::fatal: return "fatal";
  }
  return "unknown";
}

constexpr bool is_retryable(io_outcome o) {
  return o == io_outcome::throttled || o == io_outcome::timed_out || o == io_outcome::transient;
}

}  // namespace ferry::engine
