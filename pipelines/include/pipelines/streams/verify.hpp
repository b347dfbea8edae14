#pragma once
// Stream verification: compares what the source and the destination hold for one stream, row by row,
// with order-independent digests computed by the SAME function on both sides.
//
// Canonical row hash = hash_row(id, canonical JSON of the fields that survive a copy), where the
// surviving fields are the kind's kept fields (row_rewriter.hpp) minus `origin` and the merge/delete
// markers (`_object_delete`, `_is_merge`, `_merge_paths`, `_array_delete`, `_parent_id`): input,
// output, expected, error, scores, metadata, tags, metrics, context, span_attributes, facets, created,
// span_id, root_span_id, span_parents (datasets: their subset), and `comments` (what a copy carries of
// each: id, created, comment, source, metadata, origin.id; not `audit_data`). Canonical JSON = objects with keys
// sorted bytewise, recursively, no whitespace, Boost.JSON number/string spelling; so a server's key
// order and whitespace do not matter. Null and absent fields are treated alike. The `key` of an
// attachment reference ({"type":"braintrust_attachment",...}) is left out: a copied attachment gets a
// new key.
//
// verify_tally keeps one 128-bit hash per source row (memory ~ 80 bytes x rows of the largest stream),
// then checks destination rows against it. Rows are keyed by (object, id): the object is the row's
// own object field (project_id / experiment_id / dataset_id), a destination object translated back to
// its source object through `objects` (destination id -> source id, from the id map), so an id that
// repeats across the experiments or datasets of one grouped stream is neither a false difference nor
// able to hide a row written into the wrong object. Only the pairing of objects comes from the
// migration's records; equality is decided by canonical_row_hash alone (the migrator's row rewrite is
// never used). A destination row of an object not in `objects` is extra. Ids in the report read
// "<source object>/<id>" when the row names its object. Pure; one instance per stream; not thread-safe.

#include "pipelines/streams/btql_query.hpp"
#include "pipelines/streams/digest.hpp"

#include <boost/json/fwd.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ferry::pipelines::streams {

/// The field naming a row's object: project_id, experiment_id or dataset_id.
std::string_view object_field(stream_kind kind);

/// Canonical JSON of any value (keys sorted, integral doubles as integers, attachment keys left out).
std::string canonical_json(const boost::json::value& v);

/// The canonical form of the surviving fields of a row (see above).
std::string canonical_content(const boost::json::object& row, stream_kind kind);
row_hash canonical_row_hash(const boost::json::object& row, stream_kind kind);

/// A top-level field spilled to an attachment by the copy (stream_runner.hpp: a row above the per-row
/// limit has its largest spillable fields uploaded as `<field>.json`, application/json, and replaced by
/// the reference). verify compares the logical row: such a field is read back from its attachment and
/// compared as the value it holds (on either side, so a source that holds spilled rows itself compares
/// alike), so a correct migration with spilled rows verifies equal and a wrong attachment does not.
struct spilled_field {
  std::string field;
  std::string key;
  std::string filename;
  std::string content_type;
};
/// The spilled fields of a row (empty for almost every row: a cheap check of the spillable fields).
std::vector<spilled_field> spilled_fields(const boost::json::object& row);
/// `row` with `f.field` set to the value `content` (the attachment's bytes) holds. Throws
/// std::runtime_error when the content is not JSON.
void inline_spilled(boost::json::object& row, const spilled_field& f, std::string_view content);

struct verify_report {
  std::string stream;
  std::uint64_t source_rows = 0;
  std::uint64_t dest_rows = 0;
  digest256 source_digest;
  digest256 dest_digest;
  std::uint64_t missing = 0;      // in the source, not in the destination
  std::uint64_t extra = 0;        // in the destination, not in the source
  std::uint64_t mismatched = 0;   // same id, different content
  std::vector<std::string> missing_ids;     // first 10
  std::vector<std::string> extra_ids;       // first 10
  std::vector<std::string> mismatched_ids;  // first 10
  bool ok() const { return missing == 0 && extra == 0 && mismatched == 0 && source_rows == dest_rows; }
  /// "stream=.. source_rows=.. dest_rows=.. missing=.. extra=.. mismatched=.. [first ids]".
  std::string summary() const;
};

class verify_tally {
 public:
  /// `objects`: destination object id -> source object id (empty: the rows' object fields are compared as is).
  verify_tally(std::string stream, stream_kind kind, std::unordered_map<std::string, std::string> objects = {})
      : kind_(kind), objects_(std::move(objects)) {
    report_.stream = std::move(stream);
  }
  void add_source(const boost::json::object& row);
  void add_dest(const boost::json::object& row);
  /// Call once both sides were read completely.
  verify_report finish();

 private:
  stream_kind kind_;
  std::unordered_map<std::string, std::string> objects_;
  verify_report report_;
  std::unordered_map<std::string, row_hash> source_;  // "<source object>/<id>" -> hash, erased when matched
};

}  // namespace ferry::pipelines::streams
