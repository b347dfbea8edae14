// Event writes: POST /logs3 (+ the overflow protocol), REST inserts, feedback and the cross-object insert.
// Each request body is parsed once into a monotonic resource; rows are finalized in place and serialized
// once by the event store.

#include "events_impl.hpp"
#include "json_fields.hpp"

#include "engine/json_parse.hpp"
#include "engine/json_scan.hpp"
#include "engine/log.hpp"

#include <boost/json/monotonic_resource.hpp>

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <deque>
#include <map>
#include <unordered_map>

namespace ferry::emulator {

namespace {

using detail::http_error;
using detail::object_ref;
using detail::row_in;

std::string overflow_blob_key(std::string_view org_id, std::string_view key) {
  std::string k("ovf");
  k.push_back('\0');
  k.append(org_id);
  k.push_back('\0');
  k.append(key);
  return k;
}

// The grant of an overflow upload (what POST /logs3/overflow declared): {"size_bytes":N,"rows":k}.
std::string overflow_grant_key(std::string_view org_id, std::string_view key) {
  std::string k("ovm");
  k.push_back('\0');
  k.append(org_id);
  k.push_back('\0');
  k.append(key);
  return k;
}

std::uint64_t grant_u64(const json::object& grant, std::string_view name) {
  const auto* v = grant.if_contains(name);
  return v && v->is_uint64() ? v->get_uint64() : v && v->is_int64() && v->get_int64() >= 0 ? static_cast<std::uint64_t>(v->get_int64()) : 0;
}

json::value parse_json(std::string_view body, json::storage_ptr sp, std::string_view what) {
  boost::system::error_code ec;
  json::value v = ferry::engine::parse_json(body, ec, std::move(sp));
  if (ec) throw http_error(400, std::string(what) + ": body is not valid JSON (" + ec.message() + ")");
  return v;
}

void check_payload_size(std::size_t size, std::uint64_t cap, std::string_view what) {
  if (size > cap)
    throw http_error(413, std::string(what) + ": payload of " + std::to_string(size) +
                              " bytes is above logs3_payload_max_bytes=" + std::to_string(cap) +
                              (what == "logs3" ? " (use /logs3/overflow)" : " (send smaller batches)"));
}

// Which object a /logs3 row belongs to.
object_ref object_of_row(const json::object& row, std::size_t index) {
  if (auto id = string_field(row, "dataset_id"); !id.empty()) return {"dataset", id};
  if (auto id = string_field(row, "experiment_id"); !id.empty()) return {"experiment", id};
  auto project = string_field(row, "project_id");
  auto log = string_field(row, "log_id");
  if (!project.empty() && log == "g") return {"project_logs", project};
  if (!project.empty())
    throw http_error(400, "logs3: row " + std::to_string(index) + " has project_id but log_id \"" + log +
                              "\"; only project logs (log_id \"g\") are supported");
  throw http_error(400, "logs3: row " + std::to_string(index) +
                            " names no object (expected dataset_id, experiment_id or project_id with log_id \"g\")");
}

// ---- /logs3 without a DOM -------------------------------------------------------------------------
// Measured (bench, emulator -> emulator): parsing every /logs3 body into a Boost.JSON DOM, editing each row
// and serializing it again was ~25% of the destination's CPU. simdjson's DOM parser validates the whole
// body as strictly (~4x faster), and plain rows are re-emitted member by member, minified, without a
// Boost.JSON object. Merge and delete rows, and overflow payloads, keep the Boost.JSON path.

namespace sj = simdjson;

std::string_view sj_string(sj::dom::object o, std::string_view key) {
  std::string_view out;
  if (o[key].get(out) != sj::SUCCESS) return {};
  return out;
}

bool sj_true(sj::dom::object o, std::string_view key) {
  bool b = false;
  return o[key].get(b) == sj::SUCCESS && b;
}

// Which object a /logs3 row belongs to: type and id, as views into the parsed body.
std::pair<std::string_view, std::string_view> sj_object_of_row(sj::dom::object row, std::size_t index) {
  if (auto id = sj_string(row, "dataset_id"); !id.empty()) return {"dataset", id};
  if (auto id = sj_string(row, "experiment_id"); !id.empty()) return {"experiment", id};
  auto project = sj_string(row, "project_id");
  auto log = sj_string(row, "log_id");
  if (!project.empty() && log == "g") return {"project_logs", project};
  if (!project.empty())
    throw http_error(400, "logs3: row " + std::to_string(index) + " has project_id but log_id \"" + std::string(log) +
                              "\"; only project logs (log_id \"g\") are supported");
  throw http_error(400, "logs3: row " + std::to_string(index) +
                            " names no object (expected dataset_id, experiment_id or project_id with log_id \"g\")");
}

// Appends `s` as a JSON string (quotes included). simdjson has validated it as UTF-8: only quotes,
// backslashes and control characters need escaping, so clean spans are appended whole.
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t clean = 0;
  for (std::size_t i = engine::json_special_byte(s, 0, false); i < s.size();
       i = engine::json_special_byte(s, i + 1, false)) {
    const auto c = static_cast<unsigned char>(s[i]);
    out.append(s.data() + clean, i - clean);
    clean = i + 1;
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      case '\b': out.append("\\b"); break;
      case '\f': out.append("\\f"); break;
      default: {
        const char esc[] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        out.append(esc, sizeof esc);
      }
    }
  }
  out.append(s.data() + clean, s.size() - clean);
  out.push_back('"');
}

template <class Number>
void append_number(std::string& out, Number n) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);  // doubles: shortest round-trip form
  out.append(buf, ec == std::errc{} ? end : buf);
}

// Minified JSON of a parsed element, appended to `out` (simdjson's own minifier appends byte by byte
// into a vector: 5% of the destination's CPU).
void append_minified(std::string& out, sj::dom::element e) {
  switch (e.type()) {
    case sj::dom::element_type::OBJECT: {
      out.push_back('{');
      bool first = true;
      for (sj::dom::key_value_pair kv : sj::dom::object(e)) {
        if (!first) out.push_back(',');
        first = false;
        append_json_string(out, kv.key);
        out.push_back(':');
        append_minified(out, kv.value);
      }
      out.push_back('}');
      break;
    }
    case sj::dom::element_type::ARRAY: {
      out.push_back('[');
      bool first = true;
      for (sj::dom::element x : sj::dom::array(e)) {
        if (!first) out.push_back(',');
        first = false;
        append_minified(out, x);
      }
      out.push_back(']');
      break;
    }
    case sj::dom::element_type::STRING: append_json_string(out, std::string_view(e)); break;
    case sj::dom::element_type::INT64: append_number(out, std::int64_t(e)); break;
    case sj::dom::element_type::UINT64: append_number(out, std::uint64_t(e)); break;
    case sj::dom::element_type::DOUBLE: {
      const std::size_t at = out.size();
      append_number(out, double(e));
      // "-3e2" is a double: keep it one ("-300.0", not the integer "-300") for readers that tell them apart.
      if (out.find_first_of(".eE", at) == std::string::npos) out.append(".0");
      break;
    }
    case sj::dom::element_type::BOOL: out.append(bool(e) ? "true" : "false"); break;
    case sj::dom::element_type::NULL_VALUE: out.append("null"); break;
  }
}


// Owns the serialized members of a request's fast rows: chunks that never reallocate, so the views
// handed out stay valid until the request ends (one allocation per ~body size instead of one per field).
class row_arena {
 public:
  explicit row_arena(std::size_t chunk_hint) : hint_(std::max<std::size_t>(chunk_hint, 4096)) {}
  std::string_view keep(std::string_view s) {
    if (chunks_.empty() || chunks_.back().capacity() - chunks_.back().size() < s.size()) {
      chunks_.emplace_back();
      chunks_.back().reserve(std::max(hint_, s.size()));
    }
    auto& c = chunks_.back();
    const std::size_t at = c.size();
    c.append(s);
    return {c.data() + at, s.size()};
  }

 private:
  std::size_t hint_;
  std::deque<std::string> chunks_;
};

// The server fields a fast row may keep as sent (see event_store::write); the other reserved fields
// (id, is_root, comments, audit_data and the control fields) are dropped here.
bool kept_field(std::string_view key) {
  return key == "created" || key == "span_id" || key == "root_span_id" || key == "org_id" || key == "log_id" ||
         key == "project_id" || key == "experiment_id" || key == "dataset_id";
}

// `scratch` is a buffer reused across rows; the row's views point into `row` (the parsed body) and `arena`.
detail::fast_row to_fast_row(sj::dom::object row, row_arena& arena, std::string& scratch) {
  detail::fast_row f;
  scratch.clear();
  for (sj::dom::key_value_pair kv : row) {
    const std::string_view key = kv.key;
    if (key == "comment" || key.starts_with("_audit_")) f.needs_dom = true;  // comment rows, feedback
    if (key == "id") {
      std::string_view id;
      if (kv.value.get(id) == sj::SUCCESS) f.id = id;
      else if (!kv.value.is_null()) f.id_not_string = true;
      else f.id.reset();
      continue;
    }
    if (key == "span_parents") {
      sj::dom::array a;
      f.is_root = kv.value.is_null() || (kv.value.get(a) == sj::SUCCESS && a.size() == 0);
    }
    if (detail::reserved_field(key)) {
      std::string_view str;
      const bool non_empty = kv.value.get(str) == sj::SUCCESS && !str.empty();
      if (key == "created") f.created = non_empty ? str : std::string_view();
      else if (key == "span_id") f.span_id = non_empty ? str : std::string_view();
      else if (key == "root_span_id") f.has_root_span_id = non_empty;
      if (!kept_field(key)) continue;  // control fields and the server's own are dropped
      // A repeated key: the last one wins, as in the DOM path.
      auto* end = f.reserved.begin() + f.reserved_count;
      auto* it = std::find_if(f.reserved.begin(), end, [&](const auto& r) { return r.key == key; });
      if (it != end) {
        std::move(it + 1, end, it);
        --f.reserved_count;
      }
      const std::size_t at = scratch.size();
      append_minified(scratch, kv.value);
      f.reserved[f.reserved_count++] = {key, arena.keep(std::string_view(scratch).substr(at))};
      scratch.resize(at);
      continue;
    }
    if (!scratch.empty()) scratch.push_back(',');
    append_json_string(scratch, key);
    scratch.push_back(':');
    append_minified(scratch, kv.value);
  }
  f.members = arena.keep(scratch);
  return f;
}

}  // namespace

bool detail::reserved_field(std::string_view key) {
  // Server-assigned and control fields; comments and audit_data are written only by the server (feedback).
  switch (key.size()) {
    case 2: return key == "id";
    case 6: return key == "org_id" || key == "log_id";
    case 7: return key == "created" || key == "span_id" || key == "is_root";
    case 8: return key == "_xact_id" || key == "comments";
    case 9: return key == "_is_merge";
    case 10: return key == "project_id" || key == "dataset_id" || key == "audit_data";
    case 12: return key == "root_span_id" || key == "_merge_paths";
    case 13: return key == "experiment_id" || key == "_array_delete" || key == "_audit_source";
    case 14: return key == "_object_delete";
    case 15: return key == "_pagination_key" || key == "_audit_metadata";
    default: return false;
  }
}

std::string events_api::impl::logs3(std::string_view body, const request_context& ctx) {
  check_payload_size(body.size(), cfg.logs3_payload_max_bytes, "logs3");
  thread_local sj::dom::parser parser;
  sj::dom::element doc;
  if (auto err = parser.parse(body.data(), body.size()).get(doc); err)
    throw http_error(400, std::string("logs3: body is not valid JSON (") + sj::error_message(err) + ")");
  sj::dom::object top;
  if (doc.get(top) != sj::SUCCESS) throw http_error(400, "logs3: body must be a JSON object with \"rows\"");
  sj::dom::element rows_el;
  if (top["rows"].get(rows_el) != sj::SUCCESS) throw http_error(400, "logs3: missing \"rows\"");
  sj::dom::array arr;
  if (rows_el.get(arr) != sj::SUCCESS) return logs3_dom(body, ctx);  // overflow reference (or an error)

  json::monotonic_resource mr;
  std::deque<json::value> dom_rows;  // merge/delete rows, as Boost.JSON
  std::vector<detail::fast_row> fast;
  fast.reserve(arr.size());  // never reallocates: rows point at their fast_row
  row_arena arena(body.size());
  std::string scratch;
  std::deque<object_ref> objects;  // the distinct objects named (rows point at them)
  const object_ref* obj = nullptr;
  std::vector<row_in> in;
  in.reserve(arr.size());
  std::size_t i = 0;
  for (sj::dom::element el : arr) {
    sj::dom::object row;
    if (el.get(row) != sj::SUCCESS) throw http_error(400, "logs3: row " + std::to_string(i) + " is not a JSON object");
    const auto [type, id] = sj_object_of_row(row, i);
    if (!obj || obj->type != type || obj->id != id) {  // rows of one object usually come together
      auto it = std::find_if(objects.begin(), objects.end(), [&](const object_ref& o) { return o.type == type && o.id == id; });
      if (it == objects.end()) {
        objects.push_back({std::string(type), std::string(id)});
        require_object(objects.back(), ctx);
        it = objects.end() - 1;
      }
      obj = &*it;
    }
    bool dom = sj_true(row, "_is_merge") || sj_true(row, "_object_delete");
    if (!dom) {
      fast.push_back(to_fast_row(row, arena, scratch));
      dom = fast.back().needs_dom;
      if (dom) fast.pop_back();
    }
    if (dom) {
      dom_rows.push_back(parse_json(sj::minify(row), &mr, "logs3"));
      in.push_back({obj, &dom_rows.back().get_object(), nullptr});
    } else {
      in.push_back({obj, nullptr, &fast.back()});
    }
    ++i;
  }
  const auto ids = events.write(in, ctx.org_id);
  std::string out;
  std::size_t size = 16;
  for (const auto& id : ids) size += id.size() + 3;
  out.reserve(size);
  out.append(R"({"ids":[)");
  for (std::size_t k = 0; k < ids.size(); ++k) {
    if (k) out.push_back(',');
    append_json_string(out, ids[k]);
  }
  out.append("]}");
  return out;
}

std::string events_api::impl::logs3_dom(std::string_view body, const request_context& ctx) {
  check_payload_size(body.size(), cfg.logs3_payload_max_bytes, "logs3");
  json::monotonic_resource mr;
  json::value v = parse_json(body, &mr, "logs3");
  if (!v.is_object()) throw http_error(400, "logs3: body must be a JSON object with \"rows\"");
  json::value* rows = v.get_object().if_contains("rows");
  if (!rows) throw http_error(400, "logs3: missing \"rows\"");

  json::value overflow_payload;
  std::string overflow_key;  // erased once its rows are stored
  if (rows->is_object()) {
    // {"rows": {"type": "logs3_overflow", "key": K, "size_bytes": N}}: the payload was PUT to a signed URL.
    const auto& ref = rows->get_object();
    if (string_field(ref, "type") != "logs3_overflow")
      throw http_error(400, "logs3: \"rows\" must be an array or a logs3_overflow reference");
    const std::string key = string_field(ref, "key");
    if (key.empty()) throw http_error(400, "logs3: logs3_overflow reference has no key");
    auto payload = store.get(detail::cf_blobs, overflow_blob_key(ctx.org_id, key));
    if (!payload) throw http_error(404, "logs3: overflow payload " + key + " not found (PUT it to the signed URL first)");
    auto grant_text = store.get(detail::cf_blobs, overflow_grant_key(ctx.org_id, key));
    if (!grant_text) throw http_error(404, "logs3: overflow key " + key + " was not granted by POST /logs3/overflow");
    const auto grant = ferry::engine::parse_json(*grant_text).as_object();
    // The reference's size_bytes (the Python SDK sends it; the JS SDK leaves it out) must be the payload's.
    if (const auto* sz = ref.if_contains("size_bytes"); sz && !(sz->is_number() && sz->to_number<double>() == static_cast<double>(payload->size())))
      throw http_error(400, "logs3: logs3_overflow reference says size_bytes " + json::serialize(*sz) + " but the payload " +
                                key + " is " + std::to_string(payload->size()) + " bytes");
    overflow_key = overflow_blob_key(ctx.org_id, key);
    overflow_payload = parse_json(*payload, &mr, "logs3 overflow payload");
    rows = overflow_payload.is_object() ? overflow_payload.get_object().if_contains("rows") : nullptr;
    if (!rows || !rows->is_array()) throw http_error(400, "logs3: overflow payload " + key + " has no \"rows\" array");
    if (rows->get_array().size() != grant_u64(grant, "rows"))
      throw http_error(400, "logs3: overflow payload " + key + " holds " + std::to_string(rows->get_array().size()) +
                                " rows but POST /logs3/overflow declared " + std::to_string(grant_u64(grant, "rows")));
  }
  if (!rows->is_array()) throw http_error(400, "logs3: \"rows\" must be an array");

  auto& arr = rows->get_array();
  std::vector<row_in> in;
  in.reserve(arr.size());
  std::unordered_map<std::string, bool> checked;
  std::deque<object_ref> objects;
  for (std::size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_object()) throw http_error(400, "logs3: row " + std::to_string(i) + " is not a JSON object");
    auto& row = arr[i].get_object();
    objects.push_back(object_of_row(row, i));
    if (checked.emplace(objects.back().key(), true).second) require_object(objects.back(), ctx);
    in.push_back({&objects.back(), &row});
  }
  const auto ids = events.write(in, ctx.org_id);
  // The payload is single-use: a client that lost this reply and re-sends the reference gets a 404, but
  // its rows are stored already. Keeping it would grow the store by every overflow payload.
  if (!overflow_key.empty()) {
    store.del(detail::cf_blobs, overflow_key);
    store.del(detail::cf_blobs, "ovm" + overflow_key.substr(3));
  }
  std::string out;
  out.reserve(16 + ids.size() * 40);
  json::array id_arr(&mr);
  id_arr.reserve(ids.size());
  for (const auto& id : ids) id_arr.emplace_back(id);
  out.append(R"({"ids":)");
  out.append(json::serialize(id_arr));
  out.push_back('}');
  return out;
}

// POST /logs3/overflow, as strict as the SDK's own request shape (sdk-wire.md §1.2 step 4):
// {"content_type":"application/json","size_bytes":N>0,"rows":[{"object_ids":{..},"is_delete"?:bool,
// "has_comment"?:bool,"input_row":{"byte_size":n}}, ...]} with every object the org's. The grant
// remembers N and the row count: the PUT must be exactly N bytes and the payload hold that many rows.
std::string events_api::impl::logs3_overflow(std::string_view body, const request_context& ctx) {
  json::monotonic_resource mr;
  json::value v = parse_json(body, &mr, "logs3/overflow");
  if (!v.is_object()) throw http_error(400, "logs3/overflow: body must be a JSON object");
  const auto& o = v.get_object();
  if (string_field(o, "content_type") != "application/json")
    throw http_error(400, "logs3/overflow: content_type must be \"application/json\"");
  const auto size = grant_u64(o, "size_bytes");
  if (size == 0) throw http_error(400, "logs3/overflow: size_bytes must be a positive integer");
  const auto* rows = o.if_contains("rows");
  if (!rows || !rows->is_array() || rows->get_array().empty())
    throw http_error(400, "logs3/overflow: \"rows\" must be a non-empty array of row descriptions");
  std::unordered_map<std::string, bool> checked;
  std::size_t i = 0;
  for (const auto& r : rows->get_array()) {
    const auto* ro = r.if_object();
    const auto* ids = ro ? ro->if_contains("object_ids") : nullptr;
    const auto* input = ro ? ro->if_contains("input_row") : nullptr;
    if (!ids || !ids->is_object() || !input || !input->is_object() || !input->get_object().if_contains("byte_size") ||
        !input->get_object().at("byte_size").is_number())
      throw http_error(400, "logs3/overflow: row " + std::to_string(i) +
                                " must be {\"object_ids\":{..},\"input_row\":{\"byte_size\":n}}");
    for (auto flag : {"is_delete", "has_comment"})
      if (const auto* f = ro->if_contains(flag); f && !f->is_bool())
        throw http_error(400, "logs3/overflow: row " + std::to_string(i) + " " + flag + " must be a boolean");
    object_ref obj = object_of_row(ids->get_object(), i);
    if (checked.emplace(obj.key(), true).second) require_object(obj, ctx);
    ++i;
  }
  const std::string key = "overflow-" + detail::random_hex(16);
  store.put(detail::cf_blobs, overflow_grant_key(ctx.org_id, key),
            json::serialize(json::object{{"size_bytes", size}, {"rows", i}}));
  json::object out;
  out["method"] = "PUT";
  out["signedUrl"] = signed_url("logs3", ctx.org_id, key, ctx);
  out["headers"] = json::object();
  out["fields"] = json::object();
  out["key"] = key;
  return json::serialize(out);
}

void events_api::impl::put_overflow_payload(std::string_view org_id, std::string_view key, std::string body) {
  auto grant_text = store.get(detail::cf_blobs, overflow_grant_key(org_id, key));
  if (!grant_text) throw http_error(404, "signed URL: no overflow grant for this key");
  const auto size = grant_u64(ferry::engine::parse_json(*grant_text).as_object(), "size_bytes");
  if (body.size() != size)
    throw http_error(400, "signed URL: the overflow payload is " + std::to_string(body.size()) +
                              " bytes but POST /logs3/overflow declared size_bytes " + std::to_string(size));
  store.put(detail::cf_blobs, overflow_blob_key(org_id, key), body);
}

std::string events_api::impl::rest_insert(const object_ref& obj, std::string_view body, const request_context& ctx) {
  check_payload_size(body.size(), cfg.logs3_payload_max_bytes, "insert");
  require_object(obj, ctx);
  json::monotonic_resource mr;
  json::value v = parse_json(body, &mr, "insert");
  json::value* events_v = v.is_object() ? v.get_object().if_contains("events") : nullptr;
  if (!events_v || !events_v->is_array()) throw http_error(400, "insert: body must be {\"events\": [...]}");
  auto& arr = events_v->get_array();
  std::vector<row_in> in;
  in.reserve(arr.size());
  for (std::size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_object()) throw http_error(400, "insert: event " + std::to_string(i) + " is not a JSON object");
    in.push_back({&obj, &arr[i].get_object()});
  }
  const auto ids = events.write(in, ctx.org_id);
  json::object o;
  json::array a;
  for (const auto& id : ids) a.emplace_back(id);
  o["row_ids"] = std::move(a);
  return json::serialize(o);
}

namespace {

// Feedback items become what the SDK's logFeedback sends through /logs3: a merge row of scores, expected
// and tags, and a comment row ({comment: {text}, origin: {id}}) when there is a comment, both carrying
// the audit fields (source, metadata). The metadata goes to the audit entry, never into the row; both
// refuse an id that is not a row of the object (event_store::write).
void feedback_rows(const json::value& fb, std::string_view object_type, json::storage_ptr sp,
                   std::deque<json::object>& out, std::string_view what) {
  if (!fb.is_array()) throw http_error(400, std::string(what) + ": \"feedback\" must be an array");
  const bool dataset = object_type == "dataset";
  for (const auto& item : fb.get_array()) {
    if (!item.is_object()) throw http_error(400, std::string(what) + ": feedback items must be objects");
    const auto& f = item.get_object();
    const auto* id = f.if_contains("id");
    if (!id || !id->is_string() || id->get_string().empty())
      throw http_error(400, std::string(what) + ": feedback item has no id");
    for (const auto& kv : f) {
      const std::string_view k = kv.key();
      const bool known = k == "id" || k == "comment" || k == "metadata" || k == "source" || k == "tags" ||
                         (!dataset && (k == "scores" || k == "expected"));
      if (!known)
        throw http_error(400, std::string(what) + ": feedback on a " + std::string(object_type) + " has no field '" +
                                  std::string(k) + "'");
    }
    json::object audit(sp);
    if (const auto* src = f.if_contains("source"); src && !src->is_null()) audit["_audit_source"] = *src;
    if (const auto* meta = f.if_contains("metadata"); meta && !meta->is_null()) audit["_audit_metadata"] = *meta;
    if (audit.empty()) audit["_audit_source"] = "external";
    json::object row(sp);
    for (auto key : {"scores", "expected", "tags"})
      if (const auto* x = f.if_contains(key); x && !x->is_null()) row[key] = *x;
    const auto* comment = f.if_contains("comment");
    if (comment && !comment->is_null() && !comment->is_string())
      throw http_error(400, std::string(what) + ": feedback comment must be a string");
    const bool has_comment = comment && comment->is_string() && !comment->get_string().empty();
    if (row.empty() && !has_comment)
      throw http_error(400, std::string(what) + ": feedback item " + std::string(id->get_string()) +
                                " needs at least one of scores, expected, tags or comment");
    if (!row.empty()) {
      row["id"] = *id;
      row["_is_merge"] = true;
      for (const auto& kv : audit) row[kv.key()] = kv.value();
      out.push_back(std::move(row));
    }
    if (has_comment) {
      json::object c(sp);
      c["id"] = detail::random_hex(16);
      c["origin"] = json::object{{"id", *id}};
      c["comment"] = json::object{{"text", *comment}};
      for (const auto& kv : audit) c[kv.key()] = kv.value();
      out.push_back(std::move(c));
    }
  }
}

}  // namespace

std::string events_api::impl::rest_feedback(const object_ref& obj, std::string_view body, const request_context& ctx) {
  require_object(obj, ctx);
  json::monotonic_resource mr;
  json::value v = parse_json(body, &mr, "feedback");
  const json::value* fb = v.is_object() ? v.get_object().if_contains("feedback") : nullptr;
  if (!fb) throw http_error(400, "feedback: body must be {\"feedback\": [...]}");
  std::deque<json::object> rows;
  feedback_rows(*fb, obj.type, &mr, rows, "feedback");
  std::vector<row_in> in;
  for (auto& r : rows) in.push_back({&obj, &r});
  events.write(in, ctx.org_id);
  return R"({"status":"success"})";
}

std::string events_api::impl::cross_insert(std::string_view body, const request_context& ctx) {
  check_payload_size(body.size(), cfg.logs3_payload_max_bytes, "insert");
  json::monotonic_resource mr;
  json::value v = parse_json(body, &mr, "insert");
  if (!v.is_object()) throw http_error(400, "insert: body must be a JSON object");
  std::vector<row_in> in;
  std::deque<json::object> fb_rows;
  struct span {
    std::string type, id;
    std::size_t first, count;
  };
  std::vector<span> spans;
  std::deque<object_ref> objects;
  for (auto& [type_key, per_type] : v.get_object()) {
    const std::string type(type_key);
    if (type != "experiment" && type != "dataset" && type != "project_logs")
      throw http_error(400, "insert: unknown object type '" + type + "' (experiment, dataset, project_logs)");
    if (!per_type.is_object()) throw http_error(400, "insert: \"" + type + "\" must map object ids to {events, feedback}");
    for (auto& [id_key, entry] : per_type.get_object()) {
      const object_ref& obj = objects.emplace_back(object_ref{type, std::string(id_key)});
      require_object(obj, ctx);
      if (!entry.is_object()) throw http_error(400, "insert: " + type + " " + obj.id + " must be {events, feedback}");
      auto& e = entry.get_object();
      span sp{type, obj.id, in.size(), 0};
      if (auto* events_v = e.if_contains("events"); events_v && !events_v->is_null()) {
        if (!events_v->is_array()) throw http_error(400, "insert: " + type + " " + obj.id + " events must be an array");
        for (auto& ev : events_v->get_array()) {
          if (!ev.is_object()) throw http_error(400, "insert: " + type + " " + obj.id + " has an event that is not an object");
          in.push_back({&obj, &ev.get_object()});
          ++sp.count;
        }
      }
      spans.push_back(sp);
      if (const auto* fb = e.if_contains("feedback"); fb && !fb->is_null()) {
        const std::size_t before = fb_rows.size();
        feedback_rows(*fb, type, &mr, fb_rows, "insert");
        for (std::size_t i = before; i < fb_rows.size(); ++i) in.push_back({&obj, &fb_rows[i]});
      }
    }
  }
  const auto ids = events.write(in, ctx.org_id);
  json::object out;
  for (const auto& sp : spans) {
    json::array a;
    for (std::size_t i = sp.first; i < sp.first + sp.count; ++i) a.emplace_back(ids[i]);
    json::object entry;
    entry["row_ids"] = std::move(a);
    auto& per_type = out[sp.type];
    if (!per_type.is_object()) per_type = json::object();
    per_type.get_object()[sp.id] = std::move(entry);
  }
  return json::serialize(out);
}

}  // namespace ferry::emulator
