// General BTQL queries (btql_query::general): everything the key-range scan cannot answer exactly
// (filters on any field, or/not, column lists, sorts on other fields, dimensions and measures, the traces
// and summary shapes). The rows of the objects are read once through event_store::visit (as of the
// request's version), parsed, filtered, shaped, grouped or sorted, then paged with an offset cursor.
// This path parses every row of the objects: it serves the SDKs' and CLIs' span lookups and
// aggregates, not bulk paging (Ferry and the reference tool page with the key-range form). Counts and
// min/max of id or created over key conditions (Ferry's slice probes) are read from the stored keys.

#include "events_impl.hpp"
#include "engine/json_parse.hpp"

#include <boost/json/monotonic_resource.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace ferry::emulator {
namespace {

using detail::http_error;

const json::value null_value;

// The value at an identifier path (array indexes by number), null when absent.
const json::value& lookup(const json::object& row, const std::vector<std::string>& path) {
  const json::value* at = nullptr;
  const json::object* o = &row;
  const json::array* a = nullptr;
  for (const auto& part : path) {
    if (o) {
      at = o->if_contains(part);
    } else if (a) {
      std::size_t i = 0;
      auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), i);
      at = ec == std::errc{} && p == part.data() + part.size() && i < a->size() ? &(*a)[i] : nullptr;
    } else {
      at = nullptr;
    }
    if (!at) return null_value;
    o = at->is_object() ? &at->get_object() : nullptr;
    a = at->is_array() ? &at->get_array() : nullptr;
  }
  return at ? *at : null_value;
}

std::optional<double> as_number(const json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_double()) return v.get_double();
  return std::nullopt;
}

// Numbers compare numerically, also with numeric strings (`_xact_id` is a string of digits).
std::optional<double> numeric(const json::value& v) {
  if (auto n = as_number(v)) return n;
  if (!v.is_string() || v.get_string().empty()) return std::nullopt;
  const std::string_view s = v.get_string();
  double d = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return d;
}

int rank(const json::value& v) {
  if (v.is_null()) return 0;
  if (v.is_bool()) return 1;
  if (v.is_number()) return 2;
  if (v.is_string()) return 3;
  if (v.is_array()) return 4;
  return 5;
}

// A total order for sorting and min/max: null < bool < number < string < array < object; strings that
// are ISO-8601 times compare as times; 19-digit xact strings compare as strings (same width).
int order(const json::value& a, const json::value& b) {
  const int ra = rank(a), rb = rank(b);
  if (ra != rb) return ra < rb ? -1 : 1;
  switch (ra) {
    case 1: return static_cast<int>(a.get_bool()) - static_cast<int>(b.get_bool());
    case 2: {
      const double x = *as_number(a), y = *as_number(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    case 3: {
      const auto x = detail::normalize_time(a.get_string()), y = detail::normalize_time(b.get_string());
      return x.compare(y) < 0 ? -1 : x == y ? 0 : 1;
    }
    case 0: return 0;
    default: {
      const auto x = json::serialize(a), y = json::serialize(b);
      return x.compare(y) < 0 ? -1 : x == y ? 0 : 1;
    }
  }
}

// Comparison of a filter: null on either side is false; a number and a numeric string compare as numbers.
std::optional<int> compare_for_filter(const json::value& a, const json::value& b) {
  if (a.is_null() || b.is_null()) return std::nullopt;
  if (a.is_number() != b.is_number()) {
    auto x = numeric(a), y = numeric(b);
    if (!x || !y) return std::nullopt;
    return *x < *y ? -1 : *x > *y ? 1 : 0;
  }
  if (rank(a) != rank(b)) return std::nullopt;
  return order(a, b);
}

bool like(std::string_view s, std::string_view pattern, bool fold) {
  auto eq = [&](char x, char y) {
    return fold ? std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y)) : x == y;
  };
  // Iterative matcher with backtracking to the last '%'.
  std::size_t i = 0, j = 0, star = std::string_view::npos, mark = 0;
  while (i < s.size()) {
    if (j < pattern.size() && (pattern[j] == '_' || (pattern[j] != '%' && eq(s[i], pattern[j])))) {
      ++i;
      ++j;
    } else if (j < pattern.size() && pattern[j] == '%') {
      star = j++;
      mark = i;
    } else if (star != std::string_view::npos) {
      j = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (j < pattern.size() && pattern[j] == '%') ++j;
  return j == pattern.size();
}

bool truthy(const json::value& v) { return v.is_bool() ? v.get_bool() : !v.is_null(); }

json::value eval(const btql_expr& e, const json::object& row);

bool eval_bool(const btql_expr& e, const json::object& row) { return truthy(eval(e, row)); }

json::value eval_call(const btql_expr& e, const json::object& row) {
  const std::string& f = e.name;
  if (f == "and") return eval_bool(e.args[0], row) && eval_bool(e.args[1], row);
  if (f == "or") return eval_bool(e.args[0], row) || eval_bool(e.args[1], row);
  if (f == "not") return !eval_bool(e.args[0], row);
  if ((f == "add" || f == "sub") && e.args.size() == 2) {  // time +/- interval (the parser allows no other use)
    const std::size_t at = e.args[1].name == "interval" ? 1 : e.args[0].name == "interval" ? 0 : 2;
    if (at != 2) {
      const json::value t = eval(e.args[1 - at], row);
      const std::int64_t us = e.args[at].args.front().value.as_int64();
      auto shifted = t.is_string() ? btql_shift_time(t.get_string(), f == "sub" ? -us : us) : std::nullopt;
      return shifted ? json::value(*shifted) : json::value(nullptr);
    }
  }
  const json::value a = eval(e.args[0], row);
  if (f == "is_null") return a.is_null();
  if (f == "is_not_null") return !a.is_null();
  if (f == "in") {  // `x in (a, b)` (text) or `in` with a literal list on the right (JSON AST)
    for (std::size_t i = 1; i < e.args.size(); ++i) {
      const json::value b = eval(e.args[i], row);
      if (b.is_array()) {
        for (const auto& x : b.get_array())
          if (auto c = compare_for_filter(a, x); c && *c == 0) return true;
      } else if (auto c = compare_for_filter(a, b); c && *c == 0) {
        return true;
      }
    }
    return false;
  }
  const json::value b = eval(e.args[1], row);
  if (f == "add" || f == "sub" || f == "mul" || f == "div") {
    const auto x = as_number(a), y = as_number(b);
    if (!x || !y || (f == "div" && *y == 0)) return nullptr;
    return f == "add" ? *x + *y : f == "sub" ? *x - *y : f == "mul" ? *x * *y : *x / *y;
  }
  if (f == "like" || f == "ilike")
    return a.is_string() && b.is_string() && like(a.get_string(), b.get_string(), f == "ilike");
  if (f == "includes") {
    if (a.is_array()) {
      for (const auto& x : a.get_array())
        if (auto c = compare_for_filter(x, b); c && *c == 0) return true;
      return false;
    }
    return a.is_string() && b.is_string() && std::string_view(a.get_string()).find(b.get_string()) != std::string_view::npos;
  }
  const auto c = compare_for_filter(a, b);
  if (!c) return false;
  if (f == "eq") return *c == 0;
  if (f == "ne") return *c != 0;
  if (f == "gt") return *c > 0;
  if (f == "ge") return *c >= 0;
  if (f == "lt") return *c < 0;
  if (f == "le") return *c <= 0;
  throw http_error(400, "btql: '" + f + "' is an aggregate: use it in measures");
}

json::value eval(const btql_expr& e, const json::object& row) {
  switch (e.k) {
    case btql_expr::kind::ident: return lookup(row, e.path);
    case btql_expr::kind::literal: return e.value;
    case btql_expr::kind::star: return true;
    case btql_expr::kind::call: return eval_call(e, row);
  }
  return nullptr;
}

// One aggregate over the rows of a group.
json::value aggregate(const btql_expr& e, const std::vector<const json::object*>& rows) {
  if (e.k != btql_expr::kind::call || !btql_has_aggregate(e)) return rows.empty() ? json::value() : eval(e, *rows.front());
  const std::string& f = e.name;
  const btql_expr& arg = e.args.front();
  if (f == "count" && (arg.k == btql_expr::kind::star || arg.k == btql_expr::kind::literal))
    return static_cast<std::int64_t>(rows.size());
  std::int64_t count = 0;
  double sum = 0;
  std::set<std::string> distinct;
  std::optional<json::value> best;
  for (const auto* r : rows) {
    json::value v = eval(arg, *r);
    if (v.is_null()) continue;
    ++count;
    if (f == "count_distinct") distinct.insert(json::serialize(v));
    if (auto n = as_number(v); n && (f == "sum" || f == "avg")) sum += *n;
    if ((f == "min" && (!best || order(v, *best) < 0)) || (f == "max" && (!best || order(v, *best) > 0))) best = v;
  }
  if (f == "count") return count;
  if (f == "count_distinct") return static_cast<std::int64_t>(distinct.size());
  if (f == "sum") return sum;
  if (f == "avg") return count ? json::value(sum / static_cast<double>(count)) : json::value(nullptr);
  return best ? *best : json::value(nullptr);
}

struct row_ref {
  std::string pk;
  const json::object* row;
};

std::string root_of(const json::object& r) {
  const auto* v = r.if_contains("root_span_id");
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

// The spans of the matching traces (traces), or each matching trace's root span (summary); a trace's
// position is that of its first span in key order.
std::vector<row_ref> shape_rows(const btql_query& q, const std::vector<row_ref>& all, const std::vector<row_ref>& matched) {
  std::unordered_set<std::string> roots;
  for (const auto& m : matched) roots.insert(root_of(*m.row));
  std::vector<row_ref> out;
  std::unordered_map<std::string, std::size_t> summary_at;  // root -> index in out
  for (const auto& r : all) {
    const std::string root = root_of(*r.row);
    if (!roots.contains(root)) continue;
    if (q.shape == "traces") {
      out.push_back(r);
      continue;
    }
    const auto* is_root = r.row->if_contains("is_root");
    auto [it, fresh] = summary_at.try_emplace(root, out.size());
    if (fresh) out.push_back(r);
    else if (is_root && is_root->is_bool() && is_root->get_bool()) out[it->second] = r;
  }
  return out;
}

std::vector<json::object> group_rows(const btql_query& q, const std::vector<row_ref>& rows) {
  std::map<std::string, std::vector<const json::object*>> groups;  // serialized dimension values -> rows
  std::map<std::string, json::array> keys;
  for (const auto& r : rows) {
    json::array key;
    for (const auto& d : q.dimensions) key.push_back(eval(d.expr, *r.row));
    const std::string k = json::serialize(key);
    groups[k].push_back(r.row);
    keys.try_emplace(k, std::move(key));
  }
  if (q.dimensions.empty() && groups.empty()) groups["[]"];  // aggregates over no rows: one row
  std::vector<json::object> out;
  for (const auto& [k, members] : groups) {
    json::object o;
    if (!q.dimensions.empty())
      for (std::size_t i = 0; i < q.dimensions.size(); ++i) o[q.dimensions[i].alias] = keys[k][i];
    for (const auto& m : q.measures) o[m.alias] = aggregate(m.expr, members);
    out.push_back(std::move(o));
  }
  return out;
}

std::string offset_cursor(std::uint64_t offset) { return detail::hex_encode("o|" + std::to_string(offset)); }

std::uint64_t parse_offset_cursor(std::string_view cursor) {
  auto raw = detail::hex_decode(cursor);
  std::uint64_t v = 0;
  if (!raw || !raw->starts_with("o|") ||
      std::from_chars(raw->data() + 2, raw->data() + raw->size(), v).ec != std::errc{})
    throw http_error(400, "cursor: not a cursor returned by this server for this query");
  return v;
}

// Filters, shapes, groups, sorts and pages `all` (in key order) into `out`; returns the next cursor or "".
std::string evaluate(const btql_query& q, std::uint64_t default_limit, const std::vector<row_ref>& all, std::string& out) {
  std::vector<row_ref> rows;
  for (const auto& r : all)
    if (!q.filter_expr || eval_bool(*q.filter_expr, *r.row)) rows.push_back(r);
  if (q.shape != "spans") rows = shape_rows(q, all, rows);

  std::vector<json::object> grouped;
  const bool aggregates = !q.measures.empty();
  if (aggregates) grouped = group_rows(q, rows);
  auto sort_value = [&](std::size_t i, const btql_expr& e) {
    return aggregates ? eval(e, grouped[i]) : eval(e, *rows[i].row);
  };
  const std::size_t n = aggregates ? grouped.size() : rows.size();
  std::vector<std::size_t> idx(n);
  for (std::size_t i = 0; i < n; ++i) idx[i] = i;
  if (!q.sort.empty()) {
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
      for (const auto& k : q.sort) {
        const int c = order(sort_value(a, k.expr), sort_value(b, k.expr));
        if (c != 0) return k.descending ? c > 0 : c < 0;
      }
      return false;
    });
  }

  const std::uint64_t offset = q.cursor ? parse_offset_cursor(*q.cursor) : 0;
  const std::uint64_t limit = q.limit.value_or(default_limit);
  std::uint64_t emitted = 0;
  for (std::uint64_t i = offset; i < n && emitted < limit; ++i, ++emitted) {
    if (emitted) out.push_back(',');
    if (aggregates) {
      out.append(json::serialize(grouped[idx[i]]));
    } else if (q.columns.empty()) {
      out.append(json::serialize(*rows[idx[i]].row));
    } else {
      json::object o;
      for (const auto& c : q.columns) o[c.alias] = eval(c.expr, *rows[idx[i]].row);
      out.append(json::serialize(o));
    }
  }
  return offset + emitted < n && emitted > 0 ? offset_cursor(offset + emitted) : std::string();
}

// A measure count(1) / count(*) / min(id|created) / max(id|created): what `kind` says and which field.
struct key_measure {
  enum class op { count, min, max } kind;
  bool created = false;
  std::string alias;
};

// The measures of a query that only counts rows and takes min/max of id or created, with no dimensions,
// columns or sort, over a filter of key conditions (Ferry's slice probes); nullopt for any other query.
std::optional<std::vector<key_measure>> key_aggregates(const btql_query& q) {
  if (q.shape != "spans" || q.measures.empty() || !q.columns.empty() || !q.dimensions.empty() || !q.sort.empty() ||
      !q.key_filter)
    return std::nullopt;
  std::vector<key_measure> out;
  for (const auto& m : q.measures) {
    const auto& e = m.expr;
    if (e.k != btql_expr::kind::call || e.args.size() != 1) return std::nullopt;
    const auto& a = e.args[0];
    if (e.name == "count" && (a.k == btql_expr::kind::star || (a.k == btql_expr::kind::literal && !a.value.is_null()))) {
      out.push_back({key_measure::op::count, false, m.alias});
    } else if ((e.name == "min" || e.name == "max") && a.k == btql_expr::kind::ident && a.path.size() == 1 &&
               (a.path[0] == "id" || a.path[0] == "created")) {
      out.push_back({e.name == "min" ? key_measure::op::min : key_measure::op::max, a.path[0] == "created", m.alias});
    } else {
      return std::nullopt;
    }
  }
  return out;
}

}  // namespace

namespace {

// The running count and min/max of id and created.
struct key_totals {
  std::uint64_t n = 0;
  std::string min_id, max_id, min_created, max_created;

  void add_id(std::string_view id) {
    if (n == 0 || id < min_id) min_id = id;
    if (n == 0 || id > max_id) max_id = id;
  }
  void add_created(std::string_view c) {
    if (n == 0 || c < min_created) min_created = c;
    if (n == 0 || c > max_created) max_created = c;
  }
};

// [lo, hi) when every condition is `id >= lo` / `id < hi` ("" = unbounded); nullopt otherwise.
std::optional<std::pair<std::string, std::string>> id_window(const std::vector<btql_condition>& filters) {
  std::string lo, hi;
  for (const auto& c : filters) {
    if (c.field != btql_field::id || (c.op != btql_op::ge && c.op != btql_op::lt)) return std::nullopt;
    if (c.op == btql_op::ge) lo = std::max(lo, c.value);
    else if (hi.empty() || c.value < hi) hi = c.value;
  }
  return std::make_pair(lo, hi);
}

}  // namespace

// count / min / max of id and created over the rows the key conditions select: read from the stored id
// and created of each row (the scan's own row filters), no row parsed; with only id conditions and no
// created measure, from the id index (only the window's ids are read). A row without a string `created`
// is not answered this way: the general path sees its field as it is.
bool events_api::impl::btql_key_aggregates(const btql_query& q, detail::event_store::scan_request sr, std::string& out) {
  const auto measures = key_aggregates(q);
  if (!measures) return false;
  bool needs_created = false;
  for (const auto& m : *measures) needs_created = needs_created || m.created;
  key_totals t;
  if (auto w = id_window(q.filters); w && !needs_created && !sr.version) {
    for (const auto& okey : sr.object_keys) {
      if (!w->second.empty() && w->second <= w->first) break;
      events.visit_ids(okey, w->first, w->second, [&](std::string_view id) {
        t.add_id(id);
        ++t.n;
        return true;
      });
    }
  } else {
    sr.filters = q.filters;
    bool odd_row = false;
    events.visit(sr, [&](std::string_view, const detail::decoded_row& d) {
      if (d.created.empty()) {
        odd_row = true;
        return false;
      }
      t.add_id(d.id);
      t.add_created(d.created);
      ++t.n;
      return true;
    });
    if (odd_row) return false;
  }
  json::object o;
  for (const auto& m : *measures) {
    if (m.kind == key_measure::op::count) o[m.alias] = t.n;
    else if (t.n == 0) o[m.alias] = nullptr;
    else if (m.kind == key_measure::op::min) o[m.alias] = m.created ? t.min_created : t.min_id;
    else o[m.alias] = m.created ? t.max_created : t.max_id;
  }
  out.append(json::serialize(o));
  return true;
}

std::string events_api::impl::btql_general(const btql_query& q, detail::event_store::scan_request sr,
                                           std::string& out) {
  json::monotonic_resource mr;
  std::vector<std::pair<std::string, json::value>> parsed;  // pk, row
  if (btql_key_aggregates(q, sr, out)) return {};
  sr.filters.clear();
  events.visit(sr, [&](std::string_view pk, const detail::decoded_row& d) {
    boost::system::error_code ec;
    json::value v = ferry::engine::parse_json(d.json_text, ec, &mr);
    if (ec || !v.is_object()) throw http_error(500, "stored row " + std::string(d.id) + " is not JSON");
    parsed.emplace_back(std::string(pk), std::move(v));
    return true;
  });
  std::vector<row_ref> all;
  all.reserve(parsed.size());
  for (const auto& [pk, v] : parsed) all.push_back({pk, &v.get_object()});
  if (sr.object_keys.size() > 1)
    std::stable_sort(all.begin(), all.end(), [](const row_ref& a, const row_ref& b) { return a.pk < b.pk; });
  return evaluate(q, cfg.btql_default_limit, all, out);
}

std::string events_api::impl::btql_rows(const btql_query& q, const std::vector<json::object>& rows, std::string& out) {
  if (q.shape != "spans") throw http_error(400, "btql: from " + q.object_type + " has no " + q.shape + " shape");
  std::vector<row_ref> all;
  all.reserve(rows.size());
  for (const auto& r : rows) all.push_back({std::string(), &r});
  return evaluate(q, cfg.btql_default_limit, all, out);
}

}  // namespace ferry::emulator
