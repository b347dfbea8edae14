#pragma once
// Private to the emulator's event side: the event store and the handler implementation shared by
// events.cpp (routing, BTQL, fetch), logs3.cpp (writes) and attachments.cpp (attachments, signed URLs).

#include "emulator/btql.hpp"
#include "emulator/events.hpp"

#include <boost/json.hpp>
#include <boost/url/url_view.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::emulator::detail {

namespace json = boost::json;

/// An error that becomes a JSON reply `{"error": message}` with this status.
class http_error : public std::runtime_error {
 public:
  http_error(unsigned status, const std::string& message) : std::runtime_error(message), status_(status) {}
  unsigned status() const { return status_; }

 private:
  unsigned status_;
};

inline constexpr std::string_view cf_events = "events";
inline constexpr std::string_view cf_ids = "event_ids";
inline constexpr std::string_view cf_meta = "events_meta";
inline constexpr std::string_view cf_blobs = "blobs";
inline constexpr std::string_view cf_attachments = "attachments";
/// Superseded row versions: <object>\0<old _pagination_key> -> 19-digit xact that superseded it + encoded row.
inline constexpr std::string_view cf_history = "event_history";

/// One event container: type in {"project_logs","experiment","dataset"}.
struct object_ref {
  std::string type;
  std::string id;
  std::string key() const { return type + ":" + id; }
  /// The object_lookup type: "project" for project logs.
  std::string_view lookup_type() const { return type == "project_logs" ? std::string_view("project") : std::string_view(type); }
};

/// A /logs3 row read without a DOM (logs3.cpp, simdjson): everything the store needs, the other fields
/// already serialized. Only plain rows take this form (no `_is_merge`/`_object_delete`: those need the DOM).
/// No member owns memory: the views point into the request's parsed body and into a per-request arena
/// (logs3.cpp), both alive until event_store::write returns (a heap string per field was most of the
/// destination's allocations).
struct fast_row {
  std::optional<std::string_view> id;  // nullopt: absent or null; "" when an empty string
  bool id_not_string = false;          // the row's "id" is neither a string nor null (400)
  std::string_view created;            // the unescaped "created" when a non-empty string, else ""
  std::string_view span_id;            // unescaped "span_id" when a non-empty string, else ""
  bool has_root_span_id = false;       // "root_span_id" is a non-empty string
  bool is_root = true;                 // span_parents absent, null or []
  bool needs_dom = false;              // a comment row or a feedback merge: the caller re-reads it as a DOM
  /// Minified `"key":value` members, comma-separated, of every field except the server-assigned and
  /// control ones (reserved_field).
  std::string_view members;
  /// The server-assigned fields present that the server may keep as sent (created, span_id, root_span_id,
  /// org_id, log_id and the object ids), in order, each once (a repeated key: the last one): key, minified value.
  struct kept_field {
    std::string_view key, value;
  };
  std::array<kept_field, 8> reserved{};
  std::size_t reserved_count = 0;
};

/// Fields the store sets or removes itself: not part of fast_row::members.
bool reserved_field(std::string_view key);

/// A row to write: either a DOM row modified in place (it lives in the request's monotonic resource),
/// or a fast_row.
struct row_in {
  const object_ref* obj = nullptr;  // outlives the write
  json::object* row = nullptr;
  const fast_row* fast = nullptr;
  bool restore = false;  // a dataset restore: the row's comments and audit entries are written as given
};

/// Stored value: be32(len id) id be32(len created) created json.
std::string encode_row(std::string_view id, std::string_view created, std::string_view json_text);
struct decoded_row {
  std::string_view id;
  std::string_view created;
  std::string_view json_text;
};
decoded_row decode_row(std::string_view value);

std::string be64_key(std::uint64_t v);
std::uint64_t from_be64_key(std::string_view s);
std::string random_hex(std::size_t bytes);
std::string hex_encode(std::string_view s);
std::optional<std::string> hex_decode(std::string_view s);
std::string now_iso_utc();
/// "p" + 20-digit xact + 6-digit position: the pagination key of a row version.
std::string format_pk(std::uint64_t xact, std::size_t seq);
std::string format_xact(std::uint64_t x);
/// A 19-digit xact id (a request's "version"), or 400 naming `what`.
std::uint64_t parse_version(std::string_view s, std::string_view what);
/// Canonical sortable form of an ISO-8601 time ("YYYY-MM-DDTHH:MM:SS.fffffffff"), or the input unchanged
/// when it is not one, so that "…00Z" and "…00.000Z" compare equal.
std::string normalize_time(std::string_view s);

struct shared_scans;  // events.cpp

/// The event store (see events.hpp for the key layout and semantics). Thread-safe.
class event_store {
 public:
  event_store(stores::kv_store& store, const events_config& cfg);
  ~event_store();

  /// Applies rows as one transaction; returns their ids in order (and its xact id in `xact_out`). Throws
  /// http_error (400 bad row, comment or feedback on an unknown row; 413 row above max_span_bytes) before
  /// anything is written. The replaced version of each row moves to the history (versioned reads).
  std::vector<std::string> write(std::span<row_in> rows, std::string_view org_id, std::string* xact_out = nullptr);

  struct scan_request {
    std::vector<std::string> object_keys;  // one or more objects, rows merged in key order
    std::vector<btql_condition> filters;
    std::optional<std::string> after_pk;  // cursor: strictly after it (asc) or before it (desc)
    bool descending = false;
    std::uint64_t limit = 1000;
    bool pk_only = false;
    /// Read as of this transaction: each row as it was then (current or superseded version).
    std::optional<std::uint64_t> version;
  };
  struct scan_result {
    std::uint64_t rows = 0;
    bool has_more = false;
    std::string last_pk;
  };
  /// Appends up to `limit` row JSON texts, comma-separated, to `out`. A forward page of one object with
  /// row filters (Ferry's id-window slices) goes through the shared scans (events.cpp): the rows a scan
  /// passes over for other windows asked for recently are kept for their next page.
  scan_result scan(const scan_request& req, std::string& out) const;

  /// Visits the matching rows (filters, key bounds, version; no limit) of every object in key order per
  /// object (objects one after the other); `sink` returns false to stop.
  using row_sink = std::function<bool(std::string_view pk, const decoded_row& row)>;
  void visit(const scan_request& req, const row_sink& sink) const;

  std::uint64_t count(std::string_view object_key) const;
  /// The current rows' ids of an object in [from, to) ("" = unbounded), ascending, from the id index
  /// (no row read) until `fn` returns false.
  void visit_ids(std::string_view object_key, std::string_view from, std::string_view to,
                 const std::function<bool(std::string_view id)>& fn) const;
  /// The newest transaction id handed out (what GET /xact-id returns).
  std::string current_xact();

 private:
  std::uint64_t allocate_xact();

  stores::kv_store& store_;
  const events_config& cfg_;
  std::array<std::mutex, 64> shards_;
  std::mutex xact_mu_;
  std::uint64_t next_xact_ = 0;
  std::uint64_t reserved_until_ = 0;
  /// Bumped before and after every write batch: rows kept by the shared scans are used only while it
  /// still has the value read before the scan that read them.
  std::atomic<std::uint64_t> write_gen_{0};
  std::unique_ptr<shared_scans> shared_;
};

}  // namespace ferry::emulator::detail

namespace ferry::emulator {

namespace json = boost::json;

struct events_api::impl {
  impl(stores::kv_store& s, object_lookup l, events_config c);

  stores::kv_store& store;
  object_lookup lookup;
  events_config cfg;
  detail::event_store events;
  std::string sign_secret;

  std::optional<transports::http_reply> route(transports::http_request& req, const request_context& ctx);

  // events.cpp
  std::string btql(std::string_view body, const request_context& ctx);
  /// btql_exec.cpp: a general query (btql_query::general) over the objects and version of `sr`; appends
  /// the rows of the page, comma-separated, to `out` and returns the next cursor ("" at the end).
  std::string btql_general(const btql_query& q, detail::event_store::scan_request sr, std::string& out);
  /// Key aggregates (count, min/max of id or created over key conditions) from the stored keys; false when
  /// the query is not one (then btql_general parses rows).
  bool btql_key_aggregates(const btql_query& q, detail::event_store::scan_request sr, std::string& out);
  /// A general query over rows that are not events (project_prompts / project_functions), in their order.
  std::string btql_rows(const btql_query& q, const std::vector<boost::json::object>& rows, std::string& out);
  std::vector<boost::json::object> metadata_rows(const btql_query& q, const detail::event_store::scan_request& sr,
                                                 bool audit_log, const request_context& ctx) const;
  std::string fetch(const detail::object_ref& obj, std::string_view body, boost::urls::url_view url,
                    bool is_post, const request_context& ctx);
  std::string version() const;
  /// POST /v1/dataset/{id}/restore[/preview] {"version"}: the dataset's rows made what they were then.
  std::string restore(const detail::object_ref& obj, std::string_view body, bool preview, const request_context& ctx);
  void require_object(const detail::object_ref& obj, const request_context& ctx) const;
  std::string now() const;

  // logs3.cpp
  std::string logs3(std::string_view body, const request_context& ctx);
  /// The Boost.JSON path of /logs3 (overflow references); logs3() handles inline rows itself.
  std::string logs3_dom(std::string_view body, const request_context& ctx);
  std::string logs3_overflow(std::string_view body, const request_context& ctx);
  /// The PUT of an overflow payload to its signed URL: refused (400/404) unless a grant of exactly
  /// that size exists; then stored.
  void put_overflow_payload(std::string_view org_id, std::string_view key, std::string body);
  std::string rest_insert(const detail::object_ref& obj, std::string_view body, const request_context& ctx);
  std::string rest_feedback(const detail::object_ref& obj, std::string_view body, const request_context& ctx);
  std::string cross_insert(std::string_view body, const request_context& ctx);

  // attachments.cpp
  std::string signed_url(std::string_view kind, std::string_view org_id, std::string_view key,
                         const request_context& ctx) const;
  bool check_signature(std::string_view kind, std::string_view org_hex, std::string_view key_hex,
                       std::string_view sig) const;
  std::string attachment_upload_url(std::string_view body, const request_context& ctx);
  std::string attachment_status(std::string_view body, const request_context& ctx);
  std::string attachment_get(boost::urls::url_view url, const request_context& ctx);
  /// PUT/GET of a signed URL target; returns the reply (bytes for GET).
  transports::http_reply signed_target(transports::http_request& req, boost::urls::url_view url);
};

}  // namespace ferry::emulator
