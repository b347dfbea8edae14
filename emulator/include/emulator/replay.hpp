#pragma once
// `ferry replay DIR`: serves a recording (transports/recorder.hpp) as a source API.
//
// Matching: a request is looked up by method + path + normalised query (parameters sorted) + normalised
// body (JSON parsed and re-serialised with sorted keys; for paths ending in /btql the BTQL text of
// "query" has its whitespace collapsed). The incoming request goes through the recorder's redaction
// first, so requests carrying secret-named fields still match their redacted recording. Several
// recorded exchanges with the same key are served in recorded order; after the last one, the last one
// repeats (or, with `loop`, the first one comes again). A /btql request without an exact match is
// matched once more ignoring its LIMIT (`limit: N` in BTQL text, "limit" in a JSON query): Ferry shrinks
// its page size after 500/504 (injected faults), and a recorded page that starts after the same cursor
// still leads to the same copy. An unmatched request gets 404 with
// `{"error":"replay: no recorded exchange for POST /btql ..."}`. A recorded exchange without a response
// (status 0: the connection failed) is replayed as a dropped connection. Authorization is not checked.
// Faults (emulator/faults.hpp) apply before matching, exactly as in `ferry serve`.
// Admin endpoints (never faulted, never matched): GET /_replay/stats, POST /_replay/rewind (serve
// every key from its first occurrence again, e.g. between soak rounds).
//
// Lifecycle and threading: replay_index is immutable after construction except for its per-key cursors,
// which one mutex guards (next() may be called from any thread). replay_server owns an index and an
// http_server on the given executor; start() binds, stop() closes (idempotent). Both must outlive the
// io_context's run. The whole recording (of the chosen side) is held in memory.

#include "emulator/faults.hpp"
#include "transports/http_server.hpp"
#include "transports/recorder.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::emulator {

struct replay_options {
  std::string dir;                       // the recording (`ferry migrate --record DIR`)
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;                // 0 = any free port (printed on the first stdout line)
  bool loop = false;                     // after a key's last occurrence, start again from its first
  double speed = 0;                      // 0 = as fast as possible; X > 0 adds recorded duration / X
  std::string side = "source";           // which side of the recording to serve (empty = every side)
  std::string faults_file;               // YAML/JSON `faults:` list (see faults.hpp)
  std::vector<std::string> fault_specs;  // compact `--fault` specs
  std::optional<std::uint64_t> fault_seed;  // default: the file's `seed:`, else 1
  unsigned threads = 2;
};

/// The matching key of a request (see the file comment). Exposed for tests and tools. With
/// `ignore_limit`, a /btql body's LIMIT is left out (the fallback key).
std::string replay_key(std::string_view method, std::string_view target, std::string_view body,
                       bool ignore_limit = false);

class replay_index {
 public:
  /// Keeps the exchanges whose side is `side` (all when empty), in recording order.
  replay_index(std::vector<transports::exchange_record> exchanges, std::string_view side, bool loop);

  /// The exchange to answer with, advancing that key's cursor; nullptr when nothing matches.
  /// The pointer stays valid for the index's lifetime.
  const transports::exchange_record* next(std::string_view method, std::string_view target, std::string_view body);
  /// Serves every key from its first occurrence again.
  void rewind();

  std::size_t size() const { return exchanges_.size(); }
  std::size_t keys() const { return by_key_.size(); }
  struct stats_snapshot {
    std::uint64_t matched = 0;
    std::uint64_t unmatched = 0;
    std::uint64_t repeated = 0;  // served beyond the recorded occurrences (last repeated / looped)
    std::uint64_t loose = 0;     // /btql requests matched only when ignoring LIMIT
  };
  stats_snapshot stats() const;

 private:
  struct slot {
    std::vector<std::size_t> occurrences;  // indexes into exchanges_
    std::size_t cursor = 0;
  };
  std::vector<transports::exchange_record> exchanges_;
  const transports::exchange_record* serve(slot& s);  // mu_ held

  std::map<std::string, slot, std::less<>> by_key_;
  std::map<std::string, slot, std::less<>> by_loose_key_;  // /btql only, LIMIT left out
  bool loop_;
  mutable std::mutex mu_;
  stats_snapshot stats_;
};

class replay_server {
 public:
  /// Loads the recording and parses the faults; throws std::runtime_error / fault_config_error /
  /// std::invalid_argument with a one-line message naming what to fix.
  replay_server(boost::asio::any_io_executor ex, const replay_options& opts);
  ~replay_server();
  replay_server(const replay_server&) = delete;
  replay_server& operator=(const replay_server&) = delete;

  void start();  // throws std::runtime_error naming address:port when it cannot bind
  void stop();
  std::uint16_t port() const;
  std::string base_url() const;
  const replay_index& index() const { return index_; }
  fault_injector& faults() { return *faults_; }
  /// Lines the reader skipped (truncated tail of a killed run, unparseable lines).
  const std::vector<std::string>& warnings() const { return warnings_; }

  /// Serves one request (what the HTTP server calls; tests may call it directly).
  boost::asio::awaitable<transports::http_reply> handle(transports::http_request& req);

 private:
  boost::asio::any_io_executor ex_;
  replay_options opts_;
  std::vector<std::string> warnings_;
  replay_index index_;
  std::unique_ptr<fault_injector> faults_;
  std::unique_ptr<transports::http_server> server_;
};

/// Loads DIR, serves it on an io_context with `threads` threads, prints ONE line to stdout
/// `ferry replay: listening on http://127.0.0.1:PORT (N exchanges from DIR)` (flushed), serves until
/// SIGINT/SIGTERM and returns 0. Configuration errors (missing/empty recording, bad faults, bad speed)
/// print one line `ferry replay: <what to fix>` to stderr and return 2; a server that cannot start
/// returns 1.
int run_replay(const replay_options& opts);

}  // namespace ferry::emulator
