#pragma once
// `ferry copy` connectors: a source reads pages of rows in key order after a cursor (keyset
// pagination), a sink writes a batch idempotently by key and returns only once the batch is durable
// (its acknowledgement). The copy loop (pipelines/copy.hpp) commits the cursor after the ack, so a
// crash re-sends at most the unacknowledged batch, which the sink replaces by key.
//
// URI forms (passwords are never printed: describe() and every error use redact_uri):
//   jsonl:///dir[?key=FIELD]                  every *.jsonl file of dir, by name, line by line
//   sqlite:///path.db?table=T[&key=COL]
//   postgresql://user:pass@host:port/db?table=T[&key=COL]
//   redis://[user:pass@]host:port[/db]?match=PATTERN[&json=1]   (source only)
//   braintrust://HOST[:PORT]/PROJECT/logs | /PROJECT/experiment/NAME | /PROJECT/dataset/NAME   (https;
//   braintrust+http:// for plain HTTP): a Braintrust project's logs, an experiment or a dataset, read
//   with the streams' BTQL page reader and written through /logs3 (braintrust.cpp). API keys are never
//   in the URI: the source's from BT_SOURCE_API_KEY, the sink's from BT_DEST_API_KEY (connector_context).
// Errors are copy_error: one line naming the URI (redacted) and the part or row at fault.
//
// Threading: a connector is used by one thread at a time (the reader or the writer coroutine).

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace ferry::engine {
class metrics_registry;
}
namespace ferry::transports {
struct side_config;
}

namespace ferry::pipelines::copy {

class copy_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A parsed connector URI: scheme, the part before '?', and the query parameters (percent-decoded).
struct uri {
  std::string text;     // as given (may hold a password: never print it, print redacted())
  std::string scheme;   // "jsonl", "sqlite", "postgresql"
  std::string base;     // text before '?'
  std::string path;     // for jsonl/sqlite: what follows "scheme://" up to '?'
  std::map<std::string, std::string> params;

  std::string param(const std::string& k, const std::string& dflt = {}) const {
    auto it = params.find(k);
    return it == params.end() ? dflt : it->second;
  }
  std::string redacted() const;
};
uri parse_uri(const std::string& text);

struct row {
  std::string cursor;        // the source position of this row (opaque to all but its source)
  std::string source_id;     // the row's key in the source, as text (for the transform's id field)
  boost::json::object fields;
};

struct page {
  std::vector<row> rows;
  bool end = false;   // no rows after these
  std::string after;  // where the next page starts when the source knows more than its last row's
                      // cursor (a SCAN cursor past keys MATCH filtered out); "" = the last row's cursor
};

class source {
 public:
  virtual ~source() = default;
  /// Up to `limit` rows after `cursor` ("" = from the start), in the source's key order.
  virtual page read_after(const std::string& cursor, std::size_t limit) = 0;
  /// The field whose value is row::source_id (verify keys the rows of a sink read back by it).
  virtual std::string key_field() const { return "id"; }
};

class sink {
 public:
  virtual ~sink() = default;
  /// Writes batch `seq` (rows keyed by the sink's key field); replaces rows with the same key (or the
  /// same batch seq, for files). Returns once the batch is durable: that is the acknowledgement.
  virtual void write_batch(std::uint64_t seq, const std::vector<boost::json::object>& rows) = 0;
  /// Whether the sink's table exists (files: always true).
  virtual bool has_table() const { return true; }
  /// The statements that create the sink's table if it is missing, run in the first batch's
  /// transaction instead of a table built from the first batch's fields (sinks without tables ignore it).
  virtual void create_with(std::vector<std::string> /*ddl*/) {}
  /// Whether the sink holds output of a copy already (a JSONL directory with part files): a fresh copy
  /// refuses to mix its batches with another copy's. (Tables may hold rows: an upsert merges into them.)
  virtual bool holds_other_output() const { return false; }
  /// Drops the sink's table (`ferry copy --rollback` of a copy that created it).
  virtual void drop_table() { throw copy_error("this sink has no table to drop (only sqlite and postgresql sinks roll back)"); }
  /// The row as the sink stores it (verify compares a row read back from the sink with this): the
  /// identity, except where a sink maps fields (a Braintrust sink: id as a string, unknown fields
  /// under metadata, system fields dropped).
  virtual boost::json::object as_stored(boost::json::object row) const { return row; }
};

/// SQLite -> PostgreSQL schema conversion of one table (as pgloader does): column types by SQLite's
/// affinity rules, NOT NULL, defaults, the primary key and the indexes (unique or not). `lossy` names
/// every conversion that would not give back the same values (untyped or BLOB columns, values of
/// another type than the column's, partial or expression indexes, defaults that are not constants).
struct schema_plan {
  std::vector<std::string> ddl;    // CREATE TABLE ..., CREATE [UNIQUE] INDEX ...
  std::vector<std::string> lossy;  // one line each, naming the column or index
};
schema_plan sqlite_to_postgres_schema(const uri& sqlite_source, const std::string& pg_table);

/// What Braintrust connectors need besides their URI: each side's HTTP policy (side_config_for of
/// the layered settings: the key from BT_SOURCE_API_KEY / BT_DEST_API_KEY, TLS, retries, timeouts,
/// concurrency; the URL is the URI's) and the run's metrics registry. Null members: defaults, the keys
/// read from the environment. Other schemes ignore it.
struct connector_context {
  const transports::side_config* source_side = nullptr;  // a braintrust source
  const transports::side_config* dest_side = nullptr;    // a braintrust sink
  engine::metrics_registry* metrics = nullptr;
};

std::unique_ptr<source> open_source(const uri& u, const connector_context& ctx = {});
std::unique_ptr<sink> open_sink(const uri& u, const connector_context& ctx = {});

// Per scheme (connectors/*.cpp).
std::unique_ptr<source> open_jsonl_source(const uri& u);
std::unique_ptr<sink> open_jsonl_sink(const uri& u);
std::unique_ptr<source> open_sqlite_source(const uri& u);
std::unique_ptr<sink> open_sqlite_sink(const uri& u);
std::unique_ptr<source> open_postgres_source(const uri& u);
std::unique_ptr<sink> open_postgres_sink(const uri& u);
std::unique_ptr<source> open_redis_source(const uri& u);
std::unique_ptr<source> open_braintrust_source(const uri& u, const connector_context& ctx);
std::unique_ptr<sink> open_braintrust_sink(const uri& u, const connector_context& ctx);

/// Percent-decoding of a URI part ('+' is a space).
std::string percent_decode(const std::string& s);

/// JSON text to a value with numbers read exactly (Boost.JSON's default double parsing may be off by
/// one ulp, and a copy must give back the same double); throws copy_error naming `where` on bad JSON.
boost::json::value parse_json(std::string_view text, const std::string& where);

/// Whether `s` is well-formed UTF-8 (sources refuse text that is not: JSON cannot carry it).
bool valid_utf8(std::string_view s);

/// The key value of a row for a sink: the field `key`, as text; throws copy_error naming the row
/// (its position `index` in the batch) when it is missing, null, an object or an array.
std::string key_text(const boost::json::object& row, const std::string& key, const std::string& where,
                     std::size_t index);
/// Throws copy_error naming the key when two rows of a batch have the same key value (an upsert
/// would keep only one of them, silently).
void check_unique_keys(const std::vector<boost::json::object>& rows, const std::string& key, const std::string& where);

/// The columns a sink creates a missing table with, from a whole batch: every field of any row, in
/// the order fields first appear, each with a value that stands for its type (the first non-null one;
/// a double when the column holds both integers and doubles; null when every value is null).
std::vector<std::pair<std::string, boost::json::value>> batch_columns(const std::vector<boost::json::object>& rows);

}  // namespace ferry::pipelines::copy
