#pragma once
// Fault injection for the emulator: per endpoint (method + path prefix), at a rate, deterministic.
//
// Kinds:
//   status      reply `status` (default 429, with Retry-After when `retry_after` is set) instead of serving
//   btql_limit  reply `status` (default 504) when the request's BTQL LIMIT is above `limit_above`; the limit
//               is read from BTQL text (`limit: N`) or a JSON AST (`"limit": N`) without parsing the query
//   size        reply 413 when the request body is larger than `max_bytes`
//   latency     delay the reply by `latency_ms` (an asio timer in the server; the request is still served)
//   drop        close the connection without replying
//   truncate    send the headers and half the body, then close
//
// Compact syntax (one fault per `--fault`):  key=value pairs separated by commas, e.g.
//   path=/btql,kind=status,status=429,rate=0.1,retry_after=1
//   path=/btql,kind=btql_limit,limit_above=500,status=504
//   method=POST,path=/logs3,kind=size,max_bytes=1000000
//   path=/v1/project,kind=latency,latency_ms=50
// Keys: method, path (prefix, default "/"), kind, status, rate (0..1, default 1), retry_after (s),
// limit_above, max_bytes, latency_ms, after (skip the first N matching requests), count (inject at most N).
// A YAML or JSON file holds the same keys as maps in a `faults:` list, plus an optional `seed:`.
//
// Thread-safety: fault_injector::decide and stats may be called from any thread (one mutex); decisions
// are a pure function of the seed and the order in which matching requests arrive.

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::emulator {

class fault_config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class fault_kind { status, btql_limit, size, latency, drop, truncate };

std::string_view to_string(fault_kind k);

struct fault_spec {
  std::string method;              // empty = any method (compared case-insensitively)
  std::string path_prefix = "/";  // matched against the path without the query string
  fault_kind kind = fault_kind::status;
  unsigned status = 0;                          // 0 = the kind's default (429, 504, 413)
  double rate = 1.0;                            // probability per matching request
  std::optional<unsigned> retry_after_seconds;  // Retry-After header on status faults
  std::uint64_t limit_above = 0;                // btql_limit threshold
  std::uint64_t max_bytes = 0;                  // size threshold
  std::chrono::milliseconds latency{0};
  std::uint64_t after = 0;                      // let the first N matching requests through
  std::optional<std::uint64_t> count;           // inject at most N times

  unsigned effective_status() const;
};

/// Parses one compact spec ("path=/btql,kind=status,rate=0.1"); throws fault_config_error naming the key.
fault_spec parse_fault_spec(std::string_view text);

struct fault_file {
  std::vector<fault_spec> faults;
  std::optional<std::uint64_t> seed;
};
/// Reads a YAML/JSON file with a `faults:` list (and optional `seed:`); throws fault_config_error with the path.
fault_file load_fault_file(const std::string& path);
/// The same from text (tests).
fault_file parse_fault_text(std::string_view yaml_or_json, std::string_view origin = "faults");

/// Extracts the LIMIT of a /btql body: a JSON body whose "query" is text (`limit: N`) or an object
/// (`"limit": N`), or a plain text body. nullopt when there is no limit.
std::optional<std::uint64_t> btql_limit_of(std::string_view body);

/// What to do with one request.
struct fault_decision {
  std::optional<unsigned> status;         // reply with this status (and an {"error"} body) instead of serving
  std::optional<unsigned> retry_after;    // Retry-After seconds for `status`
  std::chrono::milliseconds delay{0};     // wait this long before replying
  bool drop = false;                      // close without replying
  bool truncate = false;                  // send half the body
  std::string reason;                     // "<kind> <path_prefix>" of the fault applied (for the error body)
};

class fault_injector {
 public:
  explicit fault_injector(std::vector<fault_spec> faults = {}, std::uint64_t seed = 1);

  /// Decides for one request (the body is read only by btql_limit and size faults). Counts the request.
  fault_decision decide(std::string_view method, std::string_view target, std::string_view body);

  struct stats_snapshot {
    std::map<std::string, std::uint64_t> requests_by_path;  // path with ids replaced by {id}
    std::map<std::string, std::uint64_t> faults_by_kind;
    std::uint64_t requests = 0;
    std::uint64_t faults = 0;
  };
  stats_snapshot stats() const;
  /// `{"requests":N,"faults":N,"requests_by_path":{...},"faults_by_kind":{...}}`
  std::string stats_json() const;

  bool empty() const { return faults_.empty(); }

 private:
  struct state {
    fault_spec spec;
    std::uint64_t matched = 0;
    std::uint64_t injected = 0;
  };
  mutable std::mutex mutex_;
  std::vector<state> faults_;
  std::mt19937_64 rng_;
  stats_snapshot stats_;
};

/// A path with its id-like segments (uuids, long hex or digits) replaced by "{id}", for per-path stats.
std::string normalize_path(std::string_view path);

}  // namespace ferry::emulator
