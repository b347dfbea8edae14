#pragma once
// Recorded traffic: every HTTP exchange of a run written as JSON lines to gzip files rotated by size
// (`ferry migrate --record DIR`), and the reader that `ferry replay` loads them with.
//
// On disk, DIR holds `exchanges-000001.jsonl.gz`, `exchanges-000002.jsonl.gz`, ... and `manifest.json`
// ({"version":1,"format":"ferry-exchanges","created","updated","compressed","exchanges","files":[{"name",
// "exchanges","bytes"}]}). One line per exchange:
//   {"seq":1,"ts":"2026-11-24T20:00:00.000Z","side":"source","method":"POST","target":"/btql?x=1",
//    "url":"http://h/btql","request_headers":{"content-type":"application/json"},"request_body":"...",
//    "status":200,"outcome":"ok","error":"","response_headers":{"content-type":"application/json"},
//    "response_body":"...","duration_ms":12.5}
// A body that is not valid UTF-8 is stored base64 with `"request_body_encoding":"base64"` (resp.
// `response_body_encoding`); a body longer than `max_body_bytes` is cut with `"..._truncated":true`.
// Each file is a sequence of gzip members (one per flushed chunk), so a run killed with SIGKILL leaves
// every flushed chunk readable; the reader tolerates a truncated last member or line.
//
// Redaction happens BEFORE anything is buffered or written: Authorization, Proxy-Authorization, Cookie,
// X-Api-Key (and any header engine::is_secret_field_name accepts) become "[REDACTED]"; every secret
// registered with engine::register_secret (and any `Bearer <token>`) is scrubbed from targets, header
// values and bodies (engine::redact); in JSON bodies the value of every field named like a secret
// (`secret`, `api_key`, `*_token`..., engine::is_secret_field_name) becomes "[REDACTED]"; query
// parameters with such names are masked too.
//
// Lifecycle and threading: construct (creates DIR 0700 if missing and continues the numbering of files
// already there, so a resumed run appends), then `record` from any thread (one mutex serialises the
// buffer and the file; compression of a chunk happens under it). Memory is bounded by `chunk_bytes`
// plus one exchange. `flush()` writes the buffer as one gzip member and rewrites the manifest; the
// destructor calls `close()`, which flushes. Observers returned by `observer()` hold a pointer to the
// recorder: the recorder must outlive every http_client using them. Errors writing the files are
// logged once (component "http") and the recorder stops recording; they never fail the caller.

#include "transports/http_client.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::transports {

struct recorder_options {
  std::size_t max_file_bytes = 64u << 20;  // a file is rotated once its (compressed) size reaches this
  bool compress = true;                    // false: plain `exchanges-NNNNNN.jsonl`
  std::size_t chunk_bytes = 256u << 10;    // uncompressed bytes buffered before a gzip member is written
  std::size_t max_body_bytes = 32u << 20;  // longer bodies are cut (and flagged `_truncated`)
  std::chrono::milliseconds flush_interval{2000};  // a record arriving this long after the last flush
                                                   // flushes (0 = flush by size only)
  int compression_level = 1;                       // zlib level; 1 keeps the recorder off the hot path
};

/// One exchange, as recorded (already redacted when read back).
struct exchange_record {
  std::uint64_t seq = 0;  // 1-based order of recording within one recorder
  std::string ts;         // ISO-8601 UTC time the exchange started
  std::string side;       // "source", "dest", ...
  std::string method;     // "GET", "POST", ...
  std::string target;     // path + query, as the client asked (relative to its base URL)
  std::string url;        // final absolute URL (query stripped when it looked signed)
  std::vector<std::pair<std::string, std::string>> request_headers;
  std::string request_body;
  unsigned status = 0;  // 0 when no response arrived
  std::string outcome;  // engine::io_outcome name
  std::string error;
  std::vector<std::pair<std::string, std::string>> response_headers;  // content-type, location, retry-after
  std::string response_body;
  double duration_ms = 0;
  bool request_body_truncated = false;
  bool response_body_truncated = false;
};

struct recorder_stats {
  std::uint64_t exchanges = 0;      // recorded by this recorder
  std::uint64_t files = 0;          // files this recorder opened
  std::uint64_t bytes_written = 0;  // bytes written to disk by this recorder
  bool failed = false;              // a write failed; recording stopped
};

class recorder {
 public:
  /// Throws std::runtime_error with a one-line reason naming DIR when it cannot be created or written.
  explicit recorder(std::filesystem::path dir, recorder_options opts = {});
  ~recorder();
  recorder(const recorder&) = delete;
  recorder& operator=(const recorder&) = delete;

  /// Redacts and appends one exchange (seq and, when empty, ts are filled in). Thread-safe.
  void record(exchange_record rec);
  /// An observer for http_client_config::observer that records every exchange of that client with
  /// the given side label ("source" / "dest").
  exchange_observer observer(std::string side);
  /// Writes what is buffered and rewrites the manifest. Thread-safe.
  void flush();
  /// Flushes and closes the current file; later `record` calls are ignored. Idempotent.
  void close();

  recorder_stats stats() const;
  const std::filesystem::path& dir() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// The redactions the recorder applies (see the file comment), exposed for the replay matcher and tests.
std::string redact_target(std::string_view target);
std::string redact_body(std::string_view body);
/// "[REDACTED]" for a secret header name, else engine::redact(value).
std::string redact_header(std::string_view name, std::string_view value);

/// Calls `fn` for every exchange of the recording in DIR, file by file in name order, line by line.
/// Streams (memory bounded by one line). Unparseable lines and a truncated gzip tail are skipped and
/// described in `warnings` (when given). Throws std::runtime_error naming DIR when it is missing or
/// holds no `exchanges-*.jsonl[.gz]` file.
void for_each_exchange(const std::filesystem::path& dir, const std::function<void(exchange_record&&)>& fn,
                       std::vector<std::string>* warnings = nullptr);

/// All exchanges of a recording (see for_each_exchange).
std::vector<exchange_record> read_recording(const std::filesystem::path& dir,
                                            std::vector<std::string>* warnings = nullptr);

/// Parses / serialises one line (without the newline). parse throws std::runtime_error on bad input.
exchange_record parse_exchange_line(std::string_view line);
std::string format_exchange_line(const exchange_record& rec);

}  // namespace ferry::transports
