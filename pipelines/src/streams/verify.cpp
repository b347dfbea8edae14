#include "pipelines/streams/verify.hpp"
#include "engine/json_parse.hpp"

#include <boost/json.hpp>

#include <algorithm>

namespace ferry::pipelines::streams {

namespace json = boost::json;

namespace {

constexpr std::string_view span_survivors[] = {"input",   "output", "expected", "error",   "scores",          "metadata",
                                               "tags",    "metrics", "context", "span_attributes", "facets", "created",
                                               "span_id", "root_span_id", "span_parents"};
constexpr std::string_view dataset_survivors[] = {"input",   "expected",     "metadata",    "tags", "facets", "created",
                                                  "span_id", "root_span_id", "span_parents"};

void canonical(const json::value& v, std::string& out) {
  switch (v.kind()) {
    case json::kind::object: {
      const auto& o = v.as_object();
      // An attachment reference keeps its filename and content type through a copy, but a copied
      // attachment gets a new key (--copy-attachments): the key is not compared.
      const auto* type = o.if_contains("type");
      const bool attachment = type && type->is_string() && type->as_string() == "braintrust_attachment";
      std::vector<const json::key_value_pair*> kv;
      kv.reserve(o.size());
      for (const auto& p : o)
        if (!attachment || p.key() != "key") kv.push_back(&p);
      std::sort(kv.begin(), kv.end(), [](auto* a, auto* b) { return a->key() < b->key(); });
      out += '{';
      bool first = true;
      for (auto* p : kv) {
        if (!first) out += ',';
        first = false;
        out += json::serialize(json::value(p->key()));
        out += ':';
        canonical(p->value(), out);
      }
      out += '}';
      break;
    }
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v.as_array()) {
        if (!first) out += ',';
        first = false;
        canonical(e, out);
      }
      out += ']';
      break;
    }
    case json::kind::double_: {
      // 1.0 and 1 are the same number to a JSON server: spell integral doubles as integers.
      double d = v.as_double();
      if (d == static_cast<double>(static_cast<std::int64_t>(d)) && d > -9e15 && d < 9e15) {
        out += std::to_string(static_cast<std::int64_t>(d));
      } else {
        out += json::serialize(v);
      }
      break;
    }
    default: out += json::serialize(v);
  }
}

// Comments (issue 14 item 9): what a copy carries of each, in order: id, created, comment, source,
// metadata and the row it is on (origin.id); not its `_xact_id` (the destination's own) nor other keys.
// No comments and an empty list are alike.
void canonical_comments(const json::object& row, std::string& out, bool& first) {
  const auto* list = row.if_contains("comments");
  if (!list || !list->is_array() || list->as_array().empty()) return;
  if (!first) out += ',';
  first = false;
  out += "\"comments\":[";
  bool first_comment = true;
  for (const auto& c : list->as_array()) {
    if (!first_comment) out += ',';
    first_comment = false;
    if (!c.is_object()) {
      canonical(c, out);
      continue;
    }
    json::object carried;
    for (auto k : {"id", "created", "comment", "source", "metadata"})
      if (const auto* v = c.as_object().if_contains(k); v && !v->is_null()) carried[k] = *v;
    if (const auto* o = c.as_object().if_contains("origin"); o && o->is_object())
      if (const auto* id = o->as_object().if_contains("id")) carried["origin.id"] = *id;
    canonical(carried, out);
  }
  out += ']';
}

void keep_first(std::vector<std::string>& v, std::string_view id) {
  if (v.size() < 10) v.emplace_back(id);
}

std::string string_of(const json::object& row, std::string_view name) {
  auto it = row.find(name);
  return it != row.end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
}

/// "<object>/<id>", or the id alone for a row that does not name its object.
std::string row_key(const std::string& object, const std::string& id) { return object.empty() ? id : object + "/" + id; }

}  // namespace

std::vector<spilled_field> spilled_fields(const json::object& row) {
  std::vector<spilled_field> out;
  for (std::string_view name : {"input", "output", "expected", "metadata", "error", "span_attributes"}) {
    const auto* v = row.if_contains(name);
    const auto* o = v ? v->if_object() : nullptr;
    if (!o || string_of(*o, "type") != "braintrust_attachment") continue;
    spilled_field f{std::string(name), string_of(*o, "key"), string_of(*o, "filename"), string_of(*o, "content_type")};
    if (f.filename == f.field + ".json" && f.content_type == "application/json" && !f.key.empty())
      out.push_back(std::move(f));
  }
  return out;
}

void inline_spilled(json::object& row, const spilled_field& f, std::string_view content) {
  boost::system::error_code ec;
  auto v = ferry::engine::parse_json(content, ec);
  if (ec)
    throw std::runtime_error("row " + string_of(row, "id") + ": attachment " + f.key + " of spilled field `" + f.field +
                             "` is not JSON (" + ec.message() + ")");
  row[f.field] = std::move(v);
}

std::string canonical_json(const json::value& v) {
  std::string out;
  canonical(v, out);
  return out;
}

std::string_view object_field(stream_kind kind) {
  switch (kind) {
    case stream_kind::experiment: return "experiment_id";
    case stream_kind::dataset: return "dataset_id";
    default: return "project_id";
  }
}

std::string canonical_content(const json::object& row, stream_kind kind) {
  std::string out = "{";
  bool first = true;
  auto emit = [&](std::string_view name) {
    auto it = row.find(name);
    if (it == row.end() || it->value().is_null()) return;
    if (!first) out += ',';
    first = false;
    out += '"';
    out += name;
    out += "\":";
    canonical(it->value(), out);
  };
  // The survivor lists are emitted in one fixed order: key order in the row does not matter.
  if (kind == stream_kind::dataset) {
    for (auto n : dataset_survivors) emit(n);
  } else {
    for (auto n : span_survivors) emit(n);
  }
  canonical_comments(row, out, first);
  out += '}';
  return out;
}

row_hash canonical_row_hash(const json::object& row, stream_kind kind) {
  std::string id;
  if (auto it = row.find("id"); it != row.end() && it->value().is_string()) id = it->value().as_string();
  return hash_row(id, canonical_content(row, kind));
}

void verify_tally::add_source(const json::object& row) {
  auto h = canonical_row_hash(row, kind_);
  ++report_.source_rows;
  report_.source_digest.add(h);
  source_[row_key(string_of(row, object_field(kind_)), string_of(row, "id"))] = h;
}

void verify_tally::add_dest(const json::object& row) {
  auto h = canonical_row_hash(row, kind_);
  ++report_.dest_rows;
  report_.dest_digest.add(h);
  auto object = string_of(row, object_field(kind_));
  if (!objects_.empty() && !object.empty()) {
    // A destination object the id map does not pair with a source object of this stream: its rows
    // cannot be the copy of any source row (named by the destination id, marked as such).
    auto m = objects_.find(object);
    object = m != objects_.end() ? m->second : "dest:" + object;
  }
  auto key = row_key(object, string_of(row, "id"));
  auto it = source_.find(key);
  if (it == source_.end()) {
    ++report_.extra;
    keep_first(report_.extra_ids, key);
    return;
  }
  if (!(it->second == h)) {
    ++report_.mismatched;
    keep_first(report_.mismatched_ids, key);
  }
  source_.erase(it);
}

verify_report verify_tally::finish() {
  std::vector<std::string> left;
  for (auto& [id, h] : source_) left.push_back(id);
  std::sort(left.begin(), left.end());
  report_.missing = left.size();
  for (auto& id : left) keep_first(report_.missing_ids, id);
  source_.clear();
  return report_;
}

std::string verify_report::summary() const {
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (auto& i : v) s += (s.empty() ? "" : ",") + i;
    return s;
  };
  std::string s = "stream=" + stream + " source_rows=" + std::to_string(source_rows) + " dest_rows=" + std::to_string(dest_rows) +
                  " missing=" + std::to_string(missing) + " extra=" + std::to_string(extra) +
                  " mismatched=" + std::to_string(mismatched) + (source_digest == dest_digest ? " digest=equal" : " digest=differs");
  if (!missing_ids.empty()) s += " missing_ids=" + list(missing_ids);
  if (!extra_ids.empty()) s += " extra_ids=" + list(extra_ids);
  if (!mismatched_ids.empty()) s += " mismatched_ids=" + list(mismatched_ids);
  return s;
}

}  // namespace ferry::pipelines::streams
