#include "emulator/events.hpp"

#include "emulator/emulator.hpp"

#include "events_impl.hpp"

#include "engine/json_parse.hpp"
#include "engine/json_scan.hpp"
#include "engine/log.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/json/monotonic_resource.hpp>
#include <boost/url/parse.hpp>

#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <limits>
#include <deque>
#include <map>
#include <random>
#include <unordered_map>

namespace ferry::emulator {
namespace detail {

namespace http = boost::beast::http;

// ---- small helpers ---------------------------------------------------------------------------------

namespace {

void put_be32(std::string& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}
std::uint32_t get_be32(std::string_view s, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

constexpr std::uint64_t first_xact = 1'000'000'000'000'000'000ull;  // 19 digits
constexpr std::uint64_t xact_reserve_block = 4096;
constexpr std::string_view xact_hwm_key = "xact_hwm";

// The xact id of a pagination key ("p" + 20 digits + 6 digits), as the 19-digit string of the row.
std::string_view xact_of_pk(std::string_view pk) { return pk.size() >= 27 ? pk.substr(2, 19) : std::string_view{}; }

std::string count_key(std::string_view object_key) {
  std::string k("count");
  k.push_back('\0');
  k.append(object_key);
  return k;
}

std::string prefix_of(std::string_view object_key) {
  std::string p(object_key);
  p.push_back('\0');
  return p;
}

bool compare(std::string_view lhs, btql_op op, std::string_view rhs) {
  const int c = lhs.compare(rhs);
  switch (op) {
    case btql_op::gt: return c > 0;
    case btql_op::ge: return c >= 0;
    case btql_op::lt: return c < 0;
    case btql_op::le: return c <= 0;
    case btql_op::eq: return c == 0;
  }
  return false;
}

std::optional<std::uint64_t> to_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

bool compare_xact(std::string_view row_xact, btql_op op, std::string_view literal) {
  auto a = to_u64(row_xact);
  auto b = to_u64(literal);
  if (!a || !b) return compare(row_xact, op, literal);
  switch (op) {
    case btql_op::gt: return *a > *b;
    case btql_op::ge: return *a >= *b;
    case btql_op::lt: return *a < *b;
    case btql_op::le: return *a <= *b;
    case btql_op::eq: return *a == *b;
  }
  return false;
}

// Deep merge `src` into `dst`: objects recursively, everything else replaced; the descent stops at any
// path listed in `_merge_paths`.
void deep_merge(json::object& dst, const json::object& src, const std::vector<std::vector<std::string>>& stop_paths,
                std::vector<std::string>& path) {
  for (const auto& kv : src) {
    const std::string key(kv.key());
    path.push_back(key);
    const bool stop = std::find(stop_paths.begin(), stop_paths.end(), path) != stop_paths.end();
    auto* existing = dst.if_contains(kv.key());
    if (!stop && existing && existing->is_object() && kv.value().is_object()) {
      deep_merge(existing->get_object(), kv.value().get_object(), stop_paths, path);
    } else {
      dst[kv.key()] = kv.value();
    }
    path.pop_back();
  }
}

std::vector<std::vector<std::string>> merge_paths_of(const json::object& row) {
  std::vector<std::vector<std::string>> out;
  const auto* mp = row.if_contains("_merge_paths");
  if (!mp || !mp->is_array()) return out;
  for (const auto& p : mp->get_array()) {
    if (!p.is_array()) continue;
    std::vector<std::string> path;
    for (const auto& part : p.get_array())
      if (part.is_string()) path.emplace_back(part.get_string());
    out.push_back(std::move(path));
  }
  return out;
}

bool is_true(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_bool() && v->get_bool();
}

// ---- DOM rows: merges, deletes, comments, feedback, _array_delete -----------------------------------

// The row a comment row comments on: {"comment": {...}, "origin": {"id": <row id>}} (how the SDK's
// logFeedback sends comments and how /feedback items with a comment are stored).
std::optional<std::string> comment_target(const json::object& row) {
  const auto* c = row.if_contains("comment");
  const auto* o = row.if_contains("origin");
  if (!c || !c->is_object() || !o || !o->is_object()) return std::nullopt;
  const auto* id = o->get_object().if_contains("id");
  if (!id || !id->is_string() || id->get_string().empty()) return std::nullopt;
  return std::string(id->get_string());
}

// The audit fields of a feedback write (`_audit_source`, `_audit_metadata`), validated; nullopt when the
// row has neither.
std::optional<json::object> audit_of(const json::object& row, std::string_view id) {
  const auto* src = row.if_contains("_audit_source");
  const auto* meta = row.if_contains("_audit_metadata");
  if ((!src || src->is_null()) && (!meta || meta->is_null())) return std::nullopt;
  json::object a(row.storage());
  std::string source = "external";
  if (src && !src->is_null()) {
    if (!src->is_string() || (src->get_string() != "app" && src->get_string() != "api" && src->get_string() != "external"))
      throw http_error(400, "row " + std::string(id) + ": _audit_source must be one of app, api, external");
    source = std::string(src->get_string());
  }
  a["source"] = source;
  if (meta && !meta->is_null() && !meta->is_object())
    throw http_error(400, "row " + std::string(id) + ": _audit_metadata must be an object");
  a["metadata"] = meta && meta->is_object() ? *meta : json::value(json::object(row.storage()));
  return a;
}

struct array_delete {
  std::vector<std::string> path;
  json::array values;
};

// `_array_delete: [{path: string[], delete: any[]}]`, validated.
std::vector<array_delete> array_deletes_of(const json::object& row, std::string_view id) {
  std::vector<array_delete> out;
  const auto* ad = row.if_contains("_array_delete");
  if (!ad || ad->is_null()) return out;
  const std::string what = "row " + std::string(id) + ": _array_delete";
  if (!ad->is_array()) throw http_error(400, what + " must be an array of {path, delete}");
  for (const auto& item : ad->get_array()) {
    const auto* path = item.is_object() ? item.get_object().if_contains("path") : nullptr;
    const auto* del = item.is_object() ? item.get_object().if_contains("delete") : nullptr;
    if (!path || !path->is_array() || path->get_array().empty() || !del || !del->is_array())
      throw http_error(400, what + " items must be {\"path\": [non-empty list of keys], \"delete\": [values]}");
    array_delete d;
    for (const auto& p : path->get_array()) {
      if (!p.is_string()) throw http_error(400, what + " path parts must be strings");
      d.path.emplace_back(p.get_string());
    }
    d.values = del->get_array();
    out.push_back(std::move(d));
  }
  return out;
}

// Removes the listed values from the array at each path (a missing path or a non-array is left alone).
void apply_array_deletes(json::object& r, const std::vector<array_delete>& deletes) {
  for (const auto& d : deletes) {
    json::value* at = nullptr;
    json::object* o = &r;
    for (std::size_t i = 0; i < d.path.size() && o; ++i) {
      at = o->if_contains(d.path[i]);
      o = at && at->is_object() && i + 1 < d.path.size() ? &at->get_object() : nullptr;
      if (!at) break;
    }
    if (!at || !at->is_array()) continue;
    auto& arr = at->get_array();
    for (auto it = arr.begin(); it != arr.end();) {
      if (std::find(d.values.begin(), d.values.end(), *it) != d.values.end()) it = arr.erase(it);
      else ++it;
    }
  }
}

void append_to(json::object& r, std::string_view key, json::object entry) {
  auto& v = r[key];
  if (!v.is_array()) v = json::array(r.storage());
  v.get_array().emplace_back(std::move(entry));
}

// What one DOM row needs to know about its request.
struct dom_write {
  const object_ref& obj;
  std::string_view row_id;  // the stored row's id (for a comment: the commented row)
  std::string_view own_id;  // the id of the row as sent
  std::string_view org_id;
  std::string_view xact;
  std::string_view pk;
  std::string_view now;
  std::string_view project;  // of an experiment/dataset, "" unknown
  std::uint64_t max_span_bytes;
  bool restore = false;  // a restored version: its comments and audit entries are kept
};

// Adds the server-assigned read fields.
void set_server_fields(json::object& r, const dom_write& w) {
  r["id"] = w.row_id;
  if (const auto* c = r.if_contains("created"); !c || !c->is_string() || c->get_string().empty()) r["created"] = w.now;
  if (w.obj.type == "project_logs") {
    r["org_id"] = w.org_id;
    r["project_id"] = w.obj.id;
    r["log_id"] = "g";
  } else {
    r[w.obj.type == "experiment" ? "experiment_id" : "dataset_id"] = w.obj.id;
    if (!w.project.empty()) r["project_id"] = w.project;
  }
  const auto* span = r.if_contains("span_id");
  if (!span || !span->is_string() || span->get_string().empty()) r["span_id"] = w.row_id;
  const auto* root = r.if_contains("root_span_id");
  if (!root || !root->is_string() || root->get_string().empty()) {
    json::value span_copy = r.at("span_id");  // copy first: inserting may move the object's entries
    r["root_span_id"] = std::move(span_copy);
  }
  const auto* parents = r.if_contains("span_parents");
  r["is_root"] = !parents || parents->is_null() || (parents->is_array() && parents->get_array().empty());
  r["_xact_id"] = w.xact;
  r["_pagination_key"] = w.pk;
}

// Applies one DOM row to the current version `cur` of its row (nullopt: none). Returns the new encoded
// version, or nullopt when the row is deleted. Throws http_error (400, 413) before anything is written.
std::optional<std::string> apply_dom_row(json::object& row, std::optional<std::string_view> cur, const dom_write& w) {
  if (is_true(row, "_object_delete")) return std::nullopt;
  const bool merge = is_true(row, "_is_merge");
  const auto stop_paths = merge ? merge_paths_of(row) : std::vector<std::vector<std::string>>{};
  const auto deletes = array_deletes_of(row, w.own_id);
  auto audit = audit_of(row, w.own_id);
  const bool comment = comment_target(row).has_value();
  // Control fields, and the fields only the server writes (comments and audit entries).
  for (auto k : {"_is_merge", "_merge_paths", "_object_delete", "_array_delete", "_audit_source", "_audit_metadata"})
    row.erase(k);
  if (!w.restore) {
    row.erase("comments");
    row.erase("audit_data");
  }
  if (!cur && (comment || (merge && audit)))
    throw http_error(400, std::string(comment ? "comment " : "feedback on row ") + std::string(comment ? w.own_id : w.row_id) +
                              ": no row with id " + std::string(w.row_id) + " in " + w.obj.type + " " + w.obj.id);

  json::value holder;
  json::object* out = &row;
  if ((merge || comment) && cur) {
    // Parse the current version into the request's resource and merge the row (or the comment) into it.
    boost::system::error_code ec;
    holder = ferry::engine::parse_json(decode_row(*cur).json_text, ec, row.storage());
    if (ec || !holder.is_object()) throw http_error(500, "stored row " + std::string(w.row_id) + " is not a JSON object");
    out = &holder.get_object();
    if (comment) {
      json::object c(row.storage());
      c["id"] = w.own_id;
      const auto* created = row.if_contains("created");
      c["created"] = created && created->is_string() ? *created : json::value(w.now);
      c["_xact_id"] = w.xact;
      c["origin"] = row.at("origin");
      c["comment"] = row.at("comment");
      if (audit) {
        c["source"] = audit->at("source");
        c["metadata"] = audit->at("metadata");
      }
      append_to(*out, "comments", std::move(c));
    } else {
      row.erase("span_parents");  // ignored on merge
      row.erase("created");       // a row is created once
      std::vector<std::string> path;
      deep_merge(*out, row, stop_paths, path);
    }
  }
  json::object& r = *out;
  if (audit && !comment) {
    json::object entry(row.storage());
    entry["_xact_id"] = w.xact;
    entry["created"] = w.now;
    entry["source"] = audit->at("source");
    entry["metadata"] = audit->at("metadata");
    entry["audit_data"] = json::object{{"action", merge ? "merge" : "upsert"}};
    append_to(r, "audit_data", std::move(entry));
  }
  apply_array_deletes(r, deletes);
  set_server_fields(r, w);
  std::string text = json::serialize(r);
  if (text.size() > w.max_span_bytes)
    throw http_error(413, "row " + std::string(w.row_id) + " is " + std::to_string(text.size()) +
                              " bytes, above the span limit of " + std::to_string(w.max_span_bytes) + " bytes");
  const auto* created = r.if_contains("created");
  return encode_row(w.row_id, created && created->is_string() ? std::string_view(created->get_string()) : w.now, text);
}

}  // namespace

std::string format_xact(std::uint64_t x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%019llu", static_cast<unsigned long long>(x));
  return buf;
}
std::string format_pk(std::uint64_t xact, std::size_t seq) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "p%020llu%06zu", static_cast<unsigned long long>(xact), seq);
  return buf;
}

std::uint64_t parse_version(std::string_view s, std::string_view what) {
  auto v = to_u64(s);
  if (!v || *v == std::numeric_limits<std::uint64_t>::max())
    throw http_error(400, std::string(what) + ": version must be a transaction id (digits), got '" + std::string(s) + "'");
  return *v;
}

std::string encode_row(std::string_view id, std::string_view created, std::string_view json_text) {
  std::string out;
  out.reserve(8 + id.size() + created.size() + json_text.size());
  put_be32(out, static_cast<std::uint32_t>(id.size()));
  out.append(id);
  put_be32(out, static_cast<std::uint32_t>(created.size()));
  out.append(created);
  out.append(json_text);
  return out;
}

decoded_row decode_row(std::string_view v) {
  decoded_row d;
  if (v.size() < 8) return d;
  const std::uint32_t id_len = get_be32(v, 0);
  if (4 + id_len + 4 > v.size()) return d;
  d.id = v.substr(4, id_len);
  const std::uint32_t c_len = get_be32(v, 4 + id_len);
  const std::size_t c_at = 8 + id_len;
  if (c_at + c_len > v.size()) return d;
  d.created = v.substr(c_at, c_len);
  d.json_text = v.substr(c_at + c_len);
  return d;
}

std::string be64_key(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}
std::uint64_t from_be64_key(std::string_view s) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8 && i < s.size(); ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

std::string hex_encode(std::string_view s) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::optional<std::string> hex_decode(std::string_view s) {
  if (s.size() % 2) return std::nullopt;
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size() / 2);
  for (std::size_t i = 0; i < s.size(); i += 2) {
    const int hi = nib(s[i]), lo = nib(s[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

std::string random_hex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) {
    thread_local std::mt19937_64 gen{std::random_device{}()};
    for (auto& c : raw) c = static_cast<char>(gen());
  }
  return hex_encode(raw);
}

std::string now_iso_utc() {
  const auto now = std::chrono::system_clock::now();
  const auto secs = std::chrono::time_point_cast<std::chrono::seconds>(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - secs).count();
  const std::time_t t = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

std::string normalize_time(std::string_view s) {
  auto digits = [&](std::size_t at, std::size_t n) {
    if (at + n > s.size()) return false;
    for (std::size_t i = at; i < at + n; ++i)
      if (s[i] < '0' || s[i] > '9') return false;
    return true;
  };
  // YYYY-MM-DD
  if (!digits(0, 4) || s.size() < 10 || s[4] != '-' || !digits(5, 2) || s[7] != '-' || !digits(8, 2))
    return std::string(s);
  std::string out(s.substr(0, 10));
  std::string hms = "00:00:00";
  std::string frac;
  std::size_t i = 10;
  if (i < s.size() && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
    if (!digits(i + 1, 2) || i + 3 >= s.size() || s[i + 3] != ':' || !digits(i + 4, 2)) return std::string(s);
    hms = std::string(s.substr(i + 1, 5)) + ":00";
    i += 6;
    if (i < s.size() && s[i] == ':') {
      if (!digits(i + 1, 2)) return std::string(s);
      hms = std::string(s.substr(i - 5, 8));
      i += 3;
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') frac.push_back(s[i++]);
    }
  }
  const std::string_view zone = s.substr(std::min(i, s.size()));
  if (!(zone.empty() || zone == "Z" || zone == "z" || zone == "+00:00" || zone == "+0000" || zone == "-00:00"))
    return std::string(s);  // other offsets: compared as given
  frac.resize(9, '0');
  out += 'T';
  out += hms;
  out += '.';
  out += frac.substr(0, 9);
  return out;
}

// ---- event_store ---------------------------------------------------------------------------------

std::unique_ptr<shared_scans> make_shared_scans(std::size_t budget);  // (the read side, below)

event_store::event_store(stores::kv_store& store, const events_config& cfg)
    : store_(store), cfg_(cfg), shared_(make_shared_scans(cfg.btql_shared_scan_bytes)) {
  std::uint64_t hwm = first_xact;
  if (auto v = store_.get(cf_meta, xact_hwm_key)) {
    if (auto n = to_u64(*v)) hwm = std::max(hwm, *n);
  }
  // Everything below the persisted high-water mark may have been handed out before a restart.
  next_xact_ = hwm;
  reserved_until_ = hwm;
}

std::uint64_t event_store::allocate_xact() {
  std::lock_guard lock(xact_mu_);
  if (next_xact_ >= reserved_until_) {
    reserved_until_ = next_xact_ + xact_reserve_block;
    store_.put(cf_meta, xact_hwm_key, std::to_string(reserved_until_), /*sync=*/true);
  }
  return next_xact_++;
}

std::string event_store::current_xact() {
  std::lock_guard lock(xact_mu_);
  return format_xact(next_xact_ - 1);
}

std::uint64_t event_store::count(std::string_view object_key) const {
  auto v = store_.get(cf_meta, count_key(object_key));
  return v ? from_be64_key(*v) : 0;
}

void event_store::visit_ids(std::string_view object_key, std::string_view from, std::string_view to,
                            const std::function<bool(std::string_view id)>& fn) const {
  const std::string prefix = prefix_of(object_key);
  const std::string lo = prefix + std::string(from);
  std::string hi = to.empty() ? std::string(object_key) + '\1' : prefix + std::string(to);
  store_.scan(cf_ids, lo, hi, [&](std::string_view k, std::string_view) { return fn(k.substr(prefix.size())); });
}

namespace {

// Appends `s` as a JSON string body (no quotes): as is unless a byte needs escaping.
void append_escaped(std::string& out, std::string_view s) {
  if (engine::json_special_byte(s, 0, false) >= s.size()) out.append(s);
  else out.append(engine::json_escape(s));
}

// What a fast row's stored value needs to know about its object and request.
struct fast_write {
  const object_ref& obj;
  std::string_view project;  // of an experiment/dataset, "" unknown
  std::string_view org_id;
  std::string_view xact;
  std::string_view now;
};

// The stored value of a plain /logs3 row (fast_row), written into `v`: the same fields and values as the
// DOM path (apply_dom_row), without a DOM: the members as sent, then the server's fields (a member the
// server overwrites moves to the end; key order carries no meaning). Returns the JSON text's size.
std::size_t encode_fast_row(std::string& v, const fast_row& f, std::string_view id, std::string_view pk,
                            const fast_write& w) {
  const std::string_view created = f.created.empty() ? w.now : f.created;
  std::size_t kept = 0;
  for (std::size_t k = 0; k < f.reserved_count; ++k) kept += f.reserved[k].key.size() + f.reserved[k].value.size() + 4;
  v.clear();
  v.reserve(8 + 2 * id.size() + created.size() + f.members.size() + kept + 3 * w.obj.id.size() + w.org_id.size() +
            w.project.size() + 2 * f.span_id.size() + 256);
  put_be32(v, static_cast<std::uint32_t>(id.size()));
  v.append(id);
  put_be32(v, static_cast<std::uint32_t>(created.size()));
  v.append(created);
  const std::size_t text_at = v.size();
  v.push_back('{');
  v.append(f.members);
  bool first = f.members.empty();
  auto key = [&](std::string_view k) {
    if (!first) v.push_back(',');
    first = false;
    v.push_back('"');
    v.append(k);  // server keys need no escaping
    v.append("\":");
  };
  auto string_member = [&](std::string_view k, std::string_view text) {
    key(k);
    v.push_back('"');
    append_escaped(v, text);
    v.push_back('"');
  };
  const bool logs = w.obj.type == "project_logs";
  const std::string_view own_id_field = logs ? std::string_view() : w.obj.type == "experiment" ? "experiment_id" : "dataset_id";
  for (std::size_t k = 0; k < f.reserved_count; ++k) {
    // Kept as sent unless the server sets the field below.
    const auto [name, value] = f.reserved[k];
    const bool keep = (name == "created" && !f.created.empty()) || (name == "span_id" && !f.span_id.empty()) ||
                      (name == "root_span_id" && f.has_root_span_id) ||
                      ((name == "org_id" || name == "log_id") && !logs) ||
                      (name == "project_id" && !logs && w.project.empty()) ||
                      ((name == "experiment_id" || name == "dataset_id") && name != own_id_field);
    if (!keep) continue;
    key(name);
    v.append(value);
  }
  string_member("id", id);
  if (f.created.empty()) string_member("created", w.now);
  if (logs) {
    string_member("org_id", w.org_id);
    string_member("project_id", w.obj.id);
    key("log_id");
    v.append("\"g\"");
  } else {
    string_member(own_id_field, w.obj.id);
    if (!w.project.empty()) string_member("project_id", w.project);
  }
  const std::string_view span = f.span_id.empty() ? id : f.span_id;
  if (f.span_id.empty()) string_member("span_id", span);
  if (!f.has_root_span_id) string_member("root_span_id", span);
  key("is_root");
  v.append(f.is_root ? "true" : "false");
  string_member("_xact_id", w.xact);
  string_member("_pagination_key", pk);
  v.push_back('}');
  return v.size() - text_at;
}

}  // namespace

std::vector<std::string> event_store::write(std::span<row_in> rows, std::string_view org_id, std::string* xact_out) {
  std::vector<std::string> ids;
  ids.reserve(rows.size());
  if (rows.empty()) return ids;

  // The distinct objects of the request (usually one): key, key prefix and project computed once each.
  struct object_state {
    const object_ref* obj;
    std::string key, prefix;
    std::optional<std::string> project;  // looked up on first use
    std::int64_t count_delta = 0;
  };
  std::vector<object_state> objects;
  std::vector<std::size_t> row_object(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const object_ref& o = *rows[i].obj;
    std::size_t k = i > 0 ? row_object[i - 1] : 0;
    if (objects.empty() || (objects[k].obj != &o && (objects[k].obj->type != o.type || objects[k].obj->id != o.id))) {
      k = 0;
      while (k < objects.size() && (objects[k].obj->type != o.type || objects[k].obj->id != o.id)) ++k;
      if (k == objects.size()) objects.push_back({&o, o.key(), prefix_of(o.key()), std::nullopt});
    }
    row_object[i] = k;
  }
  auto project_of = [&](object_state& os) -> std::string_view {
    if (!os.project) os.project = os.obj->type != "project_logs" && cfg_.project_of ? cfg_.project_of(os.obj->type, os.obj->id) : "";
    return *os.project;
  };

  // Lock the shards of every object touched, in index order (no deadlock between requests).
  std::vector<std::size_t> order;
  for (const auto& os : objects) order.push_back(std::hash<std::string>{}(os.key) % shards_.size());
  std::sort(order.begin(), order.end());
  order.erase(std::unique(order.begin(), order.end()), order.end());
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(order.size());
  for (auto s : order) locks.emplace_back(shards_[s]);

  const std::uint64_t xact = allocate_xact();
  const std::string xact_str = format_xact(xact);
  if (xact_out) *xact_out = xact_str;
  const std::string now = cfg_.now_iso ? cfg_.now_iso() : now_iso_utc();

  // State of each (object, id) touched by this request: the version in the store and the final one.
  struct slot {
    std::size_t object;
    std::string id;
    std::optional<std::string> stored_pk;  // version in the store before this request
    std::optional<std::string> pk;         // current version (after the rows so far)
    std::string value;                     // encoded current version (valid when pk)
    std::string stored_value;              // encoded stored version (valid when stored_pk): to the history
  };
  std::vector<slot> slots;
  slots.reserve(rows.size());
  std::vector<std::string> slot_keys;  // (object key, '\0', id): also the slot's id index key
  slot_keys.reserve(rows.size());      // never reallocates: the map's views stay valid
  std::unordered_map<std::string_view, std::size_t> slot_of;
  slot_of.reserve(rows.size());

  // Pass 1: each row's id and slot; the stored versions of all new slots are then looked up in one
  // batched read per column family (one MultiGet instead of a Get per row: the ids are random keys).
  std::vector<std::size_t> row_slot(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const fast_row* fast = rows[i].fast;
    std::string id;
    if (fast) {
      if (fast->id_not_string) throw http_error(400, "row " + std::to_string(i) + ": id must be a string");
      if (fast->id) id = *fast->id;
    } else if (const auto* v = rows[i].row->if_contains("id"); v && !v->is_null()) {
      if (!v->is_string()) throw http_error(400, "row " + std::to_string(i) + ": id must be a string");
      id = std::string(v->get_string());
    }
    if (id.empty()) id = random_hex(16);
    // A comment row lands on the row it comments on (origin.id), not on a row of its own.
    const auto target = fast ? std::nullopt : comment_target(*rows[i].row);
    const std::string_view slot_id = target ? std::string_view(*target) : std::string_view(id);
    const std::string& prefix = objects[row_object[i]].prefix;
    std::string slot_key;
    slot_key.reserve(prefix.size() + slot_id.size());
    slot_key.append(prefix).append(slot_id);
    auto it = slot_of.find(slot_key);
    if (it == slot_of.end()) {
      slot_keys.push_back(std::move(slot_key));
      slots.push_back({row_object[i], std::string(slot_id), std::nullopt, std::nullopt, {}, {}});
      it = slot_of.emplace(slot_keys.back(), slots.size() - 1).first;
    }
    row_slot[i] = it->second;
    ids.push_back(std::move(id));
  }
  {
    auto stored = store_.multi_get(cf_ids, slot_keys);
    std::vector<slot*> found;
    std::vector<std::string> event_keys;
    for (std::size_t k = 0; k < slots.size(); ++k) {
      if (!stored[k]) continue;
      slot& st = slots[k];
      st.stored_pk = std::move(stored[k]);
      event_keys.push_back(objects[st.object].prefix + *st.stored_pk);
      found.push_back(&st);
    }
    if (!found.empty()) {
      auto values = store_.multi_get(cf_events, event_keys);
      for (std::size_t k = 0; k < found.size(); ++k) {
        if (values[k]) {
          found[k]->pk = found[k]->stored_pk;
          found[k]->stored_value = std::move(*values[k]);
          found[k]->value = found[k]->stored_value;
        } else {
          found[k]->stored_pk.reset();  // dangling index entry: treat as absent
        }
      }
    }
  }

  // Pass 2: each row applied to its slot, in order.
  for (std::size_t i = 0; i < rows.size(); ++i) {
    object_state& os = objects[row_object[i]];
    const object_ref& obj = *os.obj;
    const std::string& id = ids[i];
    slot& st = slots[row_slot[i]];
    const std::string pk = format_pk(xact, i);
    if (const fast_row* fast = rows[i].fast) {
      const std::size_t text_size = encode_fast_row(st.value, *fast, id, pk, {obj, project_of(os), org_id, xact_str, now});
      if (text_size > cfg_.max_span_bytes)
        throw http_error(413, "row " + id + " is " + std::to_string(text_size) + " bytes, above the span limit of " +
                                  std::to_string(cfg_.max_span_bytes) + " bytes");
      st.pk = pk;
      continue;
    }
    const dom_write w{obj, st.id, id, org_id, xact_str, pk, now, project_of(os), cfg_.max_span_bytes, rows[i].restore};
    auto next = apply_dom_row(*rows[i].row, st.pk ? std::optional<std::string_view>(st.value) : std::nullopt, w);
    if (next) {
      st.pk = pk;
      st.value = std::move(*next);
    } else {
      st.pk.reset();
      st.value.clear();
    }
  }

  // The batch: rows and history in slot order (pagination keys ascend), then the id index in key order.
  // Each column family is its own memtable: inserting the random ids sorted walks the skip list's upper
  // levels along one path instead of all over it.
  stores::write_batch batch;
  std::vector<std::size_t> index_order;
  index_order.reserve(slots.size());
  for (std::size_t k = 0; k < slots.size(); ++k) {
    slot& st = slots[k];
    object_state& os = objects[st.object];
    if (st.stored_pk && st.stored_pk != st.pk) {
      batch.del(cf_events, os.prefix + *st.stored_pk);
      batch.put_owned(cf_history, os.prefix + *st.stored_pk, xact_str + st.stored_value);
    }
    if (st.pk && st.pk != st.stored_pk) batch.put_owned(cf_events, os.prefix + *st.pk, std::move(st.value));
    if (st.pk ? st.pk != st.stored_pk : st.stored_pk.has_value()) index_order.push_back(k);
    if (st.pk && !st.stored_pk) ++os.count_delta;
    if (!st.pk && st.stored_pk) --os.count_delta;
  }
  std::sort(index_order.begin(), index_order.end(), [&](std::size_t a, std::size_t b) { return slot_keys[a] < slot_keys[b]; });
  for (std::size_t k : index_order) {
    if (slots[k].pk) batch.put_owned(cf_ids, std::move(slot_keys[k]), *slots[k].pk);
    else batch.del(cf_ids, slot_keys[k]);
  }
  for (const auto& os : objects) {
    if (os.count_delta == 0) continue;
    const auto before = static_cast<std::int64_t>(count(os.key));
    batch.put(cf_meta, count_key(os.key), be64_key(static_cast<std::uint64_t>(std::max<std::int64_t>(0, before + os.count_delta))));
  }
  if (!batch.empty()) {
    write_gen_.fetch_add(1);  // (the shared scans' kept rows are stale from here on)
    store_.write(batch, /*sync=*/false);
    write_gen_.fetch_add(1);
  }
  return ids;
}

namespace {

// The key range and per-row conditions of a scan: `_pagination_key` conditions, the cursor and the version
// become key bounds; the other conditions are checked on each row.
struct scan_plan {
  std::string lo;                 // inclusive lower bound of the key suffix ("" = none)
  std::optional<std::string> hi;  // exclusive upper bound of the key suffix
  std::vector<const btql_condition*> row_filters;
  std::vector<std::string> created_bounds;  // normalized literals of created conditions, by index
  bool empty = false;

  bool matches(std::string_view pk, const decoded_row& d) const {
    for (std::size_t i = 0; i < row_filters.size(); ++i) {
      const auto& c = *row_filters[i];
      switch (c.field) {
        case btql_field::created:
          if (!compare(normalize_time(d.created), c.op, created_bounds[i])) return false;
          break;
        case btql_field::id:
          if (!compare(d.id, c.op, c.value)) return false;
          break;
        case btql_field::xact_id:
          if (!compare_xact(xact_of_pk(pk), c.op, c.value)) return false;
          break;
        case btql_field::pagination_key: break;
      }
    }
    return true;
  }
};

scan_plan plan_scan(const event_store::scan_request& req) {
  scan_plan p;
  auto raise_lo = [&](std::string v) { p.lo = std::max(p.lo, std::move(v)); };
  auto lower_hi = [&](std::string v) {
    if (!p.hi || v < *p.hi) p.hi = std::move(v);
  };
  for (const auto& c : req.filters) {
    if (c.field != btql_field::pagination_key) {
      p.row_filters.push_back(&c);
      continue;
    }
    std::string next = c.value;
    next.push_back('\0');
    switch (c.op) {
      case btql_op::gt: raise_lo(next); break;
      case btql_op::ge: raise_lo(c.value); break;
      case btql_op::lt: lower_hi(c.value); break;
      case btql_op::le: lower_hi(next); break;
      case btql_op::eq:
        raise_lo(c.value);
        lower_hi(next);
        break;
    }
  }
  if (req.after_pk) {
    if (req.descending) {
      lower_hi(*req.after_pk);
    } else {
      std::string next = *req.after_pk;
      next.push_back('\0');
      raise_lo(next);
    }
  }
  // As of a version: only versions written up to it (keys start with their xact).
  if (req.version) lower_hi(format_pk(*req.version + 1, 0));
  for (const auto* c : p.row_filters)
    p.created_bounds.push_back(c->field == btql_field::created ? normalize_time(c->value) : std::string());
  p.empty = p.hi && *p.hi <= p.lo;
  return p;
}

// Visits the matching rows of one object in the requested order; `sink` returns false to stop (then this
// returns false). With a version, the superseded versions live at that version are merged in by key: each
// row version is live from its own xact until the xact that replaced or deleted it.
bool visit_object(const stores::kv_store& store, const std::string& object_key, const scan_plan& plan,
                  const event_store::scan_request& req, const event_store::row_sink& sink) {
  const std::string prefix = prefix_of(object_key);
  const std::string from = prefix + plan.lo;
  std::string to;
  if (plan.hi) {
    to = prefix + *plan.hi;
  } else {
    to = object_key;
    to.push_back('\x01');
  }
  std::vector<std::pair<std::string, std::string>> old;  // pk, encoded row
  if (req.version) {
    store.scan(cf_history, from, to, [&](std::string_view key, std::string_view value) {
      auto superseded = value.size() >= 19 ? to_u64(value.substr(0, 19)) : std::nullopt;
      if (superseded && *superseded > *req.version)
        old.emplace_back(std::string(key.substr(prefix.size())), std::string(value.substr(19)));
      return true;
    });
    if (req.descending) std::reverse(old.begin(), old.end());
  }
  std::size_t next_old = 0;
  // Emits the superseded versions ordered before `pk` (all when nullopt).
  auto emit_old = [&](std::optional<std::string_view> pk) {
    for (; next_old < old.size(); ++next_old) {
      const auto& [opk, ov] = old[next_old];
      if (pk && (req.descending ? std::string_view(opk) < *pk : std::string_view(opk) > *pk)) break;
      const decoded_row d = decode_row(ov);
      if (plan.matches(opk, d) && !sink(opk, d)) {
        ++next_old;
        return false;
      }
    }
    return true;
  };
  bool go_on = true;
  auto visitor = [&](std::string_view key, std::string_view value) {
    if (key < std::string_view(from)) return !req.descending;  // defensive: outside the range
    if (key >= std::string_view(to)) return req.descending;
    const std::string_view pk = key.substr(prefix.size());
    if (!old.empty() && !emit_old(pk)) return go_on = false;
    const decoded_row d = decode_row(value);
    if (!plan.matches(pk, d)) return true;
    return go_on = sink(pk, d);
  };
  if (req.descending) store.scan_reverse(cf_events, to, from, visitor);
  else store.scan(cf_events, from, to, visitor);
  return go_on && emit_old(std::nullopt);
}

}  // namespace

// ---- shared scans ------------------------------------------------------------------------------------
// Ferry reads a big object as K slices, each paging `id >= lo and id < hi and _pagination_key > cursor` in
// key order. A plain scan of such a page reads the K-1 other slices' rows too (K rows per row returned):
// measured, reading and skipping them (RocksDB block reads) made the source emulator's CPU per event grow
// with K. A shared scan keeps, for every other window asked for recently, the rows it passes over, so the
// object is read about once whatever K. Each window's kept rows are exactly its rows with keys in
// [from, to) (to_end: up to the end of the object), valid while the store's write generation is the one
// read before they were scanned: any write drops them. A page starts from the kept rows when its lower
// bound lies within [from, to] and scans on from `to`; anything else starts over from its lower bound.

struct shared_scans {
  struct kept_row {
    std::string pk;
    std::string text;
  };
  struct window {
    event_store::scan_request req;  // its row filters only (the plan points into them)
    scan_plan plan;
    std::string from, to;
    bool to_end = false;
    std::deque<kept_row> rows;
    std::size_t bytes = 0;
    std::uint64_t last_use = 0;
    std::uint64_t limit = 1;
  };
  struct object_state {
    std::mutex mu;
    std::uint64_t gen = 0;
    std::uint64_t tick = 0;
    std::map<std::string, std::unique_ptr<window>> windows;  // by signature of the row filters
  };

  static constexpr std::size_t max_windows = 64;      // per object: the least recently asked for goes
  static constexpr std::uint64_t stale_after = 1024;  // requests on the object since a window was last asked
  static constexpr std::size_t min_pages_ahead = 3;  // rows a window may keep: 3 of its pages, or more
  const std::size_t max_bytes;                       // within its share of these (events_config)
                                                     // (a share: max_bytes / windows of the object)

  explicit shared_scans(std::size_t budget) : max_bytes(budget) {}

  std::mutex mu;
  std::map<std::string, std::shared_ptr<object_state>, std::less<>> objects;
  std::atomic<std::size_t> bytes{0};

  std::shared_ptr<object_state> state_of(std::string_view object_key) {
    std::lock_guard lock(mu);
    auto& s = objects[std::string(object_key)];
    if (!s) s = std::make_shared<object_state>();
    return s;
  }
  void push(window& w, std::string_view pk, std::string_view text) {
    w.rows.push_back({std::string(pk), std::string(text)});
    w.bytes += pk.size() + text.size();
    bytes += pk.size() + text.size();
  }
  /// Slices of unequal sizes drift apart in key order: the denser one's rows wait here for it, up to its share.
  bool full(const object_state& st, const window& x) const {
    return bytes >= max_bytes ||
           (x.rows.size() >= min_pages_ahead * x.limit && x.bytes >= max_bytes / st.windows.size());
  }
  void pop(window& w) {
    w.bytes -= w.rows.front().pk.size() + w.rows.front().text.size();
    bytes -= w.rows.front().pk.size() + w.rows.front().text.size();
    w.rows.pop_front();
  }
  /// Keeps the row for each of `xs` it belongs to, at or after the window's `to`; a window that is full at
  /// this row ends its coverage here and leaves `xs`.
  void keep(const object_state& st, std::vector<window*>& xs, std::string_view pk, const decoded_row& d) {
    for (std::size_t i = 0; i < xs.size();) {
      window& x = *xs[i];
      if (x.plan.matches(pk, d) && std::string_view(x.to) <= pk) {
        if (full(st, x)) {
          x.to.assign(pk);
          xs.erase(xs.begin() + static_cast<std::ptrdiff_t>(i));
          continue;
        }
        push(x, pk, d.json_text);
      }
      ++i;
    }
  }
  /// Empty coverage at `lo`.
  void restart(window& w, const std::string& lo) {
    while (!w.rows.empty()) pop(w);
    w.from = w.to = lo;
    w.to_end = false;
  }
  void drop(object_state& st, std::map<std::string, std::unique_ptr<window>>::iterator it) {
    restart(*it->second, {});
    st.windows.erase(it);
  }
  window& window_of(object_state& st, const scan_plan& plan);
  void catch_up(const stores::kv_store& store, object_state& st, const window& w, const std::string& prefix);
  event_store::scan_result page(const stores::kv_store& store, std::uint64_t gen, const event_store::scan_request& req,
                                const scan_plan& plan, std::string& out);
};

std::unique_ptr<shared_scans> make_shared_scans(std::size_t budget) { return std::make_unique<shared_scans>(budget); }

event_store::~event_store() = default;

namespace {

// Whether a scan page may go through the shared scans: forward, current rows of one object, whole rows,
// no upper key bound, and row filters that tell windows apart.
bool shareable(const event_store::scan_request& req, const scan_plan& plan) {
  return req.object_keys.size() == 1 && !req.descending && !req.version && !req.pk_only && !plan.hi &&
         !plan.row_filters.empty();
}

std::string window_signature(const scan_plan& plan) {
  std::vector<std::string> parts;
  for (const auto* c : plan.row_filters) {
    std::string p;
    put_be32(p, static_cast<std::uint32_t>(c->value.size()));
    p.append(to_string(c->field));
    p.push_back(static_cast<char>('0' + static_cast<int>(c->op)));
    p.push_back('\0');
    p.append(c->value);
    parts.push_back(std::move(p));
  }
  std::sort(parts.begin(), parts.end());
  std::string sig;
  for (const auto& p : parts) sig.append(p);
  return sig;
}

void append_row(std::string& out, event_store::scan_result& res, std::string_view pk, std::string_view text) {
  if (res.rows) out.push_back(',');
  out.append(text);
  ++res.rows;
  res.last_pk.assign(pk);
}

std::string after(std::string_view pk) {
  std::string s(pk);
  s.push_back('\0');
  return s;
}

}  // namespace

shared_scans::window& shared_scans::window_of(object_state& st, const scan_plan& plan) {
  ++st.tick;
  for (auto it = st.windows.begin(); it != st.windows.end();) {
    auto next = std::next(it);
    if (st.tick - it->second->last_use > stale_after) drop(st, it);
    it = next;
  }
  auto& slot = st.windows[window_signature(plan)];
  if (!slot) {
    if (st.windows.size() > max_windows) {
      auto lru = st.windows.end();
      for (auto it = st.windows.begin(); it != st.windows.end(); ++it)
        if (it->second && (lru == st.windows.end() || it->second->last_use < lru->second->last_use)) lru = it;
      drop(st, lru);
    }
    slot = std::make_unique<window>();
    for (const auto* c : plan.row_filters) slot->req.filters.push_back(*c);
    slot->plan = plan_scan(slot->req);  // (a new window covers ["", ""): nothing)
  }
  slot->last_use = st.tick;
  return *slot;
}

// Windows whose coverage ends before w's first catch up, from the lowest such end and for at most a
// page-worth of rows per window: the windows of one reader move through the keys together, so their ends
// are close; one far behind (a denser slice) gets only this much each time instead of every scan going
// back to it.
void shared_scans::catch_up(const stores::kv_store& store, object_state& st, const window& w,
                            const std::string& prefix) {
  std::vector<window*> behind;
  std::string start = w.to;
  for (auto& [sig, x] : st.windows)
    if (x.get() != &w && !x->to_end && !full(st, *x) && x->to < w.to) {
      behind.push_back(x.get());
      start = std::min(start, x->to);
    }
  if (behind.empty()) return;
  std::uint64_t budget = st.windows.size() * w.limit;
  std::string reached = w.to;
  store.scan(cf_events, prefix + start, prefix + w.to, [&](std::string_view key, std::string_view value) {
    const std::string_view pk = key.substr(prefix.size());
    if (budget-- == 0) {
      reached.assign(pk);  // (not visited: the coverage ends before it)
      return false;
    }
    keep(st, behind, pk, decode_row(value));
    return true;
  });
  for (window* x : behind)
    if (x->to < reached) x->to = reached;
}

event_store::scan_result shared_scans::page(const stores::kv_store& store, std::uint64_t gen,
                                            const event_store::scan_request& req, const scan_plan& plan,
                                            std::string& out) {
  const std::string& object_key = req.object_keys.front();
  const auto st = state_of(object_key);
  std::lock_guard lock(st->mu);
  if (st->gen != gen) {
    for (auto& [sig, w] : st->windows) restart(*w, {});
    st->gen = gen;
  }
  window& w = window_of(*st, plan);
  w.limit = std::max<std::uint64_t>(req.limit, 1);
  const std::string& lo = plan.lo;
  if (w.from <= lo && (w.to_end || lo <= w.to)) {
    while (!w.rows.empty() && w.rows.front().pk < lo) pop(w);
    w.from = lo;
  } else {
    restart(w, lo);
  }
  event_store::scan_result res;
  for (; !w.rows.empty(); pop(w)) {
    if (res.rows == req.limit) {
      res.has_more = true;
      return res;
    }
    append_row(out, res, w.rows.front().pk, w.rows.front().text);
    w.from = after(w.rows.front().pk);
  }
  if (w.to_end) return res;

  // Scan on from `to` (after the windows behind caught up) with every window whose coverage reaches it.
  const std::string prefix = prefix_of(object_key);
  catch_up(store, *st, w, prefix);
  std::vector<window*> others;
  for (auto& [sig, x] : st->windows)
    if (x.get() != &w && !x->to_end && !full(*st, *x) && x->to >= w.to) others.push_back(x.get());
  std::string end = object_key;
  end.push_back('\x01');
  std::optional<std::string> stop;  // the scan's exclusive end when it stopped before the object's end
  store.scan(cf_events, prefix + w.to, end, [&](std::string_view key, std::string_view value) {
    const std::string_view pk = key.substr(prefix.size());
    const decoded_row d = decode_row(value);
    keep(*st, others, pk, d);
    if (!plan.matches(pk, d)) return true;
    if (res.rows == req.limit) {
      res.has_more = true;
      push(w, pk, d.json_text);
      stop = after(pk);
      return false;
    }
    append_row(out, res, pk, d.json_text);
    w.from = after(pk);
    return true;
  });
  for (window* x : others) {
    if (!stop) x->to_end = true;
    else if (x->to < *stop) x->to = *stop;
  }
  if (stop) w.to = *stop;
  else w.to_end = true;
  return res;
}

event_store::scan_result event_store::scan(const scan_request& req, std::string& out) const {
  const scan_plan plan = plan_scan(req);
  scan_result res;
  if (req.limit == 0 || plan.empty) return res;

  auto emit = [&](std::string_view pk, std::string_view json_text) {
    if (res.rows) out.push_back(',');
    if (req.pk_only) {
      out.append(R"({"_pagination_key":")");
      out.append(pk);
      out.append("\"}");
    } else {
      out.append(json_text);
    }
    ++res.rows;
    res.last_pk.assign(pk);
  };

  if (shareable(req, plan)) return shared_->page(store_, write_gen_.load(), req, plan, out);
  if (req.object_keys.size() == 1) {
    // Fast path: append each stored text straight into the response.
    visit_object(store_, req.object_keys.front(), plan, req, [&](std::string_view pk, const decoded_row& d) {
      if (res.rows == req.limit) {
        res.has_more = true;
        return false;
      }
      emit(pk, d.json_text);
      return true;
    });
    return res;
  }

  // Several objects: take up to limit+1 rows of each, then merge by key.
  std::vector<std::pair<std::string, std::string>> all;
  for (const auto& okey : req.object_keys) {
    std::uint64_t taken = 0;
    visit_object(store_, okey, plan, req, [&](std::string_view pk, const decoded_row& d) {
      all.emplace_back(std::string(pk), req.pk_only ? std::string() : std::string(d.json_text));
      return ++taken <= req.limit;
    });
  }
  if (req.descending) std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  else std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [pk, text] : all) {
    if (res.rows == req.limit) {
      res.has_more = true;
      break;
    }
    emit(pk, text);
  }
  return res;
}

void event_store::visit(const scan_request& req, const row_sink& sink) const {
  const scan_plan plan = plan_scan(req);
  if (plan.empty) return;
  for (const auto& okey : req.object_keys)
    if (!visit_object(store_, okey, plan, req, sink)) return;
}


}  // namespace detail

// ---- events_api ------------------------------------------------------------------------------------

namespace {

namespace http = boost::beast::http;
using detail::http_error;
using detail::object_ref;

constexpr std::string_view sign_secret_key = "sign_secret";

// Opaque cursors: hex of "a|<pk>" / "d|<pk>".
std::string make_cursor(bool descending, std::string_view last_pk) {
  std::string raw(descending ? "d|" : "a|");
  raw.append(last_pk);
  return detail::hex_encode(raw);
}
std::string parse_cursor(std::string_view cursor, bool descending) {
  auto raw = detail::hex_decode(cursor);
  if (!raw || raw->size() < 3 || (*raw)[1] != '|' || ((*raw)[0] == 'd') != descending)
    throw http_error(400, "cursor: not a cursor returned by this server for this query order");
  return raw->substr(2);
}

json::value parse_body(std::string_view body, json::storage_ptr sp, std::string_view what) {
  boost::system::error_code ec;
  json::value v = ferry::engine::parse_json(body, ec, std::move(sp));
  if (ec) throw http_error(400, std::string(what) + ": body is not valid JSON (" + ec.message() + ")");
  return v;
}

// The schema of a general query's rows: the select list's (or dimensions' and measures') columns.
std::string general_schema(const btql_query& q) {
  if (q.columns.empty() && q.measures.empty()) return R"({"type":"array","items":{"type":"object"}})";
  json::object props;
  for (const auto* items : {&q.columns, &q.dimensions, &q.measures})
    for (const auto& c : *items) props[c.alias] = json::object();
  json::object items{{"type", "object"}, {"properties", std::move(props)}};
  return json::serialize(json::object{{"type", "array"}, {"items", std::move(items)}});
}

}  // namespace

events_api::impl::impl(stores::kv_store& s, object_lookup l, events_config c)
    : store(s), lookup(std::move(l)), cfg(std::move(c)), events(s, cfg) {
  if (auto v = store.get(detail::cf_meta, sign_secret_key)) {
    sign_secret = *v;
  } else {
    sign_secret = detail::random_hex(32);
    store.put(detail::cf_meta, sign_secret_key, sign_secret, /*sync=*/true);
  }
}

std::string events_api::impl::now() const { return cfg.now_iso ? cfg.now_iso() : detail::now_iso_utc(); }

void events_api::impl::require_object(const object_ref& obj, const request_context& ctx) const {
  if (lookup && !lookup(obj.lookup_type(), obj.id, ctx.org_id))
    throw http_error(404, std::string(obj.lookup_type()) + " " + obj.id + " not found");
}

std::string events_api::impl::version() const {
  json::object o;
  o["version"] = "ferry-emulator-0.1.0";
  o["server"] = "ferry-emulator";
  o["logs3_payload_max_bytes"] = cfg.logs3_payload_max_bytes;
  o["brainstore_default"] = "force";
  return json::serialize(o);
}

std::string events_api::impl::btql(std::string_view body, const request_context& ctx) {
  json::monotonic_resource mr;
  json::value v = parse_body(body, &mr, "btql");
  if (!v.is_object()) throw http_error(400, "btql: body must be a JSON object");
  const auto* qv = v.get_object().if_contains("query");
  if (!qv) throw http_error(400, "btql: missing \"query\"");
  btql_query q;
  try {
    const std::string now = cfg.now_iso ? cfg.now_iso() : std::string();  // NOW(): the fixed clock in tests
    if (qv->is_string()) q = parse_btql_text(qv->get_string(), now);
    else if (qv->is_object()) q = parse_btql_ast(qv->get_object(), now);
    else throw http_error(400, "btql: \"query\" must be BTQL text or a JSON AST object");
  } catch (const btql_error& e) {
    throw http_error(400, std::string("btql: ") + e.what());
  }
  detail::event_store::scan_request sr;
  // "version": each row as it was at that transaction (the SDK pins dataset reads to a version).
  if (const auto* ver = v.get_object().if_contains("version"); ver && !ver->is_null()) {
    std::string x = ver->is_string() ? std::string(ver->get_string()) : json::serialize(*ver);
    if (!x.empty()) sr.version = detail::parse_version(x, "btql");
  }
  const auto* audit = v.get_object().if_contains("audit_log");
  const bool audit_log = audit && audit->is_bool() && audit->get_bool();
  const bool metadata = q.object_type == "project_prompts" || q.object_type == "project_functions";
  if (!metadata) {
    for (const auto& id : q.object_ids) {
      object_ref obj{q.object_type, id};
      require_object(obj, ctx);
      sr.object_keys.push_back(obj.key());
    }
    std::sort(sr.object_keys.begin(), sr.object_keys.end());
    sr.object_keys.erase(std::unique(sr.object_keys.begin(), sr.object_keys.end()), sr.object_keys.end());
    if (audit_log)
      throw http_error(400, "btql: audit_log reads are not served for " + q.object_type + " (rows carry audit_data)");
  }

  std::string out;
  std::string cursor;
  if (metadata) {
    out.append(R"({"data":[)");
    cursor = btql_rows(q, metadata_rows(q, sr, audit_log, ctx), out);
    out.append(R"(],"schema":)");
    out.append(general_schema(q));
  } else if (q.general) {
    out.append(R"({"data":[)");
    cursor = btql_general(q, sr, out);
    out.append(R"(],"schema":)");
    out.append(general_schema(q));
  } else {
    sr.filters.insert(sr.filters.end(), q.filters.begin(), q.filters.end());
    sr.descending = q.descending;
    sr.limit = q.limit.value_or(cfg.btql_default_limit);
    sr.pk_only = !q.select_star;
    if (q.cursor) sr.after_pk = parse_cursor(*q.cursor, q.descending);
    out.reserve(256 + std::min<std::uint64_t>(sr.limit, 1000) * (sr.pk_only ? 48 : 2200));
    out.append(R"({"data":[)");
    const auto res = events.scan(sr, out);
    out.append(R"(],"schema":{"type":"array","items":{"type":"object"}})");
    if (res.has_more) cursor = make_cursor(sr.descending, res.last_pk);
  }
  out.append(R"(,"cursor":)");
  if (cursor.empty()) {
    out.append("null");
  } else {
    out.push_back('"');
    out.append(cursor);
    out.push_back('"');
  }
  // What Brainstore reports about the data read: everything up to this transaction was visible.
  const std::string seen = sr.version ? detail::format_xact(*sr.version) : events.current_xact();
  out.append(R"(,"freshness_state":{"last_processed_xact_id":")" + seen + R"(","last_considered_xact_id":")" + seen +
             R"("},"realtime_state":{"type":"on","minimum_xact_id":")" + seen + R"(","actual_xact_id":")" + seen +
             R"(","read_bytes":0,"timeout_ms":0}})");
  return out;
}

// The rows of project_prompts(...) / project_functions(...) from the REST side (events_config::metadata_rows).
std::vector<json::object> events_api::impl::metadata_rows(const btql_query& q, const detail::event_store::scan_request& sr,
                                                          bool audit_log, const request_context& ctx) const {
  if (sr.version) throw http_error(400, "btql: version is not served for " + q.object_type);
  if (!cfg.metadata_rows) throw http_error(400, "btql: from " + q.object_type + " is not served");
  std::vector<json::object> rows;
  for (const auto& id : q.object_ids) {
    auto part = cfg.metadata_rows(q.object_type, id, ctx.org_id, audit_log);
    if (!part) throw http_error(404, "project " + id + " not found");
    for (auto& r : *part) rows.push_back(std::move(r));
  }
  return rows;
}

std::string events_api::impl::fetch(const object_ref& obj, std::string_view body, boost::urls::url_view url,
                                    bool is_post, const request_context& ctx) {
  require_object(obj, ctx);
  std::optional<std::uint64_t> limit;
  std::optional<std::string> cursor, max_xact;
  // max_xact_id and version both pin the read; the earlier one wins (both are 19-digit strings).
  auto earlier = [](const std::optional<std::string>& a, std::string_view b) {
    return a && (a->size() < b.size() || (a->size() == b.size() && *a < b)) ? *a : std::string(b);
  };
  auto read_u64 = [](std::string_view s, std::string_view name) {
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size())
      throw http_error(400, "fetch: " + std::string(name) + " must be a non-negative integer");
    return v;
  };
  if (is_post && !body.empty()) {
    json::monotonic_resource mr;
    json::value v = parse_body(body, &mr, "fetch");
    if (!v.is_object()) throw http_error(400, "fetch: body must be a JSON object");
    const auto& o = v.get_object();
    if (const auto* l = o.if_contains("limit"); l && !l->is_null()) {
      if (l->is_int64() && l->get_int64() >= 0) limit = static_cast<std::uint64_t>(l->get_int64());
      else if (l->is_uint64()) limit = l->get_uint64();
      else throw http_error(400, "fetch: limit must be a non-negative integer");
    }
    if (const auto* c = o.if_contains("cursor"); c && c->is_string() && !c->get_string().empty())
      cursor = std::string(c->get_string());
    for (auto name : {"max_xact_id", "version"})
      if (const auto* x = o.if_contains(name); x && x->is_string() && !x->get_string().empty())
        max_xact = earlier(max_xact, x->get_string());
  } else {
    for (auto p : url.params()) {
      if (p.key == "limit") limit = read_u64(p.value, "limit");
      else if (p.key == "cursor" && !p.value.empty()) cursor = std::string(p.value);
      else if ((p.key == "max_xact_id" || p.key == "version") && !p.value.empty())
        max_xact = earlier(max_xact, p.value);
    }
  }
  detail::event_store::scan_request sr;
  sr.object_keys.push_back(obj.key());
  sr.descending = true;  // the spec: newest to oldest
  sr.limit = limit.value_or(cfg.btql_default_limit);
  if (max_xact) sr.version = detail::parse_version(*max_xact, "fetch");
  if (cursor) sr.after_pk = parse_cursor(*cursor, true);
  std::string out;
  out.reserve(64 + std::min<std::uint64_t>(sr.limit, 1000) * 2200);
  out.append(R"({"events":[)");
  const auto res = events.scan(sr, out);
  out.push_back(']');
  if (res.has_more) {
    out.append(R"(,"cursor":")");
    out.append(make_cursor(true, res.last_pk));
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

std::string events_api::impl::restore(const object_ref& obj, std::string_view body, bool preview,
                                      const request_context& ctx) {
  require_object(obj, ctx);
  json::monotonic_resource mr;
  json::value v = parse_body(body, &mr, "restore");
  const auto* ver = v.is_object() ? v.get_object().if_contains("version") : nullptr;
  if (!ver || !(ver->is_string() || ver->is_number())) throw http_error(400, "restore: missing \"version\"");
  const std::uint64_t version =
      detail::parse_version(ver->is_string() ? std::string(ver->get_string()) : json::serialize(*ver), "restore");
  // The rows as of the version and the current ones, by id: a row whose current version differs is
  // restored (written again as it was), a row that did not exist then is deleted.
  detail::event_store::scan_request sr;
  sr.object_keys.push_back(obj.key());
  std::map<std::string, std::pair<std::string, std::string>> then;  // id -> pk, json text
  std::map<std::string, std::string> now_pk;
  sr.version = version;
  events.visit(sr, [&](std::string_view pk, const detail::decoded_row& d) {
    then[std::string(d.id)] = {std::string(pk), std::string(d.json_text)};
    return true;
  });
  sr.version.reset();
  events.visit(sr, [&](std::string_view pk, const detail::decoded_row& d) {
    now_pk[std::string(d.id)] = std::string(pk);
    return true;
  });
  std::deque<json::value> rows;
  auto content = [&](std::string_view text) {  // a version without its transaction fields
    json::value v = parse_body(text, &mr, "restore");
    v.get_object().erase("_xact_id");
    v.get_object().erase("_pagination_key");
    return v;
  };
  for (const auto& [id, old] : then) {
    auto it = now_pk.find(id);
    if (it != now_pk.end() && it->second == old.first) continue;
    json::value was = content(old.second);
    if (it != now_pk.end()) {
      std::string cur_text;
      detail::event_store::scan_request one;
      one.object_keys.push_back(obj.key());
      one.filters.push_back({btql_field::pagination_key, btql_op::eq, it->second});
      events.visit(one, [&](std::string_view, const detail::decoded_row& d) {
                     cur_text = d.json_text;
                     return false;
                   });
      if (!cur_text.empty() && content(cur_text) == was) continue;  // restored before: same content
    }
    rows.push_back(parse_body(old.second, &mr, "restore"));
  }
  const std::size_t restored = rows.size();
  for (const auto& [id, pk] : now_pk)
    if (!then.contains(id)) rows.push_back(json::object{{"id", id}, {"_object_delete", true}});
  const std::size_t deleted = rows.size() - restored;
  json::object out;
  if (preview) {
    out["rows_to_restore"] = restored;
    out["rows_to_delete"] = deleted;
    return json::serialize(out);
  }
  std::vector<detail::row_in> in;
  for (auto& r : rows) in.push_back({&obj, &r.get_object(), nullptr, /*restore=*/true});
  std::string xact;
  if (!in.empty()) events.write(in, ctx.org_id, &xact);
  out["xact_id"] = in.empty() ? json::value(nullptr) : json::value(xact);
  out["rows_restored"] = restored;
  out["rows_deleted"] = deleted;
  return json::serialize(out);
}

std::optional<transports::http_reply> events_api::impl::route(transports::http_request& req,
                                                              const request_context& ctx) {
  const std::string_view target(req.target().data(), req.target().size());
  auto parsed = boost::urls::parse_origin_form(target);
  if (!parsed) return std::nullopt;
  const boost::urls::url_view url = *parsed;
  const std::string path = url.path();
  const auto method = req.method();
  const std::string_view body = req.body();
  const bool get = method == http::verb::get, post = method == http::verb::post;
  auto ok = [&](std::string s) { return json_reply(200, std::move(s), req.version(), req.keep_alive()); };
  auto wrong_method = [&]() {
    return json_reply(405, json_error_body(std::string(req.method_string()) + " is not allowed on " + path),
                      req.version(), req.keep_alive());
  };

  try {
    if (path.starts_with("/_signed/")) return signed_target(req, url);
    if (path == "/logs3") return post ? ok(logs3(body, ctx)) : wrong_method();
    if (path == "/logs3/overflow") return post ? ok(logs3_overflow(body, ctx)) : wrong_method();
    if (path == "/btql") return post ? ok(btql(body, ctx)) : wrong_method();
    if (path == "/version") return get ? ok(version()) : wrong_method();
    if (path == "/xact-id") return get ? ok(events.current_xact()) : wrong_method();
    if (path == "/attachment") {
      if (post) return ok(attachment_upload_url(body, ctx));
      if (get) return ok(attachment_get(url, ctx));
      return wrong_method();
    }
    if (path == "/attachment/status") return post ? ok(attachment_status(body, ctx)) : wrong_method();
    if (path == "/dataset-summary") {
      if (!get) return wrong_method();
      std::string id;
      for (auto p : url.params())
        if (p.key == "dataset_id") id = std::string(p.value);
      if (id.empty()) throw http_error(400, "dataset-summary: missing dataset_id");
      object_ref obj{"dataset", id};
      require_object(obj, ctx);
      json::object o;
      o["total_records"] = events.count(obj.key());
      return ok(json::serialize(o));
    }
    if (path == "/v1/insert") return post ? ok(cross_insert(body, ctx)) : wrong_method();
    // /v1/{project_logs,experiment,dataset}/{id}/{insert,fetch,feedback}
    if (path.starts_with("/v1/")) {
      std::vector<std::string> segs;
      for (auto s : url.segments()) segs.emplace_back(s);
      // segments: "v1", type, id, operation
      // /v1/dataset/{id}/restore and /v1/dataset/{id}/restore/preview (the SDK's restore())
      if ((segs.size() == 4 || (segs.size() == 5 && segs[4] == "preview")) && segs[1] == "dataset" &&
          segs[3] == "restore")
        return post ? ok(restore(object_ref{"dataset", segs[2]}, body, segs.size() == 5, ctx)) : wrong_method();
      if (segs.size() == 4 && !segs[2].empty() &&
          (segs[1] == "project_logs" || segs[1] == "experiment" || segs[1] == "dataset") &&
          (segs[3] == "insert" || segs[3] == "fetch" || segs[3] == "feedback")) {
        object_ref obj{segs[1], segs[2]};
        if (segs[3] == "insert") return post ? ok(rest_insert(obj, body, ctx)) : wrong_method();
        if (segs[3] == "feedback") return post ? ok(rest_feedback(obj, body, ctx)) : wrong_method();
        if (get || post) return ok(fetch(obj, body, url, post, ctx));
        return wrong_method();
      }
    }
    return std::nullopt;
  } catch (const http_error& e) {
    // Client errors are expected traffic (413 drives the writer's batch split): debug only.
    engine::logger("emulator")->debug("events reply status={} method={} path={} error={}", e.status(),
                                      std::string(req.method_string()), path, e.what());
    return json_reply(e.status(), json_error_body(e.what()), req.version(), req.keep_alive());
  } catch (const stores::store_error& e) {
    engine::logger("emulator")->error("events storage failure method={} path={} error={}",
                                      std::string(req.method_string()), path, e.what());
    return json_reply(500, json_error_body(std::string("storage: ") + e.what()), req.version(), req.keep_alive());
  }
}

std::vector<std::string> events_api::column_families() {
  return {std::string(detail::cf_events), std::string(detail::cf_ids), std::string(detail::cf_meta),
          std::string(detail::cf_blobs), std::string(detail::cf_attachments), std::string(detail::cf_history)};
}

void events_api::tune_store(stores::kv_options& opts) {
  // Measured emulator -> emulator (bench: 100k events): block compression (zstd at the bottom, lz4 above)
  // was ~25% of the destination's CPU and compaction most of RocksDB's share. Rows are written once and
  // read once by a migration, so the events are kept uncompressed in 64 MiB memtables, compacted only
  // every 8 L0 files. event_ids holds small keys of random ids: uncompressed too.
  constexpr std::size_t memtable = 64u << 20;
  opts.column_families[std::string(detail::cf_events)] = {.compress = false, .write_buffer_bytes = memtable,
                                                          .level0_compaction_trigger = 8};
  // A new row's id is looked up before it is written: the memtable bloom answers "absent" without
  // a skip-list search (8% of the destination's CPU before).
  opts.column_families[std::string(detail::cf_ids)] = {.compress = false, .write_buffer_bytes = memtable / 4,
                                                       .level0_compaction_trigger = 8, .memtable_bloom = true};
  // Two memtables of each plus the small ones; flushing early under a smaller budget would undo the above.
  opts.write_buffer_bytes = std::max<std::size_t>(opts.write_buffer_bytes, 3 * memtable);
}

events_api::events_api(stores::kv_store& store, object_lookup lookup, events_config cfg)
    : impl_(std::make_unique<impl>(store, std::move(lookup), std::move(cfg))) {}

events_api::~events_api() = default;

boost::asio::awaitable<std::optional<transports::http_reply>> events_api::handle(transports::http_request& req,
                                                                                 const request_context& ctx) {
  co_return impl_->route(req, ctx);
}

std::optional<transports::http_reply> events_api::handle_now(transports::http_request& req,
                                                             const request_context& ctx) {
  return impl_->route(req, ctx);
}

std::vector<json::object> events_api::current_rows(std::string_view object_type, std::string_view object_id) const {
  detail::event_store::scan_request sr;
  sr.object_keys.push_back(object_ref{std::string(object_type), std::string(object_id)}.key());
  std::vector<json::object> out;
  impl_->events.visit(sr, [&](std::string_view, const detail::decoded_row& d) {
    boost::system::error_code ec;
    auto v = ferry::engine::parse_json(d.json_text, ec);
    if (!ec && v.is_object()) out.push_back(std::move(v.get_object()));
    return true;
  });
  return out;
}

bool events_api::is_public_path(std::string_view target) const { return target.starts_with("/_signed/"); }

std::uint64_t events_api::count_rows(std::string_view object_type, std::string_view object_id) const {
  std::string type(object_type == "project" ? std::string_view("project_logs") : object_type);
  return impl_->events.count(object_ref{type, std::string(object_id)}.key());
}

}  // namespace ferry::emulator
