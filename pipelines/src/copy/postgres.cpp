// postgresql://user:pass@host:port/db?table=T[&key=COL] as a source (keyset pages over row_to_json:
// WHERE key > $1 ORDER BY key LIMIT n) and as a sink (per batch, one transaction: COPY the rows as
// jsonb into a temporary staging table, then INSERT ... SELECT jsonb_populate_record ... ON CONFLICT
// (key) DO UPDATE; COMMIT is the acknowledgement). A missing sink table is created from the first
// batch's fields in that batch's transaction (key column PRIMARY KEY).
#include "pipelines/copy/connector.hpp"

#include <boost/json.hpp>

#include <libpq-fe.h>

#include <algorithm>
#include <memory>
#include <set>

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
    check_key_column();
  }

  std::string key_field() const override { return key_; }
  page read_after(const std::string& cursor, std::size_t limit) override {
    std::vector<std::string> params;
    std::string sql = "SELECT row_to_json(t)::text FROM " + quote_ident(table_) + " t";
    if (!cursor.empty()) {
      const auto k = parse_json(cursor, c_.where() + ": cursor");
      params.push_back(k.is_string() ? std::string(k.get_string()) : json::serialize(k));
      sql += " WHERE " + quote_ident(key_) + " > $1";
    }
    sql += " ORDER BY " + quote_ident(key_) + " LIMIT " + std::to_string(limit);
    auto r = c_.run(sql, params, "reading " + table_);
    page p;
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      row rw;
      rw.fields = parse_json(PQgetvalue(r.get(), i, 0), c_.where() + ": " + table_).as_object();
      const auto& k = rw.fields.at(key_);
      rw.cursor = json::serialize(k);
      rw.source_id = k.is_string() ? std::string(k.get_string()) : rw.cursor;
      p.rows.push_back(std::move(rw));
    }
    p.end = p.rows.size() < limit;
    return p;
  }

 private:
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
};

const char* pg_type(const json::value& v) {
  if (v.is_int64() || v.is_uint64()) return "bigint";
  if (v.is_double()) return "double precision";
  if (v.is_bool()) return "boolean";
  if (v.is_object() || v.is_array()) return "jsonb";
  return "text";
}

std::string copy_text_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (char ch : s) {
    switch (ch) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: out += ch;
    }
  }
  return out;
}

class pg_sink final : public sink {
 public:
  explicit pg_sink(const uri& u) : c_(u), table_(u.param("table")), key_(u.param("key", "id")), explicit_key_(!u.param("key").empty()) {
    if (table_.empty()) throw copy_error(c_.where() + ": no table (add ?table=T)");
    std::vector<std::string> pk;
    const auto cols = c_.columns(table_, &pk);
    cols_.insert(cols.begin(), cols.end());
    if (!cols.empty() && !explicit_key_ && pk.size() == 1) key_ = pk.front();
    c_.run("CREATE TEMP TABLE ferry_stage (doc jsonb) ON COMMIT DELETE ROWS");
  }

  bool has_table() const override { return !cols_.empty(); }
  void create_with(std::vector<std::string> ddl) override { ddl_ = std::move(ddl); }
  void drop_table() override { c_.run("DROP TABLE IF EXISTS " + quote_ident(table_), {}, "rollback"); }

  void write_batch(std::uint64_t, const std::vector<json::object>& rows) override {
    if (rows.empty()) return;
    c_.run("BEGIN");
    try {
      if (cols_.empty()) create_table(rows.front());
      check_unique_keys(rows, key_, c_.where());
      const auto fields = batch_fields(rows);
      stage(rows);
      std::string names, picks, updates;
      for (const auto& f : fields) {
        names += (names.empty() ? "" : ", ") + quote_ident(f);
        picks += (picks.empty() ? "r." : ", r.") + quote_ident(f);
        if (f != key_) updates += (updates.empty() ? "" : ", ") + quote_ident(f) + " = EXCLUDED." + quote_ident(f);
      }
      const auto t = quote_ident(table_);
      c_.run("INSERT INTO " + t + " (" + names + ") SELECT " + picks + " FROM ferry_stage s, jsonb_populate_record(NULL::" + t +
                 ", s.doc) r ON CONFLICT (" + quote_ident(key_) + ") DO " + (updates.empty() ? "NOTHING" : "UPDATE SET " + updates),
             {}, "upsert into " + table_);
      c_.run("COMMIT");
      created_ = false;
    } catch (...) {
      c_.rollback();
      if (created_) cols_.clear();  // the CREATE TABLE was rolled back with the batch
      throw;
    }
  }

 private:
  /// Every field of the batch, each a column of the table (else an error naming the row and field).
  std::vector<std::string> batch_fields(const std::vector<json::object>& rows) const {
    std::set<std::string> fields;
    for (std::size_t i = 0; i < rows.size(); ++i)
      for (const auto& [k, _] : rows[i]) {
        const std::string f(k);
        if (!cols_.count(f))
          throw copy_error(c_.where() + ": row " + std::to_string(i + 1) + " of the batch (key " +
                           key_text(rows[i], key_, c_.where(), i) + "): field '" + f + "' is not a column of table " + table_);
        fields.insert(f);
      }
    return {fields.begin(), fields.end()};
  }
  void create_table(const json::object& first) {
    created_ = true;
    if (!ddl_.empty()) {  // a converted schema (SQLite -> PostgreSQL)
      for (const auto& stmt : ddl_) c_.run(stmt, {}, "create table " + table_);
      std::vector<std::string> pk;
      const auto cols = c_.columns(table_, &pk);
      cols_.insert(cols.begin(), cols.end());
      if (!explicit_key_ && pk.size() == 1) key_ = pk.front();
      return;
    }
    std::string sql = "CREATE TABLE " + quote_ident(table_) + " (";
    bool any = false;
    for (const auto& [k, v] : first) {
      sql += std::string(any ? ", " : "") + quote_ident(std::string(k)) + " " + pg_type(v) + (std::string(k) == key_ ? " PRIMARY KEY" : "");
      any = true;
      cols_.insert(std::string(k));
    }
    c_.run(sql + ")", {}, "create table " + table_);
  }
  void stage(const std::vector<json::object>& rows) {
    c_.run("COPY ferry_stage (doc) FROM STDIN", {}, "copy into the staging table");
    std::string buf;
    for (const auto& r : rows) {
      buf += copy_text_escape(json::serialize(r));
      buf += '\n';
    }
    if (PQputCopyData(c_.handle(), buf.data(), static_cast<int>(buf.size())) != 1 || PQputCopyEnd(c_.handle(), nullptr) != 1)
      throw copy_error(c_.where() + ": copy into the staging table: " + first_line(PQerrorMessage(c_.handle())));
    result_ptr r(PQgetResult(c_.handle()), &PQclear);
    const bool ok = PQresultStatus(r.get()) == PGRES_COMMAND_OK;
    const auto msg = ok ? std::string() : first_line(PQresultErrorMessage(r.get()));
    while (PGresult* more = PQgetResult(c_.handle())) PQclear(more);
    if (!ok) throw copy_error(c_.where() + ": copy into the staging table: " + msg);
  }

  conn c_;
  std::string table_, key_;
  bool explicit_key_;
  std::set<std::string> cols_;
  std::vector<std::string> ddl_;
  bool created_ = false;
};

}  // namespace

std::unique_ptr<source> open_postgres_source(const uri& u) { return std::make_unique<pg_source>(u); }
std::unique_ptr<sink> open_postgres_sink(const uri& u) { return std::make_unique<pg_sink>(u); }

}  // namespace ferry::pipelines::copy
