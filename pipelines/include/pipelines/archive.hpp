#pragma once
// `ferry export --to DIR` and `ferry import --from DIR`: a whole organization to and from a portable
// archive (layout: pipelines/src/archive/format.hpp and the README's "Archives" section).
//
// run_export(cfg, a): the source side only (BT_SOURCE_URL / BT_SOURCE_API_KEY, the project and resource
//   selection, the created window). Lists every resource type of the resources table (specs.hpp) through
//   resource_client::list (paged to an empty page), writes one JSON file per API path, then reads each
//   selected stream with streams::page_reader (the reader's page policy and retries) into zstd JSONL
//   chunks of `chunk_rows` rows in source order, and every attachment a row references into
//   attachments/<sha256> (downloaded, written durably and recorded before the row joins a chunk, so a
//   recorded chunk never references bytes the archive lacks). The commit rule of the stream engine holds: a chunk is
//   written durably (tmp, fsync, rename, fsync dir) and only then recorded in the RocksDB state
//   (DIR/.export-state) together with the stream's cursor, in one synced write; a resume deletes every
//   chunk file the state does not record and re-reads from the recorded cursor, so SIGKILL + resume
//   neither loses nor duplicates rows. The manifest is written last (an archive without one is
//   unfinished) and the state dir is then removed. Exit 0 done (or already complete), 1 failed,
//   2 bad config / options differing from the interrupted export's, 130 interrupted.
//
// run_import(cfg, a): the destination side only. Checks the manifest's own checksum, its format, and
//   every file's size and sha256 before anything is written (one line naming the bad file, exit 2),
//   then runs the migration itself with the archive as the source: an archive_resource_api answers the
//   resources DAG's GETs from the resource files and an archive_event_source answers the streams'
//   BTQL pages from the chunks, so the same org migrator, stream launcher, batched /logs3 writer,
//   id maps, checkpoints and report run as for `ferry migrate`; the archived attachments are copied as
//   --copy-attachments copies them (uploaded once, references rewritten). Resumable from its state dir
//   (MIGRATION_STATE_DIR; the guard is migrate's, with the archived source's URL, so a newer export of
//   the same organization continues from the recorded cursors); re-import is idempotent (objects
//   adopted/unchanged, streams at their end). --dry-run / --follow are refused. Exit codes as migrate's.
//
// run_verify_archive(cfg, a): `ferry verify --archive DIR`: checks the archive as import does, then
//   compares every stream of the archive with the destination deployment (BT_DEST_URL / BT_DEST_API_KEY)
//   row by row with streams::verify_tally (the canonical hashes `ferry verify` uses): a stream's object
//   is looked up in the id maps of the state dir (an import's), else taken as the same id (the
//   deployment the archive was exported from). Prints `ok` / `DIFF` per stream; then, per reference of
//   an archived row, the destination reference's bytes against the archived file's sha256 (one DIFF
//   line naming the file and the row each); then the resources field by field with `ferry verify`'s
//   resource oracle, the archive as its source (one DIFF line per type/object/field). Exit 0 all
//   equal, 1 any difference or failure, 2 bad archive / config, 130 interrupted.
//
// Threading: all three block the calling thread on their own engine::runtime.

#include "pipelines/migrate.hpp"
#include "pipelines/migrate_config.hpp"

#include <cstddef>
#include <string>

namespace ferry::pipelines {

struct archive_options {
  std::string dir;
  std::size_t chunk_rows = 5000;         // rows per stream chunk at most (export)
  std::size_t chunk_bytes = 8u << 20;    // uncompressed bytes per chunk at most (export): bounds the memory
                                         // of a chunk being written and of one decoded on import
};

int run_export(const migrate_config& cfg, const archive_options& a, const run_options& ro = {});
int run_import(const migrate_config& cfg, const archive_options& a, const run_options& ro = {});
int run_verify_archive(const migrate_config& cfg, const archive_options& a, const run_options& ro = {});

}  // namespace ferry::pipelines
