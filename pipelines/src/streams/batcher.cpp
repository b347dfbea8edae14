#include "pipelines/streams/batcher.hpp"

#include <simdjson.h>

#include <algorithm>
#include <functional>

namespace ferry::pipelines::streams {

batcher::batcher(batch_limits limits, std::uint64_t next_seq) : limits_(limits), next_seq_(next_seq) {
  if (limits_.max_rows == 0) limits_.max_rows = 1;
}

batch batcher::take() {
  batch b = std::move(cur_);
  b.seq = next_seq_++;
  std::sort(b.id_hashes.begin(), b.id_hashes.end());
  cur_ = batch{};
  ++gen_;
  return b;
}

bool batcher::holds_id(std::uint64_t h) const {
  if (ids_.empty()) return false;
  const std::size_t mask = ids_.size() - 1;
  for (std::size_t i = h & mask;; i = (i + 1) & mask) {
    if (ids_[i].gen != gen_) return false;
    if (ids_[i].hash == h) return true;
  }
}

void batcher::note_id(std::uint64_t h) {
  if ((cur_.id_hashes.size() + 1) * 2 > ids_.size()) {  // keep the load <= 1/2: grow and re-insert
    ids_.assign(std::max<std::size_t>(64, ids_.size() * 2), id_slot{});
    gen_ = 1;
    for (auto x : cur_.id_hashes) {
      const std::size_t mask = ids_.size() - 1;
      std::size_t i = x & mask;
      while (ids_[i].gen == gen_) i = (i + 1) & mask;
      ids_[i] = {x, gen_};
    }
  }
  const std::size_t mask = ids_.size() - 1;
  std::size_t i = h & mask;
  while (ids_[i].gen == gen_) i = (i + 1) & mask;
  ids_[i] = {h, gen_};
  cur_.id_hashes.push_back(h);
}

std::uint64_t row_id_hash(std::string_view id) { return std::hash<std::string_view>{}(id); }

bool share_ids(const std::vector<std::uint64_t>& a, const std::vector<std::uint64_t>& b) {
  auto i = a.begin(), j = b.begin();
  while (i != a.end() && j != b.end()) {
    if (*i == *j) return true;
    if (*i < *j) ++i;
    else ++j;
  }
  return false;
}

void batcher::add(event_row row, std::vector<batch>& out) {
  const std::size_t row_bytes = row.json.size() + row.riders.size();
  const std::uint64_t h = row_id_hash(row.id);
  if (!cur_.rows.empty()) {
    const std::size_t grown = cur_.body_bytes + 1 + row_bytes;
    if (cur_.rows.size() + 1 > limits_.max_rows || grown > limits_.max_bytes || holds_id(h)) out.push_back(take());
  }
  if (cur_.rows.empty()) {
    cur_.id_hashes.reserve(std::min<std::size_t>(limits_.max_rows, 4096));
    cur_.body_bytes = logs3_overhead_bytes + row_bytes;
  } else {
    cur_.body_bytes += 1 + row_bytes;
  }
  cur_.rows.push_back(std::move(row));
  note_id(h);
  if (cur_.rows.size() >= limits_.max_rows || cur_.body_bytes >= limits_.max_bytes) out.push_back(take());
}

std::optional<batch> batcher::flush() {
  if (cur_.rows.empty()) return std::nullopt;
  return take();
}

std::size_t logs3_body_size(const std::vector<event_row>& rows, std::size_t begin, std::size_t end) {
  std::size_t n = logs3_overhead_bytes;
  for (std::size_t i = begin; i < end; ++i) n += rows[i].json.size() + rows[i].riders.size() + (i > begin ? 1 : 0);
  return n;
}

std::string logs3_body(const std::vector<event_row>& rows, std::size_t begin, std::size_t end) {
  std::string body;
  body.reserve(logs3_body_size(rows, begin, end));
  body += "{\"rows\":[";
  for (std::size_t i = begin; i < end; ++i) {
    if (i > begin) body += ',';
    body += rows[i].json;
    body += rows[i].riders;  // the rows that must follow it in the same request (its comments)
  }
  body += "],\"api_version\":2}";
  return body;
}

std::pair<std::pair<std::size_t, std::size_t>, std::pair<std::size_t, std::size_t>> split_range(std::size_t begin,
                                                                                               std::size_t end) {
  const std::size_t mid = begin + (end - begin) / 2;
  return {{begin, mid}, {mid, end}};
}

bool is_spillable_field(std::string_view n) {
  return n == "input" || n == "output" || n == "expected" || n == "metadata" || n == "error" ||
         n == "span_attributes";
}

std::vector<std::string> choose_spill_fields(std::vector<field_size> fields, std::size_t row_bytes, std::size_t limit) {
  std::vector<std::string> out;
  if (row_bytes <= limit) return out;
  std::erase_if(fields, [](const field_size& f) {
    return f.is_attachment || !is_spillable_field(f.name) || f.bytes < spill_min_field_bytes;
  });
  std::stable_sort(fields.begin(), fields.end(), [](const field_size& a, const field_size& b) { return a.bytes > b.bytes; });
  std::size_t estimate = row_bytes;
  for (const auto& f : fields) {
    if (estimate <= limit) break;
    estimate = estimate - f.bytes + spill_reference_bytes;
    out.push_back(f.name);
  }
  return out;
}

namespace {

namespace od = simdjson::ondemand;

struct raw_field {
  std::string name;
  std::size_t begin = 0;  // offset of the value's raw bytes in the row
  std::size_t size = 0;
  bool is_attachment = false;
};

std::vector<raw_field> scan_fields(std::string_view row_json) {
  simdjson::padded_string padded(row_json);
  od::parser parser;
  od::document doc;
  auto bad = [](simdjson::error_code e) { return stream_error(std::string("row is not a JSON object: ") + simdjson::error_message(e)); };
  if (auto e = parser.iterate(padded).get(doc)) throw bad(e);
  od::object obj;
  if (auto e = doc.get_object().get(obj)) throw bad(e);
  std::vector<raw_field> out;
  for (auto fr : obj) {
    od::field f;
    if (auto e = std::move(fr).get(f)) throw bad(e);
    std::string_view key;
    if (auto e = f.unescaped_key().get(key)) throw bad(e);
    od::value v = f.value();
    od::json_type t;
    if (auto e = v.type().get(t)) throw bad(e);
    std::string_view raw;
    bool attachment = false;
    if (t == od::json_type::object) {
      od::object o;
      if (auto e = v.get_object().get(o)) throw bad(e);
      if (auto e = o.raw_json().get(raw)) throw bad(e);
      // A field that is itself an attachment reference is small and names the type.
      attachment = raw.find("\"braintrust_attachment\"") != std::string_view::npos && raw.size() < 4096;
    } else if (t == od::json_type::array) {
      od::array a;
      if (auto e = v.get_array().get(a)) throw bad(e);
      if (auto e = a.raw_json().get(raw)) throw bad(e);
    } else {
      raw = v.raw_json_token();
      while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\r' || raw.back() == '\t'))
        raw.remove_suffix(1);
    }
    out.push_back({std::string(key), static_cast<std::size_t>(raw.data() - padded.data()), raw.size(), attachment});
  }
  return out;
}

}  // namespace

std::vector<field_size> measure_fields(std::string_view row_json) {
  std::vector<field_size> out;
  for (auto& f : scan_fields(row_json)) out.push_back({f.name, f.size, f.is_attachment});
  return out;
}

std::optional<std::string> field_raw(std::string_view row_json, std::string_view field) {
  for (auto& f : scan_fields(row_json))
    if (f.name == field) return std::string(row_json.substr(f.begin, f.size));
  return std::nullopt;
}

std::string replace_field(std::string_view row_json, std::string_view field, std::string_view replacement_raw) {
  for (auto& f : scan_fields(row_json)) {
    if (f.name != field) continue;
    std::string out;
    out.reserve(row_json.size() - f.size + replacement_raw.size());
    out.append(row_json.substr(0, f.begin));
    out.append(replacement_raw);
    out.append(row_json.substr(f.begin + f.size));
    return out;
  }
  throw stream_error("row has no field `" + std::string(field) + "` to replace");
}

}  // namespace ferry::pipelines::streams
