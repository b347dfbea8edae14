#pragma once
// `ferry copy --from URI --to URI [--transform FILE]`: rows from a source connector to a sink connector
// (pipelines/copy/connector.hpp) on Ferry's stream engine: a keyset reader sends pages through a
// bounded channel to a batched writer; each batch is journaled (begin_batch), written to the sink, and
// only after the sink's acknowledgement is the source cursor committed to the RocksDB state dir
// (commit_batch). A SIGKILL anywhere resumes from the last committed cursor and re-sends at most the
// unacknowledged batch, which the sink replaces by key: the copy is exact.
//
// SQLite -> PostgreSQL with a missing sink table: the table is created from the SQLite schema
// (sqlite_to_postgres_schema: types, NOT NULL, defaults, primary key, indexes) in the first batch's
// transaction; lossy conversions are refused (naming each) unless allow_lossy. dry_run prints that DDL
// and the plan, opening nothing but the source and a PostgreSQL sink's connection.
//
// Rollback: when the sink table is missing, the state records that this copy creates it
// (copy_created_table) before the batch that creates it; `rollback` then drops that table and removes
// the state dir. A copy into a table that existed before is not rolled back (its rows are not only ours).
//
// The state dir records the source and sink URIs (passwords redacted); a run with other URIs on the
// same state dir is refused (another copy needs its own --state-dir).

#include <chrono>
#include <cstddef>
#include <iosfwd>
#include <string>

namespace ferry::pipelines {

struct migrate_config;

struct copy_options {
  std::string from;            // source URI
  std::string to;              // sink URI
  std::string transform_file;  // YAML transform ("" = rows as read)
  std::string state_dir = "./ferry-copy-state";
  std::size_t batch_rows = 5000;   // rows per page and per sink batch (sources also cut pages at ~4 MB)
  std::size_t channel_pages = 4;   // pages buffered between reader and writer
  bool dry_run = false;      // print the plan (and a converted schema's DDL), write nothing
  bool allow_lossy = false;  // accept the lossy conversions a SQLite -> PostgreSQL schema conversion names
  bool rollback = false;     // undo the copy of this state dir: drop the sink table it created, remove the state
  /// After the copy, read both sides again and compare them row by row (pipelines/copy/verify.hpp):
  /// one DIFF line per difference on `out`, and run_copy returns 1 when there is any.
  bool verify = false;
  /// The layered settings (BT_SOURCE_API_KEY, BT_DEST_API_KEY, TLS, retries, timeouts...) that give a
  /// braintrust:// side its HTTP policy (side_config_for); null: defaults, keys from the environment.
  const migrate_config* config = nullptr;
  std::string metrics_addr;                       // serve GET /metrics on HOST:PORT while the copy runs
  std::chrono::milliseconds metrics_linger{0};    // ... and this long after it (SIGINT/SIGTERM end it)
  std::chrono::milliseconds progress_interval{5000};  // a progress line at most this often
};

/// Runs the copy to its end. Returns 0 when every row was copied; throws (one line, URIs redacted)
/// when a connector, the transform or the state fails. Prints one summary line to `out`.
int run_copy(const copy_options& opts, std::ostream& out);

}  // namespace ferry::pipelines
