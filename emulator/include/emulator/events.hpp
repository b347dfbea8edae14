#pragma once
// The emulator's event side: the event store (project logs, experiments, datasets) and the HTTP endpoints
// that read and write it: /logs3 (+ overflow), /btql (text and JSON AST), /version, attachments, the
// signed-URL targets, REST inserts/fetch (/v1/{project_logs,experiment,dataset}/{id}/{insert,fetch,feedback},
// /v1/insert), /v1/dataset/{id}/restore[/preview], /xact-id and /dataset-summary.
//
// Storage (column families of the kv_store, see column_families()):
//   events        <object>\0<_pagination_key> -> row (id, created, final JSON text); reads concatenate the text
//   event_ids     <object>\0<id>              -> current _pagination_key of that id
//   event_history <object>\0<_pagination_key> -> 19-digit xact that replaced/deleted it + a superseded row
//   events_meta   xact high-water mark, per-object row counts, the signing secret of signed URLs
//   blobs         overflow payloads and attachment bytes
//   attachments   per (org, key): filename, content type, upload status
// <object> is "project_logs:<project_id>", "experiment:<id>" or "dataset:<id>".
//
// Semantics: one write request = one transaction = one new `_xact_id` (19-digit fixed-width decimal string,
// strictly increasing across the whole server, persisted across restarts). Each row version gets
// `_pagination_key` = "p" + 20-digit xact + 6-digit position in the request, so keys sort as strings in
// commit order within an object. Re-inserting an id replaces the row (the old version moves to the
// history); `_is_merge` deep-merges by id (objects recursively, everything else replaced, `_merge_paths`
// stops the descent, `span_parents`/`created` of the existing row are kept) or creates the row;
// `_array_delete` then removes the listed values from the arrays at its paths; `_object_delete` removes
// the row. Missing `span_id` defaults to the row id and missing `root_span_id` to the span id.
// Feedback (the SDK's logFeedback form, which /feedback and /v1/insert's "feedback" are turned into): a
// merge row carrying `_audit_source`/`_audit_metadata` appends an audit entry to the row's `audit_data`
// (the metadata goes there, not into the row), and a row `{"comment": {...}, "origin": {"id": R}}` appends
// to row R's `comments`; both refuse (400) an id that is not a live row. `comments`/`audit_data` sent by a
// client are dropped: only the server writes them.
//
// Reads: /btql returns {"data", "schema", "cursor", "freshness_state", "realtime_state"}; `from:
// project_prompts(p)` / `project_functions(p)` read the REST side's prompts/functions (events_config::
// metadata_rows; `audit_log: true` = their version history, as the SDK's getPromptVersions reads it); the cursor is
// non-null only when more rows exist (never with empty data), so both keyset paging on `_pagination_key`
// (the reference tool, Ferry) and the cursor loop (the JS SDK) end. Queries the key range answers (btql.hpp)
// append stored texts; the others are evaluated row by row (btql_exec.cpp). Unknown objects in `from:`
// are 404. A request "version" (and fetch's version/max_xact_id) reads each row as it was at that
// transaction: the current versions written up to it plus the superseded versions still live then.
// /v1/.../fetch pages rows (not traces) newest first with an opaque cursor that is absent on the last page.
//
// Lifecycle/threading: construct once over an open kv_store that has column_families() (the store must
// outlive the api); afterwards every method may be called concurrently from any thread. Writes lock only
// the objects they touch (sharded mutexes), so writes to different objects proceed in parallel; the
// `_xact_id` of an object's rows is allocated under that object's lock, so keys become visible in order.

#include "emulator/rest.hpp"
#include "stores/kv_store.hpp"
#include "transports/http_server.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::emulator {

struct request_context {
  std::string org_id;
  std::string org_name;
  std::string base_url;  // "http://127.0.0.1:P": signed URLs point here
};

/// Whether an object exists and belongs to the org: type in {"project","experiment","dataset"}.
using object_lookup = std::function<bool(std::string_view type, std::string_view id, std::string_view org_id)>;

struct events_config {
  std::uint64_t logs3_payload_max_bytes = 6u << 20;  // /logs3 and REST insert bodies above this get 413
  std::uint64_t max_span_bytes = 20u << 20;          // one stored row above this gets 413 naming the row id
  std::uint64_t btql_default_limit = 1000;           // BTQL/fetch page size when the query gives none
  /// Row texts the shared scans (id-window slice pages, events_impl.hpp) may keep for other windows, all
  /// objects together; each window may keep 3 of its pages, or more within its share of this. Held only
  /// while slices of unequal sizes drift apart in key order (bench_btql_slices, Ferry's 3:2 windows over 1M
  /// rows: 6.1 us/row at 128 MiB, 4.3-4.8 at 512 MiB, 6.4 with none).
  std::size_t btql_shared_scan_bytes = 512u << 20;
  /// Optional: the project of an experiment/dataset ("experiment"|"dataset", id) -> project id ("" when
  /// unknown), so that read rows carry project_id. Unset: project_id is kept only when the row has one.
  std::function<std::string(std::string_view type, std::string_view id)> project_of;
  /// Optional: the current time as ISO-8601 UTC (tests pass a fixed clock); unset = system clock.
  std::function<std::string()> now_iso;
  /// Optional: the rows BTQL reads from project_prompts(project_id) / project_functions(project_id) (type
  /// "project_prompts" | "project_functions"): the project's prompts (resp. functions, prompts included), or
  /// with `audit_log` one row per recorded version, oldest first; nullopt when the project is not the org's.
  /// Unset: those sources are 400.
  std::function<std::optional<std::vector<boost::json::object>>(std::string_view type, std::string_view project_id,
                                                                std::string_view org_id, bool audit_log)>
      metadata_rows;
};

class events_api {
 public:
  /// The kv_store column families this api needs.
  static std::vector<std::string> column_families();
  /// Adds the RocksDB tuning of the event column families to `opts` (uncompressed, large memtables, few
  /// compactions: the emulator is a test/bench server where CPU matters, not an archive).
  static void tune_store(stores::kv_options& opts);

  events_api(stores::kv_store& store, object_lookup lookup, events_config cfg);
  ~events_api();
  events_api(const events_api&) = delete;
  events_api& operator=(const events_api&) = delete;

  /// Handles the paths listed at the top of this file; returns nullopt for any other path. Errors are JSON
  /// replies `{"error": "..."}` with the status of the spec (400, 404, 405, 413). Thread-safe.
  boost::asio::awaitable<std::optional<transports::http_reply>> handle(transports::http_request& req,
                                                                       const request_context& ctx);
  /// The same, synchronously (handle() never suspends; tests and benchmarks call this directly).
  std::optional<transports::http_reply> handle_now(transports::http_request& req, const request_context& ctx);

  /// Unauthenticated paths it owns: the signed-URL targets (they carry no Authorization header).
  bool is_public_path(std::string_view target) const;

  /// Number of live rows of an object; object_type in {"project_logs","experiment","dataset"} (also accepts
  /// "project" for project logs).
  std::uint64_t count_rows(std::string_view object_type, std::string_view object_id) const;
  /// The live rows of an object, parsed, in key order (summaries; not for bulk reads).
  std::vector<boost::json::object> current_rows(std::string_view object_type, std::string_view object_id) const;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

/// The calls that join events and REST resources (event_summaries.cpp): GET /v1/{experiment,dataset}/{id}/
/// summarize and GET /experiment-comparison2; nullopt for any other path. Errors are {"error"} replies. Thread-safe.
std::optional<rest_reply> serve_event_extras(rest_store& rest, events_api& events, std::string_view method,
                                             std::string_view target, const org_identity& org,
                                             const std::string& base_url);

}  // namespace ferry::emulator
