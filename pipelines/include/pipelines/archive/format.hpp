#pragma once
// The on-disk form of an org archive (`ferry export` / `ferry import`).
//
//   DIR/manifest.json            format + version, source, options + their fingerprint, every file below
//                                 with its sha256, bytes and rows (chunks also their first/last key)
//   DIR/manifest.json.sha256      sha256 of manifest.json's bytes (a tampered manifest is refused)
//   DIR/resources/<name>.json     {"path": "/v1/...", "objects": [...]}: every object the export listed
//                                 under that API path, as the source returned it
//   DIR/streams/<kind>/<object id>/<NNNNNN>.jsonl.zst
//                                 one stream's rows, one source row per line, in source (_pagination_key)
//                                 order, zstd-compressed; chunk N+1 continues after chunk N
//   DIR/attachments/<sha256>      the bytes of every attachment a row references ({"type":
//                                 "braintrust_attachment","key":..}), named by their sha256 (one file for
//                                 equal bytes); the manifest maps each source key to its file, filename
//                                 and content type (format_version 2; version 1 archives hold none)
//
// Files are written to "<name>.tmpN", fsynced, renamed and the directory fsynced (write_file_durably):
// a file that exists under its final name is complete. Pure functions and plain data; no I/O besides
// the files named.

#include "pipelines/streams/btql_query.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::pipelines::archive {

/// 2: attachment bytes in attachments/ (1: references only; still read, imported without copies).
inline constexpr int format_version = 2;
inline constexpr std::string_view manifest_name = "manifest.json";

/// One file of the archive as the manifest lists it.
struct file_entry {
  std::string path;  // relative to the archive dir, '/'-separated
  std::string sha256;
  std::uint64_t bytes = 0;
  std::uint64_t rows = 0;
  std::string first_key;  // chunks: _pagination_key of the first and last row
  std::string last_key;
};

/// One stream: its kind name (streams::object_type_name) and object id, its chunks in order.
struct stream_entry {
  std::string kind;
  std::string object_id;
  std::uint64_t rows = 0;
  std::vector<file_entry> chunks;
};

/// One attachment: the source's key, what its references name, and the file holding its bytes.
struct attachment_entry {
  std::string key;
  std::string filename;
  std::string content_type;
  file_entry file;  // "attachments/<sha256>", its sha256 and bytes
};

/// An attachment reference inside a row: where (".input.attachment", "[2]"), and what it names.
struct attachment_ref {
  std::string path;
  std::string key;
  std::string filename;
  std::string content_type;
};

/// Every attachment reference of `row`, as the copy recognizes them (stream_runner: an object with
/// type "braintrust_attachment" and string key, filename and content_type; not looked into), by path.
std::vector<attachment_ref> attachment_refs(const boost::json::value& row);

struct manifest {
  int version = format_version;
  std::string source_url;
  boost::json::object options;
  std::string options_fingerprint;             // sha256 of options' serialization
  std::map<std::string, file_entry> resources;  // API path ("/v1/project") -> its file
  std::vector<stream_entry> streams;
  std::map<std::string, attachment_entry> attachments;  // source key -> its entry
  /// Whether the export carried attachment bytes (version 2): an import then copies them.
  bool holds_attachments() const { return version >= 2; }
};

std::string sha256_hex(std::string_view bytes);
std::string read_file(const std::filesystem::path& p);  // throws naming the file
/// Writes `bytes` to a temp file beside p (p.tmpN, a name of its own), fsyncs, renames to p, and fsyncs
/// the directory (creating it if needed) unless `sync_parent` is false: the caller then calls sync_dir
/// before it relies on the name (several files, one directory sync).
void write_file_durably(const std::filesystem::path& p, std::string_view bytes, bool sync_parent = true);
void sync_dir(const std::filesystem::path& dir);

std::string zstd_compress(std::string_view bytes, int level = 3);
/// Throws std::runtime_error mentioning `what` when the frame is corrupt.
std::string zstd_decompress(std::string_view frame, std::string_view what);

/// "resources/<path without /v1/, '/' -> '_'>.json"
std::string resource_file_name(std::string_view api_path);
/// "streams/<kind>/<object id>/<index, 6 digits>.jsonl.zst"
std::string chunk_file_name(std::string_view kind, std::string_view object_id, std::size_t index);

/// "attachments/<sha256 of the bytes>"
std::string attachment_file_name(std::string_view sha256);

/// The stream kind of a manifest kind name ("project_logs", "experiment", "dataset"); throws if unknown.
streams::stream_kind kind_of(std::string_view object_type);

/// A chunk's lines (source rows as JSON text), after checking its sha256 and row count against the
/// manifest; throws std::runtime_error naming "archive DIR: <file>" when either differs or zstd fails.
std::vector<std::string> read_chunk(const std::filesystem::path& dir, const file_entry& f);

/// An attachment's bytes after checking their sha256 and size against the manifest; throws
/// std::runtime_error naming "archive DIR: attachments/<file>" when either differs.
std::string read_attachment(const std::filesystem::path& dir, const attachment_entry& a);

boost::json::object to_json(const file_entry& f);
boost::json::object to_json(const attachment_entry& a);
attachment_entry attachment_from_json(std::string key, const boost::json::object& o);
file_entry file_from_json(const boost::json::object& o);
boost::json::object to_json(const stream_entry& s);
stream_entry stream_from_json(const boost::json::object& o);

/// Writes manifest.json, then manifest.json.sha256 (both durably).
void write_manifest(const std::filesystem::path& dir, const manifest& m);
/// Reads and checks the archive before anything is written anywhere: the manifest's own checksum, its
/// format and version (1 or 2), then every listed file's size and sha256 (attachments too). Throws std::runtime_error with one
/// line naming the bad file ("archive DIR: streams/...: sha256 mismatch (corrupt or tampered)").
manifest read_and_check(const std::filesystem::path& dir);

}  // namespace ferry::pipelines::archive
