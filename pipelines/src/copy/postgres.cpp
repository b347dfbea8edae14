// postgresql://user:pass@host:port/db?table=T[&key=COL] as a source (keyset pages over row_to_json:
// WHERE key > $1 ORDER BY key LIMIT n) and as a sink (per batch, one transaction: the rows in COPY's
// text format, COPYed straight into the table when none of their keys is there yet, else into a
// temporary staging table and upserted with one INSERT ... ON CONFLICT (key) DO UPDATE; COMMIT is the
// acknowledgement). A missing sink table is created from the first batch's fields in that batch's
// transaction (key column PRIMARY KEY).
#include "pipelines/copy/connector.hpp"

#include <boost/json.hpp>

#include "engine/json_scan.hpp"
#include "page_budget.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <map>
#include <set>
#include <string_view>

namespace ferry::pipelines::copy {

namespace json = boost::json;

namespace {

std::string quote_ident(const std::string& s) {
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string first_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

using result_ptr = std::unique_ptr<PGresult, decltype(&PQclear)>;

class conn {
 public:
  explicit conn(const uri& u) : where_(u.redacted()) {
    // libpq reads the URI itself; our own parameters (table, key) are not libpq's.
    const std::string conninfo = u.base + "?connect_timeout=10&application_name=ferry-copy";
    c_ = PQconnectdb(conninfo.c_str());
    if (PQstatus(c_) != CONNECTION_OK) {
      const auto msg = first_line(PQerrorMessage(c_));
      PQfinish(c_);
      c_ = nullptr;
      throw copy_error(where_ + ": cannot connect: " + msg);
    }
    PQsetNoticeProcessor(c_, [](void*, const char*) {}, nullptr);
  }
  ~conn() { PQfinish(c_); }
  conn(const conn&) = delete;
  conn& operator=(const conn&) = delete;

  result_ptr run(const std::string& sql, const std::vector<std::string>& params = {}, const std::string& what = "") {
    std::vector<const char*> p;
    for (const auto& s : params) p.push_back(s.c_str());
    result_ptr r(PQexecParams(c_, sql.c_str(), static_cast<int>(p.size()), nullptr, p.data(), nullptr, nullptr, 0),
                 &PQclear);
    const auto st = PQresultStatus(r.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_COPY_IN)
      throw copy_error(where_ + ": " + (what.empty() ? "" : what + ": ") + first_line(PQresultErrorMessage(r.get())));
    return r;
  }
  void rollback() { PQclear(PQexec(c_, "ROLLBACK")); }
  PGconn* handle() const { return c_; }
  const std::string& where() const { return where_; }

  /// Column names of `table` (empty when there is no such table) and its primary key columns.
  std::vector<std::string> columns(const std::string& table, std::vector<std::string>* pk = nullptr) {
    auto r = run("SELECT to_regclass($1)::oid", {quote_ident(table)});
    if (PQgetisnull(r.get(), 0, 0)) return {};
    const std::string oid = PQgetvalue(r.get(), 0, 0);
    std::vector<std::string> cols;
    auto c = run("SELECT attname FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum", {oid});
    for (int i = 0; i < PQntuples(c.get()); ++i) cols.emplace_back(PQgetvalue(c.get(), i, 0));
    if (pk) {
      auto k = run("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                   "WHERE i.indrelid = $1::oid AND i.indisprimary", {oid});
      for (int i = 0; i < PQntuples(k.get()); ++i) pk->emplace_back(PQgetvalue(k.get(), i, 0));
    }
    return cols;
  }

 private:
  std::string where_;
  PGconn* c_ = nullptr;
};

class pg_source final : public source {
 public:
  explicit pg_source(const uri& u) : c_(u), table_(u.param("table")), key_(u.param("key")) {
    if (table_.empty()) throw copy_error(c_.where() + ": no table (add ?table=T)");
    std::vector<std::string> pk;
    const auto cols = c_.columns(table_, &pk);
    if (cols.empty()) throw copy_error(c_.where() + ": table " + table_ + " not found");
    if (key_.empty()) {
      if (pk.size() != 1)
        throw copy_error(c_.where() + ": table " + table_ + " has no single-column primary key: name the key column (&key=COL)");
      key_ = pk.front();
    }
    if (std::find(cols.begin(), cols.end(), key_) == cols.end())
      throw copy_error(c_.where() + ": key column '" + key_ + "' is not a column of table " + table_);
    if (pk != std::vector<std::string>{key_}) check_key_column();  // a primary key is unique and NOT NULL already
  }

  std::string key_field() const override { return key_; }

  /// Pages of at most `limit` rows and about k_page_bytes (the LIMIT follows the last page's bytes per
  /// row, the first page 100 rows; a page is cut at the budget and the rows after the cut are read
  /// again by the next page's query). The next page's query is sent before this page is parsed, so the
  /// server produces it meanwhile; it is used when the next call continues from this page's last row.
  page read_after(const std::string& cursor, std::size_t limit) override {
    std::size_t rows = page_rows(limit);
    if (pending_ && pending_after_ == cursor) {
      rows = pending_rows_;
    } else {
      finish();  // a query for another cursor (none in a copy's ordinary run)
      send(cursor.empty() ? std::vector<std::string>{} : std::vector<std::string>{key_param(parse_json(cursor, c_.where() + ": cursor"))},
           rows);
    }
    const auto r = finish();
    const int n = PQntuples(r.get());
    int take = n;
    std::size_t bytes = 0;
    for (int i = 0; i < n && take == n; ++i)
      if ((bytes += static_cast<std::size_t>(PQgetlength(r.get(), i, 0))) >= k_page_bytes) take = i + 1;
    page p;
    p.end = take == n && static_cast<std::size_t>(n) < rows;
    if (take == 0) return p;
    row_bytes_ = std::max<std::size_t>(1, bytes / static_cast<std::size_t>(take));
    auto last = parse_row(r.get(), take - 1);
    if (!p.end) {
      pending_rows_ = page_rows(limit);
      send({key_param(last.fields.at(key_))}, pending_rows_);
      pending_after_ = last.cursor;
    }
    for (int i = 0; i + 1 < take; ++i) p.rows.push_back(parse_row(r.get(), i));
    p.rows.push_back(std::move(last));
    return p;
  }

 private:
  std::size_t page_rows(std::size_t limit) const {
    return std::max<std::size_t>(1, std::min(limit, row_bytes_ ? k_page_bytes / row_bytes_ : 100));
  }
  static std::string key_param(const json::value& k) { return k.is_string() ? std::string(k.get_string()) : json::serialize(k); }

  row parse_row(PGresult* r, int i) const {
    row rw;
    rw.fields = parse_json(std::string_view(PQgetvalue(r, i, 0), static_cast<std::size_t>(PQgetlength(r, i, 0))),
                           c_.where() + ": " + table_).as_object();
    const auto& k = rw.fields.at(key_);
    rw.cursor = json::serialize(k);
    rw.source_id = k.is_string() ? std::string(k.get_string()) : rw.cursor;
    return rw;
  }

  /// Sends the query for `rows` rows after the key `params` holds (none: from the start).
  void send(const std::vector<std::string>& params, std::size_t rows) {
    std::string sql = "SELECT row_to_json(t)::text FROM " + quote_ident(table_) + " t";
    if (!params.empty()) sql += " WHERE " + quote_ident(key_) + " > $1";
    sql += " ORDER BY " + quote_ident(key_) + " LIMIT " + std::to_string(rows);
    const char* p = params.empty() ? nullptr : params.front().c_str();
    if (PQsendQueryParams(c_.handle(), sql.c_str(), params.empty() ? 0 : 1, nullptr, &p, nullptr, nullptr, 0) != 1)
      throw copy_error(c_.where() + ": reading " + table_ + ": " + first_line(PQerrorMessage(c_.handle())));
    pending_ = true;
  }

  /// The result of the query sent last (an empty result when none is pending).
  result_ptr finish() {
    result_ptr r(nullptr, &PQclear);
    if (!pending_) return r;
    pending_ = false;
    r.reset(PQgetResult(c_.handle()));
    while (PGresult* more = PQgetResult(c_.handle())) PQclear(more);
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK)
      throw copy_error(c_.where() + ": reading " + table_ + ": " +
                       first_line(r ? PQresultErrorMessage(r.get()) : PQerrorMessage(c_.handle())));
    return r;
  }

  /// Keyset pages skip rows whose key equals a page's last key and never see NULL keys: refuse both
  /// before copying anything.
  void check_key_column() {
    const auto k = quote_ident(key_), t = quote_ident(table_);
    auto d = c_.run("SELECT " + k + "::text, count(*) FROM " + t + " GROUP BY 1 HAVING count(*) > 1 LIMIT 1");
    if (PQntuples(d.get()) > 0)
      throw copy_error(c_.where() + ": key column " + key_ + " has duplicate values (" + key_ + "=" +
                       (PQgetisnull(d.get(), 0, 0) ? "NULL" : PQgetvalue(d.get(), 0, 0)) + " appears " +
                       PQgetvalue(d.get(), 0, 1) + " times): name a unique column with &key=COL");
    auto n = c_.run("SELECT count(*) FROM " + t + " WHERE " + k + " IS NULL");
    if (std::string(PQgetvalue(n.get(), 0, 0)) != "0")
      throw copy_error(c_.where() + ": key column " + key_ + " is NULL in " + PQgetvalue(n.get(), 0, 0) + " rows");
  }

  conn c_;
  std::string table_, key_;
  std::size_t row_bytes_ = 0;     // row text per row on the last page (0: none read yet)
  bool pending_ = false;          // a page's query is sent and its result not yet read
  std::string pending_after_;     // ... for the rows after this cursor
  std::size_t pending_rows_ = 0;  // ... at most this many
};

const char* pg_type(const json::value& v) {
  if (v.is_int64() || v.is_uint64()) return "bigint";
  if (v.is_double()) return "double precision";
  if (v.is_bool()) return "boolean";
  if (v.is_object() || v.is_array()) return "jsonb";
  return "text";
}

/// Appends `s` in COPY's text format: backslash, newline, carriage return and tab escaped (long clean
/// runs copied at once).
void append_copy_text(std::string& out, std::string_view s) {
  std::size_t from = 0;
  for (;;) {
    auto i = engine::json_special_byte(s, from, false);  // control bytes, '"' and '\\': a superset
    while (i < s.size() && s[i] != '\\' && s[i] != '\n' && s[i] != '\r' && s[i] != '\t') i = engine::json_special_byte(s, i + 1, false);
    out.append(s.data() + from, i - from);
    if (i == s.size()) return;
    out += '\\';
    out += s[i] == '\n' ? 'n' : s[i] == '\r' ? 'r' : s[i] == '\t' ? 't' : '\\';
    from = i + 1;
  }
}

/// A JSON array as a PostgreSQL array literal ({...}, elements double-quoted), for array columns.
void append_array_literal(std::string& out, const json::array& a) {
  out += '{';
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (i) out += ',';
    const auto& v = a[i];
    if (v.is_null()) {
      out += "NULL";
    } else if (v.is_array()) {
      append_array_literal(out, v.get_array());
    } else {
      const std::string text = v.is_string() ? std::string(v.get_string()) : json::serialize(v);
      out += '"';
      for (char c : text) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
      }
      out += '"';
    }
  }
  out += '}';
}

/// How a column takes a JSON value in COPY's text format (what jsonb_populate_record does): json and
/// jsonb columns the value's JSON text; array columns a JSON array as an array literal; other columns
/// a string's text, other values their JSON text (numbers, true/false, objects).
enum class col_kind { plain, json, array };

class pg_sink final : public sink {
 public:
  explicit pg_sink(const uri& u) : c_(u), table_(u.param("table")), key_(u.param("key", "id")), explicit_key_(!u.param("key").empty()) {
    if (table_.empty()) throw copy_error(c_.where() + ": no table (add ?table=T)");
    load_columns();
    if (!cols_.empty()) {
      auto r = c_.run("SELECT EXISTS (SELECT 1 FROM " + quote_ident(table_) + ")", {}, "reading " + table_);
      held_rows_ = PQgetvalue(r.get(), 0, 0)[0] == 't';
    }
  }

  bool has_table() const override { return !cols_.empty(); }
  void create_with(std::vector<std::string> ddl) override { ddl_ = std::move(ddl); }
  void drop_table() override { c_.run("DROP TABLE IF EXISTS " + quote_ident(table_), {}, "rollback"); }

  /// One transaction: rows whose keys are all new to the table are COPYed straight into it; a batch
  /// with keys already present (a batch re-sent after a resume, rows merged into a filled table) is
  /// COPYed into a temporary staging table and upserted from there with one INSERT ... ON CONFLICT (key)
  /// DO UPDATE. Which: when the table held rows as the sink opened, one index probe for the batch's
  /// keys decides; otherwise (and when a key was inserted meanwhile, by someone else or by an earlier
  /// batch with the same key) a savepoint catches the direct COPY's unique violation. COMMIT is the ack.
  void write_batch(std::uint64_t, const std::vector<json::object>& rows) override {
    if (rows.empty()) return;
    c_.run("BEGIN");
    try {
      if (cols_.empty()) create_table(rows);
      const auto keys = key_array(rows);
      const auto fields = batch_fields(rows);
      std::string text;  // the rows in COPY's text format, built while the first COPY sends them
      if ((held_rows_ && keys_present(keys)) || !copy_direct(fields, rows, text)) upsert(fields, rows, text);
      c_.run("COMMIT");
      created_ = false;
    } catch (...) {
      c_.rollback();
      staging_ = false;                  // created in the rolled-back transaction, or emptied by it
      if (created_) cols_.clear();       // the CREATE TABLE was rolled back with the batch
      throw;
    }
  }

 private:
  void load_columns() {
    std::vector<std::string> pk;
    const auto names = c_.columns(table_, &pk);
    cols_.clear();
    if (names.empty()) return;
    auto r = c_.run("SELECT a.attname, t.typname, t.typcategory FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                    "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped", {quote_ident(table_)});
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      const std::string type = PQgetvalue(r.get(), i, 1), category = PQgetvalue(r.get(), i, 2);
      cols_[PQgetvalue(r.get(), i, 0)] = type == "json" || type == "jsonb" ? col_kind::json
                                               : category == "A"                ? col_kind::array
                                                                                : col_kind::plain;
    }
    if (!explicit_key_ && pk.size() == 1) key_ = pk.front();
    const auto k = cols_.find(key_);
    key_array_type_.clear();
    if (k != cols_.end()) {
      auto t = c_.run("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2",
                      {quote_ident(table_), key_});
      key_array_type_ = std::string(PQgetvalue(t.get(), 0, 0)) + "[]";
    }
  }

  /// Every field of the batch in the order first seen, each a column of the table (else an error naming the row and field).
  std::vector<std::string> batch_fields(const std::vector<json::object>& rows) const {
    std::vector<std::string> fields;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      std::size_t j = 0;
      for (const auto& [k, _] : rows[i]) {
        if (j < fields.size() && fields[j] == k) {  // the same fields in the same order as before: no search
          ++j;
          continue;
        }
        j = fields.size() + 1;
        if (std::find(fields.begin(), fields.end(), k) != fields.end()) continue;
        const std::string f(k);
        if (!cols_.count(f))
          throw copy_error(c_.where() + ": row " + std::to_string(i + 1) + " of the batch (key " +
                           key_text(rows[i], key_, c_.where(), i) + "): field '" + f + "' is not a column of table " + table_);
        fields.push_back(f);
      }
    }
    return fields;
  }

  /// Appends the batch in COPY's text format to `out`, columns `fields` in order (a field a row lacks
  /// is NULL), calling flush(from) whenever ~1 MB more is ready from offset `from`. Rows whose members
  /// are `fields` in that order (the common case) are written without a lookup.
  template <class Flush>
  void copy_text(const std::vector<json::object>& rows, const std::vector<std::string>& fields, std::string& out,
                 Flush&& flush) const {
    std::vector<col_kind> kinds;
    for (const auto& f : fields) kinds.push_back(cols_.at(f));
    std::string scratch;
    std::size_t flushed = out.size();
    for (const auto& r : rows) {
      bool in_order = r.size() == fields.size();
      for (std::size_t i = 0; in_order && i < fields.size(); ++i) in_order = r.begin()[i].key() == fields[i];
      for (std::size_t i = 0; i < fields.size(); ++i) {
        if (i) out += '\t';
        append_value(out, in_order ? &r.begin()[i].value() : r.if_contains(fields[i]), kinds[i], scratch);
      }
      out += '\n';
      if (out.size() - flushed >= (std::size_t{1} << 20)) {
        flush(flushed);
        flushed = out.size();
      }
    }
    if (out.size() > flushed) flush(flushed);
  }

  static void append_value(std::string& out, const json::value* v, col_kind kind, std::string& scratch) {
    char num[32];
    if (!v || v->is_null()) {
      out += "\\N";
    } else if (v->is_string() && kind != col_kind::json) {
      append_copy_text(out, v->get_string());
    } else if (v->is_int64() || v->is_uint64() || v->is_double()) {
      // shortest text that reads back as the same number
      const auto res = v->is_int64()    ? std::to_chars(num, num + sizeof num, v->get_int64())
                       : v->is_uint64() ? std::to_chars(num, num + sizeof num, v->get_uint64())
                                        : std::to_chars(num, num + sizeof num, v->get_double());
      out.append(num, res.ptr);
    } else if (v->is_bool()) {
      out += v->get_bool() ? "true" : "false";
    } else if (v->is_array() && kind == col_kind::array) {
      scratch.clear();
      append_array_literal(scratch, v->get_array());
      append_copy_text(out, scratch);
    } else {
      append_copy_text(out, json::serialize(*v));
    }
  }

  /// The batch's key values as a PostgreSQL array literal; throws copy_error (naming the key) when two
  /// rows have the same key.
  std::string key_array(const std::vector<json::object>& rows) const {
    std::vector<std::string> keys;
    keys.reserve(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) keys.push_back(key_text(rows[i], key_, c_.where(), i));
    std::vector<std::string_view> sorted(keys.begin(), keys.end());
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) check_unique_keys(rows, key_, c_.where());  // throws, naming it
    std::string out = "{";
    for (const auto& k : keys) {
      out += out.size() > 1 ? ",\"" : "\"";
      for (char c : k) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
      }
      out += '"';
    }
    return out + "}";
  }

  /// Whether any of `keys` (an array literal) is in the table already (one index probe per key).
  bool keys_present(const std::string& keys) {
    auto r = c_.run("SELECT EXISTS (SELECT 1 FROM " + quote_ident(table_) + " WHERE " + quote_ident(key_) + " = ANY ($1::" +
                        key_array_type_ + "))", {keys}, "looking up the batch's keys in " + table_);
    return PQgetvalue(r.get(), 0, 0)[0] == 't';
  }

  /// COPY into the table itself, under a savepoint; false (and nothing written) when a key collided.
  /// Builds `text` from `rows` while sending it.
  bool copy_direct(const std::vector<std::string>& fields, const std::vector<json::object>& rows, std::string& text) {
    c_.run("SAVEPOINT ferry_direct");
    const auto state = copy_in(quote_ident(table_), fields, &rows, text, "copy into " + table_);
    if (state.empty()) return true;
    if (state != "23505") throw copy_error(c_.where() + ": copy into " + table_ + ": " + last_copy_error_);
    c_.run("ROLLBACK TO SAVEPOINT ferry_direct");
    return false;
  }

  /// COPY into the staging table (emptied at commit), then one upsert statement. Sends `text` when
  /// copy_direct built it already, else builds it from `rows`.
  void upsert(const std::vector<std::string>& fields, const std::vector<json::object>& rows, std::string& text) {
    if (!staging_) {
      c_.run("CREATE TEMP TABLE IF NOT EXISTS ferry_stage ON COMMIT DELETE ROWS AS SELECT * FROM " + quote_ident(table_) +
             " WITH NO DATA", {}, "create the staging table");
      staging_ = true;
    }
    if (const auto state = copy_in("ferry_stage", fields, text.empty() ? &rows : nullptr, text, "copy into the staging table");
        !state.empty())
      throw copy_error(c_.where() + ": copy into the staging table: " + last_copy_error_);
    std::string names, updates;
    for (const auto& f : fields) {
      names += (names.empty() ? "" : ", ") + quote_ident(f);
      if (f != key_) updates += (updates.empty() ? "" : ", ") + quote_ident(f) + " = EXCLUDED." + quote_ident(f);
    }
    c_.run("INSERT INTO " + quote_ident(table_) + " (" + names + ") SELECT " + names + " FROM ferry_stage ON CONFLICT (" +
               quote_ident(key_) + ") DO " + (updates.empty() ? "NOTHING" : "UPDATE SET " + updates),
           {}, "upsert into " + table_);
  }

  /// COPY `target` (fields) FROM STDIN: `rows` formatted into `text` and sent as they are formatted (the
  /// server inserts while the rest is formatted), or `text` as it is when `rows` is null. "" on success,
  /// else the SQLSTATE (the message in last_copy_error_).
  std::string copy_in(const std::string& target, const std::vector<std::string>& fields, const std::vector<json::object>* rows,
                      std::string& text, const std::string& what) {
    std::string names;
    for (const auto& f : fields) names += (names.empty() ? "" : ", ") + quote_ident(f);
    c_.run("COPY " + target + " (" + names + ") FROM STDIN", {}, what);
    bool sent = true;
    const auto send = [&](std::size_t from) {
      sent = sent && PQputCopyData(c_.handle(), text.data() + from, static_cast<int>(text.size() - from)) == 1;
    };
    if (rows) {
      text.clear();
      text.reserve(last_text_bytes_ + last_text_bytes_ / 4);
      copy_text(*rows, fields, text, send);
      last_text_bytes_ = text.size();
    } else {
      send(0);
    }
    if (!sent || PQputCopyEnd(c_.handle(), nullptr) != 1)
      throw copy_error(c_.where() + ": " + what + ": " + first_line(PQerrorMessage(c_.handle())));
    result_ptr r(PQgetResult(c_.handle()), &PQclear);
    std::string state;
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      const char* code = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
      state = code && *code ? code : "XX000";
      last_copy_error_ = first_line(PQresultErrorMessage(r.get()));
    }
    while (PGresult* more = PQgetResult(c_.handle())) PQclear(more);
    return state;
  }

  void create_table(const std::vector<json::object>& rows) {
    created_ = true;
    if (!ddl_.empty()) {  // a converted schema (SQLite -> PostgreSQL)
      for (const auto& stmt : ddl_) c_.run(stmt, {}, "create table " + table_);
    } else {
      std::string sql = "CREATE TABLE " + quote_ident(table_) + " (";
      bool any = false;
      for (const auto& [k, v] : batch_columns(rows)) {
        sql += std::string(any ? ", " : "") + quote_ident(k) + " " + pg_type(v) + (k == key_ ? " PRIMARY KEY" : "");
        any = true;
      }
      c_.run(sql + ")", {}, "create table " + table_);
    }
    load_columns();
  }

  conn c_;
  std::string table_, key_;
  bool explicit_key_;
  std::map<std::string, col_kind> cols_;
  std::string key_array_type_;  // e.g. "bigint[]": the batch's keys are looked up as one array
  std::vector<std::string> ddl_;
  std::string last_copy_error_;
  std::size_t last_text_bytes_ = 0;  // the next batch's text buffer is sized after it
  bool created_ = false;
  bool staging_ = false;
  bool held_rows_ = false;  // the table had rows when the sink opened: probe each batch's keys
};

}  // namespace

std::unique_ptr<source> open_postgres_source(const uri& u) { return std::make_unique<pg_source>(u); }
std::unique_ptr<sink> open_postgres_sink(const uri& u) { return std::make_unique<pg_sink>(u); }

}  // namespace ferry::pipelines::copy
