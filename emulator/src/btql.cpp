#include "emulator/btql.hpp"

#include <boost/json.hpp>

#include <cctype>
#include <charconv>

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

// The name of the clause whose text contains `offset` (the last `name:` line starting at or before it).
std::string clause_at(std::string_view s, std::size_t offset) {
  std::string name;
  std::size_t line = 0;
  while (line <= offset && line < s.size()) {
    std::size_t i = line;
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    std::size_t j = i;
    while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
    std::size_t k = j;
    while (k < s.size() && (s[k] == ' ' || s[k] == '\t')) ++k;
    if (j > i && k < s.size() && s[k] == ':') name = lower(s.substr(i, j - i));
    const auto nl = s.find('\n', line);
    if (nl == std::string_view::npos) break;
    line = nl + 1;
  }
  return name;
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
    } else if (std::isdigit(static_cast<unsigned char>(c)) || (c == '-' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1])))) {
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
    } else if (c == '>' || c == '<' || c == '!' || c == '=') {
      if (i + 1 < s.size() && s[i + 1] == '=') {
        out.push_back({tok_kind::punct, std::string(s.substr(i, 2))});
        i += 2;
      } else {
        out.push_back({tok_kind::punct, std::string(1, c)});
        ++i;
      }
    } else if (c == '(' || c == ')' || c == ',' || c == ':' || c == '*') {
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

std::optional<btql_op> op_of(std::string_view op) {
  if (op == ">" || op == "gt") return btql_op::gt;
  if (op == ">=" || op == "ge") return btql_op::ge;
  if (op == "<" || op == "lt") return btql_op::lt;
  if (op == "<=" || op == "le") return btql_op::le;
  if (op == "=" || op == "eq") return btql_op::eq;
  return std::nullopt;
}

bool valid_object_type(std::string_view t) { return t == "project_logs" || t == "experiment" || t == "dataset"; }

std::uint64_t parse_limit(std::string_view digits, std::string_view where) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc{} || p != digits.data() + digits.size())
    throw btql_error(std::string(where) + ": limit must be a non-negative integer, got '" + std::string(digits) + "'");
  return v;
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

void parse_select(clause_reader& r, btql_query& q) {
  if (r.accept_punct("*")) {
    q.select_star = true;
  } else {
    const token t = r.next();
    if (t.kind != tok_kind::ident || t.text != "_pagination_key")
      r.fail("only '*' and '_pagination_key' are supported, got '" + t.text + "'");
    q.select_star = false;
  }
  r.expect_end();
}

void parse_from(clause_reader& r, btql_query& q) {
  const token t = r.next();
  if (t.kind != tok_kind::ident || !valid_object_type(t.text))
    r.fail("expected project_logs(...), experiment(...) or dataset(...), got '" + t.text + "'");
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
    if (shape.kind != tok_kind::ident || lower(shape.text) != "spans")
      r.fail("only the 'spans' shape is supported, got '" + shape.text + "'");
  }
  r.expect_end();
}

void parse_filter(clause_reader& r, btql_query& q) {
  for (;;) {
    const token f = r.next();
    auto field = f.kind == tok_kind::ident ? field_of(f.text) : std::nullopt;
    if (!field) r.fail("can filter only on _pagination_key, created, id, _xact_id; got '" + f.text + "'");
    const token o = r.next();
    auto op = o.kind == tok_kind::punct ? op_of(o.text) : std::nullopt;
    if (!op) r.fail("expected one of > >= < <= = after '" + f.text + "', got '" + o.text + "'");
    const token v = r.next();
    if (v.kind != tok_kind::string && v.kind != tok_kind::number)
      r.fail("expected a quoted literal after '" + f.text + " " + o.text + "', got '" + v.text + "'");
    q.filters.push_back({*field, *op, v.text});
    if (r.done()) break;
    const token conj = r.next();
    if (conj.kind != tok_kind::ident || lower(conj.text) != "and")
      r.fail("only 'and' may join conditions, got '" + conj.text + "'");
  }
}

void parse_sort(clause_reader& r, btql_query& q) {
  const token f = r.next();
  if (f.kind != tok_kind::ident || f.text != "_pagination_key")
    r.fail("only '_pagination_key' can be sorted on, got '" + f.text + "'");
  q.descending = false;
  if (!r.done()) {
    const token d = r.next();
    const std::string dir = lower(d.text);
    if (d.kind != tok_kind::ident || (dir != "asc" && dir != "desc"))
      r.fail("expected asc or desc, got '" + d.text + "'");
    q.descending = dir == "desc";
  }
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

// ---- JSON AST -----------------------------------------------------------------------------------

const json::object& as_object(const json::value& v, std::string_view where) {
  if (!v.is_object()) throw btql_error(std::string(where) + ": expected an object");
  return v.get_object();
}

std::string ident_name(const json::value& v, std::string_view where) {
  const auto& o = as_object(v, where);
  const auto* op = o.if_contains("op");
  const auto* name = o.if_contains("name");
  if (!op || !op->is_string() || op->get_string() != "ident" || !name || !name->is_array() || name->get_array().empty())
    throw btql_error(std::string(where) + ": expected {\"op\":\"ident\",\"name\":[...]}");
  const auto& parts = name->get_array();
  const auto& last = parts.back();
  if (!last.is_string()) throw btql_error(std::string(where) + ": identifier parts must be strings");
  return std::string(last.get_string());
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

void parse_ast_filter(const json::value& v, btql_query& q) {
  const auto& o = as_object(v, "filter");
  const auto* opv = o.if_contains("op");
  if (!opv || !opv->is_string()) throw btql_error("filter: node has no op");
  const std::string op(opv->get_string());
  if (op == "and") {
    if (const auto* children = o.if_contains("children"); children && children->is_array()) {
      for (const auto& c : children->get_array()) parse_ast_filter(c, q);
      return;
    }
    const auto* l = o.if_contains("left");
    const auto* r = o.if_contains("right");
    if (!l || !r) throw btql_error("filter: 'and' needs left and right (or children)");
    parse_ast_filter(*l, q);
    parse_ast_filter(*r, q);
    return;
  }
  auto cmp = op_of(op);
  if (!cmp) throw btql_error("filter: unsupported operator '" + op + "' (and, gt, ge, lt, le, eq)");
  const auto* l = o.if_contains("left");
  const auto* r = o.if_contains("right");
  if (!l || !r) throw btql_error("filter: '" + op + "' needs left and right");
  const std::string name = ident_name(*l, "filter");
  auto field = field_of(name);
  if (!field) throw btql_error("filter: can filter only on _pagination_key, created, id, _xact_id; got '" + name + "'");
  q.filters.push_back({*field, *cmp, literal_text(*r, "filter")});
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

btql_query parse_btql_text(std::string_view text) {
  std::vector<token> toks;
  try {
    toks = tokenize(text);
  } catch (const lex_error& e) {
    const std::string clause = clause_at(text, e.offset);
    throw btql_error(clause.empty() ? e.message : clause + " clause: " + e.message);
  }
  // A clause starts at `ident ':'`; ':' appears nowhere else outside literals in this subset.
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
    if (c.name == "select") {
      parse_select(r, q);
      have_select = true;
    } else if (c.name == "from") {
      parse_from(r, q);
      have_from = true;
    } else if (c.name == "filter") {
      parse_filter(r, q);
    } else if (c.name == "sort") {
      parse_sort(r, q);
    } else if (c.name == "limit") {
      parse_limit_clause(r, q);
    } else if (c.name == "cursor") {
      parse_cursor_clause(r, q);
    } else {
      throw btql_error(c.name + " clause: not supported (select, from, filter, sort, limit, cursor)");
    }
  }
  if (!have_select) throw btql_error("select clause: missing");
  if (!have_from) throw btql_error("from clause: missing");
  return q;
}

btql_query parse_btql_ast(const json::object& query) {
  btql_query q;
  // select
  if (const auto* sel = query.if_contains("select")) {
    if (!sel->is_array() || sel->get_array().empty()) throw btql_error("select: expected a non-empty array");
    const auto& items = sel->get_array();
    const auto& first = as_object(items.front(), "select");
    const auto* op = first.if_contains("op");
    if (op && op->is_string() && op->get_string() == "star") {
      q.select_star = true;
    } else {
      const json::value* expr = first.if_contains("expr");
      const std::string name = ident_name(expr ? *expr : items.front(), "select");
      if (name != "_pagination_key") throw btql_error("select: only star and _pagination_key are supported, got '" + name + "'");
      q.select_star = false;
    }
  }
  // from
  const auto* from = query.if_contains("from");
  if (!from) throw btql_error("from: missing");
  const auto& fo = as_object(*from, "from");
  const auto* fop = fo.if_contains("op");
  if (!fop || !fop->is_string() || fop->get_string() != "function")
    throw btql_error("from: expected {\"op\":\"function\",...}");
  const auto* fname = fo.if_contains("name");
  if (!fname) throw btql_error("from: function has no name");
  q.object_type = ident_name(*fname, "from");
  if (!valid_object_type(q.object_type))
    throw btql_error("from: expected project_logs, experiment or dataset, got '" + q.object_type + "'");
  const auto* args = fo.if_contains("args");
  if (!args || !args->is_array() || args->get_array().empty()) throw btql_error("from: needs at least one object id");
  for (const auto& a : args->get_array()) {
    std::string id = literal_text(a, "from");
    if (id.empty()) throw btql_error("from: empty object id");
    q.object_ids.push_back(std::move(id));
  }
  if (const auto* shape = fo.if_contains("shape"); shape && shape->is_string() && shape->get_string() != "spans")
    throw btql_error("from: only the 'spans' shape is supported");
  // filter
  if (const auto* f = query.if_contains("filter"); f && !f->is_null()) parse_ast_filter(*f, q);
  // sort
  if (const auto* s = query.if_contains("sort"); s && !s->is_null()) {
    if (!s->is_array()) throw btql_error("sort: expected an array");
    const auto& items = s->get_array();
    if (items.size() > 1) throw btql_error("sort: only one sort key (_pagination_key) is supported");
    if (!items.empty()) {
      const auto& item = as_object(items.front(), "sort");
      const auto* expr = item.if_contains("expr");
      if (!expr) throw btql_error("sort: item has no expr");
      if (ident_name(*expr, "sort") != "_pagination_key") throw btql_error("sort: only _pagination_key can be sorted on");
      if (const auto* dir = item.if_contains("dir"); dir && dir->is_string()) {
        const std::string d = lower(std::string(dir->get_string()));
        if (d != "asc" && d != "desc") throw btql_error("sort: dir must be asc or desc");
        q.descending = d == "desc";
      }
    }
  }
  // limit, cursor
  if (const auto* l = query.if_contains("limit"); l && !l->is_null()) {
    if (l->is_int64() && l->get_int64() >= 0) q.limit = static_cast<std::uint64_t>(l->get_int64());
    else if (l->is_uint64()) q.limit = l->get_uint64();
    else throw btql_error("limit: expected a non-negative integer");
  }
  if (const auto* c = query.if_contains("cursor"); c && !c->is_null()) {
    if (!c->is_string()) throw btql_error("cursor: expected a string");
    if (!c->get_string().empty()) q.cursor = std::string(c->get_string());
  }
  return q;
}

}  // namespace ferry::emulator
