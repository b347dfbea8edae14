// sqlite:///path.db?table=T[&key=COL] as a source (keyset pages: WHERE key > cursor ORDER BY key) and
// as a sink (one transaction per batch: INSERT ... ON CONFLICT(key) DO UPDATE; COMMIT is the ack).
// A missing sink table is created from the first batch's fields (key column PRIMARY KEY).
#include "pipelines/copy/connector.hpp"

#include "page_budget.hpp"

#include <boost/json.hpp>

#include <sqlite3.h>

#include <map>
#include <set>

namespace ferry::pipelines::copy {

namespace json = boost::json;

namespace {

std::string quote_ident(const std::string& s) {
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

class db {
 public:
  db(const uri& u, bool write) : where_(u.redacted()) {
    const std::string path = u.path;
    if (path.empty()) throw copy_error(where_ + ": no database path (sqlite:///path/to/file.db?table=T)");
    const int flags = write ? (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) : SQLITE_OPEN_READONLY;
    if (sqlite3_open_v2(path.c_str(), &h_, flags, nullptr) != SQLITE_OK) {
      const std::string msg = h_ ? sqlite3_errmsg(h_) : "out of memory";
      sqlite3_close(h_);
      h_ = nullptr;
      throw copy_error(where_ + ": cannot open database file " + path + ": " + msg);
    }
    sqlite3_busy_timeout(h_, 10000);
  }
  ~db() {
    for (auto& [_, s] : stmts_) sqlite3_finalize(s);
    sqlite3_close(h_);
  }
  db(const db&) = delete;
  db& operator=(const db&) = delete;

  [[noreturn]] void fail(const std::string& what) const { throw copy_error(where_ + ": " + what + ": " + sqlite3_errmsg(h_)); }
  void exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(h_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "?";
      sqlite3_free(err);
      throw copy_error(where_ + ": " + msg);
    }
  }
  /// A prepared statement, cached by its text and reset for reuse.
  sqlite3_stmt* prepare(const std::string& sql) {
    auto& s = stmts_[sql];
    if (!s && sqlite3_prepare_v2(h_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
      s = nullptr;
      stmts_.erase(sql);
      fail("prepare");
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
  }
  /// Column names of `table` in order, with the primary key columns; empty when no such table.
  std::vector<std::string> columns(const std::string& table, std::vector<std::string>* pk = nullptr) {
    auto* s = prepare("SELECT name, pk FROM pragma_table_info(?) ORDER BY cid");
    sqlite3_bind_text(s, 1, table.c_str(), -1, SQLITE_TRANSIENT);
    std::vector<std::string> cols;
    while (sqlite3_step(s) == SQLITE_ROW) {
      cols.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
      if (pk && sqlite3_column_int(s, 1) > 0) pk->push_back(cols.back());
    }
    return cols;
  }
  const std::string& where() const { return where_; }
  sqlite3* handle() const { return h_; }

 private:
  std::string where_;
  sqlite3* h_ = nullptr;
  std::map<std::string, sqlite3_stmt*> stmts_;
};

/// The table and key column of a URI against an existing table: the key is `key=` or the table's
/// single-column primary key.
std::pair<std::string, std::string> table_and_key(db& d, const uri& u, const std::vector<std::string>& cols,
                                                  const std::vector<std::string>& pk) {
  const auto table = u.param("table");
  std::string key = u.param("key");
  if (key.empty()) {
    if (pk.size() != 1)
      throw copy_error(d.where() + ": table " + table + " has no single-column primary key: name the key column (&key=COL)");
    key = pk.front();
  }
  if (std::find(cols.begin(), cols.end(), key) == cols.end())
    throw copy_error(d.where() + ": key column '" + key + "' is not a column of table " + table);
  return {table, key};
}

json::value column_value(sqlite3_stmt* s, int i, const std::string& where, const std::string& id) {
  switch (sqlite3_column_type(s, i)) {
    case SQLITE_INTEGER: return sqlite3_column_int64(s, i);
    case SQLITE_FLOAT: return sqlite3_column_double(s, i);
    case SQLITE_NULL: return nullptr;
    case SQLITE_TEXT: {
      const std::string_view text(reinterpret_cast<const char*>(sqlite3_column_text(s, i)),
                                  static_cast<std::size_t>(sqlite3_column_bytes(s, i)));
      if (!valid_utf8(text))
        throw copy_error(where + ": row with key " + id + ": column " + sqlite3_column_name(s, i) + " is not UTF-8 text");
      return json::string(text);
    }
    default:
      throw copy_error(where + ": row with key " + id + ": column " + sqlite3_column_name(s, i) +
                       " holds a BLOB (not copied: no JSON form)");
  }
}

class sqlite_source final : public source {
 public:
  explicit sqlite_source(const uri& u) : d_(u, false) {
    if (u.param("table").empty()) throw copy_error(d_.where() + ": no table (add ?table=T)");
    std::vector<std::string> pk;
    const auto cols = d_.columns(u.param("table"), &pk);
    if (cols.empty()) throw copy_error(d_.where() + ": table " + u.param("table") + " not found");
    std::tie(table_, key_) = table_and_key(d_, u, cols, pk);
    check_duplicates();
  }

  std::string key_field() const override { return key_; }
  page read_after(const std::string& cursor, std::size_t limit) override {
    const auto sql = "SELECT * FROM " + quote_ident(table_) + (cursor.empty() ? "" : " WHERE " + quote_ident(key_) + " > ?1") +
                     " ORDER BY " + quote_ident(key_) + " LIMIT ?2";
    auto* s = d_.prepare(sql);
    if (!cursor.empty()) bind(s, 1, parse_json(cursor, d_.where() + ": cursor"));
    sqlite3_bind_int64(s, 2, static_cast<sqlite3_int64>(limit));
    page p;
    int rc;
    std::size_t bytes = 0;
    while (bytes < k_page_bytes && (rc = sqlite3_step(s)) == SQLITE_ROW) {
      row r;
      const int n = sqlite3_column_count(s);
      for (int i = 0; i < n; ++i) bytes += 8 + static_cast<std::size_t>(sqlite3_column_bytes(s, i));
      std::string id;
      for (int i = 0; i < n; ++i)
        if (key_ == sqlite3_column_name(s, i)) {
          auto k = column_value(s, i, d_.where(), "?");
          if (k.is_null()) throw copy_error(d_.where() + ": a row of " + table_ + " has a NULL key column " + key_);
          r.cursor = json::serialize(k);
          r.source_id = k.is_string() ? std::string(k.get_string()) : r.cursor;
        }
      for (int i = 0; i < n; ++i) r.fields[sqlite3_column_name(s, i)] = column_value(s, i, d_.where(), r.source_id);
      p.rows.push_back(std::move(r));
    }
    if (bytes >= k_page_bytes) return p;  // cut at the byte budget: more rows may follow
    if (rc != SQLITE_DONE) d_.fail("reading " + table_);
    p.end = p.rows.size() < limit;
    return p;
  }

 private:
  static void bind(sqlite3_stmt* s, int i, const json::value& v) {
    if (v.is_int64()) sqlite3_bind_int64(s, i, v.get_int64());
    else if (v.is_double()) sqlite3_bind_double(s, i, v.get_double());
    else sqlite3_bind_text(s, i, std::string(v.as_string()).c_str(), -1, SQLITE_TRANSIENT);
  }
  /// Keyset pages skip rows whose key equals the last key of a page: refuse a key column with
  /// duplicate values before copying anything.
  void check_duplicates() {
    auto* s = d_.prepare("SELECT " + quote_ident(key_) + ", count(*) FROM " + quote_ident(table_) + " GROUP BY 1 HAVING count(*) > 1 LIMIT 1");
    if (sqlite3_step(s) == SQLITE_ROW) {
      const auto* v = sqlite3_column_text(s, 0);
      throw copy_error(d_.where() + ": key column " + key_ + " has duplicate values (" + key_ + "=" +
                       (v ? reinterpret_cast<const char*>(v) : "NULL") + " appears " + std::to_string(sqlite3_column_int64(s, 1)) +
                       " times): name a unique column with &key=COL");
    }
  }

  db d_;
  std::string table_, key_;
};

const char* sqlite_type(const json::value& v) {
  if (v.is_int64() || v.is_uint64() || v.is_bool()) return "INTEGER";
  if (v.is_double()) return "REAL";
  return "TEXT";
}

class sqlite_sink final : public sink {
 public:
  explicit sqlite_sink(const uri& u) : d_(u, true), table_(u.param("table")), key_(u.param("key", "id")) {
    if (table_.empty()) throw copy_error(d_.where() + ": no table (add ?table=T)");
    d_.exec("PRAGMA synchronous=FULL");
    std::vector<std::string> pk;
    const auto cols = d_.columns(table_, &pk);
    cols_.insert(cols.begin(), cols.end());
    if (!cols.empty() && u.param("key").empty() && pk.size() == 1) key_ = pk.front();
  }

  bool has_table() const override { return !cols_.empty(); }
  void drop_table() override { d_.exec("DROP TABLE IF EXISTS " + quote_ident(table_)); }

  void write_batch(std::uint64_t, const std::vector<json::object>& rows) override {
    check_unique_keys(rows, key_, d_.where());
    d_.exec("BEGIN IMMEDIATE");
    try {
      if (cols_.empty() && !rows.empty()) create_table(rows);
      for (std::size_t i = 0; i < rows.size(); ++i) upsert(rows[i], i);
      d_.exec("COMMIT");
    } catch (...) {
      sqlite3_exec(d_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }

 private:
  void create_table(const std::vector<json::object>& rows) {
    std::string sql = "CREATE TABLE " + quote_ident(table_) + " (";
    bool any = false;
    for (const auto& [k, v] : batch_columns(rows)) {
      sql += (any ? ", " : "") + quote_ident(k) + " " + sqlite_type(v) + (k == key_ ? " PRIMARY KEY" : "");
      any = true;
      cols_.insert(k);
    }
    d_.exec(sql + ")");
  }
  void upsert(const json::object& r, std::size_t index) {
    std::string names, marks, updates;
    for (const auto& [k, v] : r) {
      const std::string col(k);
      if (!cols_.count(col))
        throw copy_error(d_.where() + ": row " + std::to_string(index + 1) + " of the batch (key " +
                         key_text(r, key_, d_.where(), index) + "): field '" + col + "' is not a column of table " + table_);
      names += (names.empty() ? "" : ", ") + quote_ident(col);
      marks += marks.empty() ? "?" : ", ?";
      updates += (updates.empty() ? "" : ", ") + quote_ident(col) + " = excluded." + quote_ident(col);
    }
    key_text(r, key_, d_.where(), index);
    auto* s = d_.prepare("INSERT INTO " + quote_ident(table_) + " (" + names + ") VALUES (" + marks + ") ON CONFLICT(" +
                         quote_ident(key_) + ") DO UPDATE SET " + updates);
    int i = 1;
    for (const auto& [k, v] : r) bind(s, i++, v, index);
    if (sqlite3_step(s) != SQLITE_DONE) d_.fail("row " + std::to_string(index + 1) + " of the batch (key " + key_text(r, key_, d_.where(), index) + ")");
  }
  void bind(sqlite3_stmt* s, int i, const json::value& v, std::size_t index) {
    if (v.is_null()) sqlite3_bind_null(s, i);
    else if (v.is_bool()) sqlite3_bind_int64(s, i, v.get_bool() ? 1 : 0);
    else if (v.is_int64()) sqlite3_bind_int64(s, i, v.get_int64());
    else if (v.is_uint64()) {
      if (v.get_uint64() > static_cast<std::uint64_t>(INT64_MAX))
        throw copy_error(d_.where() + ": row " + std::to_string(index + 1) + " of the batch: integer " +
                         std::to_string(v.get_uint64()) + " does not fit SQLite's 64-bit signed integers");
      sqlite3_bind_int64(s, i, static_cast<sqlite3_int64>(v.get_uint64()));
    } else if (v.is_double()) sqlite3_bind_double(s, i, v.get_double());
    else if (v.is_string()) sqlite3_bind_text(s, i, v.get_string().data(), static_cast<int>(v.get_string().size()), SQLITE_TRANSIENT);
    else {
      const auto text = json::serialize(v);  // objects and arrays: their JSON text
      sqlite3_bind_text(s, i, text.c_str(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    }
  }

  db d_;
  std::string table_, key_;
  std::set<std::string> cols_;
};

}  // namespace

std::unique_ptr<source> open_sqlite_source(const uri& u) { return std::make_unique<sqlite_source>(u); }
std::unique_ptr<sink> open_sqlite_sink(const uri& u) { return std::make_unique<sqlite_sink>(u); }

}  // namespace ferry::pipelines::copy

namespace ferry::pipelines::copy {

namespace {

bool has(const std::string& upper, const char* part) { return upper.find(part) != std::string::npos; }

/// Values of `col` whose SQLite storage class is not in `ok` (e.g. "'integer','null'").
std::int64_t count_other_types(db& d, const std::string& table, const std::string& col, const std::string& ok) {
  auto* s = d.prepare("SELECT count(*) FROM " + quote_ident(table) + " WHERE typeof(" + quote_ident(col) + ") NOT IN (" + ok + ")");
  return sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
}

/// The PostgreSQL type for a SQLite declared type (SQLite's affinity rules, in their order), and the
/// storage classes that convert without loss ("" = none does).
std::pair<std::string, std::string> pg_column_type(const std::string& declared) {
  std::string u = declared;
  for (auto& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (has(u, "INT")) return {"bigint", "'integer','null'"};
  if (has(u, "CHAR") || has(u, "CLOB") || has(u, "TEXT")) return {"text", "'text','null'"};
  if (has(u, "BLOB")) return {"bytea", ""};
  if (u.empty()) return {"text", ""};
  if (has(u, "REAL") || has(u, "FLOA") || has(u, "DOUB")) return {"double precision", "'real','integer','null'"};
  if (has(u, "BOOL")) return {"boolean", "'integer','null'"};
  if (has(u, "DATE") || has(u, "TIME")) return {"text", "'text','null'"};  // SQLite keeps dates as text
  return {"numeric", "'integer','real','null'"};
}

bool constant_default(const std::string& d) {
  std::string u = d;
  for (auto& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (u == "NULL" || u == "TRUE" || u == "FALSE" || u == "CURRENT_TIMESTAMP" || u == "CURRENT_DATE" || u == "CURRENT_TIME")
    return true;
  if (d.size() >= 2 && d.front() == '\'' && d.back() == '\'') return true;
  return !d.empty() && d.find_first_not_of("0123456789.-+eE") == std::string::npos;
}

void convert_indexes(db& d, const std::string& table, const std::string& pg_table, schema_plan& plan) {
  struct index { std::string name; bool unique, partial; std::string origin; };
  std::vector<index> list;
  auto* s = d.prepare("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?)");
  sqlite3_bind_text(s, 1, table.c_str(), -1, SQLITE_TRANSIENT);
  while (sqlite3_step(s) == SQLITE_ROW)
    list.push_back({reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), sqlite3_column_int(s, 1) != 0,
                    sqlite3_column_int(s, 3) != 0, reinterpret_cast<const char*>(sqlite3_column_text(s, 2))});
  for (const auto& ix : list) {
    if (ix.origin == "pk") continue;  // the PRIMARY KEY clause
    if (ix.partial) {
      plan.lossy.push_back("index " + ix.name + " is partial (WHERE ...): not converted");
      continue;
    }
    std::vector<std::string> cols;
    bool expression = false;
    auto* c = d.prepare("SELECT name FROM pragma_index_info(?) ORDER BY seqno");
    sqlite3_bind_text(c, 1, ix.name.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(c) == SQLITE_ROW) {
      if (sqlite3_column_type(c, 0) == SQLITE_NULL) expression = true;
      else cols.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(c, 0)));
    }
    if (expression) {
      plan.lossy.push_back("index " + ix.name + " has expressions: not converted");
      continue;
    }
    std::string name = pg_table, list_sql;
    for (const auto& col : cols) {
      name += "_" + col;
      list_sql += (list_sql.empty() ? "" : ", ") + quote_ident(col);
    }
    name += ix.unique ? "_key" : "_idx";
    plan.ddl.push_back(std::string("CREATE ") + (ix.unique ? "UNIQUE " : "") + "INDEX " + quote_ident(name) + " ON " +
                       quote_ident(pg_table) + " (" + list_sql + ")");
  }
}

}  // namespace

schema_plan sqlite_to_postgres_schema(const uri& u, const std::string& pg_table) {
  db d(u, false);
  const auto table = u.param("table");
  struct column { std::string name, type, dflt; bool notnull, has_dflt; int pk; };
  std::vector<column> cols;
  auto* s = d.prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid");
  sqlite3_bind_text(s, 1, table.c_str(), -1, SQLITE_TRANSIENT);
  while (sqlite3_step(s) == SQLITE_ROW) {
    const auto* dv = sqlite3_column_text(s, 3);
    cols.push_back({reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), reinterpret_cast<const char*>(sqlite3_column_text(s, 1)),
                    dv ? reinterpret_cast<const char*>(dv) : "", sqlite3_column_int(s, 2) != 0, dv != nullptr, sqlite3_column_int(s, 4)});
  }
  if (cols.empty()) throw copy_error(d.where() + ": table " + table + " not found");
  schema_plan plan;
  std::string body;
  std::vector<std::pair<int, std::string>> pk;
  for (const auto& c : cols) {
    auto [type, ok] = pg_column_type(c.type);
    const auto declared = c.type.empty() ? std::string("no declared type") : c.type;
    if (ok.empty()) {
      plan.lossy.push_back("column " + c.name + " (" + declared + "): " +
                           (type == "bytea" ? "BLOB values are not copied" : "values of any type; converted to text"));
    } else if (const auto n = count_other_types(d, table, c.name, ok); n > 0) {
      plan.lossy.push_back("column " + c.name + " (" + declared + " -> " + type + "): " + std::to_string(n) +
                           " values of another type; the column becomes text");
      type = "text";
    }
    body += (body.empty() ? "" : ", ") + quote_ident(c.name) + " " + type + (c.notnull ? " NOT NULL" : "");
    if (c.has_dflt) {
      if (type == "boolean" && (c.dflt == "0" || c.dflt == "1")) body += c.dflt == "1" ? " DEFAULT true" : " DEFAULT false";
      else if (constant_default(c.dflt)) body += " DEFAULT " + c.dflt;
      else plan.lossy.push_back("column " + c.name + ": default " + c.dflt + " is not a constant: not converted");
    }
    if (c.pk > 0) pk.emplace_back(c.pk, c.name);
  }
  std::sort(pk.begin(), pk.end());
  if (!pk.empty()) {
    std::string keys;
    for (const auto& [_, n] : pk) keys += (keys.empty() ? "" : ", ") + quote_ident(n);
    body += ", PRIMARY KEY (" + keys + ")";
  }
  plan.ddl.push_back("CREATE TABLE " + quote_ident(pg_table) + " (" + body + ")");
  convert_indexes(d, table, pg_table, plan);
  return plan;
}

}  // namespace ferry::pipelines::copy
