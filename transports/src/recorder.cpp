// Recorded traffic: redaction, JSON lines, gzip members, rotation, manifest, and the streaming reader.
#include "transports/recorder.hpp"

#include "engine/json_parse.hpp"
#include "engine/log.hpp"
#include "engine/outcome.hpp"
#include "transports/codec.hpp"
#include "transports/http_util.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json.hpp>

#include <zlib.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <mutex>
#include <stdexcept>

namespace ferry::transports {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

constexpr std::string_view redacted = "[REDACTED]";
constexpr std::string_view file_prefix = "exchanges-";

bool icontains(std::string_view hay, std::string_view needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == y;
         }) != hay.end();
}

std::string utf8_or_replaced(std::string_view s) {
  if (engine::valid_utf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size());
  for (char c : s) out += static_cast<unsigned char>(c) < 0x80 ? c : '?';
  return out;
}

std::string iso_time(std::chrono::system_clock::time_point tp) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(tp.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];  // generous: GCC's truncation analysis assumes full int ranges
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

// Replaces the value of every secret-named field; returns whether anything changed.
bool redact_json_value(json::value& v) {
  bool changed = false;
  if (auto* o = v.if_object()) {
    for (auto& kv : *o) {
      if (engine::is_secret_field_name(kv.key()) && !kv.value().is_null() &&
          !(kv.value().is_string() && kv.value().get_string() == redacted)) {
        kv.value() = redacted;
        changed = true;
      } else {
        changed |= redact_json_value(kv.value());
      }
    }
  } else if (auto* a = v.if_array()) {
    for (auto& e : *a) changed |= redact_json_value(e);
  }
  return changed;
}

// Cheap pre-check so multi-megabyte pages without any secret-looking key are not parsed.
bool may_hold_secret_field(std::string_view body) {
  static constexpr std::array<std::string_view, 7> words = {"secret", "api_key", "apikey", "password",
                                                            "token",  "authorization", "cookie"};
  return std::any_of(words.begin(), words.end(), [&](std::string_view w) { return icontains(body, w); });
}

unsigned parse_file_index(const std::string& name, bool& gz) {
  if (!name.starts_with(file_prefix)) return 0;
  std::string_view rest = std::string_view(name).substr(file_prefix.size());
  if (rest.size() < 7) return 0;
  const std::string_view digits = rest.substr(0, 6);
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) return 0;
  rest.remove_prefix(6);
  if (rest == ".jsonl.gz") gz = true;
  else if (rest == ".jsonl") gz = false;
  else return 0;
  return static_cast<unsigned>(std::stoul(std::string(digits)));
}

std::string file_name(unsigned index, bool gz) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%06u", index);
  return std::string(file_prefix) + buf + (gz ? ".jsonl.gz" : ".jsonl");
}

json::object headers_to_json(const std::vector<std::pair<std::string, std::string>>& h) {
  json::object o;
  for (const auto& [k, v] : h) o[utf8_or_replaced(k)] = utf8_or_replaced(v);
  return o;
}

std::vector<std::pair<std::string, std::string>> headers_from_json(const json::value* v) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!v || !v->is_object()) return out;
  for (const auto& kv : v->get_object())
    if (kv.value().is_string()) out.emplace_back(std::string(kv.key()), std::string(kv.value().get_string()));
  return out;
}

void put_body(json::object& o, std::string_view name, const std::string& body, bool truncated) {
  if (engine::valid_utf8(body)) {
    o[name] = body;
  } else {
    o[name] = base64_encode(body);
    o[std::string(name) + "_encoding"] = "base64";
  }
  if (truncated) o[std::string(name) + "_truncated"] = true;
}

std::string get_body(const json::object& o, std::string_view name, bool& truncated) {
  std::string body;
  if (auto* v = o.if_contains(name); v && v->is_string()) body = std::string(v->get_string());
  if (auto* e = o.if_contains(std::string(name) + "_encoding"); e && e->is_string() && e->get_string() == "base64")
    body = base64_decode(body);
  if (auto* t = o.if_contains(std::string(name) + "_truncated"); t && t->is_bool()) truncated = t->get_bool();
  return body;
}

std::string str_of(const json::object& o, std::string_view key) {
  if (auto* v = o.if_contains(key); v && v->is_string()) return std::string(v->get_string());
  return {};
}

}  // namespace

// ---- redaction ------------------------------------------------------------------------------------

std::string redact_header(std::string_view name, std::string_view value) {
  if (engine::is_secret_field_name(name) || boost::beast::iequals(name, "set-cookie")) return std::string(redacted);
  return engine::redact(value);
}

std::string redact_target(std::string_view target) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return engine::redact(target);
  std::string out(target.substr(0, q + 1));
  std::string_view query = target.substr(q + 1);
  bool first = true;
  while (true) {
    const auto amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    const auto eq = param.find('=');
    if (!first) out += '&';
    first = false;
    if (eq != std::string_view::npos && engine::is_secret_field_name(param.substr(0, eq))) {
      out.append(param.substr(0, eq + 1));
      out += "%5BREDACTED%5D";
    } else {
      out.append(param);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return engine::redact(out);
}

std::string redact_body(std::string_view body) {
  std::string out = engine::redact(body);
  const auto start = out.find_first_not_of(" \t\r\n");
  if (start == std::string::npos || (out[start] != '{' && out[start] != '[')) return out;
  if (!may_hold_secret_field(out)) return out;
  json::error_code ec;
  json::value v = ferry::engine::parse_json(out, ec);
  if (ec) return out;  // not JSON after all: registered secrets are already scrubbed
  if (redact_json_value(v)) return json::serialize(v);
  return out;  // unchanged bytes: replay serves exactly what was received
}

// ---- line format ----------------------------------------------------------------------------------

std::string format_exchange_line(const exchange_record& rec) {
  json::object o;
  o["seq"] = rec.seq;
  o["ts"] = rec.ts;
  o["side"] = utf8_or_replaced(rec.side);
  o["method"] = utf8_or_replaced(rec.method);
  o["target"] = utf8_or_replaced(rec.target);
  o["url"] = utf8_or_replaced(rec.url);
  o["request_headers"] = headers_to_json(rec.request_headers);
  put_body(o, "request_body", rec.request_body, rec.request_body_truncated);
  o["status"] = rec.status;
  o["outcome"] = rec.outcome;
  o["error"] = utf8_or_replaced(rec.error);
  o["response_headers"] = headers_to_json(rec.response_headers);
  put_body(o, "response_body", rec.response_body, rec.response_body_truncated);
  o["duration_ms"] = rec.duration_ms;
  return json::serialize(o);
}

exchange_record parse_exchange_line(std::string_view line) {
  json::error_code ec;
  json::value v = ferry::engine::parse_json(line, ec);
  if (ec) throw std::runtime_error("not JSON: " + ec.message());
  if (!v.is_object()) throw std::runtime_error("not a JSON object");
  const auto& o = v.get_object();
  exchange_record r;
  if (auto* s = o.if_contains("seq"); s && s->is_number()) r.seq = s->to_number<std::uint64_t>();
  r.ts = str_of(o, "ts");
  r.side = str_of(o, "side");
  r.method = str_of(o, "method");
  r.target = str_of(o, "target");
  if (r.method.empty() || r.target.empty()) throw std::runtime_error("missing method or target");
  r.url = str_of(o, "url");
  r.request_headers = headers_from_json(o.if_contains("request_headers"));
  r.request_body = get_body(o, "request_body", r.request_body_truncated);
  if (auto* s = o.if_contains("status"); s && s->is_number()) r.status = s->to_number<unsigned>();
  r.outcome = str_of(o, "outcome");
  r.error = str_of(o, "error");
  r.response_headers = headers_from_json(o.if_contains("response_headers"));
  r.response_body = get_body(o, "response_body", r.response_body_truncated);
  if (auto* d = o.if_contains("duration_ms"); d && d->is_number()) r.duration_ms = d->to_number<double>();
  return r;
}

// ---- recorder -------------------------------------------------------------------------------------

struct recorder::impl {
  fs::path dir;
  recorder_options opts;
  mutable std::mutex mu;
  std::string buffer;         // formatted lines not yet written
  std::uint64_t buffered = 0;  // lines in buffer
  int fd = -1;
  unsigned next_index = 1;
  json::array files;          // manifest entries (earlier runs' first, then ours)
  std::size_t current = 0;    // index in `files` of the open file
  std::uint64_t current_bytes = 0;
  std::string created;
  std::uint64_t seq = 0;
  recorder_stats st;
  bool closed = false;
  std::chrono::steady_clock::time_point last_flush = std::chrono::steady_clock::now();

  void fail(const std::string& what) {
    if (!st.failed)
      engine::logger("http")->error("recording stopped dir={} error={}; fix the disk or drop --record", dir.string(),
                                    what);
    st.failed = true;
    buffer.clear();
    buffered = 0;
    if (fd >= 0) ::close(fd);
    fd = -1;
  }

  bool write_all(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::write(fd, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("write " + (dir / files.at(current).as_object().at("name").as_string().c_str()).string() + ": " +
             std::strerror(errno));
        return false;
      }
      data.remove_prefix(static_cast<std::size_t>(n));
      st.bytes_written += static_cast<std::uint64_t>(n);
      current_bytes += static_cast<std::uint64_t>(n);
    }
    return true;
  }

  bool open_next() {
    const std::string name = file_name(next_index++, opts.compress);
    const fs::path p = dir / name;
    fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      fail("open " + p.string() + ": " + std::strerror(errno));
      return false;
    }
    json::object e;
    e["name"] = name;
    e["exchanges"] = 0;
    e["bytes"] = 0;
    files.push_back(std::move(e));
    current = files.size() - 1;
    current_bytes = 0;
    ++st.files;
    write_manifest();  // a killed run still lists the file
    return true;
  }

  // Writes the buffer as one gzip member (or plain lines), then rotates when the file is full.
  void write_buffer() {
    if (buffer.empty() || st.failed) return;
    if (fd < 0 && !open_next()) return;
    const std::string data = opts.compress ? gzip_compress(buffer, opts.compression_level) : std::move(buffer);
    if (!write_all(data)) return;
    auto& e = files.at(current).as_object();
    e["exchanges"] = e["exchanges"].to_number<std::uint64_t>() + buffered;
    e["bytes"] = current_bytes;
    buffer.clear();
    buffered = 0;
    if (current_bytes >= opts.max_file_bytes) {
      ::close(fd);
      fd = -1;
    }
  }

  void write_manifest() {
    std::uint64_t total = 0;
    for (const auto& f : files)
      if (auto* n = f.as_object().if_contains("exchanges"); n && n->is_number()) total += n->to_number<std::uint64_t>();
    json::object m;
    m["version"] = 1;
    m["format"] = "ferry-exchanges";
    m["created"] = created;
    m["updated"] = iso_time(std::chrono::system_clock::now());
    m["compressed"] = opts.compress;
    m["exchanges"] = total;
    m["files"] = files;
    const std::string text = json::serialize(m) + "\n";
    const fs::path tmp = dir / "manifest.json.tmp";
    const int mfd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (mfd < 0) return fail("open " + tmp.string() + ": " + std::strerror(errno));
    const bool ok = ::write(mfd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(mfd);
    if (!ok) return fail("write " + tmp.string() + ": short write");
    std::error_code ec;
    fs::rename(tmp, dir / "manifest.json", ec);
    if (ec) fail("rename " + tmp.string() + ": " + ec.message());
  }

  void flush_locked() {
    write_buffer();
    if (!st.failed) write_manifest();
    last_flush = std::chrono::steady_clock::now();
  }
};

recorder::recorder(fs::path dir, recorder_options opts) : impl_(std::make_unique<impl>()) {
  if (opts.max_file_bytes == 0) opts.max_file_bytes = 1;
  impl_->dir = std::move(dir);
  impl_->opts = opts;
  auto& d = impl_->dir;
  std::error_code ec;
  if (!fs::exists(d, ec)) {
    fs::create_directories(d, ec);
    if (ec) throw std::runtime_error("recording dir " + d.string() + ": cannot create: " + ec.message());
    fs::permissions(d, fs::perms::owner_all, ec);  // recordings hold row data: owner only, like the state dir
  } else if (!fs::is_directory(d, ec)) {
    throw std::runtime_error("recording dir " + d.string() + ": exists and is not a directory");
  }
  if (::access(d.c_str(), W_OK) != 0)
    throw std::runtime_error("recording dir " + d.string() + ": not writable: " + std::strerror(errno));

  // Continue an earlier recording in the same dir (a resumed run appends, never overwrites).
  unsigned max_index = 0;
  for (const auto& entry : fs::directory_iterator(d, ec)) {
    bool gz = false;
    max_index = std::max(max_index, parse_file_index(entry.path().filename().string(), gz));
  }
  impl_->next_index = max_index + 1;
  impl_->created = iso_time(std::chrono::system_clock::now());
  std::ifstream mf(d / "manifest.json");
  if (mf) {
    std::string text((std::istreambuf_iterator<char>(mf)), std::istreambuf_iterator<char>());
    json::error_code jec;
    auto v = ferry::engine::parse_json(text, jec);
    if (!jec && v.is_object()) {
      if (auto* c = v.get_object().if_contains("created"); c && c->is_string()) impl_->created = c->get_string().c_str();
      if (auto* f = v.get_object().if_contains("files"); f && f->is_array())
        for (const auto& e : f->get_array())
          if (e.is_object()) impl_->files.push_back(e);
    }
  }
}

recorder::~recorder() { close(); }

void recorder::record(exchange_record rec) {
  // Redact outside the lock: it is the expensive part and touches only `rec`.
  for (auto& [k, v] : rec.request_headers) v = redact_header(k, v);
  for (auto& [k, v] : rec.response_headers) v = redact_header(k, v);
  rec.target = redact_target(rec.target);
  rec.url = redact_target(rec.url);
  rec.error = engine::redact(rec.error);
  const auto cut = [&](std::string& body, bool& truncated) {
    if (body.size() > impl_->opts.max_body_bytes) {
      body.resize(impl_->opts.max_body_bytes);
      truncated = true;
    }
    body = redact_body(body);
  };
  cut(rec.request_body, rec.request_body_truncated);
  cut(rec.response_body, rec.response_body_truncated);
  if (rec.ts.empty()) rec.ts = iso_time(std::chrono::system_clock::now());

  std::lock_guard lk(impl_->mu);
  auto& im = *impl_;
  if (im.closed || im.st.failed) return;
  rec.seq = ++im.seq;
  im.buffer += format_exchange_line(rec);
  im.buffer += '\n';
  ++im.buffered;
  ++im.st.exchanges;
  const bool by_time = im.opts.flush_interval.count() > 0 &&
                       std::chrono::steady_clock::now() - im.last_flush >= im.opts.flush_interval;
  if (im.buffer.size() >= im.opts.chunk_bytes || by_time) im.flush_locked();
}

exchange_observer recorder::observer(std::string side) {
  return [this, side = std::move(side)](const http_request_spec& spec, const http_result& res,
                                        std::chrono::steady_clock::duration took) {
    exchange_record r;
    const auto now = std::chrono::system_clock::now();
    r.ts = iso_time(now - std::chrono::duration_cast<std::chrono::system_clock::duration>(took));
    r.side = side;
    r.method = std::string(boost::beast::http::to_string(spec.verb));
    std::string_view t = spec.target;
    if (const auto scheme = t.find("://"); scheme != std::string_view::npos && scheme < 8) {
      const auto slash = t.find('/', scheme + 3);
      t = slash == std::string_view::npos ? std::string_view("/") : t.substr(slash);
    }
    r.target = std::string(t);
    r.url = res.url;
    r.request_headers = spec.headers;
    r.request_body = spec.body;
    r.status = res.status;
    r.outcome = std::string(engine::to_string(res.outcome));
    r.error = res.error;
    if (!res.content_type.empty()) r.response_headers.emplace_back("content-type", res.content_type);
    if (!res.location.empty()) r.response_headers.emplace_back("location", res.location);
    if (!res.retry_after_header.empty()) r.response_headers.emplace_back("retry-after", res.retry_after_header);
    r.response_body = res.body;
    r.duration_ms = std::chrono::duration<double, std::milli>(took).count();
    record(std::move(r));
  };
}

void recorder::flush() {
  std::lock_guard lk(impl_->mu);
  if (impl_->closed) return;
  impl_->flush_locked();
}

void recorder::close() {
  std::lock_guard lk(impl_->mu);
  auto& im = *impl_;
  if (im.closed) return;
  im.flush_locked();
  if (im.fd >= 0) ::close(im.fd);
  im.fd = -1;
  im.closed = true;
}

recorder_stats recorder::stats() const {
  std::lock_guard lk(impl_->mu);
  return impl_->st;
}

const fs::path& recorder::dir() const { return impl_->dir; }

// ---- reader ---------------------------------------------------------------------------------------

namespace {

void emit_lines(std::string& pending, const fs::path& file, std::uint64_t& line_no,
                const std::function<void(exchange_record&&)>& fn, std::vector<std::string>* warnings, bool final) {
  std::size_t start = 0;
  while (true) {
    const auto nl = pending.find('\n', start);
    if (nl == std::string::npos) break;
    ++line_no;
    const std::string_view line(pending.data() + start, nl - start);
    start = nl + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    try {
      fn(parse_exchange_line(line));
    } catch (const std::runtime_error& e) {
      if (warnings) warnings->push_back(file.filename().string() + " line " + std::to_string(line_no) + ": " + e.what());
    }
  }
  pending.erase(0, start);
  if (final && !pending.empty()) {
    ++line_no;
    if (warnings)
      warnings->push_back(file.filename().string() + " line " + std::to_string(line_no) +
                          ": truncated last line skipped");
    pending.clear();
  }
}

void read_file(const fs::path& file, bool gz, const std::function<void(exchange_record&&)>& fn,
               std::vector<std::string>* warnings) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("recording file " + file.string() + ": cannot open");
  std::vector<char> inbuf(64u << 10);
  std::string pending;
  std::uint64_t line_no = 0;
  if (!gz) {
    while (in) {
      in.read(inbuf.data(), static_cast<std::streamsize>(inbuf.size()));
      pending.append(inbuf.data(), static_cast<std::size_t>(in.gcount()));
      emit_lines(pending, file, line_no, fn, warnings, false);
    }
    emit_lines(pending, file, line_no, fn, warnings, true);
    return;
  }
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) throw std::runtime_error("zlib: inflateInit2 failed");
  std::vector<char> outbuf(256u << 10);
  bool in_member = false;
  bool corrupt = false;
  while (true) {
    if (zs.avail_in == 0) {
      in.read(inbuf.data(), static_cast<std::streamsize>(inbuf.size()));
      const auto n = static_cast<uInt>(in.gcount());
      if (n == 0) break;
      zs.next_in = reinterpret_cast<Bytef*>(inbuf.data());
      zs.avail_in = n;
    }
    zs.next_out = reinterpret_cast<Bytef*>(outbuf.data());
    zs.avail_out = static_cast<uInt>(outbuf.size());
    in_member = true;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    pending.append(outbuf.data(), outbuf.size() - zs.avail_out);
    emit_lines(pending, file, line_no, fn, warnings, false);
    if (rc == Z_STREAM_END) {
      inflateReset(&zs);  // the next gzip member (one per flushed chunk) follows
      in_member = false;
      continue;
    }
    if (rc == Z_BUF_ERROR || rc == Z_OK) continue;
    corrupt = true;
    if (warnings) warnings->push_back(file.filename().string() + ": corrupt gzip data, rest of file skipped");
    break;
  }
  inflateEnd(&zs);
  if (in_member && !corrupt && warnings)
    warnings->push_back(file.filename().string() + ": truncated gzip member at the end (run killed?)");
  emit_lines(pending, file, line_no, fn, warnings, true);
}

}  // namespace

void for_each_exchange(const fs::path& dir, const std::function<void(exchange_record&&)>& fn,
                       std::vector<std::string>* warnings) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw std::runtime_error("recording dir " + dir.string() + ": not a directory");
  std::vector<std::pair<std::string, bool>> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    bool gz = false;
    const std::string name = entry.path().filename().string();
    if (parse_file_index(name, gz) > 0) files.emplace_back(name, gz);
  }
  if (ec) throw std::runtime_error("recording dir " + dir.string() + ": " + ec.message());
  if (files.empty())
    throw std::runtime_error("recording dir " + dir.string() + ": no exchanges-*.jsonl[.gz] files (record with --record)");
  std::sort(files.begin(), files.end());
  for (const auto& [name, gz] : files) read_file(dir / name, gz, fn, warnings);
}

std::vector<exchange_record> read_recording(const fs::path& dir, std::vector<std::string>* warnings) {
  std::vector<exchange_record> out;
  for_each_exchange(dir, [&](exchange_record&& r) { out.push_back(std::move(r)); }, warnings);
  return out;
}

}  // namespace ferry::transports
