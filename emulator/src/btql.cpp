#include "emulator/btql.hpp"

#include "engine/civil_date.hpp"
#include "engine/json_parse.hpp"

#include <boost/json.hpp>

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <limits>

namespace ferry::emulator {
namespace {

namespace json = boost::json;

enum class tok_kind { ident, string, number, punct, end };

struct token {
  tok_kind kind = tok_kind::end;
  std::string text;  // identifier, decoded literal, number digits or punctuation
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A lexical error at a byte offset of the query text.
struct lex_error {
  std::size_t offset;
  std::string message;
};

// The name of the clause whose text contains `offset`: the last `name:` starting a line or following a `|`
// (the clause separator `bt` uses) at or before it.
std::string clause_at(std::string_view s, std::size_t offset) {
  std::string name;
  std::size_t start = 0;
  while (start <= offset && start < s.size()) {
    std::size_t i = start;
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    std::size_t j = i;
    while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
    std::size_t k = j;
    while (k < s.size() && (s[k] == ' ' || s[k] == '\t')) ++k;
    if (j > i && k < s.size() && s[k] == ':') name = lower(s.substr(i, j - i));
    const auto next = s.find_first_of("\n|", start);
    if (next == std::string_view::npos) break;
    start = next + 1;
  }
  return name;
}

// Whether a '-' after these tokens is the binary minus (after a value) rather than a number's sign.
bool ends_value(const std::vector<token>& toks) {
  if (toks.empty()) return false;
  const token& t = toks.back();
  if (t.kind == tok_kind::punct) return t.text == ")";
  if (t.kind != tok_kind::ident) return true;
  static constexpr std::string_view keywords[] = {"and", "or", "not", "like", "ilike", "in", "includes", "contains",
                                                  "is", "select", "where", "interval"};
  const std::string w = lower(t.text);
  for (auto k : keywords)
    if (w == k) return false;
  return true;
}

// Splits BTQL text into tokens; string literals are decoded (\\ and \' and \" escapes).
std::vector<token> tokenize(std::string_view s) {
  std::vector<token> out;
  std::size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      std::size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_' || s[j] == '.')) ++j;
      out.push_back({tok_kind::ident, std::string(s.substr(i, j - i))});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c)) ||
               (c == '-' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1])) && !ends_value(out))) {
      std::size_t j = i + 1;
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '.')) ++j;
      out.push_back({tok_kind::number, std::string(s.substr(i, j - i))});
      i = j;
    } else if (c == '\'' || c == '"') {
      const char quote = c;
      std::string value;
      std::size_t j = i + 1;
      bool closed = false;
      while (j < s.size()) {
        if (s[j] == '\\') {
          if (j + 1 >= s.size()) break;
          value.push_back(s[j + 1]);
          j += 2;
        } else if (s[j] == quote) {
          closed = true;
          ++j;
          break;
        } else {
          value.push_back(s[j++]);
        }
      }
      if (!closed) throw lex_error{i, "unterminated string literal starting at offset " + std::to_string(i)};
      out.push_back({tok_kind::string, std::move(value)});
      i = j;
    } else if (c == '<' && i + 1 < s.size() && s[i + 1] == '>') {
      out.push_back({tok_kind::punct, "!="});
      i += 2;
    } else if (c == '>' || c == '<' || c == '!' || c == '=') {
      if (i + 1 < s.size() && s[i + 1] == '=') {
        out.push_back({tok_kind::punct, std::string(s.substr(i, 2))});
        i += 2;
      } else {
        out.push_back({tok_kind::punct, std::string(1, c)});
        ++i;
      }
    } else if (c == '(' || c == ')' || c == ',' || c == ':' || c == '*' || c == '|' || c == ';' || c == '+' || c == '-') {
      out.push_back({tok_kind::punct, std::string(1, c)});
      ++i;
    } else {
      throw lex_error{i, std::string("unexpected character '") + c + "' at offset " + std::to_string(i)};
    }
  }
  return out;
}

std::optional<btql_field> field_of(std::string_view name) {
  if (name == "_pagination_key") return btql_field::pagination_key;
  if (name == "created") return btql_field::created;
  if (name == "id") return btql_field::id;
  if (name == "_xact_id") return btql_field::xact_id;
  return std::nullopt;
}

std::optional<btql_op> fast_op_of(std::string_view op) {
  if (op == "gt") return btql_op::gt;
  if (op == "ge") return btql_op::ge;
  if (op == "lt") return btql_op::lt;
  if (op == "le") return btql_op::le;
  if (op == "eq") return btql_op::eq;
  return std::nullopt;
}

// Comparison punctuation -> operator name.
std::optional<std::string> cmp_name(std::string_view p) {
  if (p == ">") return "gt";
  if (p == ">=") return "ge";
  if (p == "<") return "lt";
  if (p == "<=") return "le";
  if (p == "=" || p == "==") return "eq";
  if (p == "!=") return "ne";
  return std::nullopt;
}

bool is_aggregate(std::string_view f) {
  return f == "count" || f == "count_distinct" || f == "sum" || f == "avg" || f == "min" || f == "max";
}

bool valid_object_type(std::string_view t) {
  return t == "project_logs" || t == "experiment" || t == "dataset" || t == "project_prompts" || t == "project_functions";
}
bool is_event_type(std::string_view t) { return t == "project_logs" || t == "experiment" || t == "dataset"; }
bool valid_shape(std::string_view s) { return s == "spans" || s == "traces" || s == "summary"; }

std::uint64_t parse_limit(std::string_view digits, std::string_view where) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc{} || p != digits.data() + digits.size())
    throw btql_error(std::string(where) + ": limit must be a non-negative integer, got '" + std::string(digits) + "'");
  return v;
}

btql_expr make_ident(std::vector<std::string> path) {
  btql_expr e;
  e.k = btql_expr::kind::ident;
  e.path = std::move(path);
  return e;
}
btql_expr make_literal(json::value v) {
  btql_expr e;
  e.k = btql_expr::kind::literal;
  e.value = std::move(v);
  return e;
}
btql_expr make_call(std::string name, std::vector<btql_expr> args) {
  btql_expr e;
  e.k = btql_expr::kind::call;
  e.name = std::move(name);
  e.args = std::move(args);
  return e;
}
std::vector<std::string> split_path(std::string_view dotted) {
  std::vector<std::string> out;
  std::size_t at = 0;
  for (;;) {
    const auto dot = dotted.find('.', at);
    out.emplace_back(dotted.substr(at, dot == std::string_view::npos ? std::string_view::npos : dot - at));
    if (dot == std::string_view::npos) break;
    at = dot + 1;
  }
  return out;
}
std::string default_alias(const btql_expr& e) {
  if (e.k == btql_expr::kind::ident && !e.path.empty()) return e.path.back();
  if (e.k == btql_expr::kind::call) return e.name;
  return "value";
}

// A cursor over one clause's tokens.
class clause_reader {
 public:
  clause_reader(std::string name, std::vector<token> toks) : name_(std::move(name)), toks_(std::move(toks)) {}
  bool done() const { return pos_ >= toks_.size(); }
  const token& peek() const { return done() ? end_ : toks_[pos_]; }
  token next() {
    if (done()) fail("unexpected end of clause");
    return toks_[pos_++];
  }
  bool accept_punct(std::string_view p) {
    if (!done() && toks_[pos_].kind == tok_kind::punct && toks_[pos_].text == p) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool accept_word(std::string_view w) {
    if (!done() && toks_[pos_].kind == tok_kind::ident && lower(toks_[pos_].text) == w) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect_punct(std::string_view p) {
    if (!accept_punct(p)) fail("expected '" + std::string(p) + "'" + near());
  }
  void expect_end() {
    if (!done()) fail("unexpected '" + peek().text + "'");
  }
  [[noreturn]] void fail(const std::string& what) const { throw btql_error(name_ + " clause: " + what); }
  std::string near() const { return done() ? " at end of clause" : " near '" + peek().text + "'"; }

 private:
  std::string name_;
  std::vector<token> toks_;
  std::size_t pos_ = 0;
  token end_{};
};

// ---- expressions (text) -------------------------------------------------------------------------

btql_expr parse_or(clause_reader& r);

bool is_interval(const btql_expr& e) { return e.k == btql_expr::kind::call && e.name == "interval"; }

// Microseconds per unit (singular or plural, any case); month and year have no fixed length.
std::int64_t unit_micros(clause_reader& r, std::string unit) {
  unit = lower(unit);
  if (unit.size() > 1 && unit.back() == 's') unit.pop_back();
  static constexpr std::pair<std::string_view, std::int64_t> units[] = {
      {"microsecond", 1},           {"millisecond", 1000},          {"second", 1000000},
      {"minute", 60000000},         {"hour", 3600000000},           {"day", 86400000000},
      {"week", 604800000000}};
  for (const auto& [name, micros] : units)
    if (unit == name) return micros;
  r.fail("interval unit '" + unit + "' is not supported (microsecond, millisecond, second, minute, hour, day, week)");
}

// After INTERVAL: `n UNIT` or `'n unit'`; an interval is the call interval(<microseconds>).
btql_expr parse_interval(clause_reader& r) {
  const token t = r.next();
  std::string amount, unit;
  if (t.kind == tok_kind::number) {
    amount = t.text;
    const token u = r.next();
    if (u.kind != tok_kind::ident) r.fail("expected a unit after INTERVAL " + amount);
    unit = u.text;
  } else if (t.kind == tok_kind::string) {
    const auto space = t.text.find(' ');
    amount = t.text.substr(0, space);
    if (space != std::string::npos) unit = t.text.substr(t.text.find_first_not_of(' ', space));
  } else {
    r.fail("expected INTERVAL n UNIT, got '" + t.text + "'");
  }
  std::int64_t n = 0;
  auto [p, ec] = std::from_chars(amount.data(), amount.data() + amount.size(), n);
  if (ec != std::errc{} || p != amount.data() + amount.size() || unit.empty())
    r.fail("expected INTERVAL n UNIT with an integer n, got '" + amount + " " + unit + "'");
  const std::int64_t per = unit_micros(r, unit);
  if (n > std::numeric_limits<std::int64_t>::max() / per || n < std::numeric_limits<std::int64_t>::min() / per) r.fail("interval out of range");
  return make_call("interval", {make_literal(n * per)});
}

btql_expr parse_primary(clause_reader& r) {
  const token t = r.next();
  if (t.kind == tok_kind::number) {
    boost::system::error_code ec;
    json::value v = ferry::engine::parse_json(t.text, ec);
    if (ec || !v.is_number()) r.fail("bad number '" + t.text + "'");
    return make_literal(std::move(v));
  }
  if (t.kind == tok_kind::string) return make_literal(json::string(t.text));
  if (t.kind == tok_kind::punct && t.text == "(") {
    btql_expr e = parse_or(r);
    r.expect_punct(")");
    return e;
  }
  if (t.kind == tok_kind::punct && t.text == "*") {
    btql_expr e;
    e.k = btql_expr::kind::star;
    return e;
  }
  if (t.kind != tok_kind::ident) r.fail("expected a field, a literal or '(', got '" + t.text + "'");
  const std::string word = lower(t.text);
  if (word == "true" || word == "false") return make_literal(word == "true");
  if (word == "null") return make_literal(nullptr);
  if (word == "interval" && (r.peek().kind == tok_kind::number || r.peek().kind == tok_kind::string))
    return parse_interval(r);
  if (word == "now" && r.accept_punct("(")) {
    r.expect_punct(")");
    return make_call("now", {});
  }
  if (r.accept_punct("(")) {
    if (!is_aggregate(word))
      r.fail("unsupported function '" + t.text + "' (count, count_distinct, sum, avg, min, max)");
    std::vector<btql_expr> args;
    if (!r.accept_punct(")")) {
      do args.push_back(parse_or(r));
      while (r.accept_punct(","));
      r.expect_punct(")");
    }
    if (args.size() != 1) r.fail(word + "() takes one argument");
    if (args[0].k == btql_expr::kind::star && word != "count") r.fail("only count() takes '*'");
    return make_call(word, std::move(args));
  }
  return make_ident(split_path(t.text));
}

// `a + b - c`: left-associative add/sub (numbers, or a time and an interval).
btql_expr parse_additive(clause_reader& r) {
  btql_expr e = parse_primary(r);
  for (;;) {
    if (r.accept_punct("+")) e = make_call("add", {std::move(e), parse_primary(r)});
    else if (r.accept_punct("-")) e = make_call("sub", {std::move(e), parse_primary(r)});
    else return e;
  }
}

btql_expr parse_cmp(clause_reader& r) {
  btql_expr left = parse_additive(r);
  if (r.peek().kind == tok_kind::punct) {
    if (auto op = cmp_name(r.peek().text)) {
      r.next();
      btql_expr right = parse_additive(r);
      return make_call(*op, {std::move(left), std::move(right)});
    }
    return left;
  }
  if (r.accept_word("is")) {
    const bool negated = r.accept_word("not");
    if (!r.accept_word("null")) r.fail("expected 'is [not] null'" + r.near());
    return make_call(negated ? "is_not_null" : "is_null", {std::move(left)});
  }
  const bool negated = r.accept_word("not");
  btql_expr out;
  if (r.accept_word("like")) {
    out = make_call("like", {std::move(left), parse_additive(r)});
  } else if (r.accept_word("ilike")) {
    out = make_call("ilike", {std::move(left), parse_additive(r)});
  } else if (r.accept_word("in")) {
    r.expect_punct("(");
    std::vector<btql_expr> args{std::move(left)};
    do args.push_back(parse_additive(r));
    while (r.accept_punct(","));
    r.expect_punct(")");
    out = make_call("in", std::move(args));
  } else if (r.accept_word("includes") || r.accept_word("contains")) {
    out = make_call("includes", {std::move(left), parse_additive(r)});
  } else {
    if (negated) r.fail("expected like, ilike or in after 'not'" + r.near());
    return left;
  }
  return negated ? make_call("not", {std::move(out)}) : out;
}

btql_expr parse_not(clause_reader& r) {
  if (r.accept_word("not")) return make_call("not", {parse_not(r)});
  return parse_cmp(r);
}

btql_expr parse_and(clause_reader& r) {
  btql_expr e = parse_not(r);
  while (r.accept_word("and")) e = make_call("and", {std::move(e), parse_not(r)});
  return e;
}

btql_expr parse_or(clause_reader& r) {
  btql_expr e = parse_and(r);
  while (r.accept_word("or")) e = make_call("or", {std::move(e), parse_and(r)});
  return e;
}

// `expr [as alias], ...`
std::vector<btql_item> parse_items(clause_reader& r) {
  std::vector<btql_item> out;
  do {
    btql_item it;
    it.expr = parse_or(r);
    if (r.accept_word("as")) {
      const token a = r.next();
      if (a.kind != tok_kind::ident && a.kind != tok_kind::string) r.fail("expected an alias after 'as'");
      it.alias = a.text;
    } else {
      it.alias = default_alias(it.expr);
    }
    out.push_back(std::move(it));
  } while (r.accept_punct(","));
  r.expect_end();
  return out;
}

void parse_select(clause_reader& r, btql_query& q) {
  if (r.accept_punct("*")) {
    r.expect_end();
    return;
  }
  q.columns = parse_items(r);
}

void parse_from(clause_reader& r, btql_query& q) {
  const token t = r.next();
  if (t.kind != tok_kind::ident || !valid_object_type(t.text))
    r.fail("expected project_logs(...), experiment(...), dataset(...), project_prompts(...) or project_functions(...), got '" + t.text + "'");
  q.object_type = t.text;
  r.expect_punct("(");
  do {
    const token id = r.next();
    if (id.kind != tok_kind::string) r.fail("object ids must be quoted string literals, got '" + id.text + "'");
    if (id.text.empty()) r.fail("empty object id");
    q.object_ids.push_back(id.text);
  } while (r.accept_punct(","));
  r.expect_punct(")");
  if (!r.done()) {
    const token shape = r.next();
    if (shape.kind != tok_kind::ident || !valid_shape(lower(shape.text)))
      r.fail("the shape must be spans, traces or summary, got '" + shape.text + "'");
    q.shape = lower(shape.text);
  }
  r.expect_end();
}

void parse_filter(clause_reader& r, btql_query& q) {
  btql_expr e = parse_or(r);
  r.expect_end();
  q.filter_expr = q.filter_expr ? make_call("and", {std::move(*q.filter_expr), std::move(e)}) : std::move(e);
}

void parse_sort(clause_reader& r, btql_query& q) {
  do {
    btql_sort_key k;
    k.expr = parse_or(r);
    if (r.accept_word("desc")) k.descending = true;
    else if (!r.accept_word("asc") && !r.done() && !(r.peek().kind == tok_kind::punct && r.peek().text == ","))
      r.fail("expected asc or desc, got '" + r.peek().text + "'");
    q.sort.push_back(std::move(k));
  } while (r.accept_punct(","));
  r.expect_end();
}

void parse_limit_clause(clause_reader& r, btql_query& q) {
  const token t = r.next();
  if (t.kind != tok_kind::number) r.fail("expected a number, got '" + t.text + "'");
  q.limit = parse_limit(t.text, "limit clause");
  r.expect_end();
}

void parse_cursor_clause(clause_reader& r, btql_query& q) {
  const token t = r.next();
  if (t.kind != tok_kind::string) r.fail("expected a quoted cursor, got '" + t.text + "'");
  q.cursor = t.text;
  r.expect_end();
}

void parse_preview_length(clause_reader& r) {
  const token t = r.next();
  if (t.kind != tok_kind::number) r.fail("expected a number, got '" + t.text + "'");
  r.expect_end();
}

void parse_clause(const std::string& name, clause_reader& r, btql_query& q) {
  if (name == "select") parse_select(r, q);
  else if (name == "from") parse_from(r, q);
  else if (name == "filter") parse_filter(r, q);
  else if (name == "sort") parse_sort(r, q);
  else if (name == "limit") parse_limit_clause(r, q);
  else if (name == "cursor") parse_cursor_clause(r, q);
  else if (name == "dimensions") q.dimensions = parse_items(r);
  else if (name == "measures") q.measures = parse_items(r);
  else if (name == "preview_length") parse_preview_length(r);
  else
    throw btql_error(name + " clause: not supported (select, from, filter, sort, limit, cursor, dimensions, measures, "
                            "preview_length)");
}

// ---- after parsing: aggregates in the select list, the key-range form ------------------------------

bool has_aggregate(const btql_expr& e) {
  if (e.k == btql_expr::kind::call && is_aggregate(e.name)) return true;
  for (const auto& a : e.args)
    if (has_aggregate(a)) return true;
  return false;
}

void check_no_aggregate(const btql_expr& e, std::string_view where) {
  if (has_aggregate(e)) throw btql_error(std::string(where) + ": aggregates belong in measures");
}

// Conditions of the key-range form: a conjunction of comparisons of a key field with a literal.
bool to_conditions(const btql_expr& e, std::vector<btql_condition>& out) {
  if (e.k != btql_expr::kind::call) return false;
  if (e.name == "and") return to_conditions(e.args[0], out) && to_conditions(e.args[1], out);
  auto op = fast_op_of(e.name);
  if (!op || e.args.size() != 2) return false;
  const auto& l = e.args[0];
  const auto& r = e.args[1];
  if (l.k != btql_expr::kind::ident || l.path.size() != 1 || r.k != btql_expr::kind::literal) return false;
  auto field = field_of(l.path.front());
  if (!field) return false;
  if (r.value.is_string()) out.push_back({*field, *op, std::string(r.value.get_string())});
  else if (r.value.is_int64() || r.value.is_uint64()) out.push_back({*field, *op, json::serialize(r.value)});
  else return false;
  return true;
}

// NOW() becomes the literal `now`; a literal time plus/minus an interval becomes the shifted time. An
// interval may only be added to or subtracted from a time (what is left is evaluated per row).
// NOW() of one query: the caller's time, else the system clock read once (only when NOW() is used).
struct query_clock {
  std::string_view given;
  std::optional<std::string> read;
  const std::string& now();
};

void fold_times(btql_expr& e, query_clock& clock, std::string_view where) {
  if (e.k != btql_expr::kind::call) return;
  for (auto& a : e.args) fold_times(a, clock, where);
  if (e.name == "now") {
    e = make_literal(json::string(clock.now()));
    return;
  }
  const bool add = e.name == "add", sub = e.name == "sub";
  for (std::size_t i = 0; i < e.args.size(); ++i) {
    const bool allowed = (add || (sub && i == 1)) && e.args.size() == 2 && !is_interval(e.args[1 - i]);
    if (is_interval(e.args[i]) && !allowed)
      throw btql_error(std::string(where) + ": an interval can only be added to or subtracted from a time");
  }
  if (!(add || sub) || e.args.size() != 2) return;
  const std::size_t at = is_interval(e.args[1]) ? 1 : is_interval(e.args[0]) ? 0 : 2;
  if (at == 2) return;
  const btql_expr& time = e.args[1 - at];
  if (time.k != btql_expr::kind::literal) return;
  const std::int64_t micros = e.args[at].args.front().value.as_int64();
  auto shifted = time.value.is_string() ? btql_shift_time(time.value.get_string(), sub ? -micros : micros) : std::nullopt;
  if (!shifted) throw btql_error(std::string(where) + ": " + json::serialize(time.value) + " is not an ISO-8601 UTC time");
  e = make_literal(json::string(*shifted));
}

void fold_root(btql_expr& e, query_clock& clock, std::string_view where) {
  fold_times(e, clock, where);
  if (is_interval(e)) throw btql_error(std::string(where) + ": an interval can only be added to or subtracted from a time");
}

const std::string& query_clock::now() {
  if (!read) {
    if (!given.empty()) {
      read = std::string(given);
    } else {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
      read = *btql_shift_time("1970-01-01T00:00:00Z", ms.count() * 1000);
    }
  }
  return *read;
}

bool is_key_ident(const btql_expr& e) {
  return e.k == btql_expr::kind::ident && e.path.size() == 1 && e.path.front() == "_pagination_key";
}

void finish(btql_query& q, std::string_view now_iso) {
  query_clock clock{now_iso, std::nullopt};
  for (auto& c : q.columns) fold_root(c.expr, clock, "select");
  if (q.filter_expr) fold_root(*q.filter_expr, clock, "filter");
  for (auto& k : q.sort) fold_root(k.expr, clock, "sort");
  for (auto& d : q.dimensions) fold_root(d.expr, clock, "dimensions");
  for (auto& m : q.measures) fold_root(m.expr, clock, "measures");
  // Aggregates in the select list (SQL, or BTQL text/AST that puts them there): the other items are the
  // dimensions.
  bool aggregates = false;
  for (const auto& c : q.columns) aggregates = aggregates || has_aggregate(c.expr);
  if (aggregates) {
    for (auto& c : q.columns) (has_aggregate(c.expr) ? q.measures : q.dimensions).push_back(std::move(c));
    q.columns.clear();
  }
  for (const auto& d : q.dimensions) check_no_aggregate(d.expr, "dimensions");
  if (q.filter_expr) check_no_aggregate(*q.filter_expr, "filter");
  if (!q.dimensions.empty() && q.measures.empty()) throw btql_error("dimensions: need at least one measure");
  for (const auto& m : q.measures)
    if (!has_aggregate(m.expr)) throw btql_error("measures: '" + m.alias + "' is not an aggregate");

  std::vector<btql_condition> conds;
  const bool select_ok = q.columns.empty() || (q.columns.size() == 1 && is_key_ident(q.columns.front().expr));
  const bool sort_ok = q.sort.empty() || (q.sort.size() == 1 && is_key_ident(q.sort.front().expr));
  const bool filter_ok = !q.filter_expr || to_conditions(*q.filter_expr, conds);
  q.general = !(is_event_type(q.object_type) && q.shape == "spans" && q.measures.empty() && select_ok && sort_ok && filter_ok);
  q.key_filter = filter_ok;
  if (filter_ok) q.filters = conds;
  if (!q.general) {
    q.select_star = q.columns.empty();
    q.filters = std::move(conds);
    q.descending = !q.sort.empty() && q.sort.front().descending;
  }
}

// ---- SQL ----------------------------------------------------------------------------------------

// SELECT ... FROM ... [WHERE] [GROUP BY] [ORDER BY] [LIMIT]: the tokens between the keywords become
// the clauses of the same names.
btql_query parse_sql(std::vector<token> toks, std::string_view now_iso) {
  struct part {
    std::string name;
    std::vector<token> toks;
  };
  std::vector<part> parts;
  int depth = 0;
  for (std::size_t i = 0; i < toks.size(); ++i) {
    const token& t = toks[i];
    if (t.kind == tok_kind::punct && t.text == "(") ++depth;
    if (t.kind == tok_kind::punct && t.text == ")") --depth;
    if (depth == 0 && t.kind == tok_kind::ident) {
      const std::string w = lower(t.text);
      const bool by = i + 1 < toks.size() && toks[i + 1].kind == tok_kind::ident && lower(toks[i + 1].text) == "by";
      std::string clause;
      if (w == "select" && i == 0) clause = "select";
      else if (w == "from") clause = "from";
      else if (w == "where") clause = "filter";
      else if (w == "group" && by) clause = "dimensions";
      else if (w == "order" && by) clause = "sort";
      else if (w == "limit") clause = "limit";
      else if (w == "offset" || w == "having" || w == "join" || w == "union")
        throw btql_error("sql: " + w + " is not supported");
      if (!clause.empty()) {
        for (const auto& p : parts)
          if (p.name == clause) throw btql_error("sql: " + lower(t.text) + " given twice");
        parts.push_back({clause, {}});
        if (by) ++i;
        continue;
      }
    }
    if (t.kind == tok_kind::punct && t.text == ";" ) continue;
    parts.back().toks.push_back(t);
  }
  btql_query q;
  bool have_from = false;
  for (auto& p : parts) {
    clause_reader r(p.name, std::move(p.toks));
    if (r.done()) r.fail("empty");
    have_from = have_from || p.name == "from";
    parse_clause(p.name, r, q);
  }
  if (!have_from) throw btql_error("sql: FROM is missing");
  // GROUP BY names the dimensions; the select list's non-aggregate items are the same expressions.
  if (!q.dimensions.empty()) {
    std::vector<btql_item> select_dims;
    for (auto& c : q.columns)
      if (!has_aggregate(c.expr)) select_dims.push_back(c);
    std::erase_if(q.columns, [](const btql_item& c) { return !has_aggregate(c.expr); });
    if (!select_dims.empty()) q.dimensions = std::move(select_dims);
  }
  finish(q, now_iso);
  return q;
}

// ---- JSON AST -----------------------------------------------------------------------------------

const json::object& as_object(const json::value& v, std::string_view where) {
  if (!v.is_object()) throw btql_error(std::string(where) + ": expected an object");
  return v.get_object();
}

std::vector<std::string> ident_path(const json::value& v, std::string_view where) {
  const auto& o = as_object(v, where);
  const auto* op = o.if_contains("op");
  const auto* name = o.if_contains("name");
  if (!op || !op->is_string() || op->get_string() != "ident" || !name || !name->is_array() || name->get_array().empty())
    throw btql_error(std::string(where) + ": expected {\"op\":\"ident\",\"name\":[...]}");
  std::vector<std::string> path;
  for (const auto& part : name->get_array()) {
    if (!part.is_string()) throw btql_error(std::string(where) + ": identifier parts must be strings");
    path.emplace_back(part.get_string());
  }
  return path;
}

std::string literal_text(const json::value& v, std::string_view where) {
  const auto& o = as_object(v, where);
  const auto* op = o.if_contains("op");
  if (!op || !op->is_string() || op->get_string() != "literal")
    throw btql_error(std::string(where) + ": expected {\"op\":\"literal\",\"value\":...}");
  const auto* value = o.if_contains("value");
  if (!value) throw btql_error(std::string(where) + ": literal has no value");
  if (value->is_string()) return std::string(value->get_string());
  if (value->is_int64() || value->is_uint64() || value->is_double()) return json::serialize(*value);
  throw btql_error(std::string(where) + ": literal must be a string or a number");
}

btql_expr ast_expr(const json::value& v, std::string_view where) {
  const auto& o = as_object(v, where);
  const auto* opv = o.if_contains("op");
  if (!opv || !opv->is_string()) throw btql_error(std::string(where) + ": node has no op");
  const std::string op(opv->get_string());
  auto child = [&](std::string_view key) -> const json::value& {
    const auto* c = o.if_contains(key);
    if (!c) throw btql_error(std::string(where) + ": '" + op + "' needs " + std::string(key));
    return *c;
  };
  if (op == "ident") return make_ident(ident_path(v, where));
  if (op == "literal") {
    const auto* value = o.if_contains("value");
    return make_literal(value ? *value : json::value(nullptr));
  }
  if (op == "star") {
    btql_expr e;
    e.k = btql_expr::kind::star;
    return e;
  }
  if (op == "and" || op == "or") {
    if (const auto* children = o.if_contains("children"); children && children->is_array()) {
      if (children->get_array().empty()) return make_literal(op == "and");
      std::optional<btql_expr> acc;
      for (const auto& c : children->get_array()) {
        btql_expr e = ast_expr(c, where);
        acc = acc ? make_call(op, {std::move(*acc), std::move(e)}) : std::move(e);
      }
      return std::move(*acc);
    }
    return make_call(op, {ast_expr(child("left"), where), ast_expr(child("right"), where)});
  }
  if (op == "not") return make_call("not", {ast_expr(child("expr"), where)});
  if (op == "isnull" || op == "isnotnull")
    return make_call(op == "isnull" ? "is_null" : "is_not_null", {ast_expr(child("expr"), where)});
  if (op == "eq" || op == "ne" || op == "gt" || op == "ge" || op == "lt" || op == "le" || op == "like" ||
      op == "ilike" || op == "includes" || op == "in" || op == "add" || op == "sub" || op == "mul" || op == "div")
    return make_call(op, {ast_expr(child("left"), where), ast_expr(child("right"), where)});
  if (op == "function") {
    const auto name = ident_path(child("name"), where);
    const std::string fname = lower(name.back());
    if (!is_aggregate(fname))
      throw btql_error(std::string(where) + ": unsupported function '" + fname + "' (count, count_distinct, sum, avg, min, max)");
    std::vector<btql_expr> args;
    if (const auto* a = o.if_contains("args"); a && a->is_array())
      for (const auto& x : a->get_array()) args.push_back(ast_expr(x, where));
    if (args.size() != 1) throw btql_error(std::string(where) + ": " + fname + "() takes one argument");
    return make_call(fname, std::move(args));
  }
  throw btql_error(std::string(where) + ": unsupported operator '" + op +
                   "' (and, or, not, eq, ne, gt, ge, lt, le, in, isnull, isnotnull, like, ilike, includes, add, sub, mul, div, "
                   "function)");
}

std::vector<btql_item> ast_items(const json::value& v, std::string_view where) {
  if (!v.is_array()) throw btql_error(std::string(where) + ": expected an array");
  std::vector<btql_item> out;
  for (const auto& item : v.get_array()) {
    const auto& o = as_object(item, where);
    btql_item it;
    const json::value* expr = o.if_contains("expr");
    it.expr = ast_expr(expr ? *expr : item, where);
    const auto* alias = o.if_contains("alias");
    it.alias = alias && alias->is_string() ? std::string(alias->get_string()) : default_alias(it.expr);
    out.push_back(std::move(it));
  }
  return out;
}

}  // namespace

std::string_view to_string(btql_field f) {
  switch (f) {
    case btql_field::pagination_key: return "_pagination_key";
    case btql_field::created: return "created";
    case btql_field::id: return "id";
    case btql_field::xact_id: return "_xact_id";
  }
  return "?";
}

bool btql_has_aggregate(const btql_expr& e) { return has_aggregate(e); }

using engine::civil_from_days;
using engine::days_from_civil;

std::optional<std::string> btql_shift_time(std::string_view s, std::int64_t micros) {
  std::size_t i = 0;
  auto num = [&](std::size_t n, int& out) {
    if (i + n > s.size()) return false;
    out = 0;
    for (std::size_t k = i; k < i + n; ++k) {
      if (s[k] < '0' || s[k] > '9') return false;
      out = out * 10 + (s[k] - '0');
    }
    i += n;
    return true;
  };
  auto sep = [&](char c) { return i < s.size() && s[i] == c ? (++i, true) : false; };
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!num(4, y) || !sep('-') || !num(2, mo) || !sep('-') || !num(2, d)) return std::nullopt;
  std::int64_t frac_us = 0;
  if (i < s.size() && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
    ++i;
    if (!num(2, h) || !sep(':') || !num(2, mi)) return std::nullopt;
    if (sep(':') && !num(2, sec)) return std::nullopt;
    if (sep('.')) {
      std::int64_t scale = 100000;
      const std::size_t from = i;
      for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, scale /= 10) frac_us += (s[i] - '0') * scale;
      if (i == from) return std::nullopt;
    }
  }
  const std::string_view zone = s.substr(i);
  if (!(zone.empty() || zone == "Z" || zone == "z" || zone == "+00:00" || zone == "+0000" || zone == "-00:00"))
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  constexpr std::int64_t us_per_day = 86400000000;
  std::int64_t t = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * us_per_day +
                   ((h * 60 + mi) * 60 + sec) * std::int64_t{1000000} + frac_us + micros;
  std::int64_t day = t >= 0 ? t / us_per_day : (t - us_per_day + 1) / us_per_day;
  std::int64_t rest = t - day * us_per_day;
  std::int64_t yy = 0;
  unsigned mm = 0, dd = 0;
  civil_from_days(day, yy, mm, dd);
  if (yy < 0 || yy > 9999) return std::nullopt;
  const auto us = rest % 1000000;
  const auto secs = rest / 1000000;
  char buf[64];
  if (us % 1000 == 0)
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<int>(yy), mm, dd,
                  static_cast<int>(secs / 3600), static_cast<int>(secs / 60 % 60), static_cast<int>(secs % 60),
                  static_cast<int>(us / 1000));
  else
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%06dZ", static_cast<int>(yy), mm, dd,
                  static_cast<int>(secs / 3600), static_cast<int>(secs / 60 % 60), static_cast<int>(secs % 60),
                  static_cast<int>(us));
  return std::string(buf);
}

std::string btql_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('\'');
  for (char c : s) {
    if (c == '\\' || c == '\'') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

btql_query parse_btql_text(std::string_view text, std::string_view now_iso) {
  std::vector<token> toks;
  try {
    toks = tokenize(text);
  } catch (const lex_error& e) {
    const std::string clause = clause_at(text, e.offset);
    throw btql_error(clause.empty() ? e.message : clause + " clause: " + e.message);
  }
  if (toks.size() >= 2 && toks[0].kind == tok_kind::ident && lower(toks[0].text) == "select" &&
      !(toks[1].kind == tok_kind::punct && toks[1].text == ":"))
    return parse_sql(std::move(toks), now_iso);
  // A clause starts at `ident ':'`; ':' appears nowhere else outside literals. `|` separates clauses.
  struct clause {
    std::string name;
    std::vector<token> toks;
  };
  std::vector<clause> clauses;
  for (std::size_t i = 0; i < toks.size(); ++i) {
    if (toks[i].kind == tok_kind::ident && i + 1 < toks.size() && toks[i + 1].kind == tok_kind::punct &&
        toks[i + 1].text == ":") {
      clauses.push_back({lower(toks[i].text), {}});
      ++i;
      continue;
    }
    if (toks[i].kind == tok_kind::punct && toks[i].text == "|") continue;
    if (clauses.empty()) throw btql_error("query must start with a clause such as 'select:', got '" + toks[i].text + "'");
    clauses.back().toks.push_back(toks[i]);
  }
  btql_query q;
  bool have_select = false, have_from = false;
  std::vector<std::string> seen;
  for (auto& c : clauses) {
    for (const auto& s : seen)
      if (s == c.name) throw btql_error(c.name + " clause: given twice");
    seen.push_back(c.name);
    clause_reader r(c.name, std::move(c.toks));
    if (r.done()) r.fail("empty");
    have_select = have_select || c.name == "select" || c.name == "measures";
    have_from = have_from || c.name == "from";
    parse_clause(c.name, r, q);
  }
  if (!have_select) throw btql_error("select clause: missing");
  if (!have_from) throw btql_error("from clause: missing");
  finish(q, now_iso);
  return q;
}

btql_query parse_btql_ast(const json::object& query, std::string_view now_iso) {
  btql_query q;
  if (const auto* sel = query.if_contains("select"); sel && !sel->is_null()) {
    if (!sel->is_array() || sel->get_array().empty()) throw btql_error("select: expected a non-empty array");
    const auto& first = as_object(sel->get_array().front(), "select");
    const auto* op = first.if_contains("op");
    if (!(op && op->is_string() && op->get_string() == "star")) q.columns = ast_items(*sel, "select");
  }
  const auto* from = query.if_contains("from");
  if (!from) throw btql_error("from: missing");
  const auto& fo = as_object(*from, "from");
  const auto* fop = fo.if_contains("op");
  if (!fop || !fop->is_string() || fop->get_string() != "function")
    throw btql_error("from: expected {\"op\":\"function\",...}");
  const auto* fname = fo.if_contains("name");
  if (!fname) throw btql_error("from: function has no name");
  q.object_type = ident_path(*fname, "from").back();
  if (!valid_object_type(q.object_type))
    throw btql_error("from: expected project_logs, experiment, dataset, project_prompts or project_functions, got '" + q.object_type + "'");
  const auto* args = fo.if_contains("args");
  if (!args || !args->is_array() || args->get_array().empty()) throw btql_error("from: needs at least one object id");
  for (const auto& a : args->get_array()) {
    std::string id = literal_text(a, "from");
    if (id.empty()) throw btql_error("from: empty object id");
    q.object_ids.push_back(std::move(id));
  }
  if (const auto* shape = fo.if_contains("shape"); shape && !shape->is_null()) {
    if (!shape->is_string() || !valid_shape(shape->get_string()))
      throw btql_error("from: the shape must be spans, traces or summary");
    q.shape = std::string(shape->get_string());
  }
  if (const auto* f = query.if_contains("filter"); f && !f->is_null()) q.filter_expr = ast_expr(*f, "filter");
  if (const auto* d = query.if_contains("dimensions"); d && !d->is_null()) q.dimensions = ast_items(*d, "dimensions");
  if (const auto* m = query.if_contains("measures"); m && !m->is_null()) q.measures = ast_items(*m, "measures");
  if (const auto* s = query.if_contains("sort"); s && !s->is_null()) {
    if (!s->is_array()) throw btql_error("sort: expected an array");
    for (const auto& item : s->get_array()) {
      const auto& io = as_object(item, "sort");
      const auto* expr = io.if_contains("expr");
      if (!expr) throw btql_error("sort: item has no expr");
      btql_sort_key k;
      k.expr = ast_expr(*expr, "sort");
      if (const auto* dir = io.if_contains("dir"); dir && dir->is_string()) {
        const std::string d = lower(std::string(dir->get_string()));
        if (d != "asc" && d != "desc") throw btql_error("sort: dir must be asc or desc");
        k.descending = d == "desc";
      }
      q.sort.push_back(std::move(k));
    }
  }
  if (const auto* l = query.if_contains("limit"); l && !l->is_null()) {
    if (l->is_int64() && l->get_int64() >= 0) q.limit = static_cast<std::uint64_t>(l->get_int64());
    else if (l->is_uint64()) q.limit = l->get_uint64();
    else throw btql_error("limit: expected a non-negative integer");
  }
  if (const auto* c = query.if_contains("cursor"); c && !c->is_null()) {
    if (!c->is_string()) throw btql_error("cursor: expected a string");
    if (!c->get_string().empty()) q.cursor = std::string(c->get_string());
  }
  for (const auto& key : {"unpivot", "pivot", "inference_budget"})
    if (const auto* x = query.if_contains(key); x && !x->is_null())
      throw btql_error(std::string(key) + ": not supported");
  finish(q, now_iso);
  return q;
}

}  // namespace ferry::emulator
