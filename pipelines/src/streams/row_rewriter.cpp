#include "pipelines/streams/row_rewriter.hpp"

#include "engine/log.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cstdint>

namespace ferry::pipelines::streams {

namespace od = simdjson::ondemand;

namespace {

// Every top-level field the rewriter cares about. `other` is dropped.
enum class fid : std::uint8_t {
  other,
  input, output, expected, error, scores, metadata, tags, metrics, context, span_attributes,
  id, created, origin, facets, object_delete, is_merge, merge_paths, array_delete, parent_id,
  span_id, root_span_id, span_parents,
  xact_id, pagination_key, experiment_id, dataset_id, comments, audit_data,
  count_
};

// A switch on length keeps classification to one or two comparisons per field (hot path).
fid classify(std::string_view k) {
  switch (k.size()) {
    case 2: return k == "id" ? fid::id : fid::other;
    case 4: return k == "tags" ? fid::tags : fid::other;
    case 5: return k == "input" ? fid::input : k == "error" ? fid::error : fid::other;
    case 6:
      if (k == "output") return fid::output;
      if (k == "scores") return fid::scores;
      if (k == "origin") return fid::origin;
      if (k == "facets") return fid::facets;
      return fid::other;
    case 7:
      if (k == "created") return fid::created;
      if (k == "metrics") return fid::metrics;
      if (k == "context") return fid::context;
      if (k == "span_id") return fid::span_id;
      return fid::other;
    case 8:
      if (k == "expected") return fid::expected;
      if (k == "metadata") return fid::metadata;
      if (k == "_xact_id") return fid::xact_id;
      if (k == "comments") return fid::comments;
      return fid::other;
    case 9: return k == "_is_merge" ? fid::is_merge : fid::other;
    case 10:
      if (k == "_parent_id") return fid::parent_id;
      if (k == "dataset_id") return fid::dataset_id;
      if (k == "audit_data") return fid::audit_data;
      return fid::other;
    case 12:
      if (k == "root_span_id") return fid::root_span_id;
      if (k == "span_parents") return fid::span_parents;
      if (k == "_merge_paths") return fid::merge_paths;
      return fid::other;
    case 13:
      if (k == "_array_delete") return fid::array_delete;
      if (k == "experiment_id") return fid::experiment_id;
      return fid::other;
    case 14: return k == "_object_delete" ? fid::object_delete : fid::other;
    case 15:
      if (k == "span_attributes") return fid::span_attributes;
      if (k == "_pagination_key") return fid::pagination_key;
      return fid::other;
    default: return fid::other;
  }
}

using mask = std::uint64_t;
constexpr mask bit(fid f) { return mask{1} << static_cast<unsigned>(f); }

constexpr mask common_fields = bit(fid::input) | bit(fid::expected) | bit(fid::metadata) | bit(fid::tags) |
                               bit(fid::id) | bit(fid::created) | bit(fid::facets) | bit(fid::object_delete) |
                               bit(fid::is_merge) | bit(fid::merge_paths) | bit(fid::array_delete) |
                               bit(fid::parent_id) | bit(fid::span_id) | bit(fid::root_span_id) |
                               bit(fid::span_parents);
constexpr mask span_fields = common_fields | bit(fid::output) | bit(fid::error) | bit(fid::scores) |
                             bit(fid::metrics) | bit(fid::context) | bit(fid::span_attributes);

mask kept_fields(stream_kind k) { return k == stream_kind::dataset ? common_fields : span_fields; }

std::string_view trim_right(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// The raw bytes of any value; containers are skipped over once (this is the only pass over them). The
// first byte of the value's token tells a container from a scalar (no separate type() probe).
simdjson::error_code raw_value(od::value& v, std::string_view& out) {
  const std::string_view token = v.raw_json_token();
  if (token.empty()) return simdjson::TAPE_ERROR;
  if (token.front() == '{') {
    od::object o;
    if (auto e = v.get_object().get(o)) return e;
    return o.raw_json().get(out);
  }
  if (token.front() == '[') {
    od::array a;
    if (auto e = v.get_array().get(a)) return e;
    return a.raw_json().get(out);
  }
  out = trim_right(token);
  return simdjson::SUCCESS;
}

// A key's raw bytes from just after its opening quote up to (not including) its closing quote, escapes
// as written; `escaped` says whether there is any (then the key must be unescaped to be classified).
std::string_view raw_key(const char* begin, bool& escaped) {
  const char* p = begin;
  escaped = false;
  while (*p != '"') {
    if (*p == '\\') {
      escaped = true;
      ++p;
    }
    ++p;
  }
  return {begin, static_cast<std::size_t>(p - begin)};
}

// `[` followed by anything but `]`: the raw bytes of a JSON array with at least one element.
bool non_empty_array(std::string_view raw) {
  if (raw.empty() || raw.front() != '[') return false;
  raw.remove_prefix(1);
  while (!raw.empty() && (raw.front() == ' ' || raw.front() == '\n' || raw.front() == '\r' || raw.front() == '\t'))
    raw.remove_prefix(1);
  return !raw.empty() && raw.front() != ']';
}

void ensure_padding(std::string& body) {
  if (body.capacity() < body.size() + simdjson::SIMDJSON_PADDING) body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
}

std::string shorten(std::string_view s) {
  return std::string(s.substr(0, 80)) + (s.size() > 80 ? "..." : "");
}

}  // namespace

struct row_rewriter::impl {
  od::parser parser;
  mask keep = 0;
  // The object of the previous row (a stream's rows share one; a grouped page's runs of rows mostly
  // do): its source id, its destination id fields `"project_id":"..","log_id":"g"` and the start of
  // an origin built for it `{"object_type":"..","object_id":"..","id":`, made once per object.
  std::string obj_src;
  std::string obj_fields;
  std::string obj_origin;
  std::size_t row_hint = 512;     // reserve size for the next row (last row's size)
  od::parser origin_parser;       // a source origin is read apart from the page (the page parser is busy)
  std::string origin_buf;         // its padded copy (grows once, reused)
  od::parser comment_parser;      // a row's `comments` likewise (an origin inside one uses origin_parser)
  std::string comment_buf;

  void append_origin(std::string& j, std::string_view raw, const rewrite_config& cfg, event_row& row);
  bool map_origin(std::string& j, std::string_view raw, const rewrite_config& cfg);
  std::string append_comment_rows(std::string& out, std::string_view raw, std::string_view raw_row_id,
                                  std::string_view dest_fields, const rewrite_config& cfg);
};

void row_rewriter::impl::append_origin(std::string& j, std::string_view raw, const rewrite_config& cfg,
                                       event_row& row) {
  row.origin = map_origin(j, raw, cfg) ? event_row::origin_kind::mapped : event_row::origin_kind::unmapped;
}

// A source origin: `object_id` replaced by the destination id of the object it names when that object
// was migrated; every other byte kept. Appended as it is (returns false) when it cannot be mapped.
bool row_rewriter::impl::map_origin(std::string& j, std::string_view raw, const rewrite_config& cfg) {
  if (!cfg.origin_dest) {
    j += raw;
    return false;
  }
  origin_buf.assign(raw);
  origin_buf.append(simdjson::SIMDJSON_PADDING, ' ');
  std::string_view type, id_token;
  od::document doc;
  od::object o;
  if (!origin_parser.iterate(origin_buf.data(), raw.size(), origin_buf.size()).get(doc) && !doc.get_object().get(o)) {
    for (auto field_res : o) {
      od::field f;
      std::string_view key;
      if (std::move(field_res).get(f) || f.unescaped_key().get(key)) break;
      if (key == "object_type") {
        if (f.value().get_string().get(type)) type = {};
      } else if (key == "object_id") {
        id_token = f.value().raw_json_token();
      }
    }
  }
  // A plain JSON string token ('"' ... '"', no escapes: object ids are UUIDs); anything else is kept.
  const auto close = id_token.size() > 1 && id_token[0] == '"' ? id_token.find('"', 1) : std::string_view::npos;
  if (type.empty() || close == std::string_view::npos || id_token.substr(0, close).find('\\') != std::string_view::npos) {
    j += raw;
    return false;
  }
  auto dest = cfg.origin_dest(type, id_token.substr(1, close - 1));
  if (!dest) {
    j += raw;
    return false;
  }
  const std::size_t at = static_cast<std::size_t>(id_token.data() - origin_buf.data());
  j.append(raw.substr(0, at));
  j += '"';
  j += engine::json_escape(*dest);
  j += '"';
  j.append(raw.substr(at + close + 1));
  return true;
}

// The source row's `comments` (an array) as the rows that recreate them at the destination, each
// preceded by ',': the SDK's logFeedback comment row {id, created, comment, origin, _audit_source,
// _audit_metadata} plus the destination object ids; the origin mapped like a row's, `{"id": <row id>}`
// when absent. Returns "" or what is wrong with a comment (the caller names the row).
std::string row_rewriter::impl::append_comment_rows(std::string& out, std::string_view raw, std::string_view raw_row_id,
                                                    std::string_view dest_fields, const rewrite_config& cfg) {
  comment_buf.assign(raw);
  comment_buf.append(simdjson::SIMDJSON_PADDING, ' ');
  od::document doc;
  od::array arr;
  if (comment_parser.iterate(comment_buf.data(), raw.size(), comment_buf.size()).get(doc) || doc.get_array().get(arr))
    return "`comments` is not an array";
  std::size_t k = 0;
  for (auto item_res : arr) {
    const std::string which = "comment #" + std::to_string(k++);
    od::object c;
    if (item_res.get_object().get(c)) return which + " is not an object";
    std::string_view id, created, comment, origin, source, metadata;
    for (auto field_res : c) {
      od::field f;
      std::string_view key, v;
      if (std::move(field_res).get(f) || f.unescaped_key().get(key)) return which + " is not valid JSON";
      od::value val = f.value();
      if (raw_value(val, v)) return which + " is not valid JSON";
      if (key == "id") id = v;
      else if (key == "created") created = v;
      else if (key == "comment") comment = v;
      else if (key == "origin") origin = v;
      else if (key == "source") source = v;
      else if (key == "metadata") metadata = v;
    }
    if (id.size() < 2 || id.front() != '"') return which + " has no string `id`";
    if (comment.empty() || comment.front() != '{') return which + " (id " + shorten(id) + ") has no `comment` object";
    out += ",{\"id\":";
    out += id;
    if (!created.empty() && created != "null") {
      out += ",\"created\":";
      out += created;
    }
    out += ",\"comment\":";
    out += comment;
    out += ",\"origin\":";
    if (!origin.empty() && origin.front() == '{') {
      map_origin(out, origin, cfg);
    } else {
      out += "{\"id\":";
      out += raw_row_id;
      out += '}';
    }
    if (!source.empty() && source.front() == '"') {
      out += ",\"_audit_source\":";
      out += source;
    }
    if (!metadata.empty() && metadata.front() == '{') {
      out += ",\"_audit_metadata\":";
      out += metadata;
    }
    out += ',';
    out += dest_fields;
    out += '}';
  }
  return {};
}

row_rewriter::row_rewriter(rewrite_config cfg) : cfg_(std::move(cfg)), impl_(std::make_unique<impl>()) {
  impl_->keep = kept_fields(cfg_.kind);
  if (!cfg_.grouped) {
    auto it = cfg_.dest_ids.find(cfg_.source_object_id);
    if (it == cfg_.dest_ids.end() || it->second.empty())
      throw stream_error("stream " + cfg_.stream_name + ": no destination id for source " +
                         std::string(object_type_name(cfg_.kind)) + " " + cfg_.source_object_id);
  }
}

row_rewriter::~row_rewriter() = default;

namespace {

void append_dest_fields(std::string& out, stream_kind kind, std::string_view dest_id) {
  switch (kind) {
    case stream_kind::project_logs:
      out += "\"project_id\":\"";
      out += engine::json_escape(dest_id);
      out += "\",\"log_id\":\"g\"";
      break;
    case stream_kind::experiment:
      out += "\"experiment_id\":\"";
      out += engine::json_escape(dest_id);
      out += '"';
      break;
    case stream_kind::dataset:
      out += "\"dataset_id\":\"";
      out += engine::json_escape(dest_id);
      out += '"';
      break;
  }
}

}  // namespace

// Long on purpose: this is the copy path's per-page hot loop (bench_rewriter). One pass over the page
// with simdjson on demand locates each row's fields; the row is then a copy of its own bytes with the
// dropped fields spliced out and the destination fields and origin spliced in (a few appends per row
// instead of three per field), hashed once; split up, a dozen views per row would cross calls.
rewritten_page row_rewriter::rewrite(std::string& body, std::string_view previous_key) {
  rewritten_page page;
  page.input_bytes = body.size();
  ensure_padding(body);
  const std::string& sn = cfg_.stream_name;
  auto fail = [&](std::size_t index, std::string_view row_id, const std::string& what) -> stream_error {
    std::string where = row_id.empty() ? "row #" + std::to_string(index) : "row id=" + shorten(row_id);
    return stream_error("stream " + sn + " " + where + ": " + what);
  };

  od::document doc;
  if (auto e = impl_->parser.iterate(simdjson::padded_string_view(body.data(), body.size(), body.capacity())).get(doc))
    throw stream_error("stream " + sn + ": BTQL response is not JSON: " + simdjson::error_message(e));
  od::object top;
  if (auto e = doc.get_object().get(top))
    throw stream_error("stream " + sn + ": BTQL response is not a JSON object: " + simdjson::error_message(e));
  od::array data;
  if (auto e = top.find_field_unordered("data").get_array().get(data))
    throw stream_error("stream " + sn + ": BTQL response has no \"data\" array: " + simdjson::error_message(e));

  // The previous row's key: the caller's, then each row's own (a view of the row already in `rows`).
  std::string_view prev = previous_key;
  // About one row per row_hint bytes: no reallocation (and move of every row so far) while the page grows.
  page.rows.reserve(body.size() / std::max<std::size_t>(impl_->row_hint, 256) + 1);
  std::size_t index = 0;
  const mask keep = impl_->keep;
  for (auto row_res : data) {
    od::object row;
    if (auto e = row_res.get_object().get(row)) throw fail(index, {}, std::string("not a JSON object: ") + simdjson::error_message(e));

    event_row out;
    std::string& j = out.json;
    j.reserve(impl_->row_hint + 256);
    j += '{';
    bool first = true;
    std::string_view raw_id, raw_xact, raw_created, raw_origin, raw_comments, group_obj;
    bool has_key = false;
    // The row goes out as splices of its own bytes: each run of consecutive kept fields (keys, values
    // and the separators between them, exactly as the source wrote them) is copied with one append;
    // dropped fields (and `origin`, rebuilt below) end a run.
    const char* run_begin = nullptr;
    const char* run_end = nullptr;
    auto end_run = [&] {
      if (!run_begin) return;
      if (!first) j += ',';
      first = false;
      j.append(run_begin, static_cast<std::size_t>(run_end - run_begin));
      run_begin = nullptr;
    };
    for (auto field_res : row) {
      od::field f;
      if (auto e = std::move(field_res).get(f)) throw fail(index, out.id, std::string("bad JSON: ") + simdjson::error_message(e));
      const char* key_begin = f.key().raw();  // just after the key's opening quote
      bool escaped = false;
      std::string_view key = raw_key(key_begin, escaped);
      if (escaped) {
        if (auto e = f.unescaped_key().get(key)) throw fail(index, out.id, std::string("bad key: ") + simdjson::error_message(e));
      }
      const fid id = classify(key);
      od::value v = f.value();
      std::string_view raw;
      if (auto e = raw_value(v, raw)) throw fail(index, out.id, "field " + shorten(key) + ": " + simdjson::error_message(e));
      switch (id) {
        case fid::id: {
          std::string_view s;
          if (v.get_string().get(s)) throw fail(index, {}, "`id` is not a string");
          out.id.assign(s);
          raw_id = raw;
          break;
        }
        case fid::pagination_key: {
          std::string_view s;
          if (raw != "null" && !v.get_string().get(s)) {
            out.key.assign(s);
            has_key = !out.key.empty();
          }
          break;
        }
        case fid::xact_id: raw_xact = raw; break;
        case fid::created: raw_created = raw; break;
        case fid::origin: raw_origin = raw; break;
        case fid::comments: raw_comments = raw; break;
        case fid::audit_data:
          if (non_empty_array(raw)) ++page.audit_rows;
          break;
        case fid::experiment_id:
          if (cfg_.grouped && cfg_.kind == stream_kind::experiment && raw != "null") {
            if (v.get_string().get(group_obj)) group_obj = {};
          }
          break;
        case fid::dataset_id:
          if (cfg_.grouped && cfg_.kind == stream_kind::dataset && raw != "null") {
            if (v.get_string().get(group_obj)) group_obj = {};
          }
          break;
        case fid::object_delete:
          if (raw == "true") {
            ++page.deletes;
            out.is_delete = true;
          }
          break;
        case fid::is_merge:
          if (raw == "true") {
            ++page.merges;
            out.is_merge = true;
          }
          break;
        default: break;
      }
      if (id == fid::origin || !(keep & bit(id))) {
        end_run();
        continue;
      }
      if (!run_begin) run_begin = key_begin - 1;
      run_end = raw.data() + raw.size();
    }
    end_run();
    if (out.id.empty()) throw fail(index, {}, "row has no `id` (or an empty one)");
    if (!has_key) throw fail(index, out.id, "row has no `_pagination_key` (the stream cannot advance past it)");
    if (!prev.empty() && !(out.key > prev))
      throw fail(index, out.id, "`_pagination_key` " + shorten(out.key) + " is not after " + shorten(prev) +
                                    " (keys go backwards; the source is not sorted)");

    // Destination object ids (override any same-named source field, which was dropped above).
    std::string_view src_obj = cfg_.source_object_id;
    if (cfg_.grouped) {
      if (group_obj.empty())
        throw fail(index, out.id, std::string("row has no `") +
                                      (cfg_.kind == stream_kind::dataset ? "dataset_id" : "experiment_id") + "`");
      src_obj = group_obj;
    }
    if (impl_->obj_fields.empty() || src_obj != impl_->obj_src) {
      auto it = cfg_.dest_ids.find(std::string(src_obj));
      if (it == cfg_.dest_ids.end() || it->second.empty())
        throw fail(index, out.id, "no destination id for source " + std::string(object_type_name(cfg_.kind)) + " " +
                                      std::string(src_obj));
      impl_->obj_src.assign(src_obj);
      impl_->obj_fields.clear();
      append_dest_fields(impl_->obj_fields, cfg_.kind, it->second);
      impl_->obj_origin = "{\"object_type\":\"" + std::string(object_type_name(cfg_.kind)) + "\",\"object_id\":\"" +
                          engine::json_escape(src_obj) + "\",\"id\":";
    }
    if (!first) j += ',';
    j += impl_->obj_fields;

    j += ",\"origin\":";
    if (!raw_origin.empty() && raw_origin != "null") {
      impl_->append_origin(j, raw_origin, cfg_, out);
    } else {
      j += impl_->obj_origin;
      j += raw_id;
      if (!raw_xact.empty() && raw_xact != "null") {
        j += ",\"_xact_id\":";
        j += raw_xact;
      }
      if (!raw_created.empty() && raw_created != "null") {
        j += ",\"created\":";
        j += raw_created;
      }
      j += '}';
    }
    j += '}';
    // Comments ride with their row (same request, right after it): the row's insert replaces the
    // destination row with no comments, then each comment row appends one, so a resent batch does not
    // duplicate them. A delete or merge row keeps the destination's own comments.
    if (non_empty_array(raw_comments) && !out.is_delete && !out.is_merge) {
      auto err = impl_->append_comment_rows(out.riders, raw_comments, raw_id, impl_->obj_fields, cfg_);
      if (!err.empty()) throw fail(index, out.id, err);
      ++page.commented_rows;
    }
    // The next row reserves about this row's size; a rare huge row must not make every following
    // small row reserve megabytes (they stay alive until their batch is committed).
    impl_->row_hint = std::min<std::size_t>(j.size(), 16u << 10);
    out.hash = hash_row(out.id, j);
    page.rows.push_back(std::move(out));
    prev = page.rows.back().key;
    ++index;
  }
  // simdjson keeps buffers of ~5.7x the largest document it parsed (structural indexes, string buffer):
  // after a page of large rows, every slice's reader would hold them for the rest of its stream. Pages
  // of ordinary rows (1-2 MB) keep theirs.
  if (impl_->parser.capacity() > (4u << 20)) impl_->parser = od::parser{};
  return page;
}

std::vector<std::string> page_keys(std::string& body, std::string_view stream_name) {
  ensure_padding(body);
  od::parser parser;
  od::document doc;
  std::vector<std::string> keys;
  auto bad = [&](simdjson::error_code e) {
    return stream_error("stream " + std::string(stream_name) + ": bad BTQL key page: " + simdjson::error_message(e));
  };
  if (auto e = parser.iterate(simdjson::padded_string_view(body.data(), body.size(), body.capacity())).get(doc)) throw bad(e);
  od::array data;
  if (auto e = doc.find_field_unordered("data").get_array().get(data)) throw bad(e);
  for (auto row_res : data) {
    od::object row;
    if (auto e = row_res.get_object().get(row)) throw bad(e);
    std::string_view k;
    if (row.find_field_unordered("_pagination_key").get_string().get(k)) k = {};
    keys.emplace_back(k);
  }
  return keys;
}

}  // namespace ferry::pipelines::streams
