// jsonl:///dir as a source (every *.jsonl file, by name, line by line; cursor = [file, line]) and as a
// sink (batch N is the file part-<N>.jsonl, written to a temporary name, fsynced and renamed: writing
// batch N again after a crash replaces it whole; its writeback starts while it is being written).
#include "pipelines/copy/connector.hpp"

#include "page_budget.hpp"

#include <boost/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace ferry::pipelines::copy {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

class jsonl_source final : public source {
 public:
  explicit jsonl_source(const uri& u) : where_(u.redacted()), dir_(u.path), key_(u.param("key", "id")) {
    std::error_code ec;
    if (!fs::is_directory(dir_, ec)) throw copy_error(where_ + ": directory " + dir_.string() + " not found");
    for (const auto& e : fs::directory_iterator(dir_))
      if (e.is_regular_file() && e.path().extension() == ".jsonl") files_.push_back(e.path().filename().string());
    std::sort(files_.begin(), files_.end());
  }

  std::string key_field() const override { return key_; }
  page read_after(const std::string& cursor, std::size_t limit) override {
    if (cursor != at_) seek(cursor);
    page p;
    std::size_t bytes = 0;
    while (p.rows.size() < limit && bytes < k_page_bytes && file_ < files_.size()) {
      if (!in_.is_open()) open_current();
      auto& line = line_buf_;  // reused: no allocation per line
      if (!std::getline(in_, line)) {
        in_.close();
        ++file_;
        line_ = 0;
        continue;
      }
      ++line_;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      bytes += line.size();
      p.rows.push_back(parse_row(line));
    }
    at_ = position();
    p.end = file_ >= files_.size();
    return p;
  }

 private:
  /// The cursor ["file", line] (the file name's JSON text cached per file: this runs for every row).
  std::string position() {
    const std::string& name = file_ < files_.size() ? files_[file_] : end_name_;
    if (quoted_for_ != &name) {
      quoted_ = json::serialize(json::string(name));
      quoted_for_ = &name;
    }
    char num[24];
    const auto res = std::to_chars(num, num + sizeof num, line_);
    std::string out;
    out.reserve(quoted_.size() + 24);
    out += '[';
    out += quoted_;
    out += ',';
    out.append(num, res.ptr);
    out += ']';
    return out;
  }
  void open_current() {
    in_.open(dir_ / files_[file_]);
    if (!in_) throw copy_error(where_ + ": cannot read " + files_[file_] + ": " + std::strerror(errno));
  }
  /// Positions after the cursor's line: its file (or the first file after it by name), then its line.
  void seek(const std::string& cursor) {
    in_.close();
    file_ = 0;
    line_ = 0;
    if (cursor.empty()) return;
    const auto c = parse_json(cursor, where_ + ": cursor").as_array();
    const std::string name(c.at(0).as_string());
    const auto skip = static_cast<std::uint64_t>(c.at(1).to_number<std::int64_t>());
    file_ = static_cast<std::size_t>(std::lower_bound(files_.begin(), files_.end(), name) - files_.begin());
    if (file_ >= files_.size() || files_[file_] != name) return;
    open_current();
    std::string line;
    while (line_ < skip && std::getline(in_, line)) ++line_;
  }
  row parse_row(const std::string& line) {
    const std::string at = files_[file_] + " line " + std::to_string(line_);
    auto v = parse_json(line, where_ + ": " + at);
    if (!v.is_object()) throw copy_error(where_ + ": " + at + ": not a JSON object");
    row r;
    r.fields = std::move(v.as_object());
    r.cursor = position();
    const auto* k = r.fields.if_contains(key_);
    r.source_id = !k ? at : k->is_string() ? std::string(k->get_string()) : json::serialize(*k);
    return r;
  }

  std::string where_;
  fs::path dir_;
  std::string key_;
  std::vector<std::string> files_;
  std::size_t file_ = 0;     // reading files_[file_]
  std::uint64_t line_ = 0;   // lines of it consumed
  std::ifstream in_;
  std::string line_buf_;
  std::string at_ = "";      // the cursor the stream is positioned after
  const std::string end_name_ = "~end";
  std::string quoted_;                      // JSON text of *quoted_for_
  const std::string* quoted_for_ = nullptr;
};

/// A batch file written to `path`.tmp piece by piece, each piece's writeback started at once
/// (sync_file_range) so that the disk works while the next piece is formatted; commit() fsyncs it,
/// renames it to `path` and fsyncs the directory: after commit() the file is durable.
class durable_file {
 public:
  durable_file(fs::path path, std::string where) : path_(std::move(path)), tmp_(path_.string() + ".tmp"), where_(std::move(where)) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd_ < 0) throw copy_error(where_ + ": cannot create " + tmp_ + ": " + std::strerror(errno));
  }
  ~durable_file() {
    if (fd_ >= 0) ::close(fd_);
  }
  durable_file(const durable_file&) = delete;
  durable_file& operator=(const durable_file&) = delete;

  void write(std::string_view piece) {
    const auto start = written_;
    while (!piece.empty()) {
      const auto n = ::write(fd_, piece.data(), piece.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw copy_error(where_ + ": cannot write " + tmp_ + ": " + std::strerror(errno));
      piece.remove_prefix(static_cast<std::size_t>(n));
      written_ += static_cast<std::size_t>(n);
    }
    ::sync_file_range(fd_, static_cast<off_t>(start), static_cast<off_t>(written_ - start), SYNC_FILE_RANGE_WRITE);  // a hint
  }

  void commit() {
    const int fd = fd_;
    fd_ = -1;
    if (::fsync(fd) != 0 || ::close(fd) != 0) throw copy_error(where_ + ": cannot sync " + tmp_ + ": " + std::strerror(errno));
    if (::rename(tmp_.c_str(), path_.c_str()) != 0)
      throw copy_error(where_ + ": cannot rename " + tmp_ + ": " + std::strerror(errno));
    const int dfd = ::open(path_.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  fs::path path_;
  std::string tmp_, where_;
  int fd_ = -1;
  std::size_t written_ = 0;
};

class jsonl_sink final : public sink {
 public:
  explicit jsonl_sink(const uri& u) : where_(u.redacted()), dir_(u.path) {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) throw copy_error(where_ + ": cannot create directory " + dir_.string() + ": " + ec.message());
  }
  bool holds_other_output() const override {
    for (const auto& e : fs::directory_iterator(dir_))
      if (e.path().filename().string().starts_with("part-")) return true;
    return false;
  }
  void write_batch(std::uint64_t seq, const std::vector<json::object>& rows) override {
    char name[32];
    std::snprintf(name, sizeof name, "part-%010llu.jsonl", static_cast<unsigned long long>(seq));
    durable_file file(dir_ / name, where_);
    std::string out;
    out.reserve(k_piece + k_piece / 4);
    json::serializer sr;
    char buf[16384];
    for (const auto& r : rows) {  // no string per row; written in ~1 MB pieces
      sr.reset(&r);
      while (!sr.done()) out += sr.read(buf, sizeof buf);
      out += '\n';
      if (out.size() >= k_piece) {
        file.write(out);
        out.clear();
      }
    }
    file.write(out);
    file.commit();
  }

 private:
  std::string where_;
  fs::path dir_;
  static constexpr std::size_t k_piece = std::size_t{1} << 20;
};

}  // namespace

std::unique_ptr<source> open_jsonl_source(const uri& u) { return std::make_unique<jsonl_source>(u); }
std::unique_ptr<sink> open_jsonl_sink(const uri& u) { return std::make_unique<jsonl_sink>(u); }

}  // namespace ferry::pipelines::copy
