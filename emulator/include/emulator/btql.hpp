#pragma once
// The BTQL the emulator understands, parsed from any of the three wire forms:
//  * native clause text (what braintrust-migrate and Ferry send), clauses on lines or separated by `|`
//    (what the `bt` CLI sends), e.g.
//      select: *
//      from: dataset('a', 'b') spans
//      filter: created >= '2024-01-01' and _pagination_key > 'p0001'
//      sort: _pagination_key asc
//      limit: 1000
//  * SQL (`bt sql`): SELECT list FROM type('id') [spans|traces|summary] [WHERE e] [GROUP BY e, ...]
//    [ORDER BY e [ASC|DESC], ...] [LIMIT n];
//  * the JSON AST the JS SDK sends: {"select":[{"op":"star"}], "from":{"op":"function","name":{"op":"ident",
//    "name":["dataset"]},"args":[{"op":"literal","value":"<id>"}],"shape"?:"spans"}, "filter"?, "sort"?,
//    "dimensions"?, "measures"?, "limit":N, "cursor":"..."}.
// Clauses: select (`*` or `expr [as alias], ...`), from, filter (and/or/not, = != < <= > >=, is [not] null,
// [not] like/ilike, [not] in (...), includes/contains, `+`/`-`, NOW() and `INTERVAL n UNIT` / `INTERVAL 'n unit'`
// for time arithmetic, as `bt sync` sends: `created >= NOW() - INTERVAL 259200 SECOND`), sort (`expr [asc|desc], ...`), dimensions and
// measures (count(1|*|e), count_distinct, sum, avg, min, max), limit, cursor, preview_length (rows are
// never truncated). Other clauses, object types and functions are a btql_error naming the clause.
//
// A query is `general` unless the key-range scan answers it exactly: shape spans, select `*` or
// `_pagination_key`, a filter that is a conjunction of comparisons of _pagination_key, created, id or
// _xact_id with literals, sort on _pagination_key only, no dimensions/measures. Non-general queries keep
// the fields below the line (select_star, filters, descending) filled; general ones are evaluated row by
// row (events.cpp).
// NOW() is the `now_iso` the caller passes (empty: the system clock) and is folded into a literal at parse
// time, as is a literal time plus or minus an interval, so `created >= NOW() - INTERVAL ...` stays a key-range
// condition. Units: microsecond(s), millisecond(s), second(s), minute(s), hour(s), day(s), week(s); month and
// year have no fixed length and are refused.
// Pure functions, no I/O; thread-safe. Errors throw btql_error with a message naming the clause at fault.

#include <boost/json/value.hpp>

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

/// An expression: an identifier path, a literal, `*` (only as count's argument) or a call of an operator
/// (and, or, not, eq, ne, gt, ge, lt, le, is_null, is_not_null, like, ilike, in, includes, add, sub; mul,
/// div from the JSON AST), of an aggregate (count, count_distinct, sum, avg, min, max) or `interval` (one
/// literal argument: microseconds; only as the right operand of add/sub, or the left of add).
struct btql_expr {
  enum class kind { ident, literal, call, star };
  kind k = kind::literal;
  std::vector<std::string> path;  // ident
  boost::json::value value;       // literal
  std::string name;               // call
  std::vector<btql_expr> args;    // call
};

struct btql_item {
  btql_expr expr;
  std::string alias;
};

struct btql_sort_key {
  btql_expr expr;
  bool descending = false;
};

struct btql_query {
  std::string object_type;              // project_logs, experiment, dataset; project_prompts, project_functions
  std::vector<std::string> object_ids;  // at least one
  std::string shape = "spans";          // spans | traces | summary
  std::vector<btql_item> columns;       // the select list; empty with `*`
  std::optional<btql_expr> filter_expr;
  std::vector<btql_sort_key> sort;
  std::vector<btql_item> dimensions, measures;
  std::optional<std::uint64_t> limit;  // absent: the server default
  std::optional<std::string> cursor;   // opaque, from a previous response
  bool general = false;                // evaluated row by row (see above)

  // The key-range form (valid when !general; `filters` also for a general query whose filter is such a
  // conjunction, with key_filter set: its key aggregates are counted from the keys, btql_exec.cpp).
  bool select_star = true;              // false: `select: _pagination_key` (only that field per row)
  std::vector<btql_condition> filters;  // a conjunction
  bool key_filter = false;              // no filter, or `filters` is it
  bool descending = false;              // sort: _pagination_key desc
};

/// Parses BTQL text (clauses or SQL). `now_iso`: what NOW() is (ISO-8601 UTC); empty = the system clock.
btql_query parse_btql_text(std::string_view text, std::string_view now_iso = {});
/// Parses the JSON AST form (the value of the request's "query" member).
btql_query parse_btql_ast(const boost::json::object& query, std::string_view now_iso = {});

/// `iso` (an ISO-8601 UTC time: date, optional time, fraction, `Z`/`+00:00`) shifted by `micros`, as
/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (six fraction digits when the result has sub-millisecond precision); nullopt
/// when `iso` is not such a time.
std::optional<std::string> btql_shift_time(std::string_view iso, std::int64_t micros);

/// Quotes a string as a BTQL literal ('...' with \\ and \' escapes); the inverse of the parser's literals.
std::string btql_quote(std::string_view s);
std::string_view to_string(btql_field f);

/// True when the expression contains an aggregate call.
bool btql_has_aggregate(const btql_expr& e);

}  // namespace ferry::emulator
