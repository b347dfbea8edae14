#pragma once
// The YAML transform of `ferry copy --transform FILE`: rules applied in order to every row.
//
//   rules:
//     - rename: {from: old_name, to: new_name}      # missing field: nothing; target exists: error
//     - drop: [a, b]                                # or drop: a
//     - cast: {field: score, to: int}               # int | float | string | bool | json (parse a string)
//     - move_prefix: {from: "sys/", to: "legacy_sys/"}   # every field named sys/* becomes legacy_sys/*
//     - filter: {field: status, op: eq, value: ok}  # keep rows that match; eq ne lt le gt ge in exists missing
//     - source_id: {field: source_id}               # the row's key in the source, as a string
//     - set: {field: origin, value: v1}             # a constant (any YAML scalar, list or map)
//
// Errors (copy_error) name the file and the rule (its number and text), and for rows the row's source
// key: "transform t.yaml rule 3 (cast score to int): row id=7: value \"x\" is not an integer".
// A transform is immutable after load: apply() may run on any thread.

#include "pipelines/copy/connector.hpp"

#include <boost/json/value.hpp>

#include <string>
#include <vector>

namespace ferry::pipelines::copy {

class transform {
 public:
  static transform load(const std::string& path);
  /// `name` is how errors call the file.
  static transform parse(const std::string& yaml, const std::string& name);
  /// Applies every rule to `r.fields`; false when a filter drops the row.
  bool apply(row& r) const;
  std::size_t size() const { return rules_.size(); }

  struct rule {
    enum class kind { rename, drop, cast, move_prefix, filter, source_id, set } k;
    std::string a, b;                 // rename from/to, cast field/type, prefix from/to, filter field/op, set field
    std::vector<std::string> fields;  // drop
    boost::json::value value;         // filter operand (array for `in`), set constant
    std::string label;                // "rule 3 (cast score to int)"
  };

 private:
  std::string name_;
  std::vector<rule> rules_;
};

}  // namespace ferry::pipelines::copy
