#pragma once
// The subset of BTQL the emulator understands, parsed from either wire form:
//  * native text (what braintrust-migrate sends), e.g.
//      select: *
//      from: dataset('a', 'b') spans
//      filter: created >= '2024-01-01' and _pagination_key > 'p0001'
//      sort: _pagination_key asc
//      limit: 1000
//  * the JSON AST the JS SDK sends: {"select":[{"op":"star"}], "from":{"op":"function","name":{"op":"ident",
//    "name":["dataset"]},"args":[{"op":"literal","value":"<id>"}]}, "limit":N, "cursor":"..."} (plus an optional
//    "filter" of and/comparison nodes and "sort":[{"expr":{"op":"ident","name":[...]},"dir":"asc"}]).
// Pure functions, no I/O; thread-safe. Errors throw btql_error with a message naming the clause at fault.

#include <boost/json/fwd.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::emulator {

class btql_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class btql_field { pagination_key, created, id, xact_id };
enum class btql_op { gt, ge, lt, le, eq };

struct btql_condition {
  btql_field field;
  btql_op op;
  std::string value;
};

struct btql_query {
  std::string object_type;              // "project_logs", "experiment" or "dataset"
  std::vector<std::string> object_ids;  // at least one
  bool select_star = true;              // false: `select: _pagination_key` (only that field per row)
  std::vector<btql_condition> filters;  // a conjunction
  bool descending = false;              // sort: _pagination_key desc
  std::optional<std::uint64_t> limit;   // absent: the server default
  std::optional<std::string> cursor;    // opaque, from a previous response
};

/// Parses native BTQL text. Clauses are `name: value` lines (a clause may continue on following lines that
/// do not start a new clause); `select` and `from` are required.
btql_query parse_btql_text(std::string_view text);
/// Parses the JSON AST form (the value of the request's "query" member).
btql_query parse_btql_ast(const boost::json::object& query);

/// Quotes a string as a BTQL literal ('...' with \\ and \' escapes); the inverse of the parser's literals.
std::string btql_quote(std::string_view s);
std::string_view to_string(btql_field f);

}  // namespace ferry::emulator
