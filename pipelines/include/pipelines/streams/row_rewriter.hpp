#pragma once
// Turns one BTQL page (`{"data":[row, ...]}`) into /logs3-ready rows without a DOM, in place on their
// bytes: simdjson on-demand walks each row once to locate its fields, and the outgoing row is a copy of
// the source row's own bytes with the dropped fields spliced out (each run of consecutive kept fields is
// one append: keys, values, number spellings, escapes and whitespace exactly as the source wrote them),
// so nothing is re-serialized. A duplicate key is kept as often as the source has it (the destination
// reads the last). Then the destination object id fields are injected
// (`project_id`+`log_id:"g"` | `experiment_id` | `dataset_id`, remapped source -> destination) and
// `origin` (the source row's non-null origin, else {object_type, object_id: source object id, id,
// _xact_id, created}: the provenance of the copy, so it keeps the source ids).
// A source row's own origin points at another object of the source (e.g. a dataset record added from a
// log row): with `origin_dest` set, its `object_id` is replaced by that object's destination id when the
// object was migrated (the other keys and bytes are kept), else the origin is left as it is; the row
// says which (`event_row::origin`), and the stream counts both.
//
// Fields kept (reference-tool.md §3.3), per kind:
//  - logs and experiments: input output expected error scores metadata tags metrics context
//    span_attributes id created origin facets _object_delete _is_merge _merge_paths _array_delete
//    _parent_id span_id root_span_id span_parents. (Ferry keeps `facets` for logs too: the insert schema
//    accepts it and the reference dropping it is a defect, §6.9.)
//  - datasets: input expected metadata tags id created origin facets _object_delete _is_merge
//    _merge_paths _array_delete _parent_id span_id root_span_id span_parents.
//  Everything else (_xact_id, _pagination_key, org_id, project_id, log_id, experiment_id, dataset_id,
//  is_root, comments, audit_data, ...) is not sent as a field of the row.
// Review data (issue 14 item 9). The API writes `comments` and `audit_data` only itself: a client's copy
// of either field is dropped. Comments CAN be recreated the way the SDK's logFeedback writes them: one
// /logs3 row per comment {id, created, comment, origin, _audit_source: source, _audit_metadata:
// metadata} + the destination ids, which the server appends to the `comments` of the row named by
// origin.id. They ride with their row (event_row::riders: same request, right after it, never split
// from it), so the row's insert first resets the destination's comments and a resent request does not
// duplicate them; an origin naming an object is mapped like the row's. Each comment's `_xact_id` is the
// destination's own. Not for delete or merge rows (a merge keeps the destination's comments).
// `audit_data` is NOT carried: its entries record the server's own transactions (`_xact_id`, `created`
// = when the server applied a write, action upsert/merge); the only way to add one is a feedback merge
// (`_audit_source`/`_audit_metadata`), which the server stamps with a new transaction and the time of
// the copy, i.e. a forged history. The feedback's effect (merged scores/expected/tags) is part of the
// row and is copied; rows that had audit entries are counted (rewritten_page::audit_rows).
// `_object_delete` rows pass through for all three kinds (the reference drops them for datasets and
// experiments, so deletions never reach the destination; Ferry propagates them so it converges).
// `_is_merge` rows pass through.
//
// Rejects (throw stream_error, one line naming the stream and the row; nothing is skipped silently):
// a response that is not `{"data": [...]}`, invalid JSON or UTF-8, a row that is not an object, a row
// without a string `id` or a non-empty string `_pagination_key`, keys not strictly increasing (within
// the page or versus the previous page's last key), a grouped row without its object id, or an object
// id with no destination mapping.
//
// Lifecycle/threading: one rewriter per stream, used from one strand at a time (it owns a simdjson
// parser, reused page after page). The page body is modified only by appending padding capacity.

#include "pipelines/streams/btql_query.hpp"
#include "pipelines/streams/digest.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ferry::pipelines::streams {

/// "This stream cannot continue": the message is one line naming the stream and what to fix.
class stream_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One outgoing row.
struct event_row {
  std::string json;            // the /logs3 row object
  std::string riders;          // rows sent right after it in the same request, each as `,{...}`: its comments
  std::string id;              // the row id (unescaped)
  std::string key;             // the source _pagination_key (unescaped)
  row_hash hash;               // hash_row(id, json): the copy digest's contribution
  bool is_delete = false;      // `_object_delete: true`
  bool is_merge = false;       // `_is_merge: true`
  enum class origin_kind : std::uint8_t { built, mapped, unmapped };
  origin_kind origin = origin_kind::built;  // a source origin mapped to the destination, or left as is
};

struct rewritten_page {
  std::vector<event_row> rows;
  std::size_t deletes = 0;  // rows with _object_delete: true
  std::size_t merges = 0;   // rows with _is_merge: true
  std::size_t commented_rows = 0;  // rows whose comments ride with them
  std::size_t audit_rows = 0;      // rows with audit_data entries (not carried: see the header comment)
  std::size_t input_bytes = 0;
};

struct rewrite_config {
  stream_kind kind = stream_kind::project_logs;
  std::string stream_name;        // for errors: "logs project=<id>" etc.
  bool grouped = false;           // source object id comes from the row's experiment_id / dataset_id
  std::string source_object_id;   // single-object streams (logs: the source project id)
  /// source object id -> destination object id (one entry for single-object streams).
  std::unordered_map<std::string, std::string> dest_ids;
  /// (origin.object_type, source object id) -> the destination id of that object if it was migrated.
  /// Called only for rows with their own origin. Empty: source origins are kept verbatim.
  std::function<std::optional<std::string>(std::string_view object_type, std::string_view source_id)> origin_dest;
};

class row_rewriter {
 public:
  explicit row_rewriter(rewrite_config cfg);
  ~row_rewriter();
  row_rewriter(const row_rewriter&) = delete;
  row_rewriter& operator=(const row_rewriter&) = delete;

  /// Rewrites a page. `previous_key` is the last key of the previous page (empty at the start): every
  /// row key must be greater. `body` may be reallocated to add simdjson's padding.
  rewritten_page rewrite(std::string& body, std::string_view previous_key);

  const rewrite_config& config() const { return cfg_; }

 private:
  struct impl;
  rewrite_config cfg_;
  std::unique_ptr<impl> impl_;
};

/// Reads only the `_pagination_key` of each row of a `{"data":[...]}` page (preflight / key queries).
/// Returns the keys in order; rows without a string key yield "". Throws stream_error on bad JSON.
std::vector<std::string> page_keys(std::string& body, std::string_view stream_name);

}  // namespace ferry::pipelines::streams
