#pragma once
// `ferry copy --from URI --to URI [--transform FILE]`: rows from a source connector to a sink connector
// (pipelines/copy/connector.hpp) on Ferry's stream engine: a keyset reader sends pages through a
// bounded channel to a batched writer; each batch is journaled (begin_batch), written to the sink, and
// only after the sink's acknowledgement is the source cursor committed to the RocksDB state dir
// (commit_batch). A SIGKILL anywhere resumes from the last committed cursor and re-sends at most the
// unacknowledged batch, which the sink replaces by key: the copy is exact.
//
// The state dir records the source and sink URIs (passwords redacted); a run with other URIs on the
// same state dir is refused (another copy needs its own --state-dir).

#include <cstddef>
#include <iosfwd>
#include <string>

namespace ferry::pipelines {

struct copy_options {
  std::string from;            // source URI
  std::string to;              // sink URI
  std::string transform_file;  // YAML transform ("" = rows as read)
  std::string state_dir = "./ferry-copy-state";
  std::size_t batch_rows = 500;    // rows per page and per sink batch
  std::size_t channel_pages = 4;   // pages buffered between reader and writer
};

/// Runs the copy to its end. Returns 0 when every row was copied; throws (one line, URIs redacted)
/// when a connector, the transform or the state fails. Prints one summary line to `out`.
int run_copy(const copy_options& opts, std::ostream& out);

}  // namespace ferry::pipelines
