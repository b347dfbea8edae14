#include "pipelines/archive/format.hpp"
#include "engine/json_parse.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <openssl/evp.h>
#include <zstd.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

namespace ferry::pipelines::archive {

namespace fs = std::filesystem;
namespace json = boost::json;

std::string sha256_hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("sha256 is not available");
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 0x0F];
  }
  return out;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error(p.string() + ": cannot be read");
  std::ostringstream ss;
  ss << in.rdbuf();
  return std::move(ss).str();
}

namespace {

void fsync_path(const fs::path& p, int flags) {
  const int fd = ::open(p.c_str(), flags);
  if (fd < 0) throw std::runtime_error(p.string() + ": open for fsync: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw std::runtime_error(p.string() + ": fsync: " + std::strerror(errno));
}

}  // namespace

void sync_dir(const fs::path& dir) { fsync_path(dir, O_RDONLY | O_DIRECTORY); }

void write_file_durably(const fs::path& p, std::string_view bytes, bool sync_parent) {
  std::error_code ec;
  fs::create_directories(p.parent_path(), ec);
  if (ec) throw std::runtime_error(p.parent_path().string() + ": cannot create: " + ec.message());
  // A name of its own per write: two writers of one file (equal bytes) never share a temp file.
  static std::atomic<std::uint64_t> seq{0};
  const fs::path tmp = p.string() + ".tmp" + std::to_string(seq++);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) throw std::runtime_error(tmp.string() + ": write failed");
  }
  fsync_path(tmp, O_RDONLY);
  fs::rename(tmp, p, ec);
  if (ec) throw std::runtime_error(p.string() + ": rename failed: " + ec.message());
  if (sync_parent) sync_dir(p.parent_path());
}

std::string zstd_compress(std::string_view bytes, int level) {
  std::string out(ZSTD_compressBound(bytes.size()), '\0');
  const std::size_t n = ZSTD_compress(out.data(), out.size(), bytes.data(), bytes.size(), level);
  if (ZSTD_isError(n)) throw std::runtime_error(std::string("zstd compression failed: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

std::string zstd_decompress(std::string_view frame, std::string_view what) {
  const auto size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
    throw std::runtime_error(std::string(what) + ": not a zstd frame of known size (corrupt)");
  std::string out(static_cast<std::size_t>(size), '\0');
  const std::size_t n = ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n) || n != out.size())
    throw std::runtime_error(std::string(what) + ": zstd frame is corrupt (" +
                             (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short") + ")");
  return out;
}

std::string resource_file_name(std::string_view api_path) {
  std::string name(api_path.starts_with("/v1/") ? api_path.substr(4) : api_path);
  for (auto& c : name)
    if (c == '/') c = '_';
  return "resources/" + name + ".json";
}

std::string chunk_file_name(std::string_view kind, std::string_view object_id, std::size_t index) {
  char num[16];
  std::snprintf(num, sizeof num, "%06zu", index);
  return "streams/" + std::string(kind) + "/" + std::string(object_id) + "/" + num + ".jsonl.zst";
}

std::string attachment_file_name(std::string_view sha256) { return "attachments/" + std::string(sha256); }

std::vector<attachment_ref> attachment_refs(const json::value& row) {
  std::vector<attachment_ref> out;
  std::vector<std::pair<const json::value*, std::string>> todo{{&row, std::string()}};
  while (!todo.empty()) {
    auto [cur, path] = std::move(todo.back());
    todo.pop_back();
    if (cur->is_array()) {
      const auto& a = cur->get_array();
      for (std::size_t i = 0; i < a.size(); ++i) todo.emplace_back(&a[i], path + "[" + std::to_string(i) + "]");
    } else if (cur->is_object()) {
      const auto& o = cur->get_object();
      auto str = [&](std::string_view k) {
        auto* f = o.if_contains(k);
        return f && f->is_string() ? std::optional<std::string>(std::string(f->get_string())) : std::nullopt;
      };
      const auto type = str("type"), key = str("key"), filename = str("filename"), content_type = str("content_type");
      if (type == "braintrust_attachment" && key && filename && content_type) {
        out.push_back({path, *key, *filename, *content_type});
        continue;  // references are not looked into (as the copy does)
      }
      for (const auto& kv : o) todo.emplace_back(&kv.value(), path + "." + std::string(kv.key()));
    }
  }
  std::sort(out.begin(), out.end(), [](const attachment_ref& a, const attachment_ref& b) { return a.path < b.path; });
  return out;
}

std::string read_attachment(const fs::path& dir, const attachment_entry& a) {
  const std::string where = "archive " + dir.string() + ": " + a.file.path;
  std::string bytes = read_file(dir / a.file.path);
  if (bytes.size() != a.file.bytes)
    throw std::runtime_error(where + ": size " + std::to_string(bytes.size()) + " != " + std::to_string(a.file.bytes) +
                             " in the manifest (corrupt or truncated)");
  if (sha256_hex(bytes) != a.file.sha256) throw std::runtime_error(where + ": sha256 mismatch (corrupt or tampered)");
  return bytes;
}

streams::stream_kind kind_of(std::string_view object_type) {
  for (auto k : {streams::stream_kind::project_logs, streams::stream_kind::experiment, streams::stream_kind::dataset})
    if (streams::object_type_name(k) == object_type) return k;
  throw std::runtime_error("unknown stream kind " + std::string(object_type));
}

std::vector<std::string> read_chunk(const fs::path& dir, const file_entry& f) {
  const std::string where = "archive " + dir.string() + ": " + f.path;
  const std::string frame = read_file(dir / f.path);
  if (sha256_hex(frame) != f.sha256) throw std::runtime_error(where + ": sha256 mismatch (corrupt or tampered)");
  const std::string text = zstd_decompress(frame, where);
  std::vector<std::string> lines;
  std::string_view rest(text);
  while (!rest.empty()) {
    const auto nl = rest.find('\n');
    if (nl != 0) lines.emplace_back(rest.substr(0, nl));
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
  }
  if (lines.size() != f.rows)
    throw std::runtime_error(where + ": " + std::to_string(lines.size()) + " rows, the manifest says " + std::to_string(f.rows));
  return lines;
}

namespace {

std::string str_of(const json::object& o, std::string_view k) {
  auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::uint64_t u64_of(const json::object& o, std::string_view k) {
  auto* v = o.if_contains(k);
  if (!v) return 0;
  if (v->is_uint64()) return v->as_uint64();
  if (v->is_int64() && v->as_int64() >= 0) return static_cast<std::uint64_t>(v->as_int64());
  return 0;
}

}  // namespace

json::object to_json(const file_entry& f) {
  json::object o{{"path", f.path}, {"sha256", f.sha256}, {"bytes", f.bytes}, {"rows", f.rows}};
  if (!f.first_key.empty()) o["first_key"] = f.first_key;
  if (!f.last_key.empty()) o["last_key"] = f.last_key;
  return o;
}

file_entry file_from_json(const json::object& o) {
  return {str_of(o, "path"), str_of(o, "sha256"), u64_of(o, "bytes"), u64_of(o, "rows"), str_of(o, "first_key"),
          str_of(o, "last_key")};
}

json::object to_json(const attachment_entry& a) {
  return {{"path", a.file.path},
          {"sha256", a.file.sha256},
          {"bytes", a.file.bytes},
          {"filename", a.filename},
          {"content_type", a.content_type}};
}

attachment_entry attachment_from_json(std::string key, const json::object& o) {
  return {std::move(key), str_of(o, "filename"), str_of(o, "content_type"),
          file_entry{str_of(o, "path"), str_of(o, "sha256"), u64_of(o, "bytes"), 0, {}, {}}};
}

json::object to_json(const stream_entry& s) {
  json::array chunks;
  for (const auto& c : s.chunks) chunks.push_back(to_json(c));
  return {{"kind", s.kind}, {"object_id", s.object_id}, {"rows", s.rows}, {"chunks", std::move(chunks)}};
}

stream_entry stream_from_json(const json::object& o) {
  stream_entry s{str_of(o, "kind"), str_of(o, "object_id"), u64_of(o, "rows"), {}};
  if (auto* c = o.if_contains("chunks"); c && c->is_array())
    for (const auto& v : c->as_array())
      if (v.is_object()) s.chunks.push_back(file_from_json(v.as_object()));
  return s;
}

void write_manifest(const fs::path& dir, const manifest& m) {
  json::object res;
  for (const auto& [path, f] : m.resources) res[path] = to_json(f);
  json::array streams;
  for (const auto& s : m.streams) streams.push_back(to_json(s));
  json::object attachments;
  for (const auto& [key, a] : m.attachments) attachments[key] = to_json(a);
  json::object o{{"format", "ferry-archive"},
                 {"format_version", m.version},
                 {"source_url", m.source_url},
                 {"options", m.options},
                 {"options_fingerprint", m.options_fingerprint},
                 {"resources", std::move(res)},
                 {"streams", std::move(streams)}};
  if (m.holds_attachments()) o["attachments"] = std::move(attachments);
  const std::string text = json::serialize(o) + "\n";
  write_file_durably(dir / manifest_name, text);
  write_file_durably(dir / (std::string(manifest_name) + ".sha256"), sha256_hex(text) + "\n");
}

namespace {

[[noreturn]] void refuse(const fs::path& dir, std::string_view file, std::string_view why) {
  throw std::runtime_error("archive " + dir.string() + ": " + std::string(file) + ": " + std::string(why));
}

void check_file(const fs::path& dir, const file_entry& f) {
  // The listed path must stay inside the archive (a tampered manifest cannot make import read elsewhere).
  if (f.path.empty() || f.path.front() == '/' || f.path.find("..") != std::string::npos)
    refuse(dir, f.path, "path outside the archive");
  std::error_code ec;
  const auto size = fs::file_size(dir / f.path, ec);
  if (ec) refuse(dir, f.path, "missing");
  if (size != f.bytes) refuse(dir, f.path, "size " + std::to_string(size) + " != " + std::to_string(f.bytes) + " in the manifest (corrupt or truncated)");
  if (sha256_hex(read_file(dir / f.path)) != f.sha256) refuse(dir, f.path, "sha256 mismatch (corrupt or tampered)");
}

}  // namespace

manifest read_and_check(const fs::path& dir) {
  const std::string mname(manifest_name);
  std::error_code ec;
  if (!fs::exists(dir / mname, ec)) refuse(dir, mname, "missing (not an archive, or an export that has not finished)");
  const std::string text = read_file(dir / mname);
  std::string sum;
  try {
    sum = read_file(dir / (mname + ".sha256"));
  } catch (const std::exception&) {
    refuse(dir, mname + ".sha256", "missing");
  }
  while (!sum.empty() && (sum.back() == '\n' || sum.back() == ' ')) sum.pop_back();
  if (sum != sha256_hex(text)) refuse(dir, mname, "sha256 does not match manifest.json.sha256 (tampered or corrupt)");
  json::value v = ferry::engine::parse_json(text, ec);
  if (ec || !v.is_object()) refuse(dir, mname, "not a JSON object");
  const auto& o = v.as_object();
  if (str_of(o, "format") != "ferry-archive") refuse(dir, mname, "not a ferry archive manifest");
  const auto version = u64_of(o, "format_version");
  if (version < 1 || version > static_cast<std::uint64_t>(format_version))
    refuse(dir, mname, "format_version " + std::to_string(version) + " is not supported (this ferry reads 1 to " +
                           std::to_string(format_version) + ")");
  manifest m;
  m.version = static_cast<int>(version);
  m.source_url = str_of(o, "source_url");
  if (auto* opts = o.if_contains("options"); opts && opts->is_object()) m.options = opts->as_object();
  m.options_fingerprint = str_of(o, "options_fingerprint");
  if (auto* r = o.if_contains("resources"); r && r->is_object())
    for (const auto& kv : r->as_object())
      if (kv.value().is_object()) m.resources[std::string(kv.key())] = file_from_json(kv.value().as_object());
  if (auto* s = o.if_contains("streams"); s && s->is_array())
    for (const auto& e : s->as_array())
      if (e.is_object()) m.streams.push_back(stream_from_json(e.as_object()));
  if (auto* a = o.if_contains("attachments"); a && a->is_object())
    for (const auto& kv : a->as_object())
      if (kv.value().is_object()) m.attachments[std::string(kv.key())] = attachment_from_json(std::string(kv.key()), kv.value().as_object());
  for (const auto& [path, f] : m.resources) check_file(dir, f);
  std::set<std::string> checked;  // equal bytes share one file
  for (const auto& [key, a] : m.attachments)
    if (checked.insert(a.file.path).second) check_file(dir, a.file);
  for (const auto& s : m.streams)
    for (const auto& c : s.chunks) check_file(dir, c);
  return m;
}

}  // namespace ferry::pipelines::archive
